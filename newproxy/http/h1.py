"""HTTP/1.1 front end: a raw ``asyncio.Protocol`` driven by the callbacks of newproxy's own
nginx-compatible request parser (newproxy/http/h1parse.py).

No task per request: bytes in ``data_received`` go through the parser; a complete request is
handed to the engine at once (one whose body nginx would not read, at its head: the body is then
read and dropped while and after it is answered, ngx_http_discard_request_body); its answer is written (``Response``) or forwarded by the upstream
client (``ProxyPass``), which reports back through ``upstream_done``/``upstream_error``.

Invariants:
- requests on one connection are answered in order: while one is being proxied (``_busy``), later
  pipelined requests wait in ``_queue``;
- output is collected in ``_out`` and written once at the end of the event loop's turn
  (newproxy/http/outbox.py), so a pipelined batch costs one write; whatever closes or shuts the
  transport sends ``_out`` first;
- once ``_closing`` is set no new request is started; the connection closes after the current one.

This module also enforces what nginx checks before any location is known (ngx_http_request.c):
Host presence and validity, Transfer-Encoding, TRACE/CONNECT, header sizes, invalid header names,
client_max_body_size (through the engine), ``Expect: 100-continue``, and the connection timeouts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast


from newproxy.config import ClientConfig
from newproxy.engine.types import TlsInfo
from newproxy.engine.discard import AUTH_FIRST, DISCARD, READ, STREAM
from newproxy.engine.types import AuthSubrequest, AwaitBody, Delayed, FileResponse, ProxyPass, RateLimit, Request, Response, Result
from newproxy.engine.logformat import LogRecord
from newproxy.http.bodyfile import BodyBuffer, BodyFile, buffered
from newproxy.http.bodystream import BodyStream
from newproxy.http.closing import reset_on_close, shut_writes
from newproxy.http.errorlog import ErrorLog, address_text, error_reason, log_for_request, request_context
from newproxy.http.h1parse import ParseError, RequestParser, UpgradeRequest
from newproxy.http.outbox import outbox_of
from newproxy.http.timerwheel import tick_for, wheel_of
from newproxy.http.headerrules import HeaderRules
from newproxy.http.pacing import DelayWait, PacedWriter
from newproxy.http.sendfile import INLINE_MAX, FileSender, body_length, read_inline
from newproxy.http.sendfile import close as close_file
from newproxy.http.upstream import Exchange
from newproxy.http.grpc_upstream import GrpcExchange
from newproxy.http.authrequest import AuthExchange, AuthSink
from newproxy import connnum, stats
from newproxy.stats import ACTIVE, READING, REQUESTS, WRITING

if TYPE_CHECKING:
    from newproxy.http.accesslog import AccessLogs
    from newproxy.http.upstream import UpstreamClient

PIPELINE_QUEUE_MAX: Final = 32  # stop reading when this many requests wait behind a proxied one

PLAIN_ON_TLS_PORT: Final = 497  # H1Protocol.tls for plain HTTP on an ssl listen
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# how an error page is cut (H1Protocol._parse_error)
_HEAD_ONLY: Final = 1
_BODY_ONLY: Final = 2
# H1Protocol._discard: a request nginx answers without reading its body (newproxy/engine/discard.py)
# is run once the read that brought its head is parsed (_PENDING: a bad chunk in that read is still
# a 400), then its body is read and dropped while and after it is answered (_DROPPING).
_PENDING: Final = 1
_DROPPING: Final = 2
# An auth_request location (discard.AUTH_FIRST): nginx runs the phases at the head and sends the
# subrequest before it reads the body. Such a request is run once the read that brought its head is
# parsed (_EARLY_PENDING), then (_EARLY_RUNNING) its body is left unread while the subrequest runs;
# a refusal is answered at once and the body discarded, an acceptance reads it and goes on (AwaitBody).
# A proxy_pass reading its body unbuffered (discard.STREAM) is run the same way; once it is proxied,
# its body goes upstream as it comes (_EARLY_STREAMING: newproxy/http/bodystream.py).
_EARLY_PENDING: Final = 1
_EARLY_RUNNING: Final = 2
_EARLY_STREAMING: Final = 3
_DISCARD_BUFFER: Final = 4096  # NGX_HTTP_DISCARD_BUFFER_SIZE: nginx's reads of a discarded body
_NEVER: Final = 1 << 62  # a body length no request reaches
_BODY_BUFFER: Final = 16384  # client_body_buffer_size's default, for an engine that names none


def idle_due(client: ClientConfig, requests: int, last: float, head_start: float) -> float:
    """When an idle connection times out: its first head counts from the accept
    (client_header_timeout), a kept-alive one from its last activity (keepalive_timeout)."""
    return head_start + client.header_timeout if requests == 0 else last + client.keepalive_timeout


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request was answered with an error."""


class ConnContext:
    """What every connection of one server shares; built once, so a connection costs no lookups."""

    __slots__ = ("access", "body_plan", "client", "closing", "connections", "discards_body", "draining", "engine",
                 "error_response", "handle", "header_rules", "header_timeout", "keepalive_requests",
                 "keepalive_timeout", "log", "loop", "max_body_size", "now", "outbox", "upstream", "wheel")

    def __init__(self, engine: object, upstream: UpstreamClient, loop: asyncio.AbstractEventLoop, log: ErrorLog) -> None:
        self.engine = engine
        self.handle: Callable[[Request], Result] = engine.handle  # type: ignore[attr-defined]
        self.error_response: Callable[[int, Request | None, bool, tuple[str, int]], Response] = \
            engine.error_response  # type: ignore[attr-defined]
        # Optional hook: the client_max_body_size (bytes, 0 = unlimited) that applies to a request.
        self.max_body_size: Callable[[Request], int | None] | None = getattr(engine, "max_body_size", None)
        # Optional hook: whether the request is answered without its body (nginx discards it).
        self.discards_body: Callable[[Request], bool] | None = getattr(engine, "discards_body", None)
        # Optional hook (HTTP/1): discard.plan for a request whose body is still coming.
        self.body_plan: Callable[[Request], int] | None = getattr(engine, "body_plan", None)
        self.upstream = upstream
        self.loop = loop
        self.now: Callable[[], float] = loop.time  # (bound once: see newproxy/http/keepalive.py)
        self.log = log
        # Timeouts and header limits (client_header_timeout, keepalive_timeout...): the config's, or
        # nginx's defaults for an engine without one.
        config = getattr(getattr(engine, "config", None), "client", None)
        self.client: ClientConfig = config if isinstance(config, ClientConfig) else ClientConfig()
        # client's fields every request reads, copied: native fields here, where a pydantic model's
        # are Python attribute lookups (~300 instructions each from compiled code).
        self.keepalive_requests = self.client.keepalive_requests
        self.keepalive_timeout = self.client.keepalive_timeout
        self.header_timeout = self.client.header_timeout
        # underscores_in_headers / ignore_invalid_headers: None when every server keeps the defaults.
        router = getattr(engine, "router", None)
        self.header_rules: HeaderRules | None = HeaderRules.build(router) if router is not None else None  # type: ignore[type-arg]
        self.connections: set[H1Protocol] = set()
        self.closing = False
        # Set with closing by a worker drained on reload (newproxy/worker.py): a connection accepted
        # as the drain began still gets its request answered (with "Connection: close").
        self.draining = False
        self.access: AccessLogs | None = None  # set by the server when some access_log is configured
        # One per worker rather than a reference in each connection (newproxy/http/outbox.py, timerwheel.py).
        self.outbox = outbox_of(loop)
        self.wheel = wheel_of(loop)

    def next_id(self) -> int:
        return connnum.take()  # one counter for the process, shared by the workers (newproxy/connnum.py)


class _Error:
    """A front-end error answer waiting its turn in the pipeline queue."""

    __slots__ = ("cut", "request", "status")

    def __init__(self, status: int, request: Request | None, cut: int = 0) -> None:
        self.status = status
        self.request = request
        self.cut = cut  # _HEAD_ONLY / _BODY_ONLY (see _parse_error)


class _Tunnel:
    """Stands in for the parser once an upstream switched protocols (``H1Protocol.upgraded``):
    every byte the client sends goes to the peer as it is."""

    __slots__ = ("feed_data",)

    def __init__(self, forward: Callable[[bytes], None]) -> None:
        self.feed_data = forward


class _Hold:
    """Stands in for the parser while a request with ``Connection: upgrade`` is proxied: what the
    client sends meanwhile is kept, to go to the peer if it switches protocols (nginx forwards the
    bytes read past the request), or to be parsed as the next requests if it does not."""

    __slots__ = ("data", "parser")

    def __init__(self, parser: RequestParser, data: bytes) -> None:
        self.parser = parser
        self.data = data

    def feed_data(self, data: bytes) -> None:
        self.data += data


_T = TypeVar("_T")
_PEER_HOSTS: Final[dict[str, str]] = {}
_LOCAL_ADDRS: Final[dict[tuple[str, int], tuple[str, int]]] = {}
_SHARED_MAX: Final = 4096


def _shared(pool: dict[_T, _T], value: _T) -> _T:
    """The one copy of ``value`` connections share (a bounded pool: cleared when full)."""
    kept = pool.get(value)
    if kept is None:
        if len(pool) >= _SHARED_MAX:
            pool.clear()
        kept = pool[value] = value
    return kept


class H1Protocol(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_len",
        "_busy",
        "_client_eof",
        "_closed",
        "_closing",
        "_current",
        "_discard",
        "_discard_close",
        "_discard_keep",
        "_discard_until",
        "_draining",
        "_expect",
        "_read_len",
        "_read_body_at",
        "_early",
        "_early_req",
        "_early_wait",
        "_exchange",
        "_hold",
        "_head_due",
        "_head_begun",
        "_head_start",
        "_in_message",
        "_last",
        "_limit",
        "_linger_until",
        "_lingering",
        "_out",
        "_pacer",
        "_pending",
        "_piped",
        "_prec",
        "_queue",
        "_rec",
        "_release",
        "_req",
        "_reads",
        "_resumed",
        "_head_read",
        "_late_at",
        "_requests",
        "_st",
        "_stopped",
        "_stream",
        "_tick",
        "_v09",
        "_write_paused",
        "_buffered_seen",
        "_peeking",
        "_peeked",
        "_file_req",
        "_head_piped",
        "_gone",
        "listen",
        "client_addr",
        "conn_id",
        "ctx",
        "local_addr",
        "loop",
        "parser",
        "tls",
        "transport",
    )

    def __init__(self, ctx: ConnContext, conn_id: int = 0, number: int = 0,
                 listen: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.listen = listen  # the listen directive's address and port (None: the connection's own)
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        client = ctx.client
        # A RequestParser; while a tunnel or a held upgrade has the connection, a _Tunnel or _Hold
        # (feed_data alone); None once the connection is gone.
        parser = RequestParser(self, client.header_buffer_size, client.large_header_buffer_size,
                               client.large_header_buffers)
        parser.native_callbacks(self)
        self.parser: Any = parser
        # conn_id given: a parked connection resumes (parking.py); number given: taken at accept (tls.py)
        self.conn_id = conn_id or number or ctx.next_id()
        self._resumed = conn_id != 0
        # Set by newproxy/http/tls.py on an ssl listen: the session, or PLAIN_ON_TLS_PORT for plain
        # HTTP sent there (nginx's 497). None on plain listens: one test per request.
        self.tls: TlsInfo | int | None = None
        self.client_addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)
        # The body being read: its parts, or a BodyBuffer when it may outgrow client_body_buffer_size.
        self._body: list[bytes] | BodyBuffer | None = None
        self._body_len = 0
        self._req: Request | None = None
        self._limit = 0
        # A list, not a deque: an empty deque costs ~700 bytes per idle connection, and the queue is
        # short (PIPELINE_QUEUE_MAX) and rarely used, so pop(0) costs nothing that matters.
        self._queue: list[Request | _Error] = []
        self._busy = False
        self._early = 0  # _EARLY_PENDING/_EARLY_RUNNING: an auth_request request run at its head
        self._early_req: Request | None = None
        self._early_wait: AwaitBody | None = None  # its content handler, once the body is all in
        self._stream: BodyStream | None = None  # the body being sent upstream as it comes (_EARLY_STREAMING)
        # What the current request waits on: an Exchange (or GrpcExchange), a limit_req DelayWait,
        # a FileSender; None.
        self._exchange: Any = None
        self._hold: _Hold | None = None  # set while an upgrade request is proxied
        self._current: ProxyPass | None = None
        self._release: Callable[[], None] | None = None  # limit_conn: what the answer in flight holds
        self._pacer: PacedWriter | None = None  # limit_rate of the proxied answer in flight
        self._closing = False
        self._client_eof = False  # the client half-closed while busy: the connection ends after the answers
        self._closed = False
        # Written at the end of the loop's turn (newproxy/http/outbox.py); None: nothing held.
        self._out: list[bytes] | None = None
        self._write_paused = False
        # The transport's buffer as last seen (at a pause or resume of writing): a reset's
        # connection_lost comes with the buffer emptied, so what was not sent is known from this.
        self._buffered_seen = 0
        self._file_req: Request | None = None  # the request a FileSender answers
        self._head_piped = False  # the head being read began in the previous request's read (pipelined)
        # proxy_ignore_client_abort: the client reset its connection while the upstream works; the
        # exchange goes on, and this error is found when the answer is written (nginx's writev()).
        self._gone: OSError | None = None
        # Writing is paused and reading goes on only to see the client's FIN or reset (as nginx
        # sees them through EPOLLRDHUP without reading): bytes that come meanwhile wait here.
        self._peeking = False
        self._peeked = b""
        self._in_message = False
        self._stopped = False
        self._lingering = False
        self._linger_until = 0.0
        self._last = 0.0
        self._tick = 0  # the deadline's tick in the loop's timer wheel (newproxy/http/timerwheel.py); 0: none
        self._requests = 0
        # proxy_request_buffering off: whether a chunked body ended in a later read than its head
        # (nginx then streams it upstream chunked; newproxy/engine/proxy.py upstream_body).
        self._reads = 0
        self._head_read = 0
        self._late_at = _NEVER  # or: a chunked body longer than this was still arriving when nginx connected
        self._draining = False
        # Access log: the record of the request being parsed, and of the one being answered.
        self._prec: LogRecord | None = None
        self._rec: LogRecord | None = None
        self._piped = False  # a request ended in the current read: the next one in it is pipelined
        self._st = 0  # stub_status: 0 waiting, READING, WRITING (newproxy/stats.py)
        self._head_due = False  # the answer's head is not written yet: _write counts its status
        # Bytes of a next request came (empty lines too, which nginx skips but which make it start
        # a request): a timeout then is a timed-out request (reset_timedout_connection).
        self._head_begun = False
        self._v09 = False  # the answer is to an HTTP/0.9 request: its head is not sent (as nginx)
        # Discarding a body (ngx_http_discard_request_body): the state (_PENDING, _DROPPING, 0), the
        # request waiting for the end of its head's read, whether it sends "100 Continue" with a
        # final answer, and once that answer is out: the lingering_time deadline (0: not waiting),
        # whether the connection is kept after the body, and whether it closes after this read.
        self._discard = 0
        self._pending: Request | None = None
        self._expect = False
        self._discard_until = 0.0
        self._discard_keep = False
        self._discard_close = False
        # The length of the read being parsed, kept while a body is discarded or streamed, and (streamed)
        # the body's bytes before it.
        self._read_len = 0
        self._read_body_at = 0

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (checked when compiled)
        self._addresses(transport)
        rules = self.ctx.header_rules
        if rules is not None:  # some server changes underscores_in_headers / ignore_invalid_headers
            tls = self.tls
            sni = tls.server_name if tls is not None and not isinstance(tls, int) else None
            self.parser.header_rules(*rules.for_connection(self.local_addr, sni))
        if self._resumed:
            self._resume_made()
            return
        self.ctx.connections.add(self)
        stats.connection_opened()
        self._last = self._head_start = self.loop.time()  # nginx times the first head from the accept
        self._tick = self.ctx.wheel.add(self, self._last + self.ctx.client.header_timeout)
        if self.ctx.closing and not self.ctx.draining:  # accepted as a graceful stop began: close
            self.shutdown()

    def _addresses(self, transport: asyncio.BaseTransport) -> None:
        # Shared objects where addresses repeat: each is held for as long as the connection lives.
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if peer:
            self.client_addr = (_shared(_PEER_HOSTS, peer[0]), peer[1])
        if sock:
            local = (sock[0], sock[1])
            self.local_addr = _shared(_LOCAL_ADDRS, local)

    # -- parking (newproxy/http/parking.py) ---------------------------------------------------
    def can_park(self, idle_before: float) -> bool:
        """Idle since ``idle_before`` or longer, plain HTTP/1.1, between requests (or before the
        first), with nothing buffered or pending either way: the connection's whole state is then
        its number, request count and timers."""
        transport = self.transport
        return (self._last <= idle_before and self.tls is None and not self._busy and not self._in_message
                and not self._head_begun and not self._closing and not self._closed and not self._lingering
                and not self._discard
                and not self._stopped and not self._queue and not self._out and not self._write_paused
                and self._exchange is None and self._hold is None and self._pacer is None
                and self._release is None and self._rec is None and self._prec is None
                and type(self.parser) is RequestParser and self.parser.idle()
                and transport is not None and not transport.get_write_buffer_size()
                and not transport.is_closing())

    def park(self) -> tuple[ConnContext, int, int, float, float]:
        """What resumes this connection once parked (newproxy/http/parking.py); this object is done
        with: its timer stops here (the lot's runs) and the connection resumes in a new one."""
        self._disarm()
        self._closed = True
        # This object and its parser point at each other, and at the transport: without the cycle
        # broken here, a parked connection's ~2.6 KB lives on until a full garbage collection,
        # which an idle worker may not run for a long time.
        self.parser = None
        self.transport = None
        return self.ctx, self.conn_id, self._requests, self._last, self._head_start

    @classmethod
    def resumed(cls, ctx: ConnContext, conn_id: int, requests: int, last: float, head_start: float,
                listen: tuple[str, int] | None) -> H1Protocol:
        """The protocol of a parked connection the client sent to again (its transport is next)."""
        protocol = cls(ctx, conn_id, listen=listen)
        protocol._requests = requests
        protocol._last = last
        protocol._head_start = head_start
        return protocol

    def _resume_made(self) -> None:
        """connection_made of a resumed connection: not a new accept (stub_status counted it
        once); the timer it had when it was parked."""
        self.ctx.connections.add(self)
        self._tick = self.ctx.wheel.add(self, idle_due(self.ctx.client, self._requests, self._last, self._head_start))
        if self.ctx.closing and not self.ctx.draining:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self._peeking:  # (the answer is not all out: these bytes wait for it, as in nginx)
            self._peeked += data
            self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self._last = self.ctx.now()
        self._piped = False
        self._reads += 1
        if self._lingering or self._stopped:
            return  # discarding what follows an answered error
        if self._discard or self._stream is not None:
            self._read_len = len(data)
            self._read_body_at = self.parser.body_bytes
        if self._discard_until and self._last >= self._discard_until:
            # lingering_time is over: nginx closes with these bytes unread, which resets the connection.
            self._drop_connection(reset=True)
            return
        if not self._in_message:
            self._head_begun = True
            if self._requests:
                self._head_begins()
        try:
            parser = self.parser
            if isinstance(parser, RequestParser):
                parser.feed_data(data)  # (narrowed: compiled, a direct call)
            else:
                parser.feed_data(data)  # a tunnel's or a held upgrade's
            if self._stream is not None and self._body:
                self._stream_read()
            if self._discard == _PENDING:  # its body goes on in later reads: answer now
                self._discard = _DROPPING
                self._dispatch(self._take_pending())
            elif self._early == _EARLY_PENDING:
                self._run_early()
            if self._discard_close:
                self._discard_close = False
                self._close()
        except _Stop:
            pass  # a callback answered the request with an error
        except ParseError as error:  # (each exception its own name: compiled, a name has one type)
            self._parse_error(error)
        except UpgradeRequest as upgrade:
            # The parser pauses after a request with "Connection: upgrade"; nginx ignores the
            # upgrade (unless proxied with the Upgrade header set), so go on with what follows it.
            self._feed_after_upgrade(upgrade.rest)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one connection, not the process
            if not self._stopped:
                self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
                self._bad_request(500 if self._req is not None else 400)

    def _feed_after_upgrade(self, rest: bytes) -> None:
        if self._busy and not self._queue and not self._stopped and type(self._exchange) is Exchange:
            # The upgrade request is being proxied: keep what follows until the peer answers.
            hold = self._hold = _Hold(self.parser, rest)
            self.parser = hold
            return
        while rest and not self._stopped and not self._closed:
            try:
                self.parser.feed_data(rest)
                return
            except _Stop:
                return
            except ParseError as exc:
                self._parse_error(exc)
                return
            except UpgradeRequest as again:
                rest = again.rest

    def eof_received(self) -> bool | None:
        if self._lingering:
            return False
        ex = self._exchange
        if ex is not None and getattr(ex, "upgraded", False):
            # nginx ends a tunnel when either side closes (no half-close): the peer's connection
            # closes, then ours, after what is buffered either way is written.
            ex.finish()  # type: ignore[union-attr]
            return True
        if self._stream is not None:
            return False  # the body's end is missing: as a close (connection_lost)
        if isinstance(ex, Exchange) and not ex.done and not ex.complete and not ex.pp.proxy.ignore_client_abort:
            # nginx's broken-connection check: a FIN (epoll's RDHUP, a half-close as a close) while
            # the upstream works, for the request or its auth_request subrequest, ends the request
            # (499) and the peer's connection; what the client pipelined behind it is dropped.
            self._client_aborted(ex, None)
            return False
        if self._cut_answer(ex, None):
            return False
        # A half-closed client may still read: keep writing the response(s) it asked for.
        if self._busy or self._queue:
            self._closing = self._client_eof = True
            return True
        self._client_left(None)
        return False

    def _log_keepalive_closed(self, reason: str = "") -> None:
        """nginx's keep-alive handler reading the client's close (ngx_http_keepalive_handler)."""
        if self.ctx.log.enabled("info"):
            self.ctx.log.log("info", f"client {self.client_addr[0]} closed keepalive connection{reason}", self.conn_id)

    def _client_left(self, err: OSError | None) -> None:
        """The client closed (``err`` None: a FIN) or reset its connection with no request being
        answered or read past its head: nginx's info line, from the handler that was reading
        (ngx_http_wait_request_handler, ngx_http_keepalive_handler, ngx_http_read_request_header),
        and a head begun is logged with 400, as one that timed out is with 408."""
        if self._lingering or self._stopped or self._req is not None or self._closed \
                or not isinstance(self.parser, RequestParser):
            return
        reason = error_reason(err)
        if self._in_message or self._head_begun:
            self._head_cut("client prematurely closed connection" if err is None else f"recv() failed{reason}", 400)
        elif self._requests:
            self._log_keepalive_closed(reason)
        else:
            self._log_waiting("client closed connection" if err is None else f"recv() failed{reason}")

    def _head_timed_out(self) -> None:
        """client_header_timeout passed with no request read (ngx_http_wait_request_handler,
        ngx_http_read_request_header): nginx's info line, and a head begun is logged with 408. A
        kept-alive connection's keepalive_timeout passes without a line."""
        what = "client timed out (110: Connection timed out)"
        if self._in_message or self._head_begun:
            self._head_cut(what, 408)
        elif not self._requests:
            self._log_waiting(what)

    def _log_waiting(self, what: str) -> None:
        """An info line about a connection that sent nothing: its context names the listening address."""
        if self.ctx.log.enabled("info"):
            server = address_text(self.listen or self.local_addr)
            self.ctx.log.log("info", f"{what} while waiting for request, client: {self.client_addr[0]}, "
                                     f"server: {server}", self.conn_id)

    def _head_cut(self, what: str, status: int) -> None:
        """A head cut short: the lines of the header lines it dropped, ``what`` ended it in the phase
        nginx was reading, and the access log's ``status`` line."""
        parser = self.parser
        if parser.dropped is not None:
            self._log_dropped(parser)
        req, line = self._cut_request()
        if self.ctx.log.enabled("info"):
            if line is None:
                action = "reading client request headers"
            else:
                action = "reading client pipelined request line" if self._head_piped else "reading client request line"
            self._log_cut_line(req, line, f"{what} while {action}")
        if self.ctx.access is not None:
            self._log_cut_head(status, req, line)

    def _log_dropped(self, parser: RequestParser) -> None:
        """nginx's info line for each header line ignore_invalid_headers dropped, in the context of
        the head as read up to it (the Host before it, and the server that Host chose)."""
        dropped = parser.dropped
        parser.dropped = None
        if not self.ctx.log.enabled("info"):
            return
        for text, before in dropped:  # type: ignore[union-attr]
            req = Request(parser.method, parser.target, parser.version, parser.headers[:before], b"",
                          self.client_addr, self.local_addr, "http", False)
            self._log_cut_line(req, None, f'client sent invalid header line: "{text.decode("latin-1")}" '
                                          "while reading client request headers")

    def _log_cut_line(self, req: Request, line: bytes | None, message: str) -> None:
        """An info line about a head cut short, with nginx's context: the server its request line's
        host or its Host header chose (else the address's default), what arrived of the request line,
        the Host read."""
        log_context = getattr(self.ctx.engine, "log_context", None)
        ctx = log_context(req, self.local_addr)[0] if log_context is not None else None
        log = self.ctx.log.for_context(ctx) if ctx is not None else self.ctx.log
        if ctx is None or line is not None:
            server = ctx.server.primary_name if ctx is not None else ""
            text = line.decode("latin-1") if line else ""
            message += f", client: {self.client_addr[0]}, server: {server}" + (f', request: "{text}"' if text else "")
        else:
            message += request_context(req, ctx.server.primary_name)
        log.log("info", message, self.conn_id)

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and not self._busy and not self._queue:
            self._client_left(exc)  # a reset (a FIN came by eof_received; our own close has no exc)
        self._closed = True
        self.ctx.connections.discard(self)
        c = stats.C
        c[ACTIVE] -= 1
        if self._st:
            c[self._st] -= 1
            self._st = 0
        self._disarm()
        ex = self._exchange
        if isinstance(exc, OSError) and type(ex) is Exchange and not ex.done and not ex.complete \
                and self._stream is None and ex.pp.proxy.ignore_client_abort:
            # nginx does not watch the client then: the answer is read, the reset found on writing it.
            self._gone = exc
            self._queue.clear()
            self._unpace()
            return
        if ex is not None:
            self._exchange = None
            if self._stream is not None and type(ex) is Exchange and self._rec is not None:
                self._rec.status = ex.client_closed()
                self._count_streamed()
            elif isinstance(exc, OSError) and isinstance(ex, Exchange) and not ex.done and not ex.complete:
                self._client_aborted(ex, exc)  # a reset (a FIN came by eof_received; our own close has no exc)
            elif isinstance(exc, OSError):
                self._cut_answer(ex, exc)
            ex.abort()  # (done already: a second call does nothing)
        self._stream = None
        self._queue.clear()
        self._unpace()
        self._released()
        if self._rec is not None:
            if not self._rec.status:
                self._rec.status = 499  # nginx's "client closed request"
            self._logged()

    def _client_aborted(self, ex: Exchange, err: OSError | None) -> None:
        """The client closed or reset its connection while ``ex`` runs: nginx's line, the peer's
        connection closed, 499 in the log (ngx_http_terminate_request keeps an answer's status once
        part of it went out)."""
        self._exchange = None
        ex.client_aborted(err)
        ex.abort()
        rec = self._rec
        self._drop_unsent(rec, 0, err is not None)
        if rec is not None and (not rec.status or not rec.sent):
            rec.status = 499

    def _send_timed_out(self) -> bool:
        """send_timeout passed with the client taking nothing of an answer (the upstream's work, if
        any, ends too); the connection is reset with reset_timedout_connection. False: not such an
        answer (the caller closes as for any timeout)."""
        return self._end_answer(self._exchange, "client timed out (110: Connection timed out)", False,
                                self.ctx.client.reset_timedout_connection)

    def _cut_answer(self, ex: object, err: OSError | None) -> bool:
        """nginx's ngx_http_test_reading: once an answer is all made but not all written (a file, or
        a proxied answer the upstream has finished, held in nginx's temporary file), a FIN or a reset
        from the client ends it. False: not such an answer."""
        if type(ex) is Exchange and ex.spool_end is None:
            return False  # the upstream still works: its own broken-connection check (_client_aborted)
        return self._end_answer(ex, f"client prematurely closed connection{error_reason(err)}", err is not None,
                                False)

    def _end_answer(self, ex: object, what: str, reset: bool, reset_timed_out: bool) -> bool:
        """End the answer ``ex`` writes (a file, or a proxied one): nginx's info line ``what`` "while
        sending response to client" (a file) or "while sending to client" (proxied: the upstream
        module's action), the connection closed with what is unsent dropped, the answer's status kept
        and its bytes counted as far as they went. ``reset``: the client reset the connection (the
        buffer is gone already). False: ``ex`` is not such an answer."""
        if type(ex) is FileSender:
            unsent = ex.unsent()  # counted as sent when the head was written
            log_for_request(self.ctx.log, self._file_req, "info", f"{what} while sending response to client",
                            self.conn_id)
        elif type(ex) is Exchange:
            unsent = 0
            ex.log_client_sending(what)
        else:
            return False
        self._exchange = None
        ex.abort()
        if reset_timed_out and self.transport is not None:
            reset_on_close(self.transport)
        self._drop_unsent(self._rec, unsent, reset)
        return True

    def _drop_unsent(self, rec: LogRecord | None, unsent: int, reset: bool) -> None:
        """The client is gone: what is still buffered for it is dropped, as nginx's close drops what
        the kernel did not take, and the log counts only what went (nginx's c->sent)."""
        transport = self.transport
        if transport is not None:
            # At a FIN the buffer is known; a reset's connection_lost sees it emptied already: what
            # it held when writing last paused, if it still was, is what the kernel did not take.
            if not reset:
                unsent += transport.get_write_buffer_size()
            elif self._write_paused:
                unsent += self._buffered_seen
        if self._out:
            unsent += sum(len(data) for data in self._out)
            self._out = None
        if rec is not None:
            rec.sent = max(rec.sent - unsent, 0)
        self._queue.clear()  # what was pipelined behind is not read
        self._closed = True
        if transport is not None:
            if not reset:
                shut_writes(transport)
            transport.abort()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.transport is not None:
            self._buffered_seen = self.transport.get_write_buffer_size()
        if self._busy and self._stream is None:
            # send_timeout from now (the connection's timer may be set for later); a body being
            # streamed keeps client_body_timeout from its last read.
            self._last = self.loop.time()
            due = self._last + self.ctx.client.send_timeout
            if not self._tick or self._tick > tick_for(due):
                self._rearm(due)
        if self._exchange is not None:
            self._exchange.pause()
        if self.transport is not None and not self._discard:
            # (A body being discarded is still read: nginx drops it while the answer waits, so a
            # client that sends all of it before reading is not stuck.)
            if self._stream is None and not self._in_message and type(self.parser) is RequestParser:
                self._peeking = True  # no request being read: watch for the client's FIN or reset
            else:
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None:
            self._buffered_seen = self.transport.get_write_buffer_size()
        self._last = self.loop.time()
        if self._exchange is not None:
            self._exchange.resume()
        if self._peeking:
            self._peeking = False
            peeked = self._peeked
            if peeked:  # read before what reading on brings
                self._peeked = b""
                self.data_received(peeked)
        if self.transport is not None and not self._closed and len(self._queue) < PIPELINE_QUEUE_MAX \
                and not (self._stream is not None and self._stream.held):
            self.transport.resume_reading()

    # -- parser callbacks (newproxy/http/h1parse.py) ----------------------------------------
    def on_message_begin(self) -> None:
        if self._discard_close:
            # Bytes of another request after a discarded body whose answer said close: nginx
            # lingers (r->header_in->pos < last) instead of closing at once.
            self._discard_close = False
            self._stopped = True
            self._linger()
            raise _Stop
        self._in_message = True
        self._head_piped = self._piped
        c = stats.C
        c[REQUESTS] += 1
        if not self._st:  # a pipelined request behind one being written stays counted as writing
            c[READING] += 1
            self._st = READING
        self._body = None
        self._body_len = 0
        if self.ctx.access is not None:
            rec = self._prec = LogRecord(self.conn_id, self.client_addr, self.local_addr)
            rec.pipe = self._piped  # nginx's r->pipeline: read from the previous request's buffer

    def on_headers_complete(self) -> None:
        # (typed: compiled, its fields are then read directly; a parser callback, so it is one)
        parser: RequestParser = self.parser
        if parser.dropped is not None:
            self._log_dropped(parser)
        version = parser.version
        self._requests += 1
        if self._st == READING:
            c = stats.C
            c[READING] -= 1
            c[WRITING] += 1
            self._st = WRITING
        # A stopping worker answers "Connection: close", so the client does not reuse a connection
        # the worker is about to close (that race would reset its next request).
        ctx = self.ctx
        keepalive = parser.keepalive and self._requests < ctx.keepalive_requests \
            and ctx.keepalive_timeout > 0 and not ctx.closing
        req = Request(
            parser.method, parser.target, version, parser.headers, b"",
            self.client_addr, self.local_addr, "http", keepalive,
        )
        self._req = req
        rec = self._prec
        if rec is not None:
            req.log = rec
            rec.request = req
            rec.conn_requests = self._requests
            # The request line and header block as received (dropped header lines too, as nginx
            # counts them).
            rec.request_length = parser.head_length
        # An ssl listen: https and $ssl_* before the checks (their 400s log them too); plain HTTP
        # there is 497 unless a check failed first (nginx's order).
        status = self._check(req, version) if self.tls is None else self._tls_request(req, version)
        if status:
            self._reject(status, req)
            raise _Stop
        # client_max_body_size: checked against Content-Length now, against a chunked body as
        # it arrives (nginx does the same), through the engine since the location decides it.
        limit = 0
        cl = parser.content_length
        # A body all in with its head and no Expect is answered alike read or discarded (or run at
        # the head): the hook (a few µs) only runs when it can matter.
        plan = READ
        if parser.te is not None or cl is not None and parser.length > 0 and (
                parser.expect or parser.unparsed() < parser.length):
            plan = self._body_plan(req)
            if plan == DISCARD:
                self._discard_body(req)
                return
        if (cl is not None or parser.te is not None) and self.ctx.max_body_size is not None:
            limit = self.ctx.max_body_size(req) or 0
            if limit and cl is not None and parser.length > limit:
                if not self._busy and not self._queue:
                    self._discard_body(req)  # the engine answers 413 (its error_page), nginx discards
                    return
                self._reject(413, req)
                raise _Stop
        self._limit = limit
        self._late_at = _NEVER
        buffer = req.body_buffer  # set by max_body_size: the body's client_body_buffer_size
        if buffer is not None:
            self._body_buffer(parser, buffer)
        self._head_read = self._reads
        if plan == AUTH_FIRST or plan == STREAM:
            # "100 Continue" only once the content handler reads the body (ngx_http_test_expect).
            if plan == STREAM:
                req.body_stream = BodyStream(parser.length if cl is not None else 0, parser.te is not None,
                                             buffer[0] if buffer is not None else _BODY_BUFFER)
            self._early = _EARLY_PENDING
            self._early_req = req
            self._expect = parser.expect and version == b"1.1"
            return
        if parser.expect and version == b"1.1" and not self._busy and not self._queue:
            self._write(_CONTINUE)
            if rec is not None:
                rec.sent += len(_CONTINUE)

    def on_body(self, data: bytes) -> None:
        if self._discard:
            return  # dropped, as nginx's discard filter does
        body = self._body
        if body is None:
            self._body = [data]
        elif isinstance(body, list):
            body.append(data)
        else:
            self._to_buffer(body, data)
        self._body_len += len(data)
        if self._limit and self._body_len > self._limit:
            self._reject(413, self._req)
            raise _Stop

    def _body_buffer(self, parser: RequestParser, buffer: tuple[int, str | None, bool]) -> None:
        """How nginx would read this body (ngx_http_read_client_request_body): what came in its
        header buffer with the head (client_header_buffer_size, or a large one for a longer head),
        then one client_body_buffer_size buffer. Buffered, a chunked body past them, or a
        Content-Length one whose rest is 1.25 buffers or more, goes to a file (with nginx's warning;
        unbuffered, nginx never writes one, newproxy does, silently, so as not to hold it in memory).
        Unbuffered, a chunked body still arriving past them when nginx connects goes upstream chunked."""
        size, directory, warn = buffer  # warn: read buffered (proxy_request_buffering on)
        client = self.ctx.client
        head = parser.head_length
        room = (client.header_buffer_size if head <= client.header_buffer_size else client.large_header_buffer_size) - head
        preread = max(0, min(parser.unparsed(), room))
        if parser.te is not None:
            self._late_at = preread + size
            self._body = BodyBuffer(preread + size, directory, warn)
        elif parser.length - min(preread, parser.length) >= size + (size >> 2):
            self._body = BodyBuffer(size, directory, warn)

    def _to_buffer(self, buffer: BodyBuffer, data: bytes) -> None:
        """Into the body's buffer or its file; one that cannot be made or written is a 500, as
        nginx answers."""
        req = self._req if self._req is not None else self._early_req
        if not buffered(buffer, data, False, self.ctx.log, req, self.conn_id):
            self._reject(500, req)
            raise _Stop

    def on_chunk(self, size: int) -> None:
        """A chunk's data begins: over client_max_body_size with it, 413 at once (nginx's check)."""
        if self._limit and self._body_len + size > self._limit:
            self._body_error(f"client intended to send too large chunked body: {self._body_len}+{size} bytes",
                             self._req)
            self._reject(413, self._req)
            raise _Stop

    def _body_error(self, message: str, req: Request | None) -> None:
        """nginx's [error] line about a body it refuses (ngx_http_request_body_chunked_filter): with
        the upstream's context while the body is streamed to it."""
        ex = self._exchange
        if self._stream is not None and type(ex) is Exchange:
            ex.log_sending(message)
        elif req is not None:
            log_for_request(self.ctx.log, req, "error", message, self.conn_id)

    def on_message_complete(self) -> None:
        if self._discard:
            self._discarded()
            return
        if self._early:
            if self._early == _EARLY_STREAMING:
                self._stream_body_in()
                return
            if self._early == _EARLY_RUNNING:
                self._early_body_in()
                return
            self._early = 0  # the whole body came with the head: run as any request
            if self._early_req is not None:
                self._early_req.body_stream = None  # and read whole (as nginx: nothing left to stream)
            self._early_req = None
        self._message_over()
        req = self._req
        self._req = None
        if req is None or self._closed:
            return
        self._attach_body(req)
        if self._busy or self._queue:
            self._queue.append(req)
            if len(self._queue) >= PIPELINE_QUEUE_MAX and self.transport is not None:
                self.transport.pause_reading()
            return
        self._dispatch(req)

    def _attach_body(self, req: Request) -> None:
        """The body read for ``req``, and whether a chunked one ended in a later read than its head."""
        body = self._body
        if body is not None:
            if type(body) is list:
                req.body = body[0] if len(body) == 1 else b"".join(body)
            else:
                req.body = body.take()  # type: ignore[union-attr]
            self._body = None
        if self.parser.te is not None and (self._reads != self._head_read or self._body_len > self._late_at):
            req.chunked_late = True

    # -- discarded bodies (ngx_http_discard_request_body) -----------------------------------------
    def _body_plan(self, req: Request) -> int:
        """What nginx does with the body still coming (discard.plan): DISCARD (answered without it:
        run once this read is parsed, the body dropped as it comes), AUTH_FIRST (run at the head,
        the body read when the content handler wants it) or READ (whole, then run). Not behind a
        request in flight (it would answer out of turn): that one reads its body whole first."""
        hook = self.ctx.body_plan
        if hook is None or self._busy or self._queue:
            return READ
        return hook(req)

    def _discard_body(self, req: Request) -> None:
        self._discard = _PENDING
        self._pending = req
        self._req = None
        self._limit = 0  # nginx checks no client_max_body_size while discarding
        # The "100 Continue" goes with the final answer (ngx_http_test_expect), unless that is an
        # error page: decided in _answer.
        self._expect = self.parser.expect and req.version == b"1.1"

    def _run_early(self) -> None:
        """Run an AUTH_FIRST request's phases now, its body unread meanwhile (nginx reads nothing of
        it before the content handler asks)."""
        req = self._early_req
        assert req is not None
        self._early = _EARLY_RUNNING
        req.body_pending = True
        if self.transport is not None:
            self.transport.pause_reading()
        self._dispatch(req)

    def _early_answered(self) -> None:
        """An AUTH_FIRST request was answered without its body (a refusal, an error page, a file):
        nginx discards the body (ngx_http_discard_request_body), so the rest of it is dropped."""
        req = self._early_req
        assert req is not None
        req.body_pending = False
        self._early = 0
        self._early_req = None
        self._req = None
        self._discard = _DROPPING
        self._body = None
        self._body_len = 0
        self._limit = 0  # nginx checks no client_max_body_size while discarding
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def _await_body(self, wait: AwaitBody) -> None:
        """The content handler reads the body: read it, as nginx's ngx_http_read_client_request_body
        does from here (with its "100 Continue" and client_body_timeout), then answer."""
        self._busy = True
        self._early_wait = wait
        self._read_body_now()

    def _read_body_now(self) -> None:
        """The content handler reads the body of a request run at its head: its "100 Continue"
        (ngx_http_test_expect), client_body_timeout from now, and the client read again (paused
        by _run_early)."""
        if self._expect:
            self._expect = False
            self._write(_CONTINUE)
        self._last = self.loop.time()
        self._rearm(self._last + self.ctx.client.body_timeout)
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def _early_body_in(self) -> None:
        """The body of a request run at its head is all in: the content handler goes on (or will, if
        the subrequest is still running: it then finds the body there)."""
        self._message_over()
        req = self._early_req
        assert req is not None
        self._early = 0
        self._early_req = None
        self._req = None
        self._attach_body(req)
        req.body_pending = False
        wait = self._early_wait
        if wait is not None:
            self._early_wait = None
            self._continue(req, wait.resume)

    # -- a body sent upstream as it comes (proxy_request_buffering off: discard.STREAM) ----------------
    def _start_stream(self, req: Request) -> None:
        """The request run at its head is proxied with its body unbuffered: what came of the body
        with the head goes with the request's head, the rest as it is read (nginx's
        ngx_http_read_client_request_body with r->request_body_no_buffering, "100 Continue" first)."""
        stream = req.body_stream
        assert stream is not None
        req.body_pending = False
        self._stream = stream
        self._early = _EARLY_STREAMING
        stream.flow = self._stream_flow
        self._read_body_now()  # (the stream may pause the client again below)
        body = self._body
        self._body = None
        if body:
            if isinstance(body, list):
                stream.add(body[0] if len(body) == 1 else b"".join(body))
            else:
                kept = body.take()  # a BodyBuffer: one long first read
                stream.add(kept.read(0, len(kept)) if isinstance(kept, BodyFile) else kept)

    def _stream_read(self) -> None:
        """The body bytes of one read go upstream together (a chunked body: as one chunk)."""
        body = self._body
        self._body = None
        assert self._stream is not None and type(body) is list
        self._stream.add(body[0] if len(body) == 1 else b"".join(body))

    def _stream_flow(self, on: bool) -> None:
        """The stream's switch: the peer takes no more of the body for now (or again)."""
        transport = self.transport
        if transport is None or self._closed:
            return
        if on:
            self._last = self.loop.time()  # client_body_timeout counts from here again
            if not self._write_paused:
                transport.resume_reading()
        else:
            transport.pause_reading()

    def _stream_over(self) -> BodyStream:
        """The body is read no more for the stream (returned): all in, or not wanted any more."""
        stream = self._stream
        assert stream is not None
        self._stream = None
        stream.flow = None
        self._early = 0
        self._early_req = None
        self._req = None
        return stream

    def _stream_body_in(self) -> None:
        """A streamed body's last byte is read: it ends upstream; the answer goes on."""
        if self._body:
            self._stream_read()
        stream = self._stream_over()
        self._message_over()
        stream.end()

    def _stream_answered(self) -> None:
        """The answer is over while the body still comes: nginx closes the connection after it
        (r->reading_body: no keep-alive, a lingering close that reads and drops the rest)."""
        self._stream_over()
        self._linger()

    def _stream_failed(self, status: int, req: Request | None) -> None:
        """The streamed body broke (past client_max_body_size, a bad chunk): nginx finalizes the
        upstream with that status (ngx_http_upstream_send_request), closing the peer, and answers
        its page when nothing was answered yet; then closes."""
        self._stream_over()
        self._stopped = True
        self._in_message = False
        ex = self._exchange
        self._exchange = None
        self._current = None
        self._busy = False
        self._queue.clear()
        if ex is not None:
            ex.abort()
        self._unpace()
        self._released()
        if self.transport is not None:
            self.transport.pause_reading()
        self._count_streamed(whole_read=True)
        if self._head_due:
            self._send_error_and_close(status, req)
        else:
            self._logged()
            self._close()

    def _count_streamed(self, whole_read: bool = False) -> None:
        """A streamed body that will not be read to its end: $request_length counts what came of it
        (``whole_read``: all of the read being parsed, as nginx counts a read it refuses)."""
        rec = self._prec
        if rec is not None:
            self._prec = None
            rec.body_length += self._read_body_at + self._read_len if whole_read else self.parser.body_bytes

    def _take_pending(self) -> Request:
        req = self._pending
        assert req is not None
        self._pending = None
        return req

    def _message_over(self) -> LogRecord | None:
        """A request's last byte is read: no message in progress; its log record (returned) gets
        its byte count."""
        self._in_message = False
        self._head_begun = False
        rec = self._prec
        if rec is not None:
            self._prec = None
            rec.body_length += self.parser.body_bytes  # as received: chunk framing included
            self._piped = True
        return rec

    def _discarded(self) -> None:
        """The body of a request answered without it is all in (and dropped)."""
        rec = self._message_over()
        if self._discard == _PENDING:  # the whole body came with the head: answered as any request
            self._discard = 0
            self._dispatch(self._take_pending())
            return
        self._discard = 0
        if rec is not None and self.parser.te is not None:
            # nginx reads a chunked body it discards past its end, moves the next request's bytes
            # back to its header buffer and takes them off $request_length, which never counted
            # them (ngx_http_copy_pipelined_header): the head's length less those bytes.
            # It reads 4096 bytes at a time (NGX_HTTP_DISCARD_BUFFER_SIZE): what the read that ended
            # the body holds past it.
            after = self.parser.unparsed()
            ended_at = self._read_len - after
            rec.request_length -= min(after, -ended_at % _DISCARD_BUFFER)
        if self._busy or not self._discard_until:
            return  # the answer is still going out: the connection goes on once it is over
        self._discard_until = 0.0
        if self._rec is not None:
            self._logged()  # nginx logs the request when its body is discarded (the last reference)
        if not self._discard_keep or self._closing:
            self._discard_close = True  # once this read is parsed (lingering if a request follows)
            return
        self._last = self.loop.time()
        self._idle()
        self._rearm(self._last + self.ctx.client.keepalive_timeout)

    def _discard_wait(self, keepalive: bool) -> None:
        """The answer is out before its request's body: nginx reads and drops the rest, waiting up
        to lingering_timeout for each read and lingering_time in all (ngx_http_finalize_connection,
        ngx_http_discarded_request_body_handler), then keeps the connection or closes it."""
        client = self.ctx.client
        now = self._last = self.loop.time()
        self._discard_keep = keepalive
        # nginx counts lingering_time in whole seconds of its clock (ngx_time()): the deadline is the
        # current second plus lingering_time, and a read after it resets the connection.
        wall = time.time()
        self._discard_until = now + (math.floor(wall) + client.lingering_time - wall)
        self._rearm(self._discard_due(now))

    def _discard_due(self, last: float) -> float:
        """When the wait for more of a discarded body ends: lingering_timeout after the last read,
        or the seconds left of lingering_time, rounded up as nginx's whole-second timer is."""
        left = self._discard_until - last
        return last + min(self.ctx.client.lingering_timeout, math.ceil(left) if left > 0 else 0.0)

    def _drop_connection(self, reset: bool) -> None:
        """A discarded body did not come in time: close (reset: nginx's RST)."""
        self._discard_until = 0.0
        self._discard = 0
        if self._rec is not None:
            self._logged()
        if self._out:
            self._flush()
        self._closed = True
        transport = self.transport
        if transport is None:
            return
        if reset:
            reset_on_close(transport)
            transport.abort()
        else:
            transport.close()

    def _rearm(self, due: float) -> None:
        wheel = self.ctx.wheel
        if self._tick:
            wheel.cancel(self, self._tick)
        self._tick = wheel.add(self, due)

    def _disarm(self) -> None:
        if self._tick:
            self.ctx.wheel.cancel(self, self._tick)
            self._tick = 0

    # -- front-end checks (before any location is known) --------------------------------------
    def _check(self, req: Request, version: bytes | None) -> int:
        """The status nginx answers once the head is read, before finding a location, or 0
        (ngx_http_process_request_header; the parser refused what nginx refuses while reading:
        request line, header lines, duplicate unique headers, an invalid Host, the sizes)."""
        parser: RequestParser = self.parser
        if parser.host is None and version == b"1.1":
            return 400
        cl = parser.content_length
        if parser.length < 0:  # Content-Length not a number nginx reads (ngx_atoof)
            return 400
        te = parser.te
        if te is not None:
            if version != b"1.1":
                return 400
            if len(te) != 7 or te.lower() != b"chunked":
                return 501
            if cl is not None:
                return 400
        method = req.method
        if method == b"TRACE":
            return 405
        if method == b"CONNECT":
            return 400  # nginx 1.22 cannot parse an authority-form target
        return 0

    def _tls_request(self, req: Request, version: bytes | None) -> int:
        """An ssl listen: https and the session for $ssl_*, or 497 for plain HTTP (nginx checks it
        once the header is read and Host chose the server, in ngx_http_process_request)."""
        tls = self.tls
        if not isinstance(tls, TlsInfo):  # PLAIN_ON_TLS_PORT
            return self._check(req, version) or 497
        req.scheme = "https"
        req.tls = tls
        return self._check(req, version)

    def _reject(self, status: int, req: Request | None) -> None:
        """Answer a request nginx refuses before reading its body, then close (lingering)."""
        if self._stream is not None:
            self._stream_failed(status, req)
            return
        self._stopped = True
        self._in_message = False
        self._req = None
        if self.transport is not None:
            self.transport.pause_reading()
        if self._busy or self._queue:
            self._queue.append(_Error(status, req))
        else:
            self._send_error_and_close(status, req)

    def _bad_request(self, status: int) -> None:
        if self._closing or self._closed:
            return
        self._reject(status, self._req)

    def _parse_error(self, exc: ParseError) -> None:
        """A request nginx refuses while reading its head (or chunked body): its error page, cut
        as nginx cuts it: the body only for an HTTP/0.9 request line (nginx sends no head to 0.9,
        HEAD or not), else the head only when the method was read as HEAD."""
        if self._closing or self._closed:
            return
        if self._discard == _DROPPING:
            # A bad chunk in a body nginx discards after answering: it closes (c->error), no 400.
            self._discard = 0
            self._discard_until = 0.0
            self._stopped = True
            if self._rec is not None and not self._busy:
                self._logged()
            self._close()
            return
        if self._discard == _PENDING:  # in the read of the head: the 400 answers the request
            self._discard = 0
            self._req = self._take_pending()
        if self._req is not None and self.parser.in_chunks():
            self._body_error("client sent invalid chunked body", self._req)
        if self._stream is not None:  # a bad chunk in a body being streamed
            self._stream_failed(exc.status, self._req)
            return
        cut = _BODY_ONLY if exc.v09 else _HEAD_ONLY if exc.head_only else 0
        req = self._req
        self._stopped = True
        self._in_message = False
        self._req = None
        if self.transport is not None:
            self.transport.pause_reading()
        if self._busy or self._queue:
            self._queue.append(_Error(exc.status, req, cut))
        else:
            self._send_error_and_close(exc.status, req, cut)

    def _send_error_and_close(self, status: int, req: Request | None, cut: int = 0) -> None:
        resp = self._error_response(status, req, False)
        self._head_due = True
        if self.ctx.access is not None:
            self._rec = req.log if req is not None and req.log is not None else self._prec
            self._prec = None
        self._v09 = bool(cut & _BODY_ONLY)
        self._write(resp.head + (b"" if cut & _HEAD_ONLY else resp.body))
        self._logged()
        self._linger()

    def _error_response(self, status: int, req: Request | None, keepalive: bool) -> Response:
        try:
            return self.ctx.error_response(status, req, keepalive, self.local_addr)
        except Exception:
            if status == 494:  # "Request Header Or Cookie Too Large" is an nginx-only page
                return self.ctx.error_response(400, req, keepalive, self.local_addr)
            raise

    # -- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        self._rec = req.log
        self._head_due = True
        self._v09 = req.version == b"0.9"
        try:
            result = self.ctx.handle(req)
        except Exception as exc:  # noqa: BLE001 - an engine bug must cost one request, not the process
            self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
            self._send_error_and_close(500, req)
            return
        self._answer(result, req)

    def _resume(self, delayed: Delayed, req: Request) -> None:
        """A limit_req delay is over: go on with the request's phases, then with the pipeline."""
        self._continue(req, delayed.resume)

    def _continue(self, req: Request, resume: Callable[[], Result]) -> None:
        """The engine paused ``req`` (a delay, an auth subrequest): run the rest of its phases with
        ``resume``, answer, then go on with the pipeline."""
        self._busy = False
        self._exchange = None
        if self._closed:
            return
        try:
            result = resume()
        except Exception as exc:  # noqa: BLE001 - as in _dispatch
            self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
            self._send_error_and_close(500, req)
            return
        self._answer(result, req)
        if not self._busy and not self._closed:
            if self._queue:
                self._drain()
            elif self._closing:
                self._close()

    def _auth(self, auth: AuthSubrequest, req: Request) -> None:
        """auth_request: run the subrequest upstream (newproxy/http/authrequest.py), then answer with
        what the engine makes of its outcome. Like an exchange, later pipelined requests wait."""
        self._busy = True
        sink = AuthSink(self.conn_id, lambda status, headers: self._auth_done(auth, req, status, headers))
        exchange = sink.exchange = AuthExchange(self.ctx.upstream, auth.proxy, sink)
        self._exchange = exchange  # assigned before start(): it may report synchronously
        exchange.start()

    def _auth_done(self, auth: AuthSubrequest, req: Request, status: int,
                   headers: list[tuple[bytes, bytes]]) -> None:
        self._continue(req, lambda: auth.resume(status, headers))

    def _answer(self, result: Result, req: Request) -> None:
        ctx = req.context
        if ctx is not None and ctx.errors:  # type: ignore[attr-defined]  # noted by the engine's phases
            self.ctx.log.request_errors(ctx, self.conn_id)
        if isinstance(result, AuthSubrequest):
            self._auth(result, req)
            return
        if req.body_pending:  # run at its head (AUTH_FIRST, STREAM), its body still coming
            stream = req.body_stream
            if stream is not None and type(result) is ProxyPass and result.body is stream:
                self._start_stream(req)
            elif isinstance(result, AwaitBody):
                self._await_body(result)
                return
            elif not isinstance(result, Delayed):
                req.body_stream = None
                self._early_answered()
        elif isinstance(result, AwaitBody):  # the body came in while the subrequest ran
            self._continue(req, result.resume)
            return
        if self._expect and not isinstance(result, Delayed):
            self._expect = False
            ctx = req.context
            if not getattr(ctx, "expect_tested", False) and not (
                    isinstance(result, Response) and result.close_without_response):
                self._write(_CONTINUE)  # the body is discarded, not an error page: nginx sends it
        if isinstance(result, Delayed):
            # Like an exchange in flight: later pipelined requests wait, connection loss cancels it.
            self._busy = True
            timer = self.loop.call_later(result.seconds, self._resume, result, req)
            self._exchange = DelayWait(timer)
            return
        if isinstance(result, Response):
            if result.close_without_response:
                if self._rec is not None:
                    self._rec.status = result.status
                    self._logged()
                self._close()
                return
            self._write(result.head + result.body if result.body else result.head)
            self._sent_whole(result.keepalive)
            return
        if isinstance(result, FileResponse):
            self._release = result.release
            self._send_file(result, req)
            return
        self._busy = True
        self._current = result
        self._release = result.release
        if result.rate is not None:
            self._pacer = PacedWriter(result.rate, self._write, self._throttle, self.loop)
        # Assigned before start(): the exchange may answer synchronously (no live peer).
        exchange = self._exchange = (Exchange if result.grpc_headers is None else GrpcExchange)(
            self.ctx.upstream, result, self)
        exchange.log = self._rec
        exchange.start()

    def _sent_whole(self, keepalive: bool) -> None:
        """A whole answer is written: log it, then keep the connection for the next request or close it."""
        if self._discard:  # its body is still coming: dropped first, logged then
            self._discard_wait(keepalive)
            return
        if self._rec is not None:
            self._logged()
        if not keepalive or (self._closing and not self._queue):
            self._close()
        else:
            self._last = self.loop.time()
            if not self._in_message:
                self._idle()

    def _send_file(self, resp: FileResponse, req: Request | None) -> None:
        """A file answer (newproxy/http/sendfile.py): small ones inline, large ones by a FileSender
        that stands in for an upstream exchange (busy, flow control, abort, upstream_done)."""
        if self._closed:
            close_file(resp)
            return
        if body_length(resp) <= INLINE_MAX and resp.rate is None:
            data = read_inline(resp)
            self._released()
            if data is None:  # the file shrank under us: the promised length cannot be kept
                self._close()
                return
            self._write(data)
            self._sent_whole(resp.keepalive)
            return
        sender = FileSender(self, resp, len(resp.head))
        self._file_req = req
        self._write(resp.head)
        if self._rec is not None:  # sent by sendfile(), past _write: counted as it will be sent
            self._rec.sent += body_length(resp)
        if self._out:
            self._flush()
        self._busy = True
        self._exchange = sender
        sender.start()

    def _drain(self) -> None:
        """Start the requests that waited behind a proxied one, in order."""
        if self._draining:
            return
        self._draining = True
        try:
            queue = self._queue
            while queue and not self._busy and not self._closed:
                item = queue.pop(0)
                if isinstance(item, _Error):
                    queue.clear()
                    self._send_error_and_close(item.status, item.request, item.cut)
                    return
                self._dispatch(item)
            if (
                not self._closed
                and not self._stopped
                and not self._write_paused
                and len(queue) < PIPELINE_QUEUE_MAX
                and self.transport is not None
            ):
                self.transport.resume_reading()
        finally:
            self._draining = False

    # -- called by the upstream exchange (ClientSink) -------------------------------------------
    def upgraded(self, forward: Callable[[bytes], None]) -> None:
        """The peer answered 101 to a request with Upgrade: the connection is a tunnel now, the
        client's bytes going to ``forward`` untouched (no parsing, no HTTP timeouts of ours)."""
        hold = self._hold
        self._hold = None
        self.parser = _Tunnel(forward)
        if hold is not None and hold.data:
            forward(hold.data)

    def tunnel_flow(self, on: bool) -> None:
        """A tunnel's peer stopped (or went on) reading: so does the client's side."""
        transport = self.transport
        if transport is not None and not self._closed:
            if on and not self._write_paused:
                transport.resume_reading()
            elif not on:
                transport.pause_reading()

    def _unhold(self) -> None:
        """The peer did not switch: parse what the client sent meanwhile as its next requests."""
        hold = self._hold
        if hold is not None:
            self._hold = None
            self.parser = hold.parser
            if hold.data:
                self.loop.call_soon(self._replay, hold.data)

    def _replay(self, data: bytes) -> None:
        if not self._closed:
            self.data_received(data)

    def _released(self) -> None:
        """The answer is over: give back the limit_conn counts it held."""
        release = self._release
        if release is not None:
            self._release = None
            release()

    def _written_to_gone(self, data: bytes | None, status: int = 0) -> None:
        """The answer (``data``, its head first) or the error page (``status``) of an exchange whose
        client reset meanwhile (proxy_ignore_client_abort): nginx's write fails ("writev() failed
        (104: ...) while sending to client"), the peer is closed, and the log has the answer's
        status with nothing sent."""
        err = self._gone
        assert err is not None
        self._gone = None
        ex = self._exchange
        self._exchange = None
        rec = self._rec
        if rec is not None:
            if data is not None:
                rec.wrote(data)  # its status
            rec.status = rec.status or status
            rec.sent = 0
        if type(ex) is Exchange:
            if data is not None:
                ex.log_client_write_failed(err)
            ex.abort()
        self._released()
        self._logged()

    def upstream_done(self, keepalive: bool) -> None:
        if self._gone is not None:
            self._written_to_gone(None)
            return
        if self._hold is not None:
            self._unhold()
        pacer = self._pacer
        if pacer is not None and not pacer.idle:  # limit_rate: the answer is over once all is sent
            pacer.finish(lambda: self._paced_done(keepalive))
            return
        self._unpace()
        self._released()
        if self._stream is not None and not self._closed:  # answered while the body still comes
            self._count_streamed()
            self._logged()
            self._busy = False
            self._exchange = None
            self._current = None
            self._stream_answered()
            return
        if self._discard and not self._closed:  # a file sent before its request's body came
            self._busy = False
            self._exchange = None
            self._current = None
            self._discard_wait(keepalive)
            return
        if self._rec is not None:
            self._logged()
        current = self._current
        if current is not None:  # the log phase is over: no Request <-> RequestContext cycle left for the GC
            current.request.context = None
        self._busy = False
        self._exchange = None
        self._current = None
        self._file_req = None
        if self._closed:
            return
        if not keepalive:
            self._close()
            return
        self._last = self.loop.time()
        if self._queue:
            self._drain()
        if self._closing and not self._busy and not self._queue:
            if self._client_eof:  # nginx kept the connection alive after the answer, then read the close
                self._log_keepalive_closed()
            self._close()
        elif not self._busy and not self._queue and not self._in_message:
            self._idle()

    def _paced_done(self, keepalive: bool) -> None:
        self._unpace()
        self.upstream_done(keepalive)

    def upstream_error(self, status: int) -> None:
        if self._gone is not None:  # (the error page's write: not compared with nginx's line)
            self._written_to_gone(None, status)
            return
        if self._hold is not None:
            self._unhold()
        self._unpace()
        pp = self._current
        req = pp.request if pp is not None else None
        failed = getattr(self.ctx.engine, "upstream_failed", None)
        if pp is None or failed is None:
            resp = self._error_response(status, req, pp is not None and pp.keepalive)
        else:
            try:
                result = failed(pp, status)  # the location's error_page, or the built-in page
            except Exception as exc:  # noqa: BLE001 - as in _dispatch: one request, not the process
                self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
                result = self._error_response(500, req, False)
            if isinstance(result, ProxyPass):
                # The error_page went upstream again: a new exchange, still this request's turn.
                self._current = result
                self._release = result.release or self._release
                if result.rate is not None:
                    self._pacer = PacedWriter(result.rate, self._write, self._throttle, self.loop)
                exchange = self._exchange = (Exchange if result.grpc_headers is None else GrpcExchange)(
                    self.ctx.upstream, result, self)
                exchange.log = self._rec
                if self._rec is not None and self._rec.upstream:
                    self._rec.upstream.append(None)  # nginx's " : " between two upstream passes
                exchange.start()
                return
            if isinstance(result, (Delayed, AuthSubrequest)):  # the error_page's location delays, or asks auth_request
                self._current = None
                assert pp is not None
                self._answer(result, pp.request)  # stays busy until the delay is over
                return
            if isinstance(result, FileResponse):
                self._busy = False
                self._exchange = None
                self._current = None
                self._send_file(result, req)
                if not self._busy and not self._closed:
                    self.upstream_done(True)  # sent inline (a non-keepalive one closed already)
                return
            resp = result
            if resp.close_without_response:
                if self._rec is not None:
                    self._rec.status = resp.status
                self.upstream_abort()
                return
        self._write(resp.head + resp.body)
        self.upstream_done(resp.keepalive)

    def upstream_abort(self) -> None:
        if self._gone is not None:
            self._written_to_gone(None, 499)
            return
        if self._stream is not None:
            self._stream_over()
        self._unpace()
        self._released()
        if self._rec is not None:
            self._logged()
        self._busy = False
        self._exchange = None
        self._current = None
        self._queue.clear()
        self._close()

    def _idle(self) -> None:
        """stub_status: the answer is out and no request is being read: the connection waits."""
        if self._st:
            stats.C[self._st] -= 1
            self._st = 0

    # -- access log -------------------------------------------------------------------------
    def _logged(self) -> None:
        """The log phase of the request being answered (newproxy/http/accesslog.py)."""
        rec = self._rec
        if rec is not None:
            self._rec = None
            self.ctx.access.log(rec)  # type: ignore[union-attr]

    # -- output and closing -----------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._head_due and data[9:12] != b"100" and data[:5] == b"HTTP/":  # not a 100 Continue
            self._head_due = False
            stats.count_status(data)  # responses by status, for /metrics
            if self._v09:  # nginx sends an HTTP/0.9 request no status line and no headers
                data = data[data.find(b"\r\n\r\n") + 4:]
        rec = self._rec
        if rec is not None:
            rec.wrote(data)
        out = self._out
        if out is None:
            self._out = [data]
            self.ctx.outbox.hold(self)
        else:
            out.append(data)

    def send_held(self) -> None:
        """The end of the loop's turn (newproxy/http/outbox.py): what this turn wrote goes out."""
        if self._out:
            self._flush()

    def write(self, data: bytes) -> None:
        """The ClientSink entry point: through limit_rate's pacing when the answer has one."""
        if self._gone is not None:
            self._written_to_gone(data)
            return
        pacer = self._pacer
        if pacer is None:
            self._write(data)
        else:
            pacer.write(data)

    def _throttle(self, pause: bool) -> None:
        """limit_rate holds much of a proxied answer: stop (or go on) reading the upstream."""
        exchange = self._exchange
        if exchange is not None:
            exchange.pause() if pause else exchange.resume()

    def accel_rate(self, limit: RateLimit | None) -> None:
        """An upstream's X-Accel-Limit-Rate, before its answer's head is written: the pacing of the
        answer from now on (None: none)."""
        self._unpace()
        if limit is not None:
            self._pacer = PacedWriter(limit, self._write, self._throttle, self.loop)

    def _unpace(self) -> None:
        pacer = self._pacer
        if pacer is not None:
            self._pacer = None
            pacer.cancel()

    def _flush(self) -> None:
        out = self._out
        assert out is not None
        self._out = None
        data = out[0] if len(out) == 1 else b"".join(out)
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        """Close after the buffered output is written (asyncio flushes before closing)."""
        if self._closed:
            return
        self._closing = True
        if self._out:
            self._flush()
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def _linger(self) -> None:
        """nginx's lingering close: send the answer, shut our side, read and drop what the client
        still sends for a while, so that closing does not reset the connection under the answer."""
        if self._closed:
            return
        self._closing = True
        self._lingering = True
        if self._out:
            self._flush()
        transport = self.transport
        if transport is None:
            return
        now = self.loop.time()
        self._linger_until = now + self.ctx.client.lingering_time
        self._last = now
        self._rearm(now + self.ctx.client.lingering_timeout)
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self._close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, otherwise after the response in flight."""
        self._closing = True
        if not self._busy and not self._in_message and not self._queue and not self._lingering:
            self._close()

    # -- timeouts (one lazy timer per connection) ---------------------------------------------
    def _head_begins(self) -> None:
        """A request after the first begins: nginx times its head (client_header_timeout) from its
        first byte, not from each read, so a client trickling bytes is still cut off; a timer set
        for a later keep-alive deadline is brought forward."""
        self._head_start = self._last
        due = self._last + self.ctx.header_timeout
        if self._tick > tick_for(due):
            self._rearm(due)

    def _cut_request(self) -> tuple[Request, bytes | None]:
        """What a head cut short (timed out, or the client left) had of a request, and what arrived
        of its request line when that line is not whole (None: it is; the Request then has its parts
        and the header lines read whole)."""
        parser = self.parser
        line = parser.cut_head()[0]
        # A request line read whole: the server and variables nginx logs come from it and the
        # header lines read (log_context); cut inside it, the address's default server.
        req = Request(parser.method, b"" if line is not None else parser.target,
                      parser.version, [] if line is not None else parser.headers, b"", self.client_addr,
                      self.local_addr, "http", False)
        if isinstance(self.tls, TlsInfo):
            req.scheme = "https"
            req.tls = self.tls
        return req, line

    def _log_cut_head(self, status: int, req: Request, line: bytes | None) -> None:
        """A head cut short after some bytes of it (empty lines too): nginx logs it with ``status``
        (408 timed out, 400 the client left) and what it had read of it; a connection that sent
        nothing is not logged."""
        rec = self._prec or LogRecord(self.conn_id, self.client_addr, self.local_addr)
        self._prec = None
        rec.cut_line = line
        _, rec.cut_protocol, rec.request_length = self.parser.cut_head()
        rec.status = status
        rec.conn_requests = self._requests + 1
        rec.request = req
        self.ctx.access.log(rec)  # type: ignore[union-attr]

    def on_timer(self) -> None:
        """The deadline's tick came (newproxy/http/timerwheel.py): act if it has passed, else wait on."""
        self._tick = 0
        if self._closed:
            return
        now = self.loop.time()
        client = self.ctx.client
        if self._discard_until:  # dropping a body after its answer (_discard_wait)
            due = self._discard_due(self._last)
            if now >= due:  # nginx: c->timedout, so reset_timedout_connection applies
                self._drop_connection(client.reset_timedout_connection)
            else:
                self._tick = self.ctx.wheel.add(self, due)
            return
        if self._lingering:
            due = min(self._last + client.lingering_timeout, self._linger_until)
        elif self._early_wait is not None:  # reading the body of a request run at its head
            due = self._last + client.body_timeout
        elif self._stream is not None:  # streaming a body: not timed while the peer holds it up
            due = now + client.body_timeout if self._stream.held else self._last + client.body_timeout
        elif self._busy:
            # The upstream exchange has its own timers; only a client that stopped reading is ours
            # (send_timeout: nginx's runs from its last write that made progress).
            if self._write_paused and self.transport is not None:
                left = self.transport.get_write_buffer_size()
                if left < self._buffered_seen:  # the client took some since the last look
                    self._buffered_seen = left
                    self._last = now
            due = self._last + client.send_timeout if self._write_paused else now + client.send_timeout
        elif self._in_message and self._req is not None:
            due = self._last + client.body_timeout
        elif self._in_message or self._head_begun or self._requests == 0:
            # The head: from the accept (first request) or its first byte, as nginx, not the last read.
            due = self._head_start + client.header_timeout
        else:
            due = self._last + client.keepalive_timeout
        if now >= due:
            if self._busy and self._write_paused and self._stream is None and self._send_timed_out():
                return
            if self._stream is not None:  # nginx: 408, both connections closed, nothing answered
                self._stream.flow = None
                self._stream = None
                ex = self._exchange
                if ex is not None:  # finalized first: its log fields ($upstream_bytes_sent) are set
                    self._exchange = None
                    ex.abort()
            rec = self._prec
            if rec is not None and self._in_message and self._req is not None:
                # A body timed out: nginx logs the request with 408, counting what came of the body.
                self._prec = None
                if self._rec is rec:  # run at its head (AUTH_FIRST): logged here, not again
                    self._rec = None
                rec.status = 408
                rec.body_length += self.parser.body_bytes
                self.ctx.access.log(rec)  # type: ignore[union-attr]
            elif self._req is None and not self._busy and not self._lingering \
                    and isinstance(self.parser, RequestParser):  # (not a tunnel, nor a held upgrade)
                self._head_timed_out()
            if self._out:
                self._flush()
            self._closed = True
            transport = self.transport
            if transport is not None:
                if self._lingering:
                    transport.close()
                    return
                # nginx resets only a timed-out request (c->timedout): one begun, being read or
                # written; an idle connection (nothing read, or kept alive) still gets a FIN, and
                # under TLS a close_notify (close(); a timed-out request gets none: abort()). Output
                # still buffered here means the client stopped reading: nginx would be in send_timeout.
                if self._in_message or self._head_begun or self._busy or transport.get_write_buffer_size():
                    if client.reset_timedout_connection:
                        reset_on_close(transport)
                    transport.abort()
                else:
                    transport.close()
            return
        self._tick = self.ctx.wheel.add(self, due)

