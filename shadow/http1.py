"""Just enough HTTP/1.x framing for the harness: read a head, read a body, keep the raw bytes.

The recording upstreams and the client both need to see messages *exactly* as they were sent
(header case, order, duplicates, chunk framing), which is why they do not use an HTTP library that
normalises. Everything is decoded as latin-1 so that any byte round-trips.
"""

from __future__ import annotations

import asyncio

Headers = list[tuple[str, str]]

MAX_HEAD = 64 * 1024


class FramingError(Exception):
    """The peer sent something that is not HTTP/1.x framing we can follow."""


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The bytes up to and including the blank line that ends a head; b"" on a clean EOF before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return b""
        raise FramingError(f"connection closed inside a head: {exc.partial[:200]!r}") from None
    except asyncio.LimitOverrunError:
        raise FramingError("head larger than the reader limit") from None


def parse_head(raw: bytes) -> tuple[list[str], Headers]:
    """Split a head into its start line (3 parts at most) and its headers as sent."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    start = lines[0].split(" ", 2)
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise FramingError(f"header line without a colon: {line[:200]!r}")
        headers.append((name, value.strip(" \t")))
    return start, headers


def header_values(headers: Headers, name: str) -> list[str]:
    lowered = name.lower()
    return [value for key, value in headers if key.lower() == lowered]


def has_token(headers: Headers, name: str, token: str) -> bool:
    """Whether a comma-separated header (Connection, Transfer-Encoding) lists ``token``."""
    for value in header_values(headers, name):
        if token in (part.strip().lower() for part in value.split(",")):
            return True
    return False


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """A chunked body: (raw bytes as framed, decoded payload). Trailers are kept in the raw bytes only."""
    raw = bytearray()
    payload = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size_text = size_line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise FramingError(f"bad chunk size {size_line[:50]!r}") from None
        if size == 0:
            # Trailer section: header lines until an empty line.
            while True:
                line = await reader.readuntil(b"\r\n")
                raw += line
                if line == b"\r\n":
                    return bytes(raw), bytes(payload)
        chunk = await reader.readexactly(size + 2)
        raw += chunk
        payload += chunk[:-2]


async def read_body(reader: asyncio.StreamReader, headers: Headers, until_close: bool) -> tuple[bytes, bytes]:
    """A message body framed by chunked coding, Content-Length, or (``until_close``) the end of the connection.

    Returns (raw bytes, decoded payload); both are the same except for chunked bodies.
    """
    if has_token(headers, "Transfer-Encoding", "chunked"):
        return await read_chunked(reader)
    lengths = header_values(headers, "Content-Length")
    if lengths:
        try:
            length = int(lengths[0])
        except ValueError:
            raise FramingError(f"bad Content-Length {lengths[0]!r}") from None
        body = await reader.readexactly(length)
        return body, body
    if until_close:
        body = await reader.read()
        return body, body
    return b"", b""
