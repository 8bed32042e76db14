"""The upstream client: forward a ``ProxyPass`` to a peer and relay the answer to the client.

One ``Exchange`` per proxied request drives a small state machine from callbacks (no task on the
fast path; a task is made only to open a new connection):

    pick peer ──▶ pooled connection? ──yes──▶ send ──▶ read head ──▶ stream body ──▶ done
                     │no                        ▲         │error/timeout before the head
                     ▼                          │         ▼
                  connect (task) ───────────────┘     failed(peer), next peer or 502/504

Invariants:
- nothing is written to the client before the upstream response head has been parsed, so a failed
  attempt can always be retried or answered with an error page;
- once the head is sent, a failure can only close the client connection (as nginx does);
- a connection goes back to its group's pool only after a complete, length- or chunk-delimited
  HTTP/1.1 response without ``Connection: close`` and after the whole request was written.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from newproxy.http.errorlog import ErrorLog

if TYPE_CHECKING:
    from newproxy.engine.logformat import LogRecord
    from newproxy.engine.types import ProxyPass
    from newproxy.engine.upstreams import Peer, PeerSelection, UpstreamGroup

ClientResponseHead = Callable[["ProxyPass", int, bytes, "list[tuple[bytes, bytes]]", str], "tuple[bytes, str]"]

# nginx does not retry these methods once the request reached a peer, unless
# ``proxy_next_upstream non_idempotent`` says so.
_NON_IDEMPOTENT = frozenset((b"POST", b"LOCK", b"PATCH"))
_LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"
# Bodies up to this size are joined with the head into one write (one syscall); bigger ones are
# written separately so a large upload is not copied.
_JOIN_LIMIT = 65536


class ClientSink(Protocol):
    """What an exchange needs from the client connection (the HTTP/1.1 or HTTP/2 front end)."""

    conn_id: int

    def write(self, data: bytes) -> None: ...

    def upstream_done(self, keepalive: bool) -> None: ...

    def upstream_error(self, status: int) -> None: ...

    def upstream_abort(self) -> None: ...


class _HeadDone(Exception):
    """Raised from a parser callback to stop parsing after a HEAD response's header block.

    httptools cannot tell llhttp that a response to HEAD has no body, so the parser would wait for
    Content-Length bytes that never come; we stop it and give the connection a fresh parser.
    """


class _Intercepted(Exception):
    """Raised from a parser callback when proxy_intercept_errors takes over the response."""


class UpstreamConn(asyncio.Protocol):
    """One TCP connection to a peer. Parses responses; lives in its group's pool between exchanges."""

    __slots__ = (
        "_loop",
        "chunked",
        "closed",
        "dirty",
        "exchange",
        "has_length",
        "head_stop",
        "headers",
        "idle_since",
        "parser",
        "peer_name",
        "pool",
        "reason",
        "requests",
        "reusable",
        "transport",
    )

    def __init__(self, pool: _Pool, peer_name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer_name = peer_name
        self.pool = pool
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.requests = 0
        self.idle_since = 0.0
        self.closed = False
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.has_length = False
        self.reusable = False
        self.dirty = False  # bytes arrived after a complete response: never reuse
        self.head_stop = False
        self._loop = loop

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None or ex.complete:
            # nginx closes an idle cached connection on any input: it cannot be a valid response.
            self.dirty = True
            if ex is None:
                self.pool.discard(self)
                self.close()
            return
        ex.got_bytes = True
        ex.last = self._loop.time()
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:  # llhttp stops after a 101 head: the rest is not HTTP
            if self.exchange is ex and not ex.done:
                ex.switched(self, data[exc.args[0]:] if exc.args else b"")
            return
        except HttpParserCallbackError:
            if ex.intercepted and self.exchange is ex and not ex.done:
                ex.intercept()
                return
            if self.head_stop:
                self.head_stop = False
                self.parser = HttpResponseParser(self)
            elif self.exchange is ex and not ex.done:
                ex.invalid_response()
                return
        except HttpParserError:
            if self.exchange is ex and not ex.done:
                ex.invalid_response()
            return
        if self.exchange is ex and not ex.done:
            out = ex.out
            if out:  # everything this read produced, in one write to the client
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                ex.sink.write(data)
            if ex.complete:
                ex.finish()

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.connection_lost(self, exc)
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None and ex.upgraded:  # a tunnel: stop reading the client until the peer reads
            ex.sink.tunnel_flow(False)  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.last = self._loop.time()  # the peer is reading the request: progress for send_timeout
            if ex.upgraded:
                ex.sink.tunnel_flow(True)  # type: ignore[attr-defined]

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        ex = self.exchange
        if ex is None or ex.complete:
            self.dirty = True
        self.reason = b""
        self.headers = []
        self.chunked = False
        self.has_length = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        n = len(name)
        # Only Content-Length (14) and Transfer-Encoding (17) decide the framing; a length test
        # first keeps the per-header cost to one comparison.
        if n == 14:
            if name.lower() == b"content-length":
                self.has_length = True
        elif n == 17 and name.lower() == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None or ex.complete:
            return
        parser = self.parser
        self.reusable = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        ex.on_head(self, parser.get_status_code())
        if ex.is_head and ex.header_done:
            ex.complete = True
            self.head_stop = True
            raise _HeadDone

    # on_body and on_message_complete work on the exchange directly: they run for every response.
    def on_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None or ex.complete or ex.interim or ex.bodiless:
            return
        if ex.deflate is not None:
            data = ex.deflate.compress(data)
            if not data:
                return  # zlib keeps it until it has a block
        if ex.chunked_out:
            ex.out += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            ex.out.append(data)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None or ex.complete:
            return
        if ex.interim:
            ex.interim = False  # a 1xx answer: the final response follows
            return
        ex.complete = True
        if ex.deflate is not None:
            ex.deflate_end()
        if ex.chunked_out:
            ex.out.append(ex.pp.last_chunk)  # with add_trailer's trailers

    # -- ownership ------------------------------------------------------------------------------
    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Raw:
    """The parser of a connection whose 101 was relayed: what the upstream sends goes to the client
    untouched (``Exchange.switched``), so the byte path after a switch has no HTTP parsing."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def feed_data(self, data: bytes) -> None:
        self.exchange.out.append(data)


class _Pool:
    """Idle keep-alive connections of one upstream group (nginx's ``keepalive N`` cache).

    ``idle`` is ordered oldest first; at most ``size`` connections are kept, the oldest is closed
    to make room. One timer per pool closes connections idle longer than ``timeout``.
    """

    __slots__ = ("_loop", "_sweeper", "idle", "requests", "size", "timeout")

    def __init__(self, group: UpstreamGroup, loop: asyncio.AbstractEventLoop) -> None:
        self.idle: list[UpstreamConn] = []
        self.size = group.keepalive
        self.timeout = group.keepalive_timeout
        self.requests = group.keepalive_requests
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop = loop

    def get(self, peer_name: str) -> UpstreamConn | None:
        idle = self.idle
        i = len(idle) - 1
        while i >= 0:  # newest first: the most likely to be still open
            conn = idle[i]
            if conn.peer_name == peer_name:
                del idle[i]
                if conn.closed:
                    i -= 1
                    continue
                if self._loop.time() - conn.idle_since >= self.timeout:
                    conn.close()
                    i -= 1
                    continue
                return conn
            i -= 1
        return None

    def put(self, conn: UpstreamConn) -> None:
        idle = self.idle
        if len(idle) >= self.size:
            idle.pop(0).close()
        conn.idle_since = self._loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(idle[0].idle_since + self.timeout, self._sweep)

    def discard(self, conn: UpstreamConn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def _sweep(self) -> None:
        self._sweeper = None
        idle = self.idle
        deadline = self._loop.time() - self.timeout
        while idle and idle[0].idle_since <= deadline:
            idle.pop(0).close()
        if idle:
            self._sweeper = self._loop.call_at(idle[0].idle_since + self.timeout, self._sweep)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class _Deadlines:
    """The inactivity timeouts of the exchanges in flight, checked by one shared periodic tick.

    A ``call_at`` per request costs ~3 µs on uvloop (a libuv timer each), as much as the rest of
    the upstream client's work; adding to and removing from a set costs ~0.1 µs. The price is
    precision: a timeout fires up to ``TICK`` late (nginx's timers are exact to the millisecond).
    """

    TICK = 0.05
    __slots__ = ("active", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.active: set[Exchange] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, exchange: Exchange) -> None:
        self.active.add(exchange)
        if self.handle is None:
            self.handle = self.loop.call_later(self.TICK, self._tick)

    def _tick(self) -> None:
        self.handle = None
        active = self.active
        if not active:
            return  # idle: no tick until the next exchange arms one
        now = self.loop.time()
        # Exchanges still writing a request are looked at every tick: the moment their write
        # buffer drains, proxy_read_timeout starts.
        for exchange in [ex for ex in active if ex.sending or now >= ex.last + ex.timeout]:
            exchange.on_deadline(now)
        if active:
            self.handle = self.loop.call_later(self.TICK, self._tick)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class UpstreamClient:
    """Owns the keep-alive pools of every upstream group; one per event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client_response_head: ClientResponseHead, log: ErrorLog) -> None:
        self.loop = loop
        self.client_response_head = client_response_head
        self.log = log
        self.pools: dict[str, _Pool] = {}
        self.deadlines = _Deadlines(loop)
        self.connections_opened = 0  # for tests and metrics

    def pool(self, group: UpstreamGroup) -> _Pool:
        pool = self.pools.get(group.name)
        if pool is None:
            pool = self.pools[group.name] = _Pool(group, self.loop)
        return pool

    def exchange(self, pp: ProxyPass, sink: ClientSink) -> Exchange:
        """An exchange for ``pp``, reporting back through ``sink``; call ``start()`` on it.

        Two steps, so that the caller holds the exchange before it can answer synchronously.
        """
        return Exchange(self, pp, sink)

    def close_idle(self) -> None:
        for pool in self.pools.values():
            pool.close_all()


class Exchange:
    """One proxied request: peer selection, retries, timeouts, relaying the response."""

    __slots__ = (
        "attempt",
        "bodiless",
        "chunked_out",
        "client",
        "close_out",
        "complete",
        "conn",
        "connect_task",
        "deflate",
        "done",
        "fail_status",
        "framing",
        "got_bytes",
        "header_done",
        "intercepted",
        "interim",
        "is_head",
        "last",
        "log",
        "out",
        "paused",
        "peer",
        "pool",
        "pp",
        "reused",
        "selection",
        "sending",
        "sent",
        "sink",
        "stale_retried",
        "timeout",
        "upgraded",
    )

    def __init__(self, client: UpstreamClient, pp: ProxyPass, sink: ClientSink) -> None:
        self.client = client
        self.pp = pp
        self.sink = sink
        self.selection: PeerSelection | None = None
        self.peer: Peer | None = None
        self.conn: UpstreamConn | None = None
        self.pool: _Pool | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.timeout = 0.0
        self.last = 0.0
        self.sending = False
        self.reused = False
        self.stale_retried = False
        self.got_bytes = False
        self.sent = False
        self.header_done = False
        self.complete = False
        self.done = False
        self.is_head = pp.request.method == b"HEAD"
        self.chunked_out = False
        self.close_out = False
        self.bodiless = False
        self.deflate: zlib._Compress | None = None  # gzip: the body is compressed on its way to the client
        self.framing = ""
        self.out: list[bytes] = []
        self.fail_status = 502
        self.paused = False
        self.interim = False
        self.upgraded = False  # a 101 switched protocols: a byte tunnel between client and peer
        self.intercepted = 0  # proxy_intercept_errors: the upstream status the error_page replaces
        # Access log (newproxy/engine/logformat.py LogRecord): set by the front end when logging;
        # ``attempt`` is this try's entry: [addr, status, start, connect, header, response].
        self.log: LogRecord | None = None
        self.attempt: list | None = None  # type: ignore[type-arg]

    # -- choosing a peer and a connection ----------------------------------------------------
    def start(self) -> None:
        group = self.pp.upstream
        if group.keepalive > 0:
            self.pool = self.client.pools.get(group.name) or self.client.pool(group)
        self.selection = group.begin(self.pp.proxy.next_upstream_tries, self.pp.balance_key)
        self._next_peer()

    def _next_peer(self) -> None:
        assert self.selection is not None
        peer = self.selection.next()
        if peer is None:
            if self.fail_status == 502 and not self.sent and self.peer is None:
                self._log('no live upstreams while connecting to upstream')
                if self.log is not None:  # nginx logs the group's name with a 502
                    self.log.upstream_attempt(self.pp.upstream.name)[1] = 502
            self._respond_error(self.fail_status)
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
                self._timed(3)
                self._send()
                return
        self._connect()

    def _connect(self) -> None:
        self.reused = False
        self.got_bytes = False
        self.connect_task = self.client.loop.create_task(self._connect_coro())

    async def _connect_coro(self) -> None:
        peer = self.peer
        assert peer is not None
        client = self.client
        pool = self.pool if self.pool is not None else client.pool(self.pp.upstream)
        try:
            async with asyncio.timeout(self.pp.proxy.connect_timeout):
                _, conn = await client.loop.create_connection(
                    lambda: UpstreamConn(pool, peer.name, client.loop), peer.host, peer.port
                )
        except asyncio.CancelledError:
            return  # the client went away
        except TimeoutError:
            self.connect_task = None
            if not self.done:
                self._failed("timeout", "upstream timed out (110: Connection timed out) while connecting to upstream")
            return
        except OSError as exc:
            self.connect_task = None
            if not self.done:
                code = exc.errno if exc.errno is not None else _errno.ECONNREFUSED
                self._failed("error", f"connect() failed ({code}: {exc.strerror or exc}) while connecting to upstream")
            return
        self.connect_task = None
        client.connections_opened += 1
        if self.done:
            conn.close()
            return
        if conn.closed:  # accepted and closed at once (a listener at its backlog limit, say)
            self._failed("error", "upstream prematurely closed connection while connecting to upstream")
            return
        self._attach(conn)
        self._timed(3)
        self._send()

    def _attach(self, conn: UpstreamConn) -> None:
        conn.exchange = self
        conn.head_stop = False
        self.conn = conn
        if self.paused and conn.transport is not None:
            conn.transport.pause_reading()

    def _send(self) -> None:
        conn = self.conn
        assert conn is not None and conn.transport is not None
        pp = self.pp
        transport = conn.transport
        body = pp.body
        if not body:
            transport.write(pp.head)
        elif len(body) <= _JOIN_LIMIT:
            transport.write(pp.head + body)
        else:
            transport.write(pp.head)
            transport.write(body)
        self.sent = True
        if transport.get_write_buffer_size():
            self.sending = True
            self._arm(pp.proxy.send_timeout)
        else:
            self.sending = False
            self._arm(pp.proxy.read_timeout)

    # -- timers ------------------------------------------------------------------------------
    def _arm(self, timeout: float) -> None:
        """Start an inactivity timeout; reads and drained writes move ``last`` (see _Deadlines)."""
        self.timeout = timeout
        self.last = self.client.loop.time()
        self.client.deadlines.add(self)

    def _cancel_timer(self) -> None:
        self.client.deadlines.active.discard(self)

    def on_deadline(self, now: float) -> None:
        if self.done:
            self._cancel_timer()
            return
        conn = self.conn
        if self.sending:
            if self.got_bytes or conn is None or conn.transport is None or not conn.transport.get_write_buffer_size():
                # The request is out (or answered already): proxy_read_timeout applies from now.
                self.sending = False
                self.timeout = self.pp.proxy.read_timeout
                self.last = now
                return
            if now < self.last + self.timeout:
                return
        if not self.header_done:
            what = "sending request to" if self.sending else "reading response header from"
            self._failed("timeout", f"upstream timed out (110: Connection timed out) while {what} upstream")
        else:
            what = "proxying upgraded connection" if self.upgraded else "reading upstream"
            self._log(f"upstream timed out (110: Connection timed out) while {what}")
            self._abort_client()

    # -- the response, called by UpstreamConn --------------------------------------------------
    def on_head(self, conn: UpstreamConn, status: int) -> None:
        if status < 200:
            if status != 101:
                self.interim = True  # 100/102/103: skip it, the final response follows
                return
            if self.pp.relay.pass_through:  # the strangler fallback: no tunnel to legacy (a 502)
                raise HttpParserError("101 Switching Protocols through the fallback is not supported")
        if self.attempt is not None:
            self.attempt[1] = status
            self._timed(4)
        if status in self.pp.intercept:
            self.intercepted = status
            raise _Intercepted  # stops the parser; UpstreamConn.data_received calls intercept()
        if self.is_head or status == 204 or status == 304 or status == 101:
            framing = "none"  # a 101's bytes after the head are relayed raw (switched)
        elif conn.chunked:
            framing = "chunked"
        elif conn.has_length:
            framing = "length"
        else:
            framing = "close"
        self.framing = framing
        head, out_framing = self.client.client_response_head(self.pp, status, conn.reason, conn.headers, framing)
        if out_framing[:5] == "gzip-":  # the location's gzip filter compresses this body (engine/gzip.py)
            out_framing = out_framing[5:]
            gz = self.pp.relay.gzip
            assert gz is not None
            self.deflate = gz.compressor()
        self.header_done = True
        self.chunked_out = out_framing == "chunked"
        self.close_out = out_framing == "close"
        self.bodiless = out_framing == "none"
        self.out.append(head)

    def switched(self, conn: UpstreamConn, rest: bytes) -> None:
        """llhttp stopped after a 101 head (``rest`` is what followed it in the read). As nginx
        (ngx_http_proxy_process_header, ngx_http_upstream_upgrade): when the client's request had
        an Upgrade header, the connection becomes a tunnel, bytes flowing both ways untouched until
        either side closes or proxy_read_timeout passes without traffic either way; otherwise the
        101 is relayed as an answer whose body runs raw to the upstream's close, the client's bytes
        not forwarded. Either way the peer connection is never pooled (framing "close")."""
        self.complete = False
        self.bodiless = False
        self.framing = "close"
        self.close_out = True
        conn.parser = _Raw(self)  # type: ignore[assignment]
        upgraded = getattr(self.sink, "upgraded", None)
        if upgraded is not None and any(len(n) == 7 and n.lower() == b"upgrade" for n, _ in self.pp.request.headers):
            self.flush()  # the 101 head, at once (nginx flushes it when switching)
            self.upgraded = True
            self.sending = False
            self.timeout = self.pp.proxy.read_timeout
            upgraded(self.to_upstream)
        # Not switching, nginx's write filter holds the head (postpone_output) until body bytes
        # or the end come: it stays in ``out``, written with the next read, the close or a timeout.
        if rest:
            self.out.append(rest)
            self.flush()

    def to_upstream(self, data: bytes) -> None:
        """A tunnel's client bytes: to the peer as they are; traffic either way resets the idle
        timeout (nginx re-arms the upstream read timer on every pass of process_upgraded)."""
        conn = self.conn
        if conn is not None and conn.transport is not None and not self.done:
            self.last = self.client.loop.time()
            conn.transport.write(data)

    def on_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        if self.deflate is not None:
            self.deflate_end()
        if self.chunked_out:
            self.out.append(self.pp.last_chunk)

    def deflate_end(self) -> None:
        """What the compressor still holds, and the gzip trailer, before the last chunk."""
        assert self.deflate is not None
        data = self.deflate.flush()
        self.deflate = None
        if data:
            self.out += (b"%x\r\n" % len(data), data, _CRLF) if self.chunked_out else (data,)

    def flush(self) -> None:
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.sink.write(data)

    def _end(self) -> UpstreamConn | None:
        """Mark the exchange over: stop its timer and detach its connection (returned, if any)."""
        self.done = True
        self._cancel_timer()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
        return conn

    def finish(self) -> None:
        """The response is complete: pool or close the connection, let the client go on."""
        self._timed(5)
        conn = self._end()
        if conn is not None:
            conn.requests += 1
            pool = self.pool
            if (
                pool is not None
                and conn.reusable
                and not conn.dirty
                and not conn.closed
                and self.framing != "close"
                and conn.requests < pool.requests
                and conn.transport is not None
                and not conn.transport.get_write_buffer_size()
            ):
                if self.paused:
                    conn.transport.resume_reading()
                pool.put(conn)
            else:
                conn.close()
        assert self.selection is not None and self.peer is not None
        self.selection.succeeded(self.peer)
        self.sink.upstream_done(self.pp.keepalive and not self.close_out)

    def connection_lost(self, conn: UpstreamConn, exc: Exception | None) -> None:
        if self.done or conn is not self.conn:
            return
        self.conn = None
        if not self.header_done:
            if self.reused and not self.got_bytes and not self.stale_retried:
                # A cached connection the peer had already closed: not the peer's fault (nginx
                # retries these too); try once more on a fresh connection to the same peer.
                self.stale_retried = True
                self._cancel_timer()
                self._connect()
                return
            if exc is not None:
                code = getattr(exc, "errno", None) or _errno.ECONNRESET
                self._failed("error", f"recv() failed ({code}: {getattr(exc, 'strerror', None) or exc}) while reading response header from upstream")
            else:
                self._failed("error", "upstream prematurely closed connection while reading response header from upstream")
            return
        if self.framing == "close" and exc is None:
            # The body ran to the connection's end: that is its normal completion.
            self.on_complete()
            self.flush()
            self.finish()
            return
        self._log("upstream prematurely closed connection while reading upstream")
        self._abort_client()

    def invalid_response(self) -> None:
        if self.header_done:
            self._log("upstream sent invalid response body")
            self._abort_client()
        else:
            self._failed("invalid_header", "upstream sent invalid header while reading response header from upstream")

    # -- failures --------------------------------------------------------------------------
    def _failed(self, kind: str, message: str) -> None:
        """An attempt failed before anything reached the client: next peer, or an error page."""
        self._log(message)
        self._cancel_timer()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
            conn.abort()
        status = 504 if kind == "timeout" else 502
        if self.attempt is not None:
            self.attempt[1] = status
            self._timed(5)
            self.attempt = None
        assert self.selection is not None and self.peer is not None
        self.selection.failed(self.peer)
        next_upstream = self.pp.proxy.next_upstream
        retry = kind in next_upstream and not (
            self.sent and self.pp.request.method in _NON_IDEMPOTENT and "non_idempotent" not in next_upstream
        )
        if retry:
            self.fail_status = status
            self.sent = False
            self.header_done = False
            self.got_bytes = False
            self.out.clear()
            self._next_peer()
        else:
            self._respond_error(status)

    def intercept(self) -> None:
        """proxy_intercept_errors with an error_page for the status: as nginx, drop the response
        unread and its connection, and answer with the page (the sink asks Engine.upstream_failed)."""
        self._timed(5)
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
            conn.close()
        assert self.selection is not None and self.peer is not None
        self.selection.succeeded(self.peer)
        self._respond_error(self.intercepted)

    def _respond_error(self, status: int) -> None:
        self.done = True
        self._cancel_timer()
        self.sink.upstream_error(status)

    def _timed(self, field: int) -> None:
        """Access log: the time since this attempt began, as its connect/header/response time."""
        attempt = self.attempt
        if attempt is not None:
            attempt[field] = time.monotonic() - attempt[2]

    def _abort_client(self) -> None:
        self._timed(5)
        conn = self._end()
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)  # nginx's finalize frees the peer with state 0
        self.flush()
        self.sink.upstream_abort()

    def abort(self) -> None:
        """The client went away: drop the upstream side (never pooled: its response is unread)."""
        if self.done:
            return
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        conn = self._end()
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)  # nginx frees the peer (state 0) when finalizing

    # -- flow control from the client side --------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    # -- logging (error paths only) -----------------------------------------------------------
    def _log(self, message: str) -> None:
        log = self.client.log
        if not log.enabled("error"):
            return
        req = self.pp.request
        host = next((v for n, v in req.headers if n.lower() == b"host"), None)
        upstream = f'http://{self.peer.name}' if self.peer is not None else ""
        detail = (
            f'{message}, client: {req.client_addr[0]}, server: , request: '
            f'"{req.method.decode("latin-1")} {req.target.decode("latin-1")} HTTP/{req.version.decode("latin-1")}"'
        )
        if upstream:
            detail += f', upstream: "{upstream}{req.target.decode("latin-1")}"'
        if host is not None:
            detail += f', host: "{host.decode("latin-1")}"'
        log.error(detail, self.sink.conn_id)
