"""The harness's HTTP/2 client: one request per fresh connection, h2c with prior knowledge or TLS with
ALPN h2, read into the same ``client.Response`` as HTTP/1.x so the comparator treats both alike.

A ``traffic.Request`` with ``version == "2"`` goes this way (``runner._exchange``). Its headers are
sent as written, in order (names as spelled: a test can send an upper-case name to see what each
proxy does with it), except ``Host``, which becomes ``:authority``; a header named like a pseudo-header
(``:method``, ``:path``, ``:scheme``, ``:authority``) replaces the one derived from the request.
``to_h2`` turns an HTTP/1.1 request of the generated traffic into its HTTP/2 form (lower-case names,
connection-specific headers dropped, chunked bodies unframed).

Outcomes besides the ones of shadow/client.py: ``stream-reset:CODE`` (RST_STREAM before the end
of the answer, e.g. REFUSED_STREAM) and ``goaway:CODE`` (the connection ended by GOAWAY before it).
The connection's fate after a complete answer is ``keep-alive`` (still open after the probe) or
``closed`` (GOAWAY or close). HTTP/2 has no reason phrase: ``reason`` is "", ``version`` "2".
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError

from shadow.client import Exchange, Response, TlsClient, _client_context, record_failure, tls_summary
from shadow.rewire import Plan
from shadow.traffic import Request, _dechunk

_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"))
_CONTEXTS: dict[int, ssl.SSLContext] = {}


def to_h2(request: Request) -> Request:
    """The HTTP/2 form of an HTTP/1.x request of the generated traffic."""
    chunked = any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in request.headers)
    body = _dechunk(request.body) if chunked else request.body
    headers = tuple((n.lower(), v) for n, v in request.headers if n.lower() not in _HOP)
    return replace(request, version="2", headers=headers, body=body)


def _code(value: int) -> str:
    try:
        return ErrorCodes(value).name
    except ValueError:
        return str(value)


def _tls_context(tls: TlsClient) -> ssl.SSLContext:
    """The harness's client context for these TLS settings, offering only h2 by ALPN."""
    base = _client_context(tls)
    ctx = _CONTEXTS.get(id(base))
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = base.minimum_version
        ctx.maximum_version = base.maximum_version
        if tls.ciphers:
            ctx.set_ciphers(tls.ciphers)
        ctx.set_alpn_protocols(["h2"])
        _CONTEXTS[id(base)] = ctx
    return ctx


def request_headers(request: Request, scheme: str) -> list[tuple[bytes, bytes]]:
    pseudo: dict[str, str] = {":method": request.method, ":scheme": scheme, ":path": request.target}
    rest: list[tuple[bytes, bytes]] = []
    for name, value in request.headers:
        if name.lower() == "host" and ":authority" not in pseudo:
            pseudo[":authority"] = value
        elif name in (":method", ":scheme", ":path", ":authority"):
            pseudo[name] = value
        else:
            rest.append((name.encode("latin-1"), value.encode("latin-1")))
    if request.body and not any(n.lower() == b"content-length" for n, _ in rest):
        rest.append((b"content-length", str(len(request.body)).encode()))
    order = [":method", ":scheme", ":authority", ":path"]
    head = [(k.encode(), pseudo[k].encode("latin-1")) for k in order if k in pseudo]
    return head + rest


async def exchange(request: Request, port: int, *, host: str = "127.0.0.1", timeout: float = 5.0,
                   probe: float = 0.01) -> Exchange:
    """Send ``request`` over a new HTTP/2 connection and read its answer within ``timeout``; the
    returned Exchange is settled already (the connection is closed)."""
    tls = request.tls if request.tls is not None and not request.tls.plain else None
    response = Response(outcome="timeout", version="2")
    writer: asyncio.StreamWriter | None = None

    async def run() -> None:
        nonlocal writer
        local = (request.source, 0) if request.source is not None else None
        if tls is None:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        else:
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=local, ssl=_tls_context(tls), server_hostname=tls.server_name or "",
                ssl_handshake_timeout=timeout)
            sslobj = writer.get_extra_info("ssl_object")
            response.tls = tls_summary(sslobj)
            if sslobj.selected_alpn_protocol() != "h2":
                response.outcome, response.error = "no-h2", f"ALPN chose {sslobj.selected_alpn_protocol()!r}"
                return
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                            normalize_outbound_headers=False, validate_inbound_headers=False,
                                            normalize_inbound_headers=False))
        conn.local_settings.max_header_list_size = 1 << 24
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        body = request.body
        conn.send_headers(sid, request_headers(request, "https" if tls is not None else "http"),
                          end_stream=not body)
        writer.write(conn.data_to_send())
        chunks: list[bytes] = []
        ended = False
        while not ended:
            while body and conn.local_flow_control_window(sid) > 0:
                n = min(len(body), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                conn.send_data(sid, body[:n], end_stream=n == len(body))
                body = body[n:]
            out = conn.data_to_send()
            if out:
                writer.write(out)
            data = await reader.read(65536)
            if not data:
                if response.status is None:
                    response.outcome, response.error = "no-response", "closed before an answer"
                else:
                    response.outcome, response.error = "truncated", "closed inside the answer"
                response.connection = "closed"
                return
            try:
                events = conn.receive_data(data)
            except ProtocolError as exc:
                response.outcome, response.error = "bad-response", str(exc)
                response.connection = "closed"
                return
            for event in events:
                if isinstance(event, InformationalResponseReceived):
                    response.interim.append(int(dict(event.headers)[b":status"]))
                elif isinstance(event, ResponseReceived):
                    response.outcome = "response"
                    for name, value in event.headers:
                        if name == b":status":
                            response.status = int(value)
                        else:
                            response.headers.append((name.decode("latin-1"), value.decode("latin-1")))
                elif isinstance(event, DataReceived):
                    chunks.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, TrailersReceived):
                    response.trailers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                elif isinstance(event, StreamEnded) and event.stream_id == sid:
                    ended = True
                elif isinstance(event, StreamReset) and event.stream_id == sid:
                    response.outcome = f"stream-reset:{_code(event.error_code)}"
                    response.error = f"RST_STREAM {_code(event.error_code)}"
                    ended = True
                elif isinstance(event, ConnectionTerminated):
                    if not ended:
                        response.outcome = f"goaway:{_code(event.error_code)}"
                        response.error = f"GOAWAY {_code(event.error_code)} before the answer ended"
                    response.connection = "closed"
                    ended = True
                elif isinstance(event, WindowUpdated):
                    pass  # the body loop above sends what the window allows
        response.body = response.raw_body = b"".join(chunks)
        out = conn.data_to_send()
        if out:
            writer.write(out)
        if not response.connection:
            response.connection = await _fate(reader, conn, probe)

    try:
        await asyncio.wait_for(run(), timeout)
    except OSError as exc:  # TimeoutError and ssl.SSLError included
        record_failure(response, exc, timeout)
    if not response.connection:
        response.connection = "closed"
    ex = Exchange(response, None, writer, timeout)
    await ex.close()
    return ex


async def _fate(reader: asyncio.StreamReader, conn: H2Connection, probe: float) -> str:
    """Open or closed after the answer: a GOAWAY or a close within ``probe`` seconds is closed."""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), probe)
            if not data:
                return "closed"
            for event in conn.receive_data(data):
                if isinstance(event, ConnectionTerminated):
                    return "closed"
    except TimeoutError:
        return "keep-alive"
    except (ProtocolError, OSError):
        return "closed"


def as_http1(plan: Plan) -> Plan:
    """A copy of ``plan`` whose http2 listens look like HTTP/1.x ones: traffic is generated for them
    as for any listen, then sent over HTTP/2 (``over_h2``)."""
    listens = {name: replace(info, http2=False) for name, info in plan.listens.items()}
    return replace(plan, listens=listens)


def over_h2(requests: list[Request], plan: Plan) -> list[Request]:
    """The requests to http2 listens in their HTTP/2 form; the others as they are."""
    h2 = {name for name, info in plan.listens.items() if info.http2}
    return [to_h2(r) if r.listen in h2 and r.version != "2" else r for r in requests]
