"""The gRPC upstream client (nginx's grpc_pass): one HTTP/2 stream to a peer, on the h2 library.

A ``GrpcExchange`` stands where ``upstream.Exchange`` stands for proxy_pass (the same ``ClientSink``
callbacks, ``start``/``pause``/``resume``/``abort``, the shared inactivity ticks of
``UpstreamClient.deadlines``), so the front end drives both alike:

    pick peer ──▶ connect (h2c, or TLS + ALPN h2) ──▶ HEADERS [+ DATA] ──▶ response HEADERS
        ▲                 │error/timeout                                   │
        └── next peer ◀───┘ (before the response head: 502/504)            ▼
                                                      DATA... ──▶ trailers ──▶ done

Invariants (as upstream.Exchange):
- nothing reaches the client before the response head, so a failed attempt can be retried or
  answered with an error page (RST_STREAM or GOAWAY before it is nginx's "upstream rejected
  request", a 502);
- after the head a failure can only abort the client connection;
- a connection carries one call at a time; at its end it is closed, or with the upstream group's
  ``keepalive`` kept for the next call (stream ids 1, 3, 5...), as nginx's grpc module does, when
  the whole request was sent and the peer sent no GOAWAY.

The client's answer, for an HTTP/1.x client, is what nginx writes: the head from
``client_response_head`` (newproxy/engine/proxy.py), DATA as chunks, and the upstream's trailers
(grpc-status, grpc-message) in the last chunk; a trailers-only answer (HEADERS with END_STREAM)
gets ``Content-Length: 0`` with grpc-status among the headers. For an HTTP/1.0 client the body runs
to the close and trailers are dropped, as nginx does.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import ssl
from typing import TYPE_CHECKING, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (ConnectionTerminated, DataReceived, InformationalResponseReceived, ResponseReceived,
                       StreamEnded, StreamReset, TrailersReceived, WindowUpdated)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

from newproxy import connnum
from newproxy.engine.proxy import carry_www_authenticate
from newproxy.engine.status import REASONS
from newproxy.http.exchange_core import ExchangeCore
from newproxy.http.keepalive import KeepalivePool
from newproxy.http.upstream_tls import client_context, name_matches, server_hostname

if TYPE_CHECKING:
    from newproxy.config import UpstreamTlsConfig
    from newproxy.engine.types import ProxyPass
    from newproxy.engine.peer import Peer
    from newproxy.engine.upstreams import UpstreamGroup
    from newproxy.http.upstream import ClientSink, UpstreamClient

_MAX_WINDOW = 2**31 - 1  # nginx's grpc module opens its windows wide (NGX_HTTP_V2_MAX_WINDOW)
_CRLF = b"\r\n"
_CONFIG = H2Configuration(client_side=True, header_encoding=None,
                          # nginx sends the client's headers as they are (names lower-cased)
                          validate_outbound_headers=False, normalize_outbound_headers=False)


def tls_context(config: UpstreamTlsConfig) -> ssl.SSLContext:
    """The client context for grpcs:// peers: proxy_pass https's (newproxy/http/upstream_tls.py, the
    same grpc_ssl_* rules as proxy_ssl_*), plus ALPN h2 (nginx's ngx_http_grpc_set_ssl)."""
    return client_context(config, ("h2",))


def _host_of(authority: str) -> str:
    """The host of a grpc_pass address or upstream name, without its port."""
    if authority.startswith("["):
        return authority[:authority.find("]") + 1]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _pool(client: UpstreamClient, group: UpstreamGroup) -> KeepalivePool[GrpcConn]:
    """The group's pool of idle h2 connections, on the upstream client (one per event loop)."""
    pools = client.grpc_pools
    pool = pools.get(group.name)
    if pool is None:
        pool = pools[group.name] = KeepalivePool(group, client.loop)
    return pool


class GrpcConn(asyncio.Protocol):
    """One HTTP/2 connection to a peer, carrying one exchange's stream at a time; between calls it
    may wait in its group's pool (upstream ``keepalive``), as nginx's grpc module reuses them."""

    __slots__ = ("closed", "exchange", "goaway", "h2", "idle_since", "peer_name", "pool", "requests", "transport")

    def __init__(self, exchange: GrpcExchange, peer_name: str = "") -> None:
        self.exchange: GrpcExchange | None = exchange
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.goaway = False  # the peer said GOAWAY: no further stream on this connection
        self.peer_name = peer_name
        # The group's pool, which it may wait in between calls (None: the group keeps none).
        self.pool: KeepalivePool[GrpcConn] | None = exchange.pool
        self.requests = 0
        self.idle_since = 0.0
        h2 = self.h2 = H2Connection(_CONFIG)
        # As initial values (not an update, which h2 would only send in a second SETTINGS frame and
        # apply when acknowledged): the first SETTINGS already opens the stream windows, as nginx's.
        h2.local_settings = Settings(client=True, initial_values={SettingCodes.ENABLE_PUSH: 0,
                                                                  SettingCodes.INITIAL_WINDOW_SIZE: _MAX_WINDOW})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        h2 = self.h2
        h2.initiate_connection()
        h2.increment_flow_control_window(_MAX_WINDOW - 65535)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            self._idle_input(data)
            return
        ex.last = ex.client.loop.time()
        ex.got_bytes = True
        try:
            events = self.h2.receive_data(data)
        except H2Error as exc:
            ex.protocol_error(f"upstream sent invalid http2 data ({exc})")
            return
        for event in events:
            if self.exchange is not ex or ex.done:
                return
            ex.on_event(event)
        if self.exchange is ex and not ex.done:
            ex.flush()
        self.flush()

    def _idle_input(self, data: bytes) -> None:
        """Frames on a pooled connection (PING, SETTINGS, GOAWAY): answered, or the end of it."""
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            events = [ConnectionTerminated()]
        if any(isinstance(event, (ConnectionTerminated, ResponseReceived, DataReceived)) for event in events):
            self.discard()
            return
        self.flush()

    def discard(self) -> None:
        """Out of the pool (if it was waiting there), closed."""
        if self.pool is not None:
            self.pool.discard(self)
        self.close()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pool is not None:
            self.pool.discard(self)
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.connection_lost(exc)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.last = ex.client.loop.time()

    def close(self) -> None:
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()


class GrpcExchange(ExchangeCore):
    """One grpc_pass request: peer selection, retries, timeouts, relaying the stream."""

    __slots__ = (
        "body",
        "body_end",
        "ended_out",
        "split",
        "stream",
        "streamed",
        "streaming",
        "trailers",
    )  # and ExchangeCore's

    def __init__(self, client: UpstreamClient, pp: ProxyPass, sink: ClientSink) -> None:
        self._begin(client, pp, sink)
        self.conn = None  # GrpcConn, while an attempt has one (ExchangeCore.conn: Any)
        self.stream = 1  # this call's stream id on its connection
        self.body = b""  # request DATA not yet within the peer's flow-control window
        # Request body streaming (``open_body``/``feed``): the client's DATA goes upstream as it comes,
        # as nginx's grpc module always sends it (no request buffering).
        self.streaming = False
        self.body_end = True  # the client's body is complete (END_STREAM seen)
        self.ended_out = False  # our END_STREAM went upstream
        self.streamed = 0  # body bytes sent upstream while streaming: past 0, no retry can resend them
        self.trailers: list[tuple[bytes, bytes]] = []
        # A multiplexed front end (streams.Stream) gets each upstream DATA frame as one write, so the
        # client sees the upstream's framing, as nginx relays it; HTTP/1 joins what one read brought.
        self.split = hasattr(sink, "upstream_trailers")

    # -- choosing a peer and connecting ---------------------------------------------------------
    def start(self) -> None:
        self._open_states()
        group = self.pp.upstream
        if group.keepalive > 0:
            self.pool = _pool(self.client, group)
        self.selection = group.begin(self.pp.proxy.next_upstream_tries, self.pp.balance_key)
        self.started = self.client.loop.time()
        self._next_peer()

    def _next_peer(self) -> None:
        assert self.selection is not None
        peer = self.selection.next()
        if peer is None:
            self._no_live_peer()
            return
        self.peer = peer
        if self.log is not None:
            self.attempt = self.log.upstream_attempt(peer.name)
        self.stale_retried = False
        if self.pool is not None:
            conn = self.pool.get(peer.name)
            if conn is not None:
                self.reused = True
                self._attach(conn)
                return
        self.reused = False
        self.connect_task = self.client.loop.create_task(self._connect(peer))

    def _attach(self, conn: GrpcConn) -> None:
        conn.exchange = self
        self.conn = conn
        self.got_bytes = False
        # nginx's ctx->id: 1 on a new connection, then 3, 5... for each call it carries
        self.stream = conn.h2.get_next_available_stream_id()
        if self.paused and conn.transport is not None:
            conn.transport.pause_reading()
        self._timed(3)
        self._send()

    async def _connect(self, peer: Peer) -> None:
        connnum.take()  # nginx numbers each upstream connection, failed or not (newproxy/connnum.py)
        proxy = self.pp.proxy
        tls = proxy.tls
        kwargs: dict[str, object] = {}
        name = ""
        if tls is not None:
            # nginx's ngx_http_upstream_ssl_name: grpc_ssl_name, else the grpc_pass host without its port
            name = tls.name or _host_of(self.pp.upstream.name)
            kwargs["ssl"] = tls_context(tls)
            kwargs["server_hostname"] = server_hostname(tls, name) or None  # SNI only with grpc_ssl_server_name
        try:
            async with asyncio.timeout(proxy.connect_timeout):
                _, conn = await self.client.loop.create_connection(lambda: GrpcConn(self, peer.name), peer.host,
                                                                   peer.port, **kwargs)  # type: ignore[arg-type, call-overload]
        except asyncio.CancelledError:
            return
        except TimeoutError:
            self.connect_task = None
            if not self.done:
                self._failed("timeout", "upstream timed out (110: Connection timed out) while connecting to upstream")
            return
        except (OSError, ssl.SSLError) as exc:
            self.connect_task = None
            if not self.done:
                code = getattr(exc, "errno", None) or _errno.ECONNREFUSED
                self._failed("error", f"connect() failed ({code}: {getattr(exc, 'strerror', None) or exc}) "
                                      "while connecting to upstream")
            return
        self.connect_task = None
        self.client.connections_opened += 1
        if conn.exchange is not self:  # lost during the handshake: connection_lost has reported it
            return
        if tls is not None and tls.verify and not self.done and not conn.closed and conn.transport is not None \
                and not name_matches(conn.transport.get_extra_info("peercert") or {}, name):
            conn.abort()
            self._failed("error", f'upstream SSL certificate does not match "{name}" while SSL handshaking to upstream')
            return
        if self.done or conn.closed:
            conn.close()
            if not self.done:
                self._failed("error", "upstream prematurely closed connection while connecting to upstream")
            return
        self._attach(conn)

    # -- a request body that is still arriving (HTTP/2 clients: newproxy/http/streams.py) -------------
    def open_body(self) -> None:
        """Before ``start``: the body comes by ``feed``; each byte sent upstream is reported to the
        sink's ``body_consumed`` (the client's window is given back only then)."""
        self.streaming = True
        self.body_end = False

    def feed(self, data: bytes, end: bool) -> None:
        if self.done or self.ended_out:
            if data:
                self.sink.body_consumed(len(data))  # type: ignore[attr-defined]  # dropped, as nginx discards it
            return
        if data:
            self.body += data
        if end:
            self.body_end = True
        conn = self.conn
        if conn is None or not self.sent or conn.closed:
            return  # still connecting: sent by _send
        try:
            self._pump()
        except H2Error:  # the peer closed its side meanwhile: what is left is dropped
            self.body = b""
            self.ended_out = True
        conn.flush()
        if self.body and not self.sending:  # the peer's window is shut: grpc_send_timeout runs
            self.sending = True
            self._arm(self.pp.proxy.send_timeout)

    def _send(self) -> None:
        conn = self.conn
        assert conn is not None and self.pp.grpc_headers is not None
        body = self.body if self.streaming else cast(bytes, self.pp.body)  # (engine/grpc.py reads a body in a file into bytes)
        end = not body and self.body_end
        conn.h2.send_headers(self.stream, self.pp.grpc_headers, end_stream=end)
        self.ended_out = end
        self.body = body
        self.sent = True
        if body:
            self._pump()
        conn.flush()
        self.sending = bool(self.body) or bool(conn.transport and conn.transport.get_write_buffer_size())
        self._arm(self.pp.proxy.send_timeout if self.sending else self.pp.proxy.read_timeout)

    def _pump(self) -> None:
        """Request DATA as the peer's windows allow; END_STREAM with the last of it."""
        conn = self.conn
        assert conn is not None
        h2 = conn.h2
        body = self.body
        sent = 0
        while body:
            size = min(h2.local_flow_control_window(self.stream), h2.max_outbound_frame_size, len(body))
            if size <= 0:
                break
            last = size == len(body) and self.body_end
            h2.send_data(self.stream, body[:size], end_stream=last)
            self.ended_out = last
            body = body[size:]
            sent += size
        self.body = body
        if not body and self.body_end and not self.ended_out:  # the client's end came without data
            h2.end_stream(self.stream)
            self.ended_out = True
        if sent and self.streaming:
            self.streamed += sent
            self.sink.body_consumed(sent)  # type: ignore[attr-defined]

    def _upstream_url(self, name: str | None = None) -> str:
        if name is None:
            assert self.peer is not None
            name = self.peer.name
        return f'{"grpcs" if self.pp.proxy.tls is not None else "grpc"}://{name}'

    def on_deadline(self, now: float) -> None:
        if self.done:
            self._cancel_timer()
            return
        conn = self.conn
        if self.sending:
            waiting = self.body or (conn is not None and conn.transport is not None
                                    and conn.transport.get_write_buffer_size())
            if not waiting:
                self.sending = False  # the request is out: grpc_read_timeout from now
                self.timeout = self.pp.proxy.read_timeout
                self.last = now
                return
            if now < self.last + self.timeout:
                return
        if not self.header_done:
            what = "sending request to" if self.sending else "reading response header from"
            self._failed("timeout", f"upstream timed out (110: Connection timed out) while {what} upstream")
        else:
            self._log("upstream timed out (110: Connection timed out) while reading upstream")
            self._abort_client()

    # -- the response ------------------------------------------------------------------------
    def on_event(self, event: object) -> None:
        sid = getattr(event, "stream_id", None)
        if sid and sid != self.stream:
            return  # a late frame of an earlier call on this connection
        if isinstance(event, DataReceived):
            if event.stream_id == self.stream:
                assert self.conn is not None
                self.conn.h2.acknowledge_received_data(event.flow_controlled_length, self.stream)
                self._data(event.data)
        elif isinstance(event, ResponseReceived):
            self._head(event.headers, event.stream_ended is not None)
        elif isinstance(event, TrailersReceived):
            self.trailers = [(n, v) for n, v in event.headers]
        elif isinstance(event, StreamEnded):
            if self.header_done:
                self._complete()
        elif isinstance(event, WindowUpdated):
            if self.body and self.conn is not None:
                self._pump()
        elif isinstance(event, StreamReset):
            if not self.header_done:
                self._failed("invalid_header", f"upstream rejected request with error {int(event.error_code)} "
                                               "while reading response header from upstream")
            else:
                self._log(f"upstream rejected request with error {int(event.error_code)} while reading upstream")
                self._abort_client()
        elif isinstance(event, ConnectionTerminated):
            # A GOAWAY naming a last stream below ours: the request was not processed (a 502).
            if self.conn is not None:
                self.conn.goaway = True  # never pooled again
            if (event.last_stream_id or 0) < self.stream and not self.header_done:
                self._failed("invalid_header", f"upstream sent goaway with error {int(event.error_code or 0)} "
                                               "while reading response header from upstream")
        elif isinstance(event, InformationalResponseReceived):
            pass  # 1xx (103 Early Hints): not relayed

    def _head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        status = 0
        rest: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name == b":status":
                status = int(value) if value.isdigit() and len(value) == 3 else 0
            elif not name.startswith(b":"):
                rest.append((name, value))
        if not status:
            self._failed("invalid_header", "upstream sent no valid :status header while reading response header "
                                           "from upstream")
            return
        if self.attempt is not None:
            self.attempt[1] = status
            self._timed(4)
        pp = self.pp
        if status in pp.intercept:
            carry_www_authenticate(pp, status, rest)
            self._timed(5)
            self._close_conn()
            assert self.selection is not None and self.peer is not None
            self.selection.succeeded(self.peer)
            self._respond_error(status)
            return
        if ended:
            # A trailers-only answer: nginx sets the length to 0 (ngx_http_grpc_process_header).
            rest = [h for h in rest if h[0] != b"content-length"] + [(b"content-length", b"0")]
            framing = "none" if pp.request.method == b"HEAD" else "length"
        elif pp.request.method == b"HEAD" or status in (204, 304):
            framing = "none"
        elif any(name == b"content-length" for name, _ in rest):
            framing = "length"
        else:
            framing = "chunked"
        reason = REASONS.get(status, "").encode("latin-1")
        head, out_framing = self.client.client_response_head(pp, status, reason, rest, framing)
        if out_framing[:5] == "gzip-":
            out_framing = out_framing[5:]
            gz = pp.relay.gzip
            assert gz is not None
            self.deflate = gz.compressor()
        self.header_done = True
        self.chunked_out = out_framing == "chunked"
        self.close_out = out_framing == "close"
        self.bodiless = out_framing == "none"
        self.out.append(head)
        if ended:
            self._complete()

    def _data(self, data: bytes) -> None:
        if not self.header_done or self.bodiless or not data:
            return
        if self.deflate is not None:
            data = self.deflate.compress(data)
            if not data:
                return
        if self.chunked_out:
            self.out += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            self.out.append(data)
            if self.split:
                self.flush()

    def _complete(self) -> None:
        if self.deflate is not None:
            tail = self.deflate.flush()
            self.deflate = None
            if tail:
                self.out += (b"%x\r\n" % len(tail), tail, _CRLF) if self.chunked_out else (tail,)
        # A multiplexed front end (newproxy/http/streams.py) sends the trailers as a HEADERS frame.
        with_trailers = getattr(self.sink, "upstream_trailers", None) if self.trailers else None
        if self.chunked_out:
            last = self.pp.last_chunk
            if self.trailers:  # the upstream's, then add_trailer's (nginx's trailers filter appends them)
                lines = b"".join(name + b": " + value + _CRLF for name, value in self.trailers)
                last = b"0\r\n" + lines + last[3:]
            self.out.append(last)
        self.flush()
        self._timed(5)
        self.done = True
        self._cancel_timer()
        self._release_conn()
        assert self.selection is not None and self.peer is not None
        self.selection.succeeded(self.peer)
        if with_trailers is not None and not self.bodiless:
            with_trailers(self.trailers)
        else:
            self.sink.upstream_done(self.pp.keepalive and not self.close_out)

    # -- endings and failures ------------------------------------------------------------------
    def _end(self) -> None:
        self.done = True
        self._cancel_timer()
        self._close_conn()

    def _release_conn(self) -> None:
        """The call is over: its connection back to the pool when nginx would keep it (the whole
        request sent, no GOAWAY, under keepalive_requests), else closed."""
        conn = self.conn
        self.conn = None
        if conn is None:
            return
        conn.exchange = None
        conn.requests += 1
        pool = self.pool
        if (pool is not None and self.ended_out and not conn.closed and not conn.goaway
                and conn.requests < pool.requests and conn.transport is not None):
            conn.flush()  # the WINDOW_UPDATEs and acks this call left
            if self.paused:
                conn.transport.resume_reading()
            pool.put(conn)
        else:
            conn.close()

    def _close_conn(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        self.conn = None
        if not self.header_done:
            if self.reused and not self.stale_retried and not self.got_bytes:
                # A pooled connection the peer had closed meanwhile: not the peer's fault (nginx
                # retries these too); once more on a fresh connection to the same peer.
                self.stale_retried = True
                self.reused = False
                self._cancel_timer()
                assert self.peer is not None
                self.connect_task = self.client.loop.create_task(self._connect(self.peer))
                return
            if exc is not None:
                code = getattr(exc, "errno", None) or _errno.ECONNRESET
                self._failed("error", f"recv() failed ({code}: {getattr(exc, 'strerror', None) or exc}) while "
                                      "reading response header from upstream")
            else:
                self._failed("error", "upstream prematurely closed connection while reading response header "
                                      "from upstream")
            return
        self._log("upstream prematurely closed connection while reading upstream")
        self._abort_client()

    def protocol_error(self, message: str) -> None:
        if self.header_done:
            self._log(message)
            self._abort_client()
        else:
            self._failed("invalid_header", message + " while reading response header from upstream")

    def _drop_attempt(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.abort()

    def _body_gone(self) -> bool:
        return self.streamed > 0  # a streamed body is gone: nginx does not retry an unbuffered one either

    def _reset_for_retry(self) -> None:
        self.out.clear()
        self.trailers = []

    def _abort_client(self) -> None:
        self._timed(5)
        conn = self.conn
        self.conn = None
        self.done = True
        self._cancel_timer()
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)
        self.flush()
        self.sink.upstream_abort()

    def abort(self) -> None:
        """The client went away: drop the stream and its connection."""
        if self.done:
            return
        self.done = True
        self._cancel_timer()
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)

