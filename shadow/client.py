"""Send one request over a fresh connection and read exactly one response, as raw as it came.

Transport failures are results (``outcome``), not exceptions: a proxy that resets or hangs is
something to compare, not a harness crash. After the response the client looks at what the server
did with the connection: closed it, or kept it open (probed with a short read).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from shadow.http1 import FramingError, Headers, has_token, parse_head, read_body, read_head

# Outcomes: "response"; "no-response" (closed before a byte, like nginx's 444); "truncated"
# (closed inside a response); "refused"; "timeout"; "reset"; "bad-response" (not HTTP framing).
TRANSPORT_FAILURES = ("refused", "timeout")


@dataclass
class Response:
    outcome: str
    status: int | None = None
    reason: str = ""
    version: str = ""
    headers: Headers = field(default_factory=list)
    body: bytes = b""  # payload (chunked coding removed)
    raw_body: bytes = b""  # as framed on the wire
    # What the server did with the connection after the response: "keep-alive", "closed",
    # "open-after-close" (said Connection: close but kept it), "extra-data" (sent more bytes).
    connection: str = ""
    error: str | None = None
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen before the final one

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "version": self.version,
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("latin-1"),
            "connection": self.connection,
            "error": self.error,
        }


def _no_body(method: str, status: int) -> bool:
    return method == "HEAD" or 100 <= status < 200 or status in (204, 304)


async def _read_response(reader: asyncio.StreamReader, method: str, response: Response) -> bool:
    """Fill ``response`` from the stream; True when the body ran until the connection closed."""
    while True:
        head = await read_head(reader)
        if not head:
            response.outcome = "no-response" if response.status is None else "truncated"
            return True
        start, headers = parse_head(head)
        if len(start) < 2 or not start[0].startswith("HTTP/") or not start[1].isdigit():
            raise FramingError(f"bad status line {head[:100]!r}")
        status = int(start[1])
        if 100 <= status < 200 and status != 101:
            response.interim.append(status)
            continue
        response.version = start[0][5:]
        response.status = status
        response.reason = start[2] if len(start) > 2 else ""
        response.headers = headers
        break
    if _no_body(method, status):
        response.outcome = "response"
        return False
    framed = has_token(headers, "Transfer-Encoding", "chunked") or any(
        k.lower() == "content-length" for k, _ in headers
    )
    response.raw_body, response.body = await read_body(reader, headers, until_close=True)
    response.outcome = "response"
    return not framed


async def _after(reader: asyncio.StreamReader, announced_close: bool, probe: float, close_wait: float) -> str:
    """What the server does with the connection once the response is complete.

    A server that announced ``Connection: close`` gets ``close_wait`` to close; otherwise a
    ``probe``-long read tells a kept-alive connection (nothing comes) from a closed one (EOF).
    """
    try:
        data = await asyncio.wait_for(reader.read(1), close_wait if announced_close else probe)
    except asyncio.TimeoutError:
        return "open-after-close" if announced_close else "keep-alive"
    except ConnectionError:
        return "closed"
    return "closed" if not data else "extra-data"


class Exchange:
    """A response read from an open connection; ``finish`` settles what happened to the connection.

    Split in two so a caller can probe two connections at once (the probe is a wait).
    """

    def __init__(
        self,
        response: Response,
        reader: asyncio.StreamReader | None,
        writer: asyncio.StreamWriter | None,
        timeout: float,
    ) -> None:
        self.response = response
        self._reader = reader
        self._writer = writer
        self._timeout = timeout

    async def finish(self, probe: float = 0.01) -> Response:
        response = self.response
        try:
            if self._reader is not None and response.connection == "" and response.outcome == "response":
                announced = has_token(response.headers, "Connection", "close")
                response.connection = await _after(self._reader, announced, probe, min(1.0, self._timeout / 2))
        finally:
            await self.close()
        return response

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def exchange(data: bytes, port: int, method: str, *, host: str = "127.0.0.1", timeout: float = 5.0) -> Exchange:
    """Send ``data`` (a complete request) to host:port and read one response within ``timeout``.

    The connection stays open until ``Exchange.finish`` (or ``close``) is awaited.
    """
    response = Response(outcome="timeout")
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def run() -> None:
        nonlocal reader, writer
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        writer.write(data)
        await writer.drain()
        until_close = await _read_response(reader, method, response)
        if response.outcome != "response" or until_close:
            response.connection = "closed"

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        response.outcome, response.error = "timeout", f"no complete response within {timeout}s"
    except ConnectionRefusedError as exc:
        response.outcome, response.error = "refused", str(exc)
    except (ConnectionResetError, BrokenPipeError) as exc:
        response.outcome, response.error = "reset", str(exc)
    except asyncio.IncompleteReadError as exc:
        response.outcome, response.error = "truncated", f"closed after {len(exc.partial)} of {exc.expected} bytes"
    except FramingError as exc:
        response.outcome, response.error = "bad-response", str(exc)
    except OSError as exc:
        response.outcome, response.error = "reset", str(exc)
    if response.outcome != "response" and not response.connection:
        response.connection = "closed"
    return Exchange(response, reader, writer, timeout)


async def send(
    data: bytes, port: int, method: str, *, host: str = "127.0.0.1", timeout: float = 5.0, probe: float = 0.01
) -> Response:
    """``exchange`` then ``finish``: one request, one response, and the connection's fate."""
    ex = await exchange(data, port, method, host=host, timeout=timeout)
    return await ex.finish(probe)
