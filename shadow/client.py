"""Send one request over a fresh connection and read exactly one response, as raw as it came.

Transport failures are results (``outcome``), not exceptions: a proxy that resets or hangs is
something to compare, not a harness crash. After the response the client looks at what the server
did with the connection: closed it, or kept it open (probed with a short read).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ssl
import warnings
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
    trailers: Headers = field(default_factory=list)  # HTTP/2 trailers (HTTP/1.1 ones stay in raw_body)
    # Over TLS: the handshake's outcome — protocol, cipher, the certificate presented (SHA-256 of its
    # DER and its subject CN), whether the session was resumed; or {"error": OpenSSL's reason} when
    # the handshake failed. None over plain TCP.
    tls: dict[str, Any] | None = None

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
            "tls": self.tls,
        }


@dataclass(frozen=True)
class TlsClient:
    """How the harness's client speaks TLS for one request: the SNI name (None: none sent, as for an
    IP address), the protocol range and cipher string it offers (None: OpenSSL's defaults), and a
    ``resume`` key: the session last stored under that key for the same port is offered again (and
    this connection's session stored under it). ``plain``: plain HTTP even to an ssl listen."""

    server_name: str | None = None
    minimum: str | None = None
    maximum: str | None = None
    ciphers: str | None = None
    resume: str | None = None
    plain: bool = False


_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
             "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_NEXT_SESSION: contextvars.ContextVar[ssl.SSLSession | None] = contextvars.ContextVar("_NEXT_SESSION", default=None)


class _ClientContext(ssl.SSLContext):
    """asyncio's SSL transport has no ``session`` argument: wrap_bio takes the one to resume from a
    context variable, set by ``exchange`` around the connect."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session=session or _NEXT_SESSION.get())


_CONTEXTS: dict[tuple[str | None, str | None, str | None], _ClientContext] = {}
_SESSIONS: dict[tuple[int, str], ssl.SSLSession] = {}


def _client_context(tls: TlsClient) -> _ClientContext:
    key = (tls.minimum, tls.maximum, tls.ciphers)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _ClientContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # test certificates: what was presented is recorded, not judged
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # TLSv1/1.1 are deprecated: offering them is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = _VERSIONS[tls.minimum] if tls.minimum else ssl.TLSVersion.MINIMUM_SUPPORTED
            if tls.maximum:
                ctx.maximum_version = _VERSIONS[tls.maximum]
        if tls.ciphers:
            ctx.set_ciphers(tls.ciphers)
        _CONTEXTS[key] = ctx
    return ctx


def tls_summary(sslobj: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """What a TLS client can see of the server's side of a handshake."""
    der = sslobj.getpeercert(binary_form=True) or b""
    cipher = sslobj.cipher()
    return {
        "protocol": sslobj.version(),
        "cipher": cipher[0] if cipher else None,
        "certificate": hashlib.sha256(der).hexdigest()[:16],
        "subject": _subject_cn(der),
        "reused": sslobj.session_reused,
    }


def _subject_cn(der: bytes) -> str | None:
    """The certificate's subject CN, read with the ssl module's own decoder (no extra package)."""
    if not der:
        return None
    if der in _CN:
        return _CN[der]
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(der))
        pem.flush()
        try:
            decoded = ssl._ssl._test_decode_cert(pem.name)  # type: ignore[attr-defined]
        except (ssl.SSLError, AttributeError):
            return None
    cn = next((str(value) for rdn in decoded.get("subject", ()) for key, value in rdn if key == "commonName"), None)
    _CN[der] = cn
    return cn


_CN: dict[bytes, str | None] = {}


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
                # Over TLS the close waits for the server's close_notify: bounded, a server that
                # never sends one must not hold the harness (asyncio would wait 30 s).
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                writer.transport.abort()
            except (ConnectionError, OSError):
                pass


async def exchange(data: bytes, port: int, method: str, *, host: str = "127.0.0.1", timeout: float = 5.0,
                   source: str | None = None, tls: TlsClient | None = None) -> Exchange:
    """Send ``data`` (a complete request) to host:port and read one response within ``timeout``.

    ``source``: the local address to connect from (e.g. 127.3.4.5), None for the kernel's choice.
    ``tls``: speak TLS (unless ``tls.plain``); a failed handshake is the outcome "tls-failed".
    The connection stays open until ``Exchange.finish`` (or ``close``) is awaited.
    """
    if tls is not None and tls.plain:
        tls = None
    response = Response(outcome="timeout")
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def run() -> None:
        nonlocal reader, writer
        local = (source, 0) if source is not None else None
        if tls is None:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 22, local_addr=local)
        else:
            token = _NEXT_SESSION.set(_SESSIONS.get((port, tls.resume)) if tls.resume else None)
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, limit=1 << 22, local_addr=local, ssl=_client_context(tls),
                    server_hostname=tls.server_name or "", ssl_handshake_timeout=timeout)
            finally:
                _NEXT_SESSION.reset(token)
            sslobj = writer.get_extra_info("ssl_object")
            response.tls = tls_summary(sslobj)
        writer.write(data)
        await writer.drain()
        until_close = await _read_response(reader, method, response)
        if tls is not None and tls.resume:
            session = writer.get_extra_info("ssl_object").session
            if session is not None:
                _SESSIONS[(port, tls.resume)] = session
        if response.outcome != "response" or until_close:
            response.connection = "closed"

    try:
        await asyncio.wait_for(run(), timeout)
    except (OSError, asyncio.IncompleteReadError, FramingError) as exc:  # TimeoutError is an OSError
        record_failure(response, exc, timeout)
    if response.outcome != "response" and not response.connection:
        response.connection = "closed"
    return Exchange(response, reader, writer, timeout)


def record_failure(response: Response, exc: Exception, timeout: float) -> None:
    """Set ``response.outcome`` and ``.error`` for how an exchange ended early (HTTP/1 and HTTP/2)."""
    if isinstance(exc, TimeoutError):
        response.outcome, response.error = "timeout", f"no complete response within {timeout}s"
    elif isinstance(exc, ConnectionRefusedError):
        response.outcome, response.error = "refused", str(exc)
    elif isinstance(exc, asyncio.IncompleteReadError):
        response.outcome, response.error = "truncated", f"closed after {len(exc.partial)} of {exc.expected} bytes"
    elif isinstance(exc, FramingError):
        response.outcome, response.error = "bad-response", str(exc)
    elif isinstance(exc, ssl.SSLError) and response.tls is None:
        # The handshake itself failed: the alert's reason is the outcome.
        response.outcome, response.error = "tls-failed", str(exc)
        response.tls = {"error": exc.reason or exc.__class__.__name__}
    else:  # reset, broken pipe, a TLS error after the handshake
        response.outcome, response.error = "reset", str(exc)


async def send(
    data: bytes, port: int, method: str, *, host: str = "127.0.0.1", timeout: float = 5.0, probe: float = 0.01,
    source: str | None = None, tls: TlsClient | None = None,
) -> Response:
    """``exchange`` then ``finish``: one request, one response, and the connection's fate."""
    ex = await exchange(data, port, method, host=host, timeout=timeout, source=source, tls=tls)
    return await ex.finish(probe)
