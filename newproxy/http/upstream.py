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
import re
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from newproxy import connnum
from newproxy.engine.proxy import carry_www_authenticate, keep_upstream_answer
from newproxy.engine.proxyurl import adhoc_group
from newproxy.engine.types import RateLimit
from newproxy.http.bodyfile import BodyFile
from newproxy.http.bodystream import BodyStream
from newproxy.http.errorlog import ErrorLog, error_reason
from newproxy.http.exchange_core import NON_IDEMPOTENT, ExchangeCore
from newproxy.http.invalidheader import invalid_header_message
from newproxy.http.keepalive import KeepalivePool
from newproxy.http.lenienthead import HEAD_DONE, HEAD_MORE, llhttp_head, nginx_head
from newproxy.http.outbox import outbox_of
from newproxy.http.resolver import Resolver, ResolveError
from newproxy.http.spool import Spool
from newproxy.http.upstream_tls import (chain_too_long, client_context, handshake_name, name_matches, release,
                                        save_session)

if TYPE_CHECKING:
    from newproxy.config import ResolverConfig, UpstreamTlsConfig
    from newproxy.engine.proxyurl import Resolve
    from newproxy.engine.types import ProxyPass
    from newproxy.engine.peer import Peer
    from newproxy.engine.upstreams import UpstreamGroup

ClientResponseHead = Callable[["ProxyPass", int, bytes, "list[tuple[bytes, bytes]]", str], "tuple[bytes, str]"]

# proxy_next_upstream http_NNN: the statuses whose answer is dropped for the next peer
# (ngx_http_upstream_next_errors); 403 and 404 do not count as the peer's failure.
_NEXT_STATUS: Final = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504", 403: "http_403",
                404: "http_404", 429: "http_429"}
_LAST_CHUNK: Final = b"0\r\n\r\n"
_CRLF: Final = b"\r\n"
# Bodies up to this size are joined with the head into one write (one syscall); bigger ones are
# written separately so a large upload is not copied.
_JOIN_LIMIT: Final = 65536
# The blank line that ends a response head (nginx's parser also takes bare LFs).
_HEAD_END: Final = re.compile(rb"\n\r?\n")
# A body in a file goes to the peer in pieces of this size, each written while the transport is
# under its high-water mark (64 KiB): at most about two pieces of it are in memory at once.
_PUMP_PIECE: Final = 65536
# A spooled answer (newproxy/http/spool.py) goes to the client in pieces, each written through at
# once, until the client's transport is full (it pauses the exchange) or the turn's share is given:
# what waits in the transport past its high-water mark stays under one piece, and a fast client
# empties the spool as fast as the upstream fills it (one 64 KiB piece per turn made a 32 MiB answer
# ~15% slower).
SPOOL_PIECE: Final = 65536
SPOOL_TURN: Final = 1 << 20
# A read's output at least this large is written through to an HTTP/1 client at once, not at the
# turn's end: libuv reads a busy upstream up to 32 times a turn (256 KiB each), and a client that
# takes less must pause the reading within the turn, not after megabytes held for it.
WRITE_THROUGH: Final = 16384


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


class _InvalidHeader(Exception):
    """A header line nginx's parser refuses and lenient llhttp let through (UpstreamConn.on_header);
    raised from a parser callback, it ends in Exchange.invalid_response."""


def response_parser(conn: UpstreamConn) -> HttpResponseParser:
    """llhttp for an upstream's answers, its header values checked as ngx_http_parse_header_line
    checks them: any byte but NUL, CR and LF (a control byte or DEL is relayed by nginx, refused by
    strict llhttp). So llhttp's value checks are off and on_header refuses a NUL; names and the
    framing headers stay strict: a head llhttp refuses for a line nginx takes (a name with "@", a
    line without a colon...) is read again as nginx reads it (newproxy/http/lenienthead.py)."""
    parser = HttpResponseParser(conn)
    parser.set_dangerous_leniencies(lenient_headers=True)
    return parser


class _Intercepted(Exception):
    """Raised from a parser callback when proxy_intercept_errors takes over the response."""


class UpstreamConn(asyncio.Protocol):
    """One TCP connection to a peer. Parses responses; lives in its group's pool between exchanges."""

    __slots__ = (
        "_loop",
        "_outbox",
        "accel",
        "accel_buffering",
        "accel_rate",
        "chunked",
        "closed",
        "dirty",
        "exchange",
        "has_length",
        "head_stop",
        "headers",
        "nginx_lines",
        "held",
        "idle_since",
        "parser",
        "peer_name",
        "pool",
        "reason",
        "requests",
        "reusable",
        "transport",
        "write_paused",
    )

    def __init__(self, pool: KeepalivePool[UpstreamConn], peer_name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer_name = peer_name
        self.pool = pool
        # httptools' parser; a _Raw (a tunnel, an unframed body) or _Discard once the answer needs no parsing.
        self.parser: Any = response_parser(self)
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
        # A head llhttp refused and nginx's parser takes, re-parsed: its lines as nginx reads them.
        self.nginx_lines: list[tuple[bytes, bytes]] | None = None
        self.accel: bytes | None = None  # the response's first X-Accel-Redirect value
        self.accel_rate: bytes | None = None  # its X-Accel-Limit-Rate value
        self.accel_buffering: bytes | None = None  # its last X-Accel-Buffering value
        self.held = b""  # the request, until the end of the loop's turn (newproxy/http/outbox.py)
        self.write_paused = False  # the transport's buffer is over its high-water mark
        self._loop = loop
        self._outbox = outbox_of(loop)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (checked when compiled)

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
        ex.last = self.pool.now()
        attempt = ex.attempt
        rest = b""
        last_byte = False
        if not ex.header_done:
            # nginx reads the response head into one proxy_buffer_size buffer: what is past it is
            # parsed only once the head is complete (else "upstream sent too big header", below).
            # The buffer's last byte is fed alone, to see a head that ends exactly there.
            room = ex.pp.settings.buffer_size - ex.head_seen
            if attempt is not None:  # $upstream_bytes_received: nginx's reads, at most the buffer
                attempt[6] = min(attempt[6] + len(data), ex.pp.settings.buffer_size)
            if len(data) >= room:
                last_byte = room == 1
                cut = room - 1 if room > 1 else 1
                data, rest = data[:cut], data[cut:]
            # The head as read, for the invalid-header error line (the bytes object itself: a
            # head in one read costs no copy).
            ex.head_bytes = ex.head_bytes + data if ex.head_seen else data
            ex.head_seen += len(data)
        if attempt is not None:  # all this attempt read (``rest`` comes back here): $upstream_bytes_received...
            attempt[9] += len(data)
        fed = data
        while True:
            try:
                self.parser.feed_data(fed)
            except HttpParserUpgrade as exc:  # llhttp stops after a 101 head: the rest is not HTTP
                if self.exchange is ex and not ex.done:
                    ex.switched(self, (fed[exc.args[0]:] if exc.args else b"") + rest)
                return
            except HttpParserCallbackError:
                if ex.retry_status and self.exchange is ex and not ex.done:
                    ex.next_on_status()
                    return
                if ex.intercepted and self.exchange is ex and not ex.done:
                    ex.intercept()
                    return
                if self.head_stop:
                    self.head_stop = False
                    self.parser = response_parser(self)
                elif self.exchange is ex and not ex.done:
                    ex.invalid_response()
                    return
            except HttpParserError:
                if self.exchange is ex and not ex.done:
                    if not ex.header_done and ex.head_seen == len(data) and data[:5] != b"HTTP/"[:len(data[:5])]:
                        ex.http09(self, data + rest)  # not even a status line: nginx relays it as HTTP/0.9
                        return
                    if not ex.header_done and self.nginx_lines is None:
                        # Strict llhttp refused a head line; nginx's parser may take it (lenienthead.py).
                        verdict, lines, end, _ = nginx_head(ex.head_bytes)
                        if verdict == HEAD_MORE:
                            return  # the rest of the head decides (llhttp keeps its error meanwhile)
                        if verdict == HEAD_DONE:
                            self.nginx_lines = lines
                            self.parser = response_parser(self)
                            fed = llhttp_head(ex.head_bytes, lines) + ex.head_bytes[end:]
                            continue
                    ex.invalid_response()
                return
            break
        if self.exchange is ex and not ex.done:
            out = ex.out
            if out:  # everything this read produced, in one write to the client
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                ex.relay(data)
            if ex.complete:
                ex.finish()
        if (last_byte or not ex.header_done) and self.exchange is ex and not ex.done \
                and ex.head_seen >= ex.pp.settings.buffer_size:
            if not ex.header_done:
                ex.invalid_header("upstream sent too big header while reading response header from upstream")
                return
            if last_byte and not ex.complete and not ex.upgraded and ex.buffered:
                # nginx 1.22 quirk (proxy_buffering on): a head filling the buffer exactly leaves
                # its body reader a zero-size first buffer, whose read looks like the end: the
                # client gets the head, then a close ("upstream prematurely closed connection").
                ex.flush()
                ex.premature_close()
                return
        if rest:
            self.data_received(rest)

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
        # The parser calls back this object's bound methods and the transport holds this protocol:
        # cycles that would leave every closed connection (a dozen objects) to the cyclic GC, whose
        # passes cost ~1% of a worker under upstream connection churn. Nothing reads either now.
        self.parser = _Discard()
        self.transport = None

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.exchange
        if ex is not None and ex.upgraded:  # a tunnel: stop reading the client until the peer reads
            ex.sink.tunnel_flow(False)  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.exchange
        if ex is not None:
            ex.last = self._loop.time()  # the peer is reading the request: progress for send_timeout
            if ex.upgraded:
                ex.sink.tunnel_flow(True)  # type: ignore[attr-defined]
            elif ex.pumped >= 0:
                ex.pump()
            elif ex.streaming:
                ex.stream_out()

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        ex = self.exchange
        if ex is None or ex.complete:
            self.dirty = True
        self.reason = b""
        self.headers = []
        self.chunked = False
        self.has_length = False
        self.accel = None
        self.accel_rate = None
        self.accel_buffering = None

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if 0 in value:  # NUL: the one byte nginx refuses in a value (llhttp is lenient there: response_parser);
            raise _InvalidHeader  # an int needle is a memchr, ~8x cheaper than b"\0"
        self.headers.append((name, value))
        n = len(name)
        # Only Content-Length (14) and Transfer-Encoding (17) decide the framing; a length test
        # first keeps the per-header cost to one comparison.
        if n == 14:
            if name == b"Content-Length" or name.lower() == b"content-length":  # (the usual spelling: no lower())
                self.has_length = True
        elif n == 17:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif lower == b"x-accel-buffering":
                self.accel_buffering = value
        elif n == 16 and self.accel is None and name.lower() == b"x-accel-redirect":
            self.accel = value
        elif n == 18 and self.accel_rate is None and name.lower() == b"x-accel-limit-rate":
            self.accel_rate = value

    def on_headers_complete(self) -> None:
        lines = self.nginx_lines
        if lines is not None:  # the head as nginx's parser reads it (names llhttp refuses, kept)
            self.nginx_lines = None
            self.headers = lines
        ex = self.exchange
        if ex is None or ex.complete:
            return
        parser = self.parser
        if parser.should_keep_alive():
            # Kept only at HTTP/1.1 (nginx closes after a 1.0 answer, keep-alive or not). The version
            # is read off the status line while head_bytes starts with this answer's (httptools'
            # get_http_version() formats a str: ~2,300 instructions a response).
            head = ex.head_bytes
            if lines is None and not ex.after_interim and head[:7] == b"HTTP/1.":
                self.reusable = head[7:8] == b"1"
            else:
                self.reusable = parser.get_http_version() == "1.1"
        else:
            self.reusable = False
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

    # -- output ---------------------------------------------------------------------------------
    def hold(self, data: bytes) -> None:
        """Send ``data`` at the end of this turn of the loop, with the other connections' writes."""
        if not self.held:
            self._outbox.hold(self)
        self.held += data

    def send_held(self) -> None:
        data = self.held
        if not data:
            return
        self.held = b""
        transport = self.transport
        if transport is None or self.closed:
            return
        transport.write(data)
        ex = self.exchange
        if ex is not None and transport.get_write_buffer_size():
            ex.send_blocked()

    # -- ownership ------------------------------------------------------------------------------
    def close(self) -> None:
        self.send_held()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.held = b""
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


class _Discard:
    """The parser of an HTTP/0.9 answer to HEAD: nothing of it reaches the client."""

    __slots__ = ()

    def feed_data(self, data: bytes) -> None:
        pass


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
        self.active: set[ExchangeCore] = set()  # HTTP/1 and gRPC exchanges alike
        self.handle: asyncio.TimerHandle | None = None

    def add(self, exchange: ExchangeCore) -> None:
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
        self.now: Callable[[], float] = loop.time  # (bound once: see KeepalivePool.now)
        self.client_response_head = client_response_head
        self.log = log
        self.pools: dict[str, KeepalivePool[UpstreamConn]] = {}
        # grpc_upstream.py's pools of h2 connections, by group name: kept on the client, filled there.
        self.grpc_pools: dict[str, KeepalivePool[Any]] = {}
        self.deadlines = _Deadlines(loop)
        self.connections_opened = 0  # for tests and metrics
        self.resolver: Resolver | None = None  # made for the first proxy_pass URL that names a host
        self._unpooled: KeepalivePool[UpstreamConn] | None = None

    def pool(self, group: UpstreamGroup) -> KeepalivePool[UpstreamConn]:
        pool = self.pools.get(group.name)
        if pool is None:
            pool = self.pools[group.name] = KeepalivePool(group, self.loop)
        return pool

    def unpooled(self, group: UpstreamGroup) -> KeepalivePool[UpstreamConn]:
        """The pool object of connections that are never kept (no ``keepalive``): one, shared, so
        that groups made per request (proxy_pass with variables naming any host) leave nothing."""
        if self._unpooled is None:
            self._unpooled = KeepalivePool(group, self.loop)
        return self._unpooled

    def exchange(self, pp: ProxyPass, sink: ClientSink) -> Exchange:
        """An exchange for ``pp``, reporting back through ``sink``; call ``start()`` on it.

        Two steps, so that the caller holds the exchange before it can answer synchronously.
        """
        return Exchange(self, pp, sink)

    def close_idle(self) -> None:
        for pool in self.pools.values():
            pool.close_all()


class Exchange(ExchangeCore):
    """One proxied request: peer selection, retries, timeouts, relaying the response."""

    # Whether an upstream's X-Accel-Redirect is followed (an auth_request subrequest's is not:
    # newproxy/http/authrequest.py takes the upstream's status as the subrequest's).
    follows_accel = True

    __slots__ = (
        "after_interim",
        "buffered",
        "complete",
        "framing",
        "head_bytes",
        "head_seen",
        "intercepted",
        "interim",
        "is_head",
        "pump_piece",
        "pumped",
        "retry_status",
        "send_now",
        "spool",
        "spool_end",
        "streaming",
        "upgraded",
    )  # and ExchangeCore's

    def __init__(self, client: UpstreamClient, pp: ProxyPass, sink: ClientSink) -> None:
        self._begin(client, pp, sink)
        self.conn = None  # UpstreamConn, while an attempt has one (ExchangeCore.conn: Any)
        self.head_seen = 0  # bytes of the response head read so far (proxy_buffer_size)
        self.head_bytes = b""  # those bytes (from the attempt's first read: head_seen == 0)
        self.complete = False
        self.is_head = pp.request.method == b"HEAD"
        self.framing = ""
        self.interim = False
        self.after_interim = False  # a 1xx came first: head_bytes starts with its status line
        self.upgraded = False  # a 101 switched protocols: a byte tunnel between client and peer
        self.intercepted = 0  # proxy_intercept_errors: the upstream status the error_page replaces
        self.retry_status = 0  # proxy_next_upstream http_NNN: the answer dropped for the next peer
        self.spool: Spool | None = None  # the answer held for a slow client (proxy_buffering on)
        self.buffered = pp.settings.buffering  # this answer's (X-Accel-Buffering may switch it at its head)
        self.spool_end: Callable[[], None] | None = None  # the client's end of the answer, once the spool drains
        self.pumped = -1  # a body in a file being sent: the bytes of it written so far; -1: none
        self.pump_piece = 0  # and of its reads (BodyFile.pieces), the next to send
        self.streaming = False  # a body still arriving from the client is being sent (BodyStream)
        # An HTTP/1 client's "write what this turn held now" (newproxy/http/outbox.py); None: no such wait.
        self.send_now: Callable[[], None] | None = getattr(sink, "send_held", None)

    # -- choosing a peer and a connection ----------------------------------------------------
    def start(self) -> None:
        self._open_states()
        if self.pp.resolve is not None:  # proxy_pass with variables naming a host: look it up first
            self._resolve(self.pp.resolve)
            return
        self._start_group()

    def _start_group(self) -> None:
        group = self.pp.upstream
        if group.keepalive > 0:
            self.pool = self.client.pools.get(group.name) or self.client.pool(group)
        self.selection = group.begin(self.pp.settings.next_upstream_tries, self.pp.balance_key)
        self.started = self.client.now()
        self._next_peer()

    def _resolve(self, target: Resolve) -> None:
        if target.resolver is None:
            self._log(f"no resolver defined to resolve {target.name}")
            self._respond_error(502)
            return
        if self.client.resolver is None:
            self.client.resolver = Resolver(self.client.loop)
        self.connect_task = self.client.loop.create_task(self._resolved(target, target.resolver))

    async def _resolved(self, target: Resolve, config: ResolverConfig) -> None:
        assert self.client.resolver is not None
        try:
            addresses = await self.client.resolver.resolve(target.name, config)
        except asyncio.CancelledError:
            return  # the client went away
        except ResolveError as exc:
            self.connect_task = None
            if not self.done:
                self._log(f"{target.name} could not be resolved {exc}")
                self._respond_error(502)
            return
        self.connect_task = None
        if self.done:
            return
        self.pp.upstream = adhoc_group(tuple(addresses), target.port, target.name)
        self.pp.resolve = None
        self._start_group()

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
                self._timed(3)
                self._send()
                return
        self._connect()

    def _connect(self) -> None:
        connnum.take()  # nginx numbers each upstream connection, failed or not (newproxy/connnum.py)
        self.reused = False
        self.got_bytes = False
        self.connect_task = self.client.loop.create_task(self._connect_coro())

    async def _connect_coro(self) -> None:
        peer = self.peer
        assert peer is not None
        client = self.client
        pool = self.pool if self.pool is not None else client.unpooled(self.pp.upstream)
        tls = self.pp.tls
        # https:// (newproxy/http/upstream_tls.py): the handshake counts in proxy_connect_timeout.
        # proxy_connect_timeout runs on the shared deadline tick (on_deadline cancels this task), as the
        # other timeouts do: asyncio.timeout() costs a libuv timer and a context manager per connect.
        self._arm(self.pp.settings.connect_timeout)
        kwargs: dict[str, Any] = {}
        try:
            if tls is not None:  # (its context was made with the config: newproxy/cli.py build_engine)
                kwargs["ssl"] = client_context(tls)
                kwargs["server_hostname"] = handshake_name(tls, self.pp.tls_name, peer)
            try:
                if peer.path is not None:  # a unix socket peer (nginx's server unix:PATH)
                    _, conn = await client.loop.create_unix_connection(
                        lambda: UpstreamConn(pool, peer.name, client.loop), peer.path,
                        **kwargs
                    )
                else:
                    _, conn = await client.loop.create_connection(
                        lambda: UpstreamConn(pool, peer.name, client.loop), peer.host, peer.port,
                        **kwargs
                    )
            finally:
                if "server_hostname" in kwargs:
                    release(kwargs["server_hostname"])
        except asyncio.CancelledError:
            return  # the client went away, or proxy_connect_timeout passed (on_deadline)
        except ssl.SSLCertVerificationError as verify_error:
            # nginx completes the handshake and then reads the verification's result
            # (ngx_http_upstream_ssl_handshake); Python's ssl stops the handshake: the same line.
            self.connect_task = None
            if not self.done:
                self._failed("error", f"upstream SSL certificate verify error: ({verify_error.verify_code}:"
                                      f"{verify_error.verify_message}) while SSL handshaking to upstream")
            return
        except TimeoutError:  # the kernel's own ETIMEDOUT
            self.connect_task = None
            if not self.done:
                self._failed("timeout", "upstream timed out (110: Connection timed out) while connecting to upstream")
            return
        except OSError as os_error:
            self.connect_task = None
            if not self.done:
                code = os_error.errno if os_error.errno is not None else _errno.ECONNREFUSED
                # A unix socket's connect fails at once, where ngx_event_connect_peer names the
                # peer; a TCP one's is found later (ngx_http_upstream_test_connect), without it.
                where = f" to {peer.name}" if peer.path is not None else ""
                self._failed("error", f"connect(){where} failed ({code}: {os_error.strerror or os_error}) "
                                      "while connecting to upstream")
            return
        except Exception as other:  # noqa: BLE001 - a fault here fails this attempt at once (not at proxy_connect_timeout)
            self.connect_task = None
            if not self.done:
                self._failed("error", f"connect() failed ({other!r}) while connecting to upstream")
            return
        self.connect_task = None
        client.connections_opened += 1
        if self.done:
            conn.close()
            return
        if conn.closed:  # accepted and closed at once (a listener at its backlog limit, say)
            self._failed("error", "upstream prematurely closed connection while connecting to upstream")
            return
        if tls is not None and not self._tls_checked(conn, tls, peer):
            return
        self._attach(conn)
        self._timed(3)
        self._send()

    def _count_answer(self) -> None:
        """Access log, at the end of an attempt whose answer was relayed (in full or not): all it read
        in $upstream_bytes_received, and what came after its head in $upstream_response_length, as
        nginx adds its event pipe's reads at finalize. An answer dropped at its head (an error_page,
        an X-Accel-Redirect, the next peer) keeps the head's count, and 0."""
        attempt = self.attempt
        if attempt is not None and self.header_done and not self.upgraded:  # a tunnel's bytes: not nginx's pipe's
            end = _HEAD_END.search(self.head_bytes)
            attempt[6] = attempt[9]
            attempt[7] = max(attempt[9] - (end.end() if end is not None else len(self.head_bytes)), 0)

    def _tls_checked(self, conn: UpstreamConn, tls: UpstreamTlsConfig, peer: Peer) -> bool:
        """After the handshake, as ngx_http_upstream_ssl_handshake: the chain's depth (the rest of the
        verification was Python's, in the handshake), then the session saved for the peer, then the
        name. False: the connection failed (logged, the next peer tried)."""
        assert conn.transport is not None
        ssl_object = conn.transport.get_extra_info("ssl_object")
        if tls.verify and chain_too_long(ssl_object, tls.verify_depth):
            # Not saved: nginx would save it and fail again on resuming it (a session keeps its
            # verification's result); newproxy fails again with a full handshake.
            conn.abort()
            self._failed("error", "upstream SSL certificate verify error: (20:unable to get local issuer "
                                  "certificate) while SSL handshaking to upstream")
            return False
        if tls.session_reuse:
            save_session(peer, ssl_object)
        if tls.verify and not name_matches(conn.transport.get_extra_info("peercert") or {}, self.pp.tls_name):
            conn.abort()
            self._failed("error", f'upstream SSL certificate does not match "{self.pp.tls_name}" while SSL '
                                  "handshaking to upstream")
            return False
        return True

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
        self.sent = True
        self.head_seen = 0
        if type(body) is BodyStream:
            conn.send_held()
            self.streaming = True
            body.consumer = self.stream_out
            self.stream_out(pp.head)
            return
        if self.attempt is not None:  # $upstream_bytes_sent (a body in a file: as it is pumped)
            self.attempt[10] += len(pp.head) + (len(body.prefix) if type(body) is BodyFile else len(body))
        if type(body) is BodyFile:
            conn.send_held()
            transport.write(pp.head + body.prefix)
            self.pumped = self.pump_piece = 0
            self.pump()
            return
        if not body or len(body) <= _JOIN_LIMIT:
            # Held to the end of the turn (newproxy/http/outbox.py); if the socket then does not
            # take it all, send_blocked() switches to proxy_send_timeout.
            conn.hold(pp.head + cast(bytes, body) if body else pp.head)  # (a file or a stream returned above)
            self.sending = False
            self._arm(pp.settings.read_timeout)
            return
        conn.send_held()
        transport.write(pp.head)
        transport.write(body)
        if transport.get_write_buffer_size():
            self.send_blocked()
        else:
            self.sending = False
            self._arm(pp.settings.read_timeout)

    def pump(self) -> None:
        """Send on a body from its file (client_body_buffer_size exceeded), a piece at a time while
        the peer's socket takes them; the transport's resume_writing calls this again."""
        conn = self.conn
        body = self.pp.body
        if conn is None or conn.transport is None or self.done:
            self.pumped = -1
            return
        assert type(body) is BodyFile
        transport = conn.transport
        sent = self.pumped
        written = 0  # bytes given to the transport, framing included ($upstream_bytes_sent)
        pieces = body.pieces
        try:
            while sent < body.length and not conn.write_paused:
                if pieces is None:
                    piece = out = body.read(sent, _PUMP_PIECE)
                else:  # a chunk per read the client's body came in (at most one read of it in memory)
                    piece = body.read(sent, pieces[self.pump_piece])
                    self.pump_piece += 1
                    out = b"%x\r\n%s\r\n" % (len(piece), piece)
                transport.write(out)
                sent += len(piece)
                written += len(out)
        except OSError as exc:
            self.pumped = -1
            self._failed("error", f"pread() from the request body's temporary file {body.path} failed "
                                  f"({exc.errno}: {exc.strerror})")
            return
        self.pumped = sent
        if sent >= body.length:
            written += len(body.suffix)
        if self.attempt is not None:
            self.attempt[10] += written
        if sent < body.length:
            self.send_blocked()  # proxy_send_timeout until the peer reads on
            return
        self.pumped = -1
        transport.write(body.suffix)
        if transport.get_write_buffer_size():
            self.send_blocked()
        else:
            self.sending = False
            self._arm(self.pp.settings.read_timeout)

    def stream_out(self, head: bytes = b"") -> None:
        """Send what waits of a body the client is still sending (proxy_request_buffering off), as
        nginx's ngx_http_upstream_send_request_body does with each read: while the peer's socket
        takes it; proxy_send_timeout while it does not. While the client's next bytes are awaited
        the peer has no timer (nginx deletes the write timer and sets none to read); once the body
        is all out, proxy_read_timeout."""
        conn = self.conn
        stream = self.pp.body
        if conn is None or conn.transport is None or self.done or not self.streaming:
            return
        assert type(stream) is BodyStream
        transport = conn.transport
        data = head + stream.take() if not conn.write_paused else head
        if data:
            transport.write(data)
            if self.attempt is not None:
                self.attempt[10] += len(data)
        if transport.get_write_buffer_size():
            if not self.sending:
                self.send_blocked()
            return
        if stream.over:
            self._stop_streaming()
            self.sending = False
            self._arm(self.pp.settings.read_timeout)
            return
        self.sending = False
        if self.header_done:  # answered already: the rest of the answer is read under proxy_read_timeout
            self._arm(self.pp.settings.read_timeout)
        else:
            self._cancel_timer()  # waiting on the client (its client_body_timeout runs in the front end)

    def client_closed(self) -> int:
        """The client closed its connection while its body was being streamed: nginx's read of the
        body finds its end (400, ngx_http_do_read_client_request_body), or, with the peer still
        being connected to, its broken-connection check does, as epoll reports the close
        (ngx_http_upstream_check_broken_connection: 499). Logs nginx's line; returns the status."""
        if self.conn is None:
            self.client_aborted()
            return 499
        self._log("client prematurely closed connection while sending request to upstream", "info")
        return 400

    def client_aborted(self, err: OSError | None = None) -> None:
        """The client's connection was closed or reset (or half-closed: nginx does not tell them
        apart) while this exchange runs: nginx's broken-connection check sees it at once through
        epoll's RDHUP (ngx_http_upstream_check_broken_connection), logs this line in the phase the
        upstream is in, then closes the peer's connection and ends the request with 499."""
        self.log_client("epoll_wait() reported that client prematurely closed connection, so upstream "
                        f"connection is closed too{error_reason(err)}")

    def log_client(self, message: str) -> None:
        """An info line about the client, logged as nginx logs it while the upstream works: in the
        phase (c->log->action) the upstream module set last."""
        if self.conn is None:
            action = "connecting to upstream"
        elif not self.got_bytes:  # nginx's action stays until the peer's first read event
            action = "sending request to upstream"
        elif not self.header_done:
            action = "reading response header from upstream"
        else:
            # nginx's event pipe reads the peer. Unbuffered, the action is that of the last event
            # handled: the client's write event, or, once the client stopped taking the answer
            # (paused here), the peer's read events that still come.
            action = "reading upstream" if self.buffered or self.paused else "sending to client"
        self._log(f"{message} while {action}", "info")

    def log_client_write_failed(self, err: OSError) -> None:
        """The client had reset its connection (proxy_ignore_client_abort on): nginx finds it when
        it writes the answer."""
        self._log(f"writev() failed ({err.errno}: {err.strerror}) while sending to client", "info")

    def log_client_sending(self, message: str) -> None:
        """An info line about the client while its answer is written: send_timeout (nginx's downstream
        handlers, whatever the upstream's phase) or, the upstream done, the client's close
        (ngx_http_upstream_finalize_request set the action)."""
        self._log(f"{message} while sending to client", "info")

    def log_sending(self, message: str, level: str = "error") -> None:
        """A line about the client's body logged while it is streamed here (nginx's log action is
        the upstream's then)."""
        self._log(f"{message} while sending request to upstream", level)

    def send_blocked(self) -> None:
        """The request did not all fit in the socket: proxy_send_timeout runs until it is out."""
        self.sending = True
        self._arm(self.pp.proxy.send_timeout)

    def _upstream_url(self, name: str | None = None) -> str:
        # nginx names the peer (or the group: no live upstreams) and the URI sent to it (u->uri).
        head = self.pp.head
        uri = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else ""
        if name is None:
            assert self.peer is not None
            name = self.peer.name
            if self.peer.path is not None:  # ngx_http_log_error_handler's uri_separator for AF_UNIX
                name += ":"
        return f'{"https" if self.pp.tls is not None else "http"}://{name}{uri}'

    # -- the client slower than the upstream (proxy_buffering on) ------------------------------
    def pause(self) -> None:
        """The client (or limit_rate's pacing) takes no more for now. With proxy_buffering on, nginx
        reads on into its buffers and a temporary file (ngx_event_pipe): the answer goes to the spool
        (newproxy/http/spool.py), and the upstream is not held by a slow client. Off, or before the
        answer's head, the upstream waits."""
        if self.buffered and self.header_done and not self.upgraded and not self.done:
            self.paused = True
            if self.spool is None:
                proxy = self.pp.proxy
                self.spool = Spool(proxy.buffers, proxy.max_temp_file_size, proxy.temp_path)
            return
        ExchangeCore.pause(self)

    def resume(self) -> None:
        spool = self.spool
        if spool is None:
            ExchangeCore.resume(self)
            return
        self.paused = False
        if not spool.draining:
            spool.draining = True
            self.client.loop.call_soon(self._drain_spool)

    def relay(self, data: bytes) -> None:
        """One upstream read's output for the client: to it (a large one written through at once,
        WRITE_THROUGH), or after what the spool holds."""
        if self.spool is not None:
            self.spool_add(data)
            return
        self.sink.write(data)
        if len(data) >= WRITE_THROUGH:
            send_now = self.send_now
            if send_now is not None:
                send_now()

    def spool_add(self, data: bytes) -> None:
        """Part of the answer, while the spool holds some: after it. Past the buffers and the file,
        the upstream is read no more until the client has taken half the buffers back."""
        spool = self.spool
        assert spool is not None
        spool.add(data)
        if spool.failure is not None:  # at crit, nginx's level for a temporary file it cannot use (its
            # words name the file; newproxy's files have none). Memory only from now on.
            self._log(spool.failure, "crit")
            spool.failure = None
        if spool.full and not spool.upstream_held:
            conn = self.conn
            if conn is not None and conn.transport is not None:
                spool.upstream_held = True
                conn.transport.pause_reading()

    def _drain_spool(self) -> None:
        """Give the client what the spool holds, while it takes more, a turn's share at a time; once
        empty, the answer flows straight again, and an answer the upstream ended meanwhile ends."""
        spool = self.spool
        if spool is None:
            return
        spool.draining = False
        # Each piece written through at once (send_now): a full transport pauses this exchange
        # before the next piece.
        send_now = self.send_now
        given = 0
        try:
            while not self.paused and given < SPOOL_TURN:
                data = spool.take(SPOOL_PIECE)
                if not data:
                    break
                self.sink.write(data)
                if send_now is not None:
                    send_now()
                given += len(data)
        except OSError as exc:  # the file is gone bad under us: the answer cannot be completed
            self._log(f"pread() from a temporary file failed ({exc.errno}: {exc.strerror})")
            self._drop_spool()
            self.spool_end = None
            if self.done:
                self.sink.upstream_abort()
            else:
                self._abort_client()
            return
        if self.spool is not spool:  # the client went away meanwhile (abort)
            return
        if spool.upstream_held and spool.roomy:
            spool.upstream_held = False
            conn = self.conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()
        if spool.size:
            if not self.paused:  # the turn's share is given: the rest in the next turn
                spool.draining = True
                self.client.loop.call_soon(self._drain_spool)
            return
        self._drop_spool()
        end = self.spool_end
        if end is not None:
            self.spool_end = None
            end()

    def _drop_spool(self) -> None:
        spool = self.spool
        if spool is not None:
            self.spool = None
            spool.close()

    # -- timers ------------------------------------------------------------------------------
    def on_deadline(self, now: float) -> None:
        if self.done:
            self._cancel_timer()
            return
        spool = self.spool
        if spool is not None and spool.upstream_held:
            # As read in ngx_event_pipe_read_upstream (not checked against the binary): nginx keeps no
            # read timer on an upstream it is not reading because its buffers are full.
            self.last = now
            return
        connecting = self.connect_task
        if connecting is not None and self.conn is None:  # proxy_connect_timeout (_connect_coro armed it)
            if now < self.last + self.timeout:
                return  # looked at early: ``sending`` may be left over from a failed attempt
            self.connect_task = None
            connecting.cancel()
            self._failed("timeout", "upstream timed out (110: Connection timed out) while connecting to upstream")
            return
        conn = self.conn
        if self.sending:
            if self.got_bytes or conn is None or conn.transport is None or (
                    self.pumped < 0 and not self.streaming and not conn.transport.get_write_buffer_size()):
                # The request is out (or answered already): proxy_read_timeout applies from now.
                self.sending = False
                self.timeout = self.pp.proxy.read_timeout
                self.last = now
                return
            if now < self.last + self.timeout:
                return
        elif self.upgraded and now < self.last + self.pp.proxy.read_timeout and (
                conn is None or conn.transport is None or not conn.transport.get_write_buffer_size()):
            return  # proxy_send_timeout passed, but nothing waits to be written to the peer
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
                self.after_interim = True
                return
            if self.pp.relay.pass_through:  # the strangler fallback: no tunnel to legacy (a 502)
                raise HttpParserError("101 Switching Protocols through the fallback is not supported")
        if self.attempt is not None:
            self.attempt[1] = status
            self._timed(4)
        if status >= 403 and status in _NEXT_STATUS and self._next_on_status(status):
            self.retry_status = status
            raise _Intercepted  # stops the parser; UpstreamConn.data_received calls next_on_status()
        if status in self.pp.intercept:
            self.intercepted = status
            raise _Intercepted  # stops the parser; UpstreamConn.data_received calls intercept()
        if conn.accel is not None and self.pp.relay.accel_redirect and self.follows_accel:
            # X-Accel-Redirect (after next_upstream and intercept_errors, as nginx): the answer is
            # dropped like an intercepted one, and the engine redirects (newproxy/engine/accel.py).
            self.pp.redirect = (conn.accel, conn.headers)
            self.intercepted = status
            raise _Intercepted
        if conn.accel_rate is not None and self.pp.relay.accel_limit_rate:
            self._accel_rate(conn.accel_rate)
        if conn.accel_buffering is not None and self.pp.proxy.accel_buffering and not self.pp.relay.pass_through:
            # ngx_http_upstream_process_buffering: exactly "yes" or "no" (any case) switches it.
            value = conn.accel_buffering.lower()
            if value == b"yes" or value == b"no":
                self.buffered = value == b"yes"
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

    def _accel_rate(self, value: bytes) -> None:
        """X-Accel-Limit-Rate (ngx_http_upstream_process_limit_rate): the answer's limit_rate from now
        on, replacing the location's (0: none); a value ngx_atoi refuses changes nothing. The head
        is not written yet: the client's pacing (newproxy/http/pacing.py) counts it, as nginx does."""
        paced = getattr(self.sink, "accel_rate", None)
        if paced is None or not value.isdigit():
            return
        rate = int(value)
        current = self.pp.rate
        if not rate:
            self.pp.rate = None
        elif current is not None:  # limit_rate_after and the request's start second stay
            self.pp.rate = RateLimit(rate, current.after, current.start)
        else:
            self.pp.rate = RateLimit(rate, 0, int(time.time()))
        paced(self.pp.rate)

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
        conn.parser = _Raw(self)
        upgraded = getattr(self.sink, "upgraded", None)
        if upgraded is not None and any(len(n) == 7 and n.lower() == b"upgrade" for n, _ in self.pp.request.headers):
            self.flush()  # the 101 head, at once (nginx flushes it when switching)
            self.upgraded = True
            self.sending = False
            # proxy_read_timeout since the last traffic either way; proxy_send_timeout, since then
            # too, while writes to the peer are blocked (on_deadline tells the two apart).
            self.timeout = min(self.pp.proxy.read_timeout, self.pp.proxy.send_timeout)
            upgraded(self.to_upstream)
        # Not switching, nginx's write filter holds the head (postpone_output) until body bytes
        # or the end come: it stays in ``out``, written with the next read, the close or a timeout.
        if rest:
            self.out.append(rest)
            self.flush()

    def http09(self, conn: UpstreamConn, data: bytes) -> None:
        """An answer that does not start with "HTTP/" (ngx_http_proxy_process_status_line: "upstream
        sent no valid HTTP/1.0 header"): nginx takes it as HTTP/0.9, status 200 and no head at all,
        and relays its bytes (none for HEAD) as they come until the upstream closes; the client's
        connection is then kept, without any framing, as nginx keeps it."""
        self._log("upstream sent no valid HTTP/1.0 header while reading response header from upstream")
        if self.attempt is not None:
            self.attempt[1] = 200
            self._timed(4)
        if self.log is not None:
            self.log.status = 9  # nginx logs the HTTP/0.9 answer's $status as "009" (its http_version)
        self.header_done = True
        self.framing = "close"
        self.bodiless = self.is_head
        conn.parser = _Discard() if self.is_head else _Raw(self)
        if not self.is_head:
            self.out.append(data)
            self.flush()

    def to_upstream(self, data: bytes) -> None:
        """A tunnel's client bytes: to the peer as they are; traffic either way resets the idle
        timeout (nginx re-arms the upstream read timer on every pass of process_upgraded)."""
        conn = self.conn
        if conn is not None and conn.transport is not None and not self.done:
            self.last = self.client.loop.time()
            if self.attempt is not None:
                self.attempt[10] += len(data)  # nginx's c->sent counts a tunnel's bytes too
            conn.send_held()
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

    def _end(self) -> UpstreamConn | None:
        """Mark the exchange over: stop its timer and detach its connection (returned, if any)."""
        self.done = True
        self._cancel_timer()
        self.pumped = -1
        self._stop_streaming()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
        return conn

    def finish(self) -> None:
        """The response is complete: pool or close the connection, let the client go on."""
        self._count_answer()
        self._timed(5)
        # Answered before the whole body was sent: the connection cannot be kept.
        unsent = self.pumped >= 0 or self.streaming
        conn = self._end()
        if conn is not None:
            tls = self.pp.tls
            if tls is not None and tls.session_reuse and conn.transport is not None and self.peer is not None:
                save_session(self.peer, conn.transport.get_extra_info("ssl_object"))  # TLSv1.3's tickets
            conn.requests += 1
            pool = self.pool
            if (
                pool is not None
                and conn.reusable
                and not conn.dirty
                and not conn.closed
                and not unsent
                and self.framing != "close"
                and conn.requests < pool.requests
                and conn.transport is not None
                and not conn.transport.get_write_buffer_size()
            ):
                if self.paused or self.spool is not None:
                    conn.transport.resume_reading()
                pool.put(conn)
            else:
                conn.close()
        assert self.selection is not None and self.peer is not None
        self.selection.succeeded(self.peer)
        keepalive = self.pp.keepalive and not self.close_out
        if self.spool is not None:  # the upstream is free; the client still takes what was held
            self.spool_end = lambda: self.sink.upstream_done(keepalive)
            return
        self.sink.upstream_done(keepalive)

    def connection_lost(self, conn: UpstreamConn, exc: Exception | None) -> None:
        if self.done or conn is not self.conn:
            return
        self.conn = None
        if not self.header_done:
            if self.reused and not self.got_bytes and not self.stale_retried and type(self.pp.body) is not BodyStream:
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
        if exc is not None:
            # A reset mid-body: nginx's read of the body fails. With proxy_buffering on the event
            # pipe reads with readv() (ngx_readv_chain), off with recv() (ngx_unix_recv); a
            # tunnel's read is a recv() too, in its own phase.
            code = getattr(exc, "errno", None) or _errno.ECONNRESET
            call = "readv()" if self.buffered and not self.upgraded else "recv()"
            what = "proxying upgraded connection" if self.upgraded else "reading upstream"
            self._log(f"{call} failed ({code}: {getattr(exc, 'strerror', None) or exc}) while {what}")
        else:
            self._log("upstream prematurely closed connection while reading upstream")
        self._abort_client()

    def premature_close(self) -> None:
        self._log("upstream prematurely closed connection while reading upstream")
        self._abort_client()

    def invalid_header(self, message: str) -> None:
        self._failed("invalid_header", message)

    def invalid_response(self) -> None:
        if self.header_done:
            self._log("upstream sent invalid response body")
            self._abort_client()
        else:
            self._failed("invalid_header", invalid_header_message(self.head_bytes))

    # -- failures --------------------------------------------------------------------------
    def _drop_attempt(self) -> None:
        self._stop_streaming()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
            conn.abort()

    def _reset_for_retry(self) -> None:
        self.got_bytes = False
        self.out.clear()

    def _next_on_status(self, status: int) -> bool:
        """ngx_http_upstream_test_next: whether this answer's status sends the request to the next
        peer (only while another try is left; otherwise the answer is relayed as it is)."""
        proxy = self.pp.proxy
        next_upstream = proxy.next_upstream
        if _NEXT_STATUS[status] not in next_upstream:
            return False
        if self.pp.request.method in NON_IDEMPOTENT and "non_idempotent" not in next_upstream:
            return False
        assert self.selection is not None
        return self.selection.tries_left > 1 and not self._out_of_time() and not self._body_gone()

    def _body_gone(self) -> bool:
        """(ExchangeCore's) A body streamed upstream as it arrived (BodyStream) once sent."""
        return self.sent and type(self.pp.body) is BodyStream

    def _stop_streaming(self) -> None:
        """This attempt sends no more of a body still arriving (it ended, or failed)."""
        if self.streaming:
            self.streaming = False
            self.pp.body.consumer = None  # type: ignore[union-attr]

    def next_on_status(self) -> None:
        """Drop the answer (and its connection) and try the next peer, as ngx_http_upstream_next
        does: a failure of the peer, except for 403 and 404."""
        self._timed(5)
        self.attempt = None
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.exchange = None
            conn.close()
        status, self.retry_status = self.retry_status, 0
        assert self.selection is not None and self.peer is not None
        if status in (403, 404):
            self.selection.succeeded(self.peer)
        else:
            self._peer_failed("reading response header from upstream")
        self.fail_status = status
        self.sent = False
        self.header_done = False
        self.got_bytes = False
        self.out.clear()
        self._next_peer()

    def intercept(self) -> None:
        """proxy_intercept_errors with an error_page for the status, or an X-Accel-Redirect: as nginx,
        drop the response unread, and answer with the page or the redirect's target (the sink asks
        Engine.upstream_failed). Its connection is closed, unless the answer has no body at all (a
        HEAD, 204, 304 or Content-Length: 0): nginx's u->keepalive, which keeps it cached."""
        self._timed(5)
        conn = self.conn
        self.conn = None
        if conn is not None and self.pp.relay.upstream_answer:  # $upstream_http_NAME in the page
            keep_upstream_answer(self.pp, self.intercepted, conn.headers)
        if conn is not None:
            carry_www_authenticate(self.pp, self.intercepted, conn.headers)
        if conn is not None:
            conn.exchange = None
            if self._bodiless(conn):
                conn.requests += 1
                conn.parser = response_parser(conn)  # the old one stopped inside the answer
                conn.head_stop = False
                if self.paused and conn.transport is not None:
                    conn.transport.resume_reading()
                self.pool.put(conn)  # type: ignore[union-attr]
            else:
                conn.close()
        self._stop_streaming()
        assert self.selection is not None and self.peer is not None
        self.selection.succeeded(self.peer)
        self._respond_error(self.intercepted)

    def _bodiless(self, conn: UpstreamConn) -> bool:
        """An answer dropped at its head that has no body, on a connection the pool may keep."""
        pool = self.pool
        if pool is None or self.pumped >= 0 or self.streaming or not conn.reusable or conn.dirty or conn.closed \
                or conn.chunked or conn.requests + 1 >= pool.requests or conn.transport is None \
                or conn.transport.get_write_buffer_size():
            return False
        if self.is_head or self.intercepted in (204, 304):
            return True
        return conn.has_length and any(len(n) == 14 and n.lower() == b"content-length" and v.strip() == b"0"
                                       for n, v in conn.headers)

    def _abort_client(self) -> None:
        self._count_answer()
        self._timed(5)
        conn = self._end()
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)  # nginx's finalize frees the peer with state 0
        self.flush()
        self._drop_spool()  # as nginx: an upstream error ends the request; what it held is not sent
        self.sink.upstream_abort()

    def abort(self) -> None:
        """The client went away: drop the upstream side (never pooled: its response is unread)."""
        self._drop_spool()
        if self.done:
            return
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        self._timed(5)  # nginx's finalize: the attempt's response time, and the bytes it had sent
        conn = self._end()
        if conn is not None:
            conn.abort()
        if self.selection is not None and self.peer is not None:
            self.selection.succeeded(self.peer)  # nginx frees the peer (state 0) when finalizing

