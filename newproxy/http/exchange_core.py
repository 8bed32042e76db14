"""What an HTTP/1 exchange (newproxy/http/upstream.py) and a gRPC one (grpc_upstream.py) do alike:
the inactivity timer, access-log timings, handing buffered output and errors to the client sink,
read flow control, the error-log line naming the request and the upstream, and what follows a
failed attempt (the next peer or the error page).

The base of both: it holds the attributes they share (each exchange's ``__slots__`` adds its
own); ``_begin`` sets them to their starting values."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

from newproxy.http.errorlog import request_context

# The methods nginx does not send to another peer once the request went out, unless
# proxy_next_upstream has non_idempotent (ngx_http_upstream_next, NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT).
NON_IDEMPOTENT: Final = frozenset((b"POST", b"LOCK", b"PATCH"))

if TYPE_CHECKING:
    import zlib

    from newproxy.engine.logformat import LogRecord
    from newproxy.engine.peer import Peer
    from newproxy.engine.types import ProxyPass
    from newproxy.engine.upstreams import PeerSelection
    from newproxy.http.keepalive import KeepalivePool
    from newproxy.http.upstream import UpstreamClient


# Compiled (newproxy/native.py), it stays open to grpc_upstream's GrpcExchange, which is not.
@mypyc_attr(allow_interpreted_subclasses=True)
class ExchangeCore:
    __slots__ = (
        "attempt",
        "bodiless",
        "chunked_out",
        "client",
        "close_out",
        "conn",
        "connect_task",
        "deflate",
        "done",
        "fail_status",
        "got_bytes",
        "header_done",
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
        "started",
        "timeout",
    )

    # Typed (not Any) where both exchanges agree: compiled, their fields are then read directly.
    client: UpstreamClient
    sink: Any
    pp: ProxyPass
    conn: Any
    peer: Peer | None
    selection: PeerSelection | None
    connect_task: Any  # asyncio.Task[None] | None
    pool: KeepalivePool[Any] | None  # the group's idle connections
    attempt: list[Any] | None
    log: LogRecord | None
    out: list[bytes]
    paused: bool
    done: bool
    timeout: float
    last: float
    sending: bool
    reused: bool
    stale_retried: bool
    started: float
    got_bytes: bool
    sent: bool
    header_done: bool
    chunked_out: bool
    close_out: bool
    bodiless: bool
    deflate: zlib._Compress | None
    fail_status: int

    def _begin(self, client: UpstreamClient, pp: ProxyPass, sink: Any) -> None:
        """The state both exchanges start from (each ``__init__`` then sets its own)."""
        self.client = client
        self.pp = pp
        self.sink = sink
        self.selection = None  # PeerSelection, once a peer is chosen
        self.peer = None
        self.connect_task = None
        self.pool = None  # the group's idle connections (upstream keepalive); None: none kept
        self.timeout = 0.0
        self.last = 0.0
        self.sending = False
        self.reused = False  # the connection came from the pool
        self.stale_retried = False
        self.started = 0.0  # when the first peer was tried (next_upstream_timeout counts from it)
        self.got_bytes = False  # the peer sent anything since this exchange began on its connection
        self.sent = False
        self.header_done = False
        self.done = False
        self.chunked_out = False
        self.close_out = False
        self.bodiless = False
        self.deflate = None  # gzip: the body is compressed on its way to the client
        self.out = []
        self.fail_status = 502
        self.paused = False
        # Access log (newproxy/engine/logformat.py LogRecord): set by the front end when logging;
        # ``attempt`` is this try's entry: [addr, status, start, connect, header, response].
        self.log = None
        self.attempt = None

    def _open_states(self) -> None:
        """ngx_http_upstream_init_request's r->upstream_states, once per proxied pass: the first pass
        creates the list (empty until a peer is tried: a name that fails to resolve leaves it so); a
        later pass pushes a separator, which the front end does when the states are not empty
        (h1.py, streams.py). Here, the case it leaves: a later pass after a first one that made no
        attempt, whose separator then leads the list ("-, 200" in $upstream_status)."""
        log = self.log
        if log is None:
            return
        states = log.upstream
        if states is None:
            log.upstream = []
        elif not states:
            states.append(None)

    def _arm(self, timeout: float) -> None:
        """Start an inactivity timeout; reads and drained writes move ``last`` (upstream._Deadlines)."""
        self.timeout = timeout
        self.last = self.client.now()
        self.client.deadlines.add(self)

    def on_deadline(self, now: float) -> None:
        """The deadlines' tick (upstream._Deadlines): act if the armed timeout has passed."""
        raise NotImplementedError  # each exchange times out its own way

    def _cancel_timer(self) -> None:
        self.client.deadlines.active.discard(self)

    def _respond_error(self, status: int) -> None:
        self.done = True
        self._cancel_timer()
        self.sink.upstream_error(status)

    def _timed(self, field: int) -> None:
        """Access log: the time since this attempt began, as its connect/header/response time; at
        its end (the response time), what it wrote becomes $upstream_bytes_sent (nginx sets it from
        the connection's count when it moves on or finalizes, so it reads 0 before)."""
        attempt = self.attempt
        if attempt is not None:
            attempt[field] = time.monotonic() - attempt[2]
            if field == 5:
                attempt[8] = attempt[10]

    def flush(self) -> None:
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.relay(data)

    def relay(self, data: bytes) -> None:
        """Output for the client (upstream.Exchange may hold it for a slow client first)."""
        self.sink.write(data)

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
    def _upstream_url(self, name: str | None = None) -> str:
        """nginx's ``upstream: "..."`` field: the scheme, the peer (or ``name``) and (HTTP) the URI
        sent to it."""
        raise NotImplementedError  # each exchange names its own scheme

    def _log(self, message: str, level: str = "error", upstream: str | None = None) -> None:
        """A line with nginx's request context; ``upstream`` replaces the current peer's URL (the
        group's, for "no live upstreams")."""
        log = self.client.log
        ctx: Any = self.pp.context  # the engine's RequestContext (typed object there)
        if ctx is not None:
            log = log.for_context(ctx)  # the location's error_log
        if not log.enabled(level):
            return
        if upstream is None:
            upstream = self._upstream_url() if self.peer is not None else ""
        server = ctx.server.primary_name if ctx is not None else ""
        subrequest = ctx.uri if ctx is not None and ctx.subrequest else None
        log.log(level, message + request_context(self.pp.request, server, upstream, subrequest), self.sink.conn_id)

    def _out_of_time(self) -> bool:
        """proxy_next_upstream_timeout (grpc_...): no next peer once this long has passed since the
        first try (ngx_http_upstream_next: ngx_current_msec - u->peer.start_time >= timeout)."""
        timeout = self.pp.proxy.next_upstream_timeout
        return bool(timeout) and self.client.loop.time() - self.started >= timeout

    def _no_live_peer(self) -> None:
        """Tries are left (an exhausted count ends in _failed) but no peer is usable: nginx's
        NGX_BUSY from ngx_http_upstream_connect, then NGX_HTTP_UPSTREAM_FT_NOLIVE, a 502 whatever
        the previous attempts' statuses were. The round robin's failed get names the group
        (pc->name = peers->name) where a peer would be, with the URI it would have been sent."""
        self._log("no live upstreams while connecting to upstream",
                  upstream=self._upstream_url(self.pp.upstream.name))
        if self.log is not None:  # nginx logs the group's name with a 502
            self.log.upstream_attempt(self.pp.upstream.name)[1] = 502
        self._respond_error(502)

    def _failed(self, kind: str, message: str) -> None:
        """An attempt failed (``kind``: "error", "timeout", "invalid_header") before anything reached
        the client: the next peer, or an error page (ngx_http_upstream_next)."""
        timeout = kind == "timeout"
        if not timeout:  # logged where it happened, before ngx_http_upstream_next frees the peer
            self._log(message)
        self._cancel_timer()
        self._drop_attempt()
        status = 504 if timeout else 502
        if self.attempt is not None:
            self.attempt[1] = status
            self._timed(5)
            self.attempt = None
        self._peer_failed(message.rpartition(" while ")[2])
        if timeout:  # ngx_http_upstream_next writes "upstream timed out" after the free's warning
            self._log(message)
        next_upstream = self.pp.proxy.next_upstream
        assert self.selection is not None
        if kind in next_upstream and not (
            self.sent and self.pp.request.method in NON_IDEMPOTENT and "non_idempotent" not in next_upstream
        ) and self.selection.tries_left > 0 and not self._out_of_time() and not self._body_gone():
            self.fail_status = status
            self.sent = False
            self.header_done = False
            self._reset_for_retry()
            self._next_peer()
        else:
            self._respond_error(status)

    def _drop_attempt(self) -> None:
        """The failed attempt's connection closed, and whatever it still did stopped."""
        raise NotImplementedError

    def _body_gone(self) -> bool:
        """A body sent as it arrived cannot be sent again: nginx tries no other peer once the
        request was sent (u->request_sent && r->request_body_no_buffering)."""
        raise NotImplementedError

    def _reset_for_retry(self) -> None:
        """The failed attempt's state that the next one must not see."""
        raise NotImplementedError

    def _next_peer(self) -> None:
        raise NotImplementedError  # each exchange chooses and reaches its peers its own way

    def _peer_failed(self, phase: str) -> None:
        """Count a failure of the current peer (ngx_http_upstream_next's free with NGX_PEER_FAILED);
        the free warns when it reaches max_fails, in the phase (c->log->action) the failure came in."""
        assert self.selection is not None and self.peer is not None
        if self.selection.failed(self.peer):
            self._log(f"upstream server temporarily disabled while {phase}", "warn")
