"""HTTP/2 front end: a raw ``asyncio.Protocol`` over the sans-IO framing core of
newproxy/http/h2core.py (HPACK by ``hpack``, h2's coder, with the memos of hpackfast.py).

Each request stream becomes a ``newproxy.http.streams.Stream`` (the same engine and upstream client
as HTTP/1.1); this module owns the framing, flow control and the checks nginx 1.22's HTTP/2 module
(ngx_http_v2.c) makes before a request reaches the engine.

What nginx does, and so do we:
- on connect, SETTINGS (MAX_CONCURRENT_STREAMS = http2_max_concurrent_streams, INITIAL_WINDOW_SIZE
  = http2_body_preread_size, MAX_FRAME_SIZE = 2^24-1) and a connection WINDOW_UPDATE to 2^31-1; a
  client that does not start with the preface (an HTTP/1 request on an h2c port) gets a GOAWAY
  PROTOCOL_ERROR and the close;
- a stream over http2_max_concurrent_streams is refused with RST_STREAM REFUSED_STREAM;
- response DATA frames are at most http2_chunk_size bytes; the client's windows are respected: a
  stream whose window is shut keeps its answer queued and pauses its producer (the upstream read,
  the file) past a high-water mark;
- request bodies: Content-Length over client_max_body_size is 413 before the body; a body that
  grows past it is 413 as it arrives; received data is acknowledged at once (our windows stay open);
- graceful stop (``shutdown``): GOAWAY with the last stream id, streams in flight finish, then close.

Invariants: every frame produced while handling one read is written once, after the read
(``_in_feed``); frames produced later (upstream callbacks, timers) are written in one go at the end
of the loop iteration (``_flush_soon``). A stream is in ``streams`` from its HEADERS until its
answer ended or it was reset either way.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import TYPE_CHECKING, Callable

from newproxy import stats
from newproxy.config import Http2Config
from newproxy.engine.discard import AUTH_FIRST, DISCARD, STREAM
from newproxy.engine.logformat import LogRecord
from newproxy.engine.types import Request
from newproxy.http.h2core import (
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    ConnectionError_,
    H2Core,
)
from newproxy.http.bodyfile import BodyBuffer, buffered
from newproxy.http.bodystream import BodyStream
from newproxy.http.closing import reset_on_close, shut_writes
from newproxy.http.errorlog import address_text
from newproxy.http.h1parse import INVALID_OTHER, INVALID_UNDERSCORE
from newproxy.http.streams import Headers, Stream, build_request
from newproxy.stats import ACTIVE, REQUESTS, WRITING

if TYPE_CHECKING:
    from newproxy.http.h1 import ConnContext

QUEUE_HIGH = 262144  # bytes queued on one stream before its producer is paused
QUEUE_LOW = QUEUE_HIGH // 4
POSTPONE_OUTPUT = 1460  # nginx's postpone_output: less waits for more, or for the end


_CANCEL = 0x8  # RFC 9113's error code (h2core names only those it sends)


def _reset_message(sid: int, code: int) -> str:
    """nginx's words for a client's RST_STREAM with ``code``."""
    if code == _CANCEL:
        return f"client canceled stream {sid}"
    if code == REFUSED_STREAM:
        return f"client refused stream {sid}"
    if code == INTERNAL_ERROR:
        return f"client terminated stream {sid} due to internal error"
    return f"client terminated stream {sid} with status {code}"


class _H2Stream:
    """One request stream: collects the request, then receives the answer's events (StreamEvents)."""

    __slots__ = (
        "body_len",
        "buffer",
        "declared",
        "early",
        "end_pending",
        "headers_done",
        "later",
        "limit",
        "parts",
        "proto",
        "queue",
        "queued",
        "read",
        "req",
        "send_timer",
        "sent",
        "sid",
        "stalled",
        "stream",
        "streaming",
        "throttled",
        "trailers_pending",
    )

    def __init__(self, proto: H2Protocol, sid: int) -> None:
        self.proto = proto
        self.sid = sid
        self.stream = Stream(proto.ctx, self, proto.conn_id)
        self.req: Request | None = None
        self.body_len = 0
        self.declared = -1  # the request's Content-Length (-1: none)
        self.limit = 0
        self.queue: deque[bytes] = deque()  # answer bytes waiting for the client's window
        self.queued = 0
        self.end_pending = False  # the end comes after what is queued
        self.trailers_pending: Headers | None = None
        self.throttled = False
        # The client's window shut with answer bytes queued: since when (the last frame sent), and
        # the timer that looks at it (send_timeout); None: not stalled, no timer.
        self.stalled: float | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.headers_done = False  # the answer's HEADERS went out
        self.sent = 0  # bytes of the answer's frames written: nginx's $bytes_sent over HTTP/2
        self.later = False  # data waits for the end of this loop iteration (H2Protocol._flush)
        self.parts: list[bytes] = []  # the body by read (DATA frames of one read joined): its chunks
        # Instead of ``parts``, a body that may outgrow client_body_buffer_size (to a temporary file).
        self.buffer: BodyBuffer | None = None
        self.read = -1  # the read that brought the last part
        self.streaming = False  # the body goes upstream as it comes (grpc_pass): Stream.feed
        # Run at its HEADERS, its body still coming (an auth_request location): the body is
        # collected meanwhile, unless the stream is answered first (then it is dropped).
        self.early = False

    # -- StreamEvents ----------------------------------------------------------------------------
    def head(self, status: int, headers: Headers, end: bool) -> None:
        proto = self.proto
        if proto.closed:
            return
        self.headers_done = True
        self.sent += proto.core.send_headers(self.sid, [(b":status", _STATUS.get(status) or b"%d" % status), *headers],
                                             end)
        if end:
            proto.finished(self)
        proto.written()

    def data(self, chunk: bytes, end: bool) -> None:
        proto = self.proto
        if proto.closed:
            return
        if chunk:
            self.queue.append(chunk)
            self.queued += len(chunk)
        if end or self.queued >= POSTPONE_OUTPUT:
            self.end_pending = end
            proto.send_queued(self)
        elif not self.later:
            # Less than nginx's postpone_output waits for the end of this loop iteration: an end
            # reported meanwhile (the upstream's last read) then rides on the last DATA frame, as
            # nginx's write filter sends it, not in an empty frame of its own.
            self.later = True
            proto.later.append(self)
        proto.written()

    def trailers(self, headers: Headers) -> None:
        self.trailers_pending = headers
        self.end_pending = True
        self.proto.send_queued(self)
        self.proto.written()

    def consumed(self, n: int) -> None:
        """n bytes of a streamed body were passed on: the client may send as many more."""
        proto = self.proto
        if not proto.closed:
            proto.core.consumed(self.sid, n)
            proto.written()

    def reset(self) -> None:
        proto = self.proto
        if proto.closed:
            return
        # A 444 ends the stream the way nginx's NGX_HTTP_CLOSE does (PROTOCOL_ERROR, as observed), and
        # so does client_body_timeout's 408; an answer broken after its head, with INTERNAL_ERROR.
        proto.core.reset(self.sid, INTERNAL_ERROR if self.stream.reset_reason == "broken" else PROTOCOL_ERROR)
        proto.finished(self)
        proto.written()


_STATUS = {code: b"%d" % code for code in range(100, 600)}


class _Orphan:
    """The events of a stream the client reset while proxy_ignore_client_abort keeps its request
    going (Stream.orphan): nothing goes out; the answer's end tells the connection, which counts
    the request as in progress until then (nginx's h2c->processing)."""

    __slots__ = ("ended", "proto")

    def __init__(self, proto: H2Protocol) -> None:
        self.proto = proto
        self.ended = False

    def head(self, status: int, headers: Headers, end: bool) -> None:
        if end:
            self._end()

    def data(self, chunk: bytes, end: bool) -> None:
        if end:
            self._end()

    def trailers(self, headers: Headers) -> None:
        self._end()

    def reset(self) -> None:
        self._end()

    def consumed(self, n: int) -> None:
        pass

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.proto.orphan_ended()


def _stream_stat(delta: int) -> None:
    """stub_status: as with nginx 1.22, a stream counts as writing while it lives; its connection is
    the active one (one HTTP/2 connection with one stream: active 1, writing 1, waiting 0)."""
    stats.C[WRITING] += delta


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (h2c with prior knowledge, or TLS with ALPN h2 under TlsConnection)."""

    def __init__(self, ctx: ConnContext, settings: Http2Config, tls: object = None, number: int = 0,
                 listen: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.listen = listen  # the listen directive's address and port (None: the connection's own)
        self.loop = ctx.loop
        self.settings = settings
        self.tls = tls  # TlsInfo for $ssl_* and https, None on h2c
        self.scheme = "https" if tls is not None else "http"
        self.transport: asyncio.Transport | None = None
        self.conn_id = number or ctx.next_id()  # number: taken at accept, before the TLS handshake (tls.py)
        self.client_addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)
        self.core = H2Core(self, max_concurrent_streams=settings.max_concurrent_streams,
                           initial_window=settings.body_preread_size)
        self.streams: dict[int, _H2Stream] = {}
        self.orphans = 0  # requests whose streams the client reset, still at work (_Orphan)
        self.closed = False
        self.closing = False  # GOAWAY sent: no new streams; close when the last one ends
        self.requests = 0
        self._in_feed = False
        self._flush_due = False
        self.later: list[_H2Stream] = []  # streams whose data is sent at the next _flush
        self.reads = 0  # data_received calls: the request body's pieces by read
        self.fed: set[_H2Stream] = set()  # streams whose body goes to an HTTP/1 upstream as it comes
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        # The connection's writes stalled (the transport paused): since when (the last progress),
        # the buffer as last seen, and the send_timeout timer; None: not stalled.
        self._stalled: float | None = None
        self._buffered_seen = 0
        self._send_timer: asyncio.TimerHandle | None = None
        # underscores_in_headers / ignore_invalid_headers (newproxy/http/headerrules.py): a name of
        # an invalid kind below _drop is dropped; _by_host, when the servers of the address differ,
        # gives the threshold of the server :authority (or host) names, for the fields after it.
        self._drop = 0
        self._by_host: Callable[[bytes], int] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if peer:
            self.client_addr = (peer[0], peer[1])
        if sock:
            self.local_addr = (sock[0], sock[1])
        rules = self.ctx.header_rules
        if rules is not None:
            sni = getattr(self.tls, "server_name", None)
            self._drop, self._by_host = rules.for_connection(self.local_addr, sni)
        self.ctx.connections.add(self)  # type: ignore[arg-type]
        stats.connection_opened()
        self._flush()  # our SETTINGS and the connection's WINDOW_UPDATE, as nginx sends them at once
        self._last = self.loop.time()
        self._arm()
        if self.ctx.closing and not self.ctx.draining:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._last = self.loop.time()
        self._in_feed = True
        self.reads += 1
        try:
            self.core.receive(data)
        except ConnectionError_ as exc:
            # The core queued the GOAWAY (a bad preface, such as an HTTP/1 request on an h2c port).
            self.ctx.log.log("info", f"client sent invalid HTTP/2 data ({exc})")
            self._in_feed = False
            self._close_after_flush()
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours costs this connection, not the process
            self.ctx.log.error(f"HTTP/2 processing failed: {exc!r}", self.conn_id)
            self._in_feed = False
            self.core.goaway(INTERNAL_ERROR)
            self._close_after_flush()
            return
        finally:
            self._in_feed = False
        if self.fed:  # the DATA of this read, for bodies streamed to HTTP/1 upstreams
            for st in list(self.fed):  # (a stream may end meanwhile)
                st.stream.read_over()
        self._flush()

    def eof_received(self) -> bool | None:
        if (self.streams or self.orphans) and self.ctx.log.enabled("info"):
            # nginx's read handler finds the close with streams in progress (ngx_http_v2_read_handler),
            # in the connection's context: the client and the listening address.
            server = address_text(self.listen or self.local_addr)
            self.ctx.log.log("info", "client prematurely closed connection while processing HTTP/2 connection, "
                                     f"client: {self.client_addr[0]}, server: {server}", self.conn_id)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.closed = True
        self.ctx.connections.discard(self)  # type: ignore[arg-type]
        stats.C[ACTIVE] -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        streams = list(self.streams.values())
        self.streams.clear()
        self.fed.clear()
        for st in streams:
            _stream_stat(-1)
            st.stream.abort()
            st.stream.framing_done(st.sent, st.queued)
        self.transport = None

    def pause_writing(self) -> None:
        for st in self.streams.values():
            st.stream.pause()
        if self.transport is not None:
            self._stalled = self.loop.time()
            self._buffered_seen = self.transport.get_write_buffer_size()
            if self._send_timer is None:
                self._send_timer = self.loop.call_at(self._stalled + self.ctx.client.send_timeout,
                                                     self._connection_send_timed_out)

    def resume_writing(self) -> None:
        self._stalled = None
        for st in self.streams.values():
            if not st.throttled:
                st.stream.resume()

    def _connection_send_timed_out(self) -> None:
        """send_timeout passed with the client reading nothing of the connection (ngx_http_v2_write_handler,
        no line at info): nginx finalizes the connection, its streams logged with their status and
        what went. What the kernel did not take is one stream's answer when only one is open (its
        frames' few header bytes aside); among several, it is not shared out."""
        self._send_timer = None
        transport = self.transport
        if self.closed or transport is None or self._stalled is None:
            return
        now = self.loop.time()
        left = transport.get_write_buffer_size()
        if left < self._buffered_seen:  # the client took some since the last look
            self._buffered_seen = left
            self._stalled = now
        due = self._stalled + self.ctx.client.send_timeout
        if now < due:
            self._send_timer = self.loop.call_at(due, self._connection_send_timed_out)
            return
        if len(self.streams) == 1:
            st = next(iter(self.streams.values()))
            st.sent -= left
            st.queued += left
        if self.ctx.client.reset_timedout_connection:
            reset_on_close(transport)
        else:
            shut_writes(transport)
        transport.abort()

    # -- H2Core's handler --------------------------------------------------------------------------
    def on_request(self, sid: int, raw: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.closing:
            self.core.ignore(sid)  # after our GOAWAY nginx drops new streams without a word
            return
        if len(self.streams) >= self.settings.max_concurrent_streams:
            self.ctx.log.log("info", f"concurrent streams exceeded {len(self.streams)}")
            self.core.refuse(sid, REFUSED_STREAM)
            return
        stats.C[REQUESTS] += 1
        _stream_stat(1)
        st = self.streams[sid] = _H2Stream(self, sid)
        self.requests += 1
        client = self.ctx.client
        if self.requests >= client.keepalive_requests or client.keepalive_timeout <= 0:
            # nginx 1.22 (ngx_http_v2_state_headers): the request that reaches keepalive_requests is
            # served, and a GOAWAY NO_ERROR naming it goes out at once; the connection closes after.
            self.shutdown()
        method = path = scheme = authority = None
        headers: Headers = []
        size = 0
        bad = fatal = False
        cookies: list[bytes] = []
        length: bytes | None = None
        drop = self._drop
        switch = self._by_host
        for name, value in raw:
            size += len(name) + len(value)
            if name[:1] == b":":
                if name == b":method" and method is None:
                    method = value
                elif name == b":path" and path is None:
                    path = value
                elif name == b":scheme" and scheme is None:
                    scheme = value
                elif name == b":authority" and authority is None:
                    authority = value
                    if switch is not None:  # nginx reads it as Host: its server reads the fields after it
                        drop = switch(value)
                        switch = None
                else:
                    bad = True
                continue
            verdict = _NAMES.get(name)
            if verdict is None:
                verdict = _name_verdict(name)
            if verdict:
                if verdict == _FATAL:
                    fatal = True
                    continue
                if verdict < drop:  # ignore_invalid_headers: dropped, as nginx drops it (its value checked first)
                    if _BAD_VALUE(value) is not None:
                        fatal = True
                    continue
            if _BAD_VALUE(value) is not None:
                fatal = True
            if switch is not None and name == b"host":
                drop = switch(value)
                switch = None
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"content-length":
                length = value
            headers.append((name, value))
        if size > client.large_header_buffer_size * client.large_header_buffers:
            # nginx 1.22 counts every field against large_client_header_buffers (number x size) and
            # ends the connection past it ("client sent too large header").
            self.ctx.log.log("info", "client sent too large header")
            self.finished(st)
            self.core.goaway(ENHANCE_YOUR_CALM)
            self._close_after_flush()
            return
        if fatal:
            # ngx_http_v2_validate_header's NGX_ERROR: the stream is reset, nothing is answered.
            self.core.reset(sid, PROTOCOL_ERROR)
            self.finished(st)
            return
        if cookies:  # ngx_http_v2_construct_cookie_header: one Cookie line, after the others
            headers.append((b"cookie", b"; ".join(cookies)))
        req = build_request(method or b"", path or b"", authority, headers, b"", version=b"2.0",
                            scheme=self.scheme, client_addr=self.client_addr, local_addr=self.local_addr,
                            tls=self.tls)
        st.req = req
        if self.ctx.access is not None:
            rec = LogRecord(self.conn_id, self.client_addr, self.local_addr)
            rec.request = req
            rec.conn_requests = self.requests
            st.stream.framed = -1  # logged once its last frame is written, with their bytes
            rec.request_length = self.core.block_size  # nginx counts the header block as received
            req.log = rec
        status = 0
        if bad or method is None or path is None or scheme is None or not path.startswith(b"/") and \
                not (method == b"OPTIONS" and path == b"*"):
            status = 400
            req.target = b""  # nginx made no request line of it: $request is "-"
        elif method == b"TRACE":
            status = 405
        if status:
            st.stream.error(status, req)
            return
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                st.stream.error(400, req)
                return
            st.declared = declared
            limit = st.limit = st.stream.body_limit(req)
            if limit and declared > limit:
                st.stream.error(413, req)
                return
        elif not end:
            st.limit = st.stream.body_limit(req)
        if not end and req.body_buffer is not None:
            # ngx_http_v2_read_request_body: a body declared within client_body_buffer_size gets a
            # buffer of its size; any other one, that buffer, then a temporary file.
            size, directory, warn = req.body_buffer  # warn: read buffered
            if length is None or int(length) > size:
                st.buffer = BodyBuffer(size, directory, warn, reads=True)
        if end:
            st.stream.start(req)
        elif st.stream.body_streamed(req):
            # grpc_pass: nginx runs the request at its HEADERS and sends the body upstream as it
            # arrives, so a bidirectional call can go back and forth.
            st.streaming = True
            self.core.manual_window(sid)
            st.stream.start_streaming(req)
        else:
            plan = self.ctx.body_plan(req) if self.ctx.body_plan is not None else \
                DISCARD if self.ctx.discards_body is not None and self.ctx.discards_body(req) else 0
            if plan == DISCARD:
                # nginx answers a request whose body it would not read at its HEADERS, and skips the
                # DATA that follows (ngx_http_discard_request_body: r->stream->skip_data).
                st.stream.start(req)
            elif plan == STREAM:
                # proxy_request_buffering off: nginx runs the request at its HEADERS and sends the
                # body upstream as it arrives (ngx_http_v2_read_unbuffered_request_body), a chunk per
                # read when it has no length; the stream's window opens as it goes.
                req.body_stream = BodyStream(int(length) if length is not None else 0, length is None,
                                             req.body_buffer[0] if req.body_buffer is not None else 16384)
                req.body_pending = True
                st.buffer = None
                st.streaming = True
                self.fed.add(st)
                self.core.manual_window(sid)
                st.stream.start_streaming(req)
            elif plan == AUTH_FIRST:
                # An auth_request location: nginx runs the phases at the HEADERS, so the subrequest
                # goes out before the body is read. A refusal is answered at once (the DATA that
                # follows is dropped, the stream reset NO_ERROR after the answer); an acceptance
                # waits for the body (Stream.body_in) and proxies it.
                st.early = True
                req.body_pending = True
                st.stream.start(req)

    def on_data(self, sid: int, data: bytes, end: bool) -> None:
        st = self.streams.get(sid)
        if st is not None and st.streaming:
            st.body_len += len(data)
            if st.limit and st.body_len > st.limit:
                st.streaming = False
                self._log_too_large(st)
                st.stream.body_too_large()
                return
            if st.declared >= 0 and not self._as_declared(st, end, 0):
                st.streaming = False
                st.stream.body_failed(400)
                return
            st.stream.feed(data, end)
            return
        if st is None or st.headers_done or st.stream.request is not None and not st.early or st.stream.answered:
            return  # answered already (413...): the rest of the body is dropped
        if st.declared >= 0 and not self._as_declared(st, end, len(data)):
            if st.early:  # its phases are running: what they started stops
                st.stream.body_failed(400)
            else:
                st.stream.error(400, st.req)
            return
        if data:
            st.body_len += len(data)
            buffer = st.buffer
            if buffer is not None:
                same_read, st.read = st.read == self.reads, self.reads
                if not self._buffered(st, buffer, data, same_read):
                    return
            elif st.read == self.reads:
                st.parts[-1] += data
            else:
                st.read = self.reads
                st.parts.append(data)
            if st.limit and st.body_len > st.limit:
                self._log_too_large(st)
                if st.early:  # its phases are running: what they started stops
                    st.stream.body_too_large()
                else:
                    st.stream.error(413, st.req)
                return
        if end:
            self._ended(st)

    @staticmethod
    def _log_too_large(st: _H2Stream) -> None:
        """A body without Content-Length past client_max_body_size (a declared one was refused at
        HEADERS): nginx's line (ngx_http_v2_filter_request_body), with the bytes received so far."""
        if st.declared < 0:
            assert st.req is not None
            st.stream.log_body("error", f"client intended to send too large chunked body: {st.body_len} bytes", st.req)

    def _as_declared(self, st: _H2Stream, end: bool, coming: int) -> bool:
        """A body keeps to its Content-Length, as nginx checks it (ngx_http_v2_process_request_body):
        more, or less at its end, is a 400. ``coming``: this DATA's bytes, not counted yet."""
        received = st.body_len + coming
        req = st.req
        assert req is not None
        if received > st.declared:
            st.stream.log_body("info", "client intended to send body data larger than declared", req)
            return False
        if end and received < st.declared:
            st.stream.log_body("info", f"client prematurely closed stream: only {received} out of "
                                       f"{st.declared} bytes of request body received", req)
            return False
        return True

    def _buffered(self, st: _H2Stream, buffer: BodyBuffer, data: bytes, same_read: bool) -> bool:
        """Into the body's buffer or its file; False: the file failed, and the stream is answered
        500, as nginx answers."""
        req = st.req
        assert req is not None
        if buffered(buffer, data, same_read, self.ctx.log, req, self.conn_id):
            return True
        st.buffer = None
        if st.early:  # its phases are running: what they started stops
            st.stream.body_failed(500)
        else:
            st.stream.error(500, req)
        return False

    def on_trailers(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None:
        st = self.streams.get(sid)
        if st is not None:
            st.stream.request_trailers = list(headers)
            if st.streaming:
                st.stream.feed(b"", True)
                return
            self._ended(st)

    def on_reset(self, sid: int) -> None:
        st = self.streams.pop(sid, None)
        if st is not None:
            self.fed.discard(st)
            _stream_stat(-1)
            code = self.core.reset_code
            if code >= 0 and st.req is not None:
                # nginx's line for a client's RST_STREAM (ngx_http_v2_state_rst_stream), where newproxy
                # knows its context: a body being streamed upstream, or an upstream at work.
                st.stream.log_reset(_reset_message(sid, code), st.req)
            if st.stream.orphan(_Orphan(self)):
                self.orphans += 1
            else:
                st.stream.abort()
            if st.send_timer is not None:
                st.send_timer.cancel()
                st.send_timer = None
            st.stream.framing_done(st.sent, st.queued)
            self._idle_check()

    def orphan_ended(self) -> None:
        """A request whose stream the client had reset is over (_Orphan)."""
        self.orphans -= 1
        if not self.closed:
            self._idle_check()

    def on_window(self, sid: int) -> None:
        if sid:
            st = self.streams.get(sid)
            if st is not None and (st.queue or st.end_pending):
                self.send_queued(st)
            return
        for st in list(self.streams.values()):  # the connection's window (or all) opened
            if st.queue or st.end_pending:
                self.send_queued(st)

    def on_goaway(self) -> None:
        """The client is going away: finish what is in flight, then close (nginx does the same)."""
        self.closing = True
        if not self.streams:
            self._close_after_flush()

    def _ended(self, st: _H2Stream) -> None:
        req = st.req
        if req is None or st.stream.request is not None and not st.early or st.headers_done or st.stream.answered:
            return
        buffer = st.buffer
        parts = st.parts if buffer is None else buffer.parts  # (none left once the body went to a file)
        if buffer is not None and buffer.file is not None:
            req.body = buffer.file  # its reads are kept in it (BodyFile.reads)
        elif parts:
            req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        if req.body:
            if req.log is not None:
                req.log.body_length = st.body_len  # type: ignore[attr-defined]
            if not any(name == b"content-length" for name, _ in req.headers):
                # nginx sets the length of a body read whole (ngx_http_v2_read_request_body)
                req.headers.append((b"content-length", b"%d" % st.body_len))
                req.length_added = True  # grpc_pass takes it out again (newproxy/engine/grpc.py)
                # nginx ran the request at its HEADERS, the body still to come: with
                # proxy_request_buffering off (HTTP/1.1 upstream) it forwards it chunked, a chunk per
                # read (newproxy/engine/proxy.py upstream_body).
                req.chunked_late = True
                req.body_parts = parts or None
        if st.early:
            st.stream.body_in()
        else:
            st.stream.start(req)

    # -- the answer ------------------------------------------------------------------------------
    def send_queued(self, st: _H2Stream) -> None:
        """Send what the client's windows allow of ``st``'s queue; then the end, or its trailers."""
        core = self.core
        sid = st.sid
        queue = st.queue
        if queue:
            window = core.window(sid)
            chunk_size = self.settings.chunk_size
            progress = window > 0
            while queue and window > 0:
                chunk = queue[0]
                n = len(chunk)
                if n <= window:
                    queue.popleft()
                else:
                    n = window
                    queue[0] = chunk[n:]
                    chunk = chunk[:n]
                st.queued -= n
                window -= n
                last = not queue and st.end_pending and st.trailers_pending is None
                st.sent += core.send_data(sid, chunk, last, chunk_size)
                if last:
                    self.finished(st)
                    return
        if not queue and st.end_pending:
            if st.trailers_pending is not None:
                st.sent += core.send_headers(sid, st.trailers_pending, True)
            else:
                st.sent += core.send_data(sid, b"", True, 0)
            self.finished(st)
            return
        if queue:  # the client's window is shut: send_timeout runs from the last frame it let through
            if progress or st.stalled is None:
                st.stalled = self.loop.time()
            if st.send_timer is None:
                st.send_timer = self.loop.call_at(st.stalled + self.ctx.client.send_timeout, self._send_timed_out, st)
        else:
            st.stalled = None
        if st.queued > QUEUE_HIGH and not st.throttled:
            st.throttled = True
            st.stream.pause()
        elif st.throttled and st.queued <= QUEUE_LOW:
            st.throttled = False
            st.stream.resume()

    def finished(self, st: _H2Stream) -> None:
        """The stream's answer ended (or it was reset): forget it."""
        self.fed.discard(st)
        if st.send_timer is not None:
            st.send_timer.cancel()
            st.send_timer = None
        if self.streams.pop(st.sid, None) is not None:
            self.core.end_unread(st.sid)
            _stream_stat(-1)
            st.stream.framing_done(st.sent, st.queued)
            self._idle_check()

    def _send_timed_out(self, st: _H2Stream) -> None:
        """send_timeout, from the last frame the client's window let through: nginx's line ("client
        timed out" while sending the answer), the stream reset (PROTOCOL_ERROR, as observed), what
        produces the answer ended, the status kept and the body counted as far as it went."""
        st.send_timer = None
        if self.closed or st.stalled is None or self.streams.get(st.sid) is not st:
            return
        due = st.stalled + self.ctx.client.send_timeout
        if self.loop.time() < due:  # frames went meanwhile
            st.send_timer = self.loop.call_at(due, self._send_timed_out, st)
            return
        st.stream.log_timed_out("client timed out (110: Connection timed out)")
        self.core.reset(st.sid, PROTOCOL_ERROR)
        st.stream.abort()
        self.finished(st)
        self.written()

    def _idle_check(self) -> None:
        if self.streams or self.orphans:
            return
        if self.closing:
            self._close_after_flush()
        elif not self.closed:
            self._last = self.loop.time()
            self._arm()

    # -- output --------------------------------------------------------------------------------------
    def written(self) -> None:
        """Frames were queued: written after the current read, or at the end of this loop iteration."""
        if self._in_feed or self._flush_due:
            return
        self._flush_due = True
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.later:
            waiting, self.later = self.later, []
            for st in waiting:
                st.later = False
                if (st.queue or st.end_pending) and st.sid in self.streams:
                    self.send_queued(st)
        data = self.core.take()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _close_after_flush(self) -> None:
        if self._in_feed:  # from a handler call inside data_received: close once the read is done
            self.closing = True
            self.loop.call_soon(self._close_after_flush)
            return
        self._flush()
        transport = self.transport
        if transport is not None and not self.closed:
            self.closed = True
            transport.close()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY with the last stream id; close once the streams in flight are done
        (nginx answers them after its GOAWAY)."""
        if self.closing or self.closed:
            return
        self.closing = True
        self.core.goaway(NO_ERROR)
        self._flush()
        if not self.streams:
            self._close_after_flush()

    # -- idle timeout (keepalive_timeout, as nginx 1.22 uses for HTTP/2) ------------------------------
    def _arm(self) -> None:
        if self._timer is None and not self.closed:
            self._timer = self.loop.call_at(self._last + self.ctx.client.keepalive_timeout, self._on_timer)

    def _on_timer(self) -> None:
        """One lazy timer: it is not moved per request, but looks at the time of the last activity
        when it fires; no idle timeout while a stream is open."""
        self._timer = None
        if self.closed:
            return
        if self.streams:
            self._last = self.loop.time()
            self._arm()
            return
        due = self._last + self.ctx.client.keepalive_timeout
        if self.loop.time() >= due:
            self.closing = True
            self.core.goaway(NO_ERROR)
            self._close_after_flush()
        else:
            self._arm()


# A name's verdict: 0 valid, an invalid kind of h1parse (-1: '_' makes it so, -2: another byte),
# dropped below the connection's threshold (ignore_invalid_headers, underscores_in_headers), or:
_FATAL = 1  # a name nginx refuses by resetting the stream
_NAMES: dict[bytes, int] = {}
_BAD_VALUE = re.compile(rb"[\x00\r\n]").search  # a value nginx refuses ("invalid value"): reset


def _name_verdict(name: bytes) -> int:
    """nginx's ngx_http_v2_validate_header for a regular name: lower-case letters, digits and '-'
    pass; an upper-case letter, a control character, a space, DEL or ':' reset the stream; '_'
    makes the name invalid unless underscores_in_headers, anything else ('.') invalid. Cached."""
    verdict = 0 if name else _FATAL
    for c in name:
        if 0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x2D:
            continue
        if c <= 0x20 or c == 0x7F or c == 0x3A or 0x41 <= c <= 0x5A:
            verdict = _FATAL
            break
        if c != 0x5F:  # not '_'
            verdict = INVALID_OTHER
        elif verdict == 0:
            verdict = INVALID_UNDERSCORE
    if len(_NAMES) < 4096:
        _NAMES[name] = verdict
    return verdict


