"""HTTP/3 front end (``listen ... quic``): aioquic's sans-IO QUIC and HTTP/3 state machines on one UDP
socket per quic listen, each request run through the same engine as HTTP/1.1 by a
``newproxy.http.streams.Stream``.

Why not ``aioquic.asyncio.serve``: its protocol arms a fresh timer and sends its datagrams after
every packet it reads, and wraps each stream in an asyncio StreamReader/Writer pair. Here:

- ONE timer per connection, re-armed only when ``QuicConnection.get_timer()`` changed (loss
  detection, ack delay and idle timeout all fold into that one deadline);
- sends are batched: a connection that read packets, or whose streams produced answer bytes, is
  marked dirty, and one ``call_soon`` per loop turn collects ``datagrams_to_send`` of every dirty
  connection, after the whole batch of datagrams the loop read in that turn was processed;
- no task, reader or writer per stream: H3 events go straight to a ``Stream``, whose events
  (head, data, trailers, reset) go straight to ``H3Connection.send_*``.

Invariants:
- ``QuicListener.connections`` maps every connection id aioquic issued for a live connection to
  it; ids are added and removed on ConnectionIdIssued/Retired and all dropped on termination;
- a ``QuicConn`` is in ``QuicListener._dirty`` at most once, and the flush runs at most once per
  loop turn (``_flush_handle``);
- a request stream's ``Stream`` is in ``QuicConn.streams`` from its HEADERS until its answer ends
  or the client resets it; nothing is sent on a stream after it left that map.

Certificates: aioquic's TLS has no SNI callback, so a quic socket serves the first certificate of
the default server of its address:port (the translator reports that as a caveat); Host, from
``:authority``, still picks the server for the request. No session tickets are issued, so there is
no resumption and no 0-RTT. A reload keeps the sockets, certificates and HTTP/3 settings (new
requests get the new engine); changing quic listens needs a restart.

Workers (newproxy/process.py): each binds its own quic sockets with SO_REUSEPORT, and the kernel
hashes a client's address and port to one of them, so a connection stays with one worker. During a
reload's drain the old worker's socket is still in the group: a new connection hashed to it is not
accepted until the old worker exits (the client retries its Initial meanwhile).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import (
    H3_ALPN,
    FrameType,
    H3Connection,
    ProtocolError,
    encode_frame,
)
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    StopSendingReceived,
    StreamReset,
)
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import CipherSuite

from newproxy import stats
from newproxy.config import Http3Config, ServerConfig
from newproxy.engine.discard import AUTH_FIRST, DISCARD, READ
from newproxy.engine.logformat import LogRecord
from newproxy.engine.servers import canonical_address, host_valid
from newproxy.engine.types import Request, TlsInfo
from newproxy.http.bodyfile import BodyBuffer, buffered
from newproxy.http.streams import Headers, Stream, build_request
from newproxy.stats import ACTIVE, REQUESTS

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine
    from newproxy.http.h1 import ConnContext

# Per stream: stop the answer's producer (upstream, file) when this many bytes are unacknowledged,
# go on below the low mark (aioquic itself buffers without bound).
SEND_HIGH = 256 * 1024
SEND_LOW = 64 * 1024
H3_REQUEST_REJECTED = 0x10B
H3_INTERNAL_ERROR = 0x102
H3_NO_ERROR = 0x100

# aioquic's cipher suites by OpenSSL's name ($ssl_cipher; QUIC is always TLSv1.3).
_CIPHERS = {
    CipherSuite.AES_128_GCM_SHA256: "TLS_AES_128_GCM_SHA256",
    CipherSuite.AES_256_GCM_SHA384: "TLS_AES_256_GCM_SHA384",
    CipherSuite.CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256",
}


class QuicConfigError(Exception):
    """A certificate aioquic cannot load (said with the file, as nginx says it)."""


def quic_server(engine: Engine, address: str, port: int) -> ServerConfig:
    """The default server of a quic address:port (its ``default_server``, else the first with a
    quic listen there): its certificate and HTTP/3 settings serve the whole socket, as nginx's
    quic settings come from the default server's configuration."""
    key = (canonical_address(address), port)
    candidates = [server for server in engine.config.servers for listen in server.listen
                  if listen.quic and (canonical_address(listen.address), listen.port) == key]
    for server in candidates:
        if any(listen.quic and listen.default_server and (canonical_address(listen.address), listen.port) == key
               for listen in server.listen):
            return server
    return candidates[0]


def build_configuration(server: ServerConfig, idle_timeout: float) -> QuicConfiguration:
    """aioquic's settings for one quic socket, built at load."""
    http3 = server.http3 or Http3Config()
    assert server.tls is not None and server.tls.certificates  # the translator drops quic listens otherwise
    # http3 off: no h3 in ALPN, so the handshake fails with no_application_protocol.
    config = QuicConfiguration(is_client=False, alpn_protocols=list(H3_ALPN) if http3.enabled else [],
                               idle_timeout=idle_timeout, max_stream_data=http3.stream_buffer_size,
                               max_data=max(1048576, http3.stream_buffer_size * 4))
    cert = server.tls.certificates[0]
    try:
        config.load_cert_chain(cert.certificate, cert.key)
    except (OSError, ValueError) as exc:
        where = f"{cert.source}: " if cert.source else ""
        raise QuicConfigError(f'{where}cannot load certificate "{cert.certificate}" (key "{cert.key}") for QUIC: '
                              f"{exc}") from None
    return config


def _check(method: bytes | None, path: bytes | None, host: bytes | None, hosts: int, too_large: bool,
           line_max: int) -> int:
    """The status nginx answers an HTTP/3 request with before any location is known, or 0: the
    checks of ngx_http_v3_process_request_header and ngx_http_process_request_header that apply."""
    if method is None or path is None:
        return 400  # a pseudo-header missing
    if len(path) > line_max:
        return 414
    if too_large:
        return 494  # "Request Header Or Cookie Too Large" (shown as 400)
    if host is None or hosts > 1 or not host_valid(host):
        return 400  # neither :authority nor Host, a second Host, or an invalid one
    if method == b"TRACE":
        return 405
    if method == b"CONNECT":
        return 400
    return 0


class _StreamOut:
    """A ``StreamEvents``: one request stream's answer, written as HTTP/3 frames."""

    __slots__ = ("conn", "sid", "stream")

    def __init__(self, conn: QuicConn, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.stream: Stream | None = None

    def head(self, status: int, headers: Headers, end: bool) -> None:
        self._send(self.conn.h3.send_headers, [(b":status", b"%d" % status), *headers], end)

    def data(self, chunk: bytes, end: bool) -> None:
        conn = self.conn
        if self._send(conn.h3.send_data, chunk, end) and not end and self.stream is not None:
            quic_stream = conn.quic._streams.get(self.sid)
            if quic_stream is not None and len(quic_stream.sender._buffer) > SEND_HIGH:
                conn.throttled[self.sid] = self.stream  # the client reads slower than we produce
                self.stream.pause()

    def trailers(self, headers: Headers) -> None:
        self._send(self.conn.h3.send_headers, headers, True)

    def _send(self, send: Callable[[int, object, bool], None], what: object, end: bool) -> bool:
        """One HEADERS or DATA frame; False when the stream is gone (the client stopped it, or the
        connection closed): the answer's producer is stopped then."""
        conn = self.conn
        if conn.closed or self.sid not in conn.streams:
            return False
        try:
            send(self.sid, what, end)
        except (AssertionError, ValueError, H3Error, ProtocolError):  # aioquic: the stream was reset meanwhile
            stream = conn.streams.pop(self.sid, None)
            if stream is not None:
                stream.abort()
            return False
        if end:
            conn.streams.pop(self.sid, None)
            if conn.pending.pop(self.sid, None) is not None:
                # Answered (a refusal at the HEADERS) before the body was in: it is not wanted.
                try:
                    conn.quic.stop_stream(self.sid, H3_NO_ERROR)
                except (AssertionError, ValueError):
                    pass  # its receiving side ended meanwhile
        conn.dirty()
        return True

    def reset(self) -> None:
        conn = self.conn
        if conn.streams.pop(self.sid, None) is None or conn.closed:
            return  # the client reset it first
        try:
            conn.quic.reset_stream(self.sid, H3_INTERNAL_ERROR)
        except (AssertionError, ValueError):
            return
        conn.dirty()


class _Pending:
    """A request whose body is still coming: the Request (headers in), its body so far, its stream."""

    __slots__ = ("body", "buffer", "early", "limit", "request", "size", "stream")

    def __init__(self, request: Request, stream: Stream, limit: int) -> None:
        self.request = request
        self.stream = stream
        self.body: list[bytes] = []
        # Instead of ``body``, one that may outgrow client_body_buffer_size (to a temporary file).
        self.buffer: BodyBuffer | None = None
        self.size = 0
        self.limit = limit
        # Run at its HEADERS, its body still coming (an auth_request location, as over HTTP/2).
        self.early = False


class QuicConn:
    """One QUIC connection: aioquic's QuicConnection and H3Connection, its one timer, its streams."""

    __slots__ = ("_timer", "_timer_at", "addr", "cids", "closed", "conn_id", "goaway", "h3", "listener", "pending",
                 "quic", "requests", "streams", "throttled", "tls")

    def __init__(self, listener: QuicListener, quic: QuicConnection, addr: tuple[str, int]) -> None:
        self.listener = listener
        self.quic = quic
        self.h3 = H3Connection(quic)
        self.addr = addr
        self.conn_id = listener.ctx.next_id()
        self.streams: dict[int, Stream] = {}
        self.pending: dict[int, _Pending] = {}
        self.throttled: dict[int, Stream] = {}
        self.tls: TlsInfo | None = None
        self.requests = 0
        self.closed = False
        self.cids: set[bytes] = set()  # every id the listener routes to this connection
        self.goaway: int | None = None  # the first request stream id refused after a GOAWAY
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        stats.connection_opened()

    def dirty(self) -> None:
        self.listener.mark(self)

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.quic.receive_datagram(data, addr, now=now)
        self._events()
        self.dirty()

    def _on_timer(self) -> None:
        self._timer = None
        now = max(self._timer_at or 0.0, self.listener.loop.time())
        self._timer_at = None
        self.quic.handle_timer(now=now)
        self._events()
        self.transmit()

    def transmit(self) -> None:
        """Send what the connection has to send, then re-arm its one timer if the deadline moved."""
        listener = self.listener
        sendto = listener.transport.sendto
        for data, addr in self.quic.datagrams_to_send(now=listener.loop.time()):
            sendto(data, addr)
        deadline = self.quic.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if deadline is not None and not self.closed:
                self._timer = listener.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
        if self.throttled:
            self._unthrottle()

    def _unthrottle(self) -> None:
        streams = self.quic._streams
        for sid, stream in list(self.throttled.items()):
            quic_stream = streams.get(sid)
            if quic_stream is None or len(quic_stream.sender._buffer) < SEND_LOW:
                del self.throttled[sid]
                stream.resume()

    # -- QUIC and HTTP/3 events -----------------------------------------------------------------
    def _events(self) -> None:
        quic = self.quic
        event = quic.next_event()
        while event is not None:
            if isinstance(event, ConnectionIdIssued):
                self.listener.connections[event.connection_id] = self
                self.cids.add(event.connection_id)
            elif isinstance(event, ConnectionIdRetired):
                self.listener.connections.pop(event.connection_id, None)
                self.cids.discard(event.connection_id)
            elif isinstance(event, ConnectionTerminated):
                self._terminated()
                return
            elif isinstance(event, HandshakeCompleted):
                suite = quic.tls.key_schedule.cipher_suite if quic.tls.key_schedule is not None else None
                self.tls = TlsInfo("TLSv1.3", _CIPHERS.get(suite, ""), "", event.session_resumed)  # type: ignore[arg-type]
            else:
                if isinstance(event, (StreamReset, StopSendingReceived)):
                    # A reset request stream, or STOP_SENDING (aioquic has reset our side then):
                    # the answer is abandoned, as nginx finalizes the request.
                    self._stream_gone(event.stream_id)
                try:
                    h3_events = self.h3.handle_event(event)
                except H3Error:
                    h3_events = []
                for h3_event in h3_events:
                    self._h3_event(h3_event)
            event = quic.next_event()

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            pending = self.pending.get(event.stream_id)
            if pending is None:
                if event.stream_id not in self.streams:
                    self._request(event)
            elif event.stream_ended:  # trailers end the request body
                pending.stream.request_trailers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
                self._body_done(event.stream_id, pending)
        elif isinstance(event, DataReceived):
            pending = self.pending.get(event.stream_id)
            if pending is None:
                return
            if pending.early and pending.stream.answered:  # refused before its body was in
                del self.pending[event.stream_id]
                self.quic.stop_stream(event.stream_id, H3_NO_ERROR)  # the body is not wanted
                return
            if event.data:
                if pending.buffer is not None:
                    if not self._buffered(event.stream_id, pending, pending.buffer, event.data):
                        return
                else:
                    pending.body.append(event.data)
                pending.size += len(event.data)
                if pending.limit and pending.size > pending.limit:
                    del self.pending[event.stream_id]
                    self.quic.stop_stream(event.stream_id, H3_NO_ERROR)  # no more body, thanks
                    if pending.early:  # its phases are running: what they started stops
                        pending.stream.body_too_large()
                    else:
                        pending.stream.error(413, pending.request)
                    return
            if event.stream_ended:
                self._body_done(event.stream_id, pending)

    def send_goaway(self, next_sid: int) -> None:
        """HTTP/3 GOAWAY on our control stream (aioquic has no call for it): streams from ``next_sid``
        on are refused; the connection closes once the ones before are answered."""
        if self.goaway is None and not self.closed:
            self.goaway = next_sid
            h3 = self.h3
            self.quic.send_stream_data(h3._local_control_stream_id,
                                       encode_frame(FrameType.GOAWAY, encode_uint_var(next_sid)))
            self.dirty()

    def _request(self, event: HeadersReceived) -> None:
        """A request's HEADERS: nginx's ngx_http_v3_process_request_header checks, then the engine
        (at once, or once the body is in)."""
        sid = event.stream_id
        listener = self.listener
        ctx = listener.ctx
        if self.goaway is not None and sid >= self.goaway:
            self.quic.stop_stream(sid, H3_REQUEST_REJECTED)  # after our GOAWAY: the client retries elsewhere
            self.quic.reset_stream(sid, H3_REQUEST_REJECTED)
            self.dirty()
            return
        stats.C[REQUESTS] += 1
        self.requests += 1
        if self.requests >= ctx.client.keepalive_requests:
            # keepalive_requests: nginx announces the end with GOAWAY after the last request it takes.
            self.send_goaway(sid + 4)
        method = path = authority = None
        host = None
        hosts = 0
        too_large = False
        line_max = ctx.client.large_header_buffer_size
        headers: Headers = []
        for name, value in event.headers:
            if len(name) + len(value) + 2 > line_max:
                too_large = True
            if name.startswith(b":"):
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
            else:
                if name == b"host":
                    host = value
                    hosts += 1
                headers.append((name, value))
        out = _StreamOut(self, sid)
        stream = out.stream = Stream(ctx, out, self.conn_id)
        self.streams[sid] = stream
        local = listener.local_addr
        # nginx 1.25: Host and :authority must agree; :authority stands in for a missing Host.
        bad = method is None or path is None or (host is not None and authority is not None and host != authority)
        req = build_request(method or b"GET", path or b"/", authority if host is None else None, headers, b"",
                            version=b"3.0", scheme="https", client_addr=self.addr, local_addr=local, tls=self.tls)
        if ctx.access is not None:
            rec = LogRecord(self.conn_id, self.addr, local)
            rec.request = req
            rec.conn_requests = self.requests
            rec.request_length = sum(len(n) + len(v) + 4 for n, v in event.headers) + 2
            req.log = rec
        status = _check(method, path, host if host is not None else authority, hosts, too_large, line_max) or \
            (400 if bad else 0)
        if status:
            if not event.stream_ended:
                self.quic.stop_stream(sid, H3_NO_ERROR)  # the answer is made: the body is not wanted
            stream.error(status, req)
            return
        if event.stream_ended:
            stream.start(req)
            return
        limit = stream.body_limit(req)
        for name, value in headers:
            if name == b"content-length" and limit and value.isdigit() and int(value) > limit:
                self.quic.stop_stream(sid, H3_NO_ERROR)
                stream.error(413, req)
                return
        plan = ctx.body_plan(req) if ctx.body_plan is not None else READ
        if plan == DISCARD:
            # Answered without its body (nginx discards it, as over HTTP/1 and HTTP/2): at once.
            self.quic.stop_stream(sid, H3_NO_ERROR)
            stream.start(req)
            return
        pending = self.pending[sid] = _Pending(req, stream, limit)
        if req.body_buffer is not None:
            # As over HTTP/2 (h2.py): a body declared within client_body_buffer_size stays in memory.
            size, directory, warn = req.body_buffer  # warn: read buffered
            declared = next((v for n, v in headers if n == b"content-length"), None)
            if declared is None or not declared.isdigit() or int(declared) > size:
                pending.buffer = BodyBuffer(size, directory, warn, reads=True)
        if plan == AUTH_FIRST:
            # An auth_request location: the phases run at the HEADERS, as nginx runs them (over
            # HTTP/1 and HTTP/2 alike): the subrequest goes out before the body is read; a refusal is
            # answered at once (the body then stopped), an acceptance waits for it (Stream.body_in).
            pending.early = True
            req.body_pending = True
            stream.start(req)

    def _buffered(self, sid: int, pending: _Pending, buffer: BodyBuffer, data: bytes) -> bool:
        """Into the body's buffer or its file; False: the file failed, and the request is answered
        500 (as nginx over HTTP/2)."""
        if buffered(buffer, data, False, self.listener.ctx.log, pending.request, self.conn_id):
            return True
        del self.pending[sid]
        self.quic.stop_stream(sid, H3_NO_ERROR)  # no more body, thanks
        if pending.early:  # its phases are running: what they started stops
            pending.stream.body_failed(500)
        else:
            pending.stream.error(500, pending.request)
        return False

    def _body_done(self, sid: int, pending: _Pending) -> None:
        del self.pending[sid]
        if pending.early and pending.stream.answered:
            return
        buffer = pending.buffer
        body = pending.body if buffer is None else buffer.parts  # (none left once the body went to a file)
        req = pending.request
        if buffer is not None and buffer.file is not None:
            req.body = buffer.file  # its reads are kept in it (BodyFile.reads)
        else:
            req.body = body[0] if len(body) == 1 else b"".join(body)
        if req.log is not None:
            req.log.body_length += len(req.body)  # type: ignore[attr-defined]
        if req.body and not any(name == b"content-length" for name, _ in req.headers):
            # As over HTTP/2 (h2.py _ended): nginx sets the length of a body read whole, and with
            # proxy_request_buffering off forwards it chunked, a chunk per read.
            req.headers.append((b"content-length", b"%d" % len(req.body)))
            req.length_added = True
            req.chunked_late = True
            req.body_parts = body or None
        if pending.early:
            pending.stream.body_in()
        else:
            pending.stream.start(req)

    def _stream_gone(self, sid: int) -> None:
        """The client reset a request stream: drop its answer; with proxy_ignore_client_abort on, its
        request goes on to its end as over HTTP/2 (Stream.orphan), the answer going nowhere: its
        _StreamOut sends nothing for a stream no longer in ``streams``."""
        self.pending.pop(sid, None)
        self.throttled.pop(sid, None)
        stream = self.streams.pop(sid, None)
        if stream is not None and not stream.orphan(stream.events):
            stream.abort()

    def _terminated(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.forget(self)
        stats.C[ACTIVE] -= 1
        streams = list(self.streams.values())
        self.streams.clear()
        self.pending.clear()
        self.throttled.clear()
        for stream in streams:
            stream.abort()

    def close(self, error_code: int = H3_NO_ERROR) -> None:
        """Close the connection (CONNECTION_CLOSE now; aioquic drains, then reports termination)."""
        if not self.closed:
            self.quic.close(error_code=error_code)
            self.transmit()

    @property
    def idle(self) -> bool:
        return not self.streams and not self.pending


class QuicListener(asyncio.DatagramProtocol):
    """One UDP socket of quic listens: routes datagrams to connections by destination connection id,
    creates connections for Initial packets, batches the sends of a loop turn."""

    def __init__(self, ctx_of: Callable[[], ConnContext], configuration: QuicConfiguration, http3: Http3Config,
                 local_addr: tuple[str, int], loop: asyncio.AbstractEventLoop) -> None:
        self._ctx_of = ctx_of
        self.configuration = configuration
        self.http3 = http3
        self.local_addr = local_addr
        self.loop = loop
        self.transport: asyncio.DatagramTransport = None  # type: ignore[assignment]
        self.connections: dict[bytes, QuicConn] = {}
        self.live: set[QuicConn] = set()
        self._dirty: list[QuicConn] = []
        self._flush_handle: asyncio.Handle | None = None
        self._retry = QuicRetryTokenHandler() if http3.retry else None
        self.accepting = True

    @property
    def ctx(self) -> ConnContext:
        # Read per connection: after a reload, new connections get the new engine's context.
        return self._ctx_of()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self.configuration.connection_id_length)
        except ValueError:
            return
        conn = self.connections.get(header.destination_cid)
        if conn is None:
            conn = self._new(data, addr, header)
            if conn is None:
                return
        conn.receive(data, addr[:2], self.loop.time())  # type: ignore[arg-type]

    def _new(self, data: bytes, addr: tuple[str, int], header: object) -> QuicConn | None:
        """A connection for a client's first Initial packet (version negotiation and Retry as aioquic's
        own server does them), or None."""
        version = header.version  # type: ignore[attr-defined]
        ptype = header.packet_type  # type: ignore[attr-defined]
        if (ptype != QuicPacketType.VERSION_NEGOTIATION and version is not None
                and version not in self.configuration.supported_versions):
            self.transport.sendto(encode_quic_version_negotiation(
                source_cid=header.destination_cid, destination_cid=header.source_cid,  # type: ignore[attr-defined]
                supported_versions=self.configuration.supported_versions), addr)
            return None
        if not self.accepting or ptype != QuicPacketType.INITIAL or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            return None
        dcid = header.destination_cid  # type: ignore[attr-defined]
        original = dcid
        retry_source = None
        if self._retry is not None:
            token = header.token  # type: ignore[attr-defined]
            if not token:
                source = os.urandom(8)
                self.transport.sendto(encode_quic_retry(
                    version=version, source_cid=source, destination_cid=header.source_cid,  # type: ignore[attr-defined]
                    original_destination_cid=dcid,
                    retry_token=self._retry.create_token(address=addr, original_destination_connection_id=dcid,
                                                         retry_source_connection_id=source, now=self.loop.time())),
                    addr)
                return None
            try:
                original = self._retry.validate_token(address=addr, destination_cid=dcid, token=token,
                                                      now=self.loop.time())
            except ValueError:  # a stale or forged token: dropped (the client times out)
                return None
            retry_source = dcid
        quic = QuicConnection(configuration=self.configuration, original_destination_connection_id=original,
                              retry_source_connection_id=retry_source)
        # http3_max_concurrent_streams: aioquic's initial MAX_STREAMS (bidi) is a fixed 128, raised by
        # one as each stream ends; set before the transport parameters go out (``sent`` too: aioquic
        # batches MAX_STREAMS updates by comparing the two).
        limit = quic._local_max_streams_bidi
        limit.value = limit.sent = self.http3.max_concurrent_streams
        conn = QuicConn(self, quic, addr[:2])  # type: ignore[arg-type]
        for cid in (dcid, quic.host_cid):
            self.connections[cid] = conn
            conn.cids.add(cid)
        self.live.add(conn)
        return conn

    def mark(self, conn: QuicConn) -> None:
        """``conn`` has something to send: collect it at the end of this loop turn."""
        self._dirty.append(conn)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty = self._dirty
        self._dirty = []
        seen: set[int] = set()
        for conn in dirty:
            if id(conn) not in seen:
                seen.add(id(conn))
                conn.transmit()
                if (not self.accepting or conn.goaway is not None) and conn.idle and not conn.closed:
                    conn.close()

    def forget(self, conn: QuicConn) -> None:
        self.live.discard(conn)
        for cid in conn.cids:
            if self.connections.get(cid) is conn:
                del self.connections[cid]

    # -- stopping --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful stop: no new connections; idle ones close now, the others once their streams end."""
        self.accepting = False
        for conn in list(self.live):
            if conn.idle:
                conn.close()
            else:  # the streams the client opened already are answered, no more (nginx's GOAWAY on exit)
                conn.send_goaway(max(conn.streams) + 4)

    def terminate(self) -> None:
        self.accepting = False
        for conn in list(self.live):
            conn.close(H3_INTERNAL_ERROR)
            conn._terminated()
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for conn in list(self.live):
            conn._terminated()


def open_udp(address: str, port: int, ipv6only: bool = True, reuseport: bool = False) -> socket.socket:
    """A bound UDP socket for a quic listen (raises OSError as bind() does)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if ipv6only else 0)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
