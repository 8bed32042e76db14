"""One request of a multiplexed front end (HTTP/2, HTTP/3) driven through the same engine as HTTP/1.1.

The engine and the upstream client speak HTTP/1.1 bytes: a ``Response``/``FileResponse`` carries a
serialized head, and an upstream ``Exchange`` writes the client's head and body to its
``ClientSink``. A ``Stream`` is that sink for one request of a multiplexed connection: it runs the
request (``ctx.handle``, limit_req delays, auth_request subrequests, static files, proxying, the
error_page after an upstream failure), parses the head it is given back into a status and a header
list (lower-case names, hop-by-hop headers dropped: HTTP/2 and HTTP/3 forbid them), and reports
protocol-neutral events to the front end.

API (stable; the HTTP/2 front end newproxy/http/h2.py and the HTTP/3 one use it):

    req = build_request(method, path, authority, headers, body, version=b"2.0", scheme="https",
                        client_addr=..., local_addr=..., tls=TlsInfo | None)
        Host is taken from ``authority`` when the headers have none (nginx 1.22 turns
        ``:authority`` into a Host header). ``version`` is what $server_protocol shows ("HTTP/2.0").
    stream = Stream(ctx, events, conn_id)   # ctx: newproxy.http.h1.ConnContext (the server's)
    limit = stream.body_limit(req)          # client_max_body_size for this request (0: none);
                                            # the front end answers 413 itself past it
    stream.start(req)                       # once the whole body is in (req.body); or at the
                                            # HEADERS with req.body_pending (an auth_request
                                            # location: discard.AUTH_FIRST), then
    stream.body_in()                        # once the body is in req.body: the content handler
                                            # waiting for it (AwaitBody) goes on
    stream.answered                         # an answer has begun: a body still coming is dropped
    stream.body_streamed(req)               # HTTP/2: True for a grpc_pass request, whose body goes
                                            # upstream as it comes (nginx never buffers it); or the
                                            # engine's body_plan is discard.STREAM (proxy_pass with
                                            # proxy_request_buffering off: req.body_stream); then
    stream.start_streaming(req)             # at its HEADERS (req.body empty), and each DATA by
    stream.feed(chunk, end)                 # (end: the client's END_STREAM, or its trailers); the
                                            # front end gives a stream's window back only on
                                            # ``events.consumed(n)`` (n body bytes passed on or dropped)
    stream.read_over()                      # the connection's read is parsed: a body streamed to an
                                            # HTTP/1 upstream sends what it brought (a chunk per read)
    stream.error(status, req)               # a front-end refusal (400, 413...): the engine's page
    stream.pause() / stream.resume()        # the client's window is shut / open again
    stream.abort()                          # the client reset the stream or the connection died
    stream.request_trailers                 # set by the front end: the request's trailers (gRPC)
    req.length_added = True                 # the front end appended a Content-Length for a body read
                                            # whole (nginx's h2 does); grpc_pass drops it again, as
                                            # nginx reads grpc bodies unbuffered (engine/grpc.py)

``events`` (``StreamEvents``) receives, in this order and at most once each except ``data``:
    head(status, headers, end)   headers: [(b"name", b"value")], names lower case; end: no body
    data(chunk, end)             end=True with the last chunk (or an empty chunk)
    trailers(headers)            instead of data(..., True): ends the stream with trailers (the
                                 engine's add_trailer lines for version >= 2: Response/FileResponse/
                                 ProxyPass ``.trailers``; a gRPC upstream would send its own) (a
                                 grpc_pass upstream's, through ``upstream_trailers``)
    consumed(n)                  (streaming only, any time) n request body bytes are passed on
    reset()                      the answer cannot be completed (nginx resets the stream): a 444
                                 (``stream.reset_reason == "close"``), or an answer that broke after
                                 its head was sent (``"broken"``)
After ``end``/``trailers``/``reset`` nothing more comes. A front end calls ``stream.abort()`` when
the stream goes away first; events may still come synchronously during that call's caller, never
after it returns.

Access log: the record (``req.log``, a LogRecord the front end attached) gets the HTTP/1.1 head as
``wrote`` expects it (status, $sent_http_*) and the body bytes; it is logged when the answer ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from newproxy import stats
from newproxy.engine.types import (
    AuthSubrequest,
    AwaitBody,
    Delayed,
    FileResponse,
    ProxyPass,
    RateLimit,
    Request,
    Response,
    Result,
)
from newproxy.http.authrequest import AuthExchange, AuthSink
from newproxy.http.bodystream import BodyStream
from newproxy.http.errorlog import log_for_request
from newproxy.http.grpc_upstream import GrpcExchange
from newproxy.http.pacing import DelayWait, PacedWriter
from newproxy.http.sendfile import FileSender, body_length
from newproxy.http.sendfile import close as close_file
from newproxy.http.upstream import Exchange

if TYPE_CHECKING:
    from newproxy.engine.logformat import LogRecord
    from newproxy.http.h1 import ConnContext

Headers = list[tuple[bytes, bytes]]

# Connection-specific headers (RFC 9113 8.2.2): an HTTP/1.1 head's framing and connection lines,
# which nginx's HTTP/2 header filter never writes.
_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
_HEAD_END = b"\r\n\r\n"
_NOT_STREAMED, _PENDING, _TO_UPSTREAM, _DROPPED = range(4)  # Stream._body_state


class StreamEvents(Protocol):
    """What the front end does with one stream's answer (see the module docstring)."""

    def head(self, status: int, headers: Headers, end: bool) -> None: ...

    def data(self, chunk: bytes, end: bool) -> None: ...

    def trailers(self, headers: Headers) -> None: ...

    def reset(self) -> None: ...


def build_request(method: bytes, path: bytes, authority: bytes | None, headers: Headers, body: bytes, *,
                  version: bytes, scheme: str, client_addr: tuple[str, int], local_addr: tuple[str, int],
                  tls: object = None) -> Request:
    """The engine's Request for one stream. nginx 1.22 (ngx_http_v2_parse_authority) adds
    ``:authority`` as a Host header line before the regular headers; a Host header as well is then a
    duplicate (400), as it is for nginx."""
    if authority is not None:
        headers = [(b"host", authority), *headers]
    return Request(method, path, version, headers, body, client_addr, local_addr, scheme, True, tls=tls)


def split_head(head: bytes) -> tuple[int, Headers]:
    """Status and header list of an HTTP/1.1 head (status line, header lines, blank line) as the
    multiplexed protocols send them: names lower case, connection-specific lines dropped."""
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    out: Headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.lower()
        if name not in _HOP:
            out.append((name, value.strip()))
    return status, out


def split_lines(lines: bytes) -> Headers:
    """add_trailer's "Name: value\r\n" lines as a header list with lower-case names."""
    out: Headers = []
    for line in lines.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name.lower(), value.strip()))
    return out


class _FileTransport:
    """What ``FileSender`` writes to: the stream's data events (no socket: it reads and writes)."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream._body(data)

    def is_closing(self) -> bool:
        return self.stream.finished

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def get_write_buffer_size(self) -> int:
        return 0


class Stream:
    """One request/answer of a multiplexed connection: the ``ClientSink`` of its upstream exchange."""

    __slots__ = (
        "_awaiting",
        "_body_buf",
        "_body_came",
        "_body_last",
        "_body_state",
        "_body_stream",
        "_body_timer",
        "_current",
        "_exchange",
        "_file_left",
        "_gone",
        "_head",
        "_held",
        "_pacer",
        "_paused",
        "_release",
        "_trailers",
        "_unsent",
        "conn_id",
        "ctx",
        "events",
        "finished",
        "framed",
        "rec",
        "request",
        "request_trailers",
        "reset_reason",
        "transport",
    )

    def __init__(self, ctx: ConnContext, events: StreamEvents, conn_id: int) -> None:
        self.ctx = ctx
        self.events = events
        self.conn_id = conn_id
        self.request: Request | None = None
        self.request_trailers: Headers | None = None
        self.rec: LogRecord | None = None
        self.finished = False  # end, trailers or reset was reported, or the stream was aborted
        # The client reset the stream while proxy_ignore_client_abort keeps the request going
        # (orphan): the answer is read on, nothing of it counted as sent.
        self._gone = False
        # Why reset() came: "close" (a 444), "timeout" (client_body_timeout) or "broken" (after the head).
        self.reset_reason = ""
        self.transport: _FileTransport | None = None  # FileSender's view of the stream
        # The upstream answer's head: None before it came, bytes while it waits for body or end (so
        # a bodiless answer is one HEADERS frame), b"" once reported.
        self._head: bytes | None = None
        self._current: ProxyPass | None = None
        self._exchange: Exchange | FileSender | DelayWait | AuthExchange | None = None
        self._pacer: PacedWriter | None = None
        self._release: Callable[[], None] | None = None
        self._paused = False
        self._trailers = b""  # a file answer's add_trailer lines, sent after its body
        self._file_left = 0  # a file answer's bytes still to come: the last ones end the stream
        # A streamed request body (start_streaming): _NOT_STREAMED, _PENDING while the engine's answer
        # is not known (limit_req delay, auth_request; chunks wait in _body_buf), _TO_UPSTREAM (a
        # GrpcExchange takes them), _DROPPED (any other answer: nginx discards the body).
        self._body_state = _NOT_STREAMED
        self._body_buf: list[bytes | None] = []  # None: the end
        self._body_stream: BodyStream | None = None  # _TO_UPSTREAM to an HTTP/1 upstream (Exchange)
        # Its client_body_timeout: the last DATA's time, and the timer that looks at it.
        self._body_last = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        # $bytes_sent by the front end's framing (HTTP/2: frame headers and HPACK blocks, as nginx
        # counts them): with ``framed`` -1, the record waits in _held for ``framing_done(bytes)``.
        self.framed = -2  # -2: not framed (the record's own count); -1: waiting; else the bytes
        self._unsent = 0  # bytes of the answer counted in the record but never sent (an abort's)
        self._held: LogRecord | None = None
        # A request run before its body is in (Request.body_pending: auth_request over HTTP/2):
        # the content handler waiting for the body, or whether the body came first.
        self._awaiting: AwaitBody | None = None
        self._body_came = False

    # -- the front end's calls ------------------------------------------------------------------
    def body_limit(self, req: Request) -> int:
        limit = self.ctx.max_body_size
        return (limit(req) or 0) if limit is not None else 0

    def start(self, req: Request) -> None:
        self.request = req
        self.rec = req.log  # type: ignore[assignment]
        try:
            result = self.ctx.handle(req)
        except Exception as exc:  # noqa: BLE001 - an engine bug costs one request, not the connection
            self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
            self.error(500, req)
            return
        self._answer(result)

    @property
    def answered(self) -> bool:
        """Whether an answer has begun (or the stream is over): a body still coming is not wanted."""
        return self.finished or self._head is not None

    def body_in(self) -> None:
        """The body of a request started with ``body_pending`` is all in (the front end has put it
        in the request): the content handler waiting for it goes on; if the phases are still
        running (the auth subrequest), they find it there."""
        request = self.request
        assert request is not None
        request.body_pending = False
        waiting = self._awaiting
        if waiting is None:
            self._body_came = True
            return
        self._awaiting = None
        self._continue(waiting.resume)

    def error(self, status: int, req: Request | None) -> None:
        if req is not None:
            self.request = req
            self.rec = req.log  # type: ignore[assignment]
        try:
            resp = self.ctx.error_response(status, req, False, req.local_addr if req else ("", 0))
        except Exception:  # noqa: BLE001 - 494 and friends: nginx-only pages fall back to 400
            resp = self.ctx.error_response(400, req, False, req.local_addr if req else ("", 0))
        self._answer(resp)

    def body_streamed(self, req: Request) -> bool:
        check = getattr(self.ctx.engine, "body_streamed", None)
        return check is not None and check(req)

    def start_streaming(self, req: Request) -> None:
        self._body_state = _PENDING
        self.start(req)

    def feed(self, data: bytes, end: bool) -> None:
        """A streamed request's body, as it arrives (see start_streaming)."""
        state = self._body_state
        rec = self.rec
        if rec is not None and data:
            rec.body_length += len(data)
        if state == _TO_UPSTREAM:
            ex = self._exchange
            if isinstance(ex, GrpcExchange):
                self._body_last = self.ctx.loop.time()
                if end:
                    self._stop_body_timer()
                ex.feed(data, end)
                return
            body = self._body_stream
            if body is not None and type(ex) is Exchange and not ex.done:  # proxy_request_buffering off
                self._body_last = self.ctx.loop.time()
                body.gather(data)
                if end:
                    self._stop_body_timer()
                    body.end()
                return
            self._body_state = _DROPPED
        elif state == _PENDING and not self.finished:
            if data:
                self._body_buf.append(data)
            if end:
                self._body_buf.append(None)
                if self._awaiting is not None:  # the content handler reads it whole after all
                    self._body_whole()
            return
        if data:
            self.events.consumed(len(data))  # type: ignore[attr-defined]

    def read_over(self) -> None:
        """The connection's read is parsed: a body streamed to an HTTP/1 upstream sends what its
        DATA frames brought (a chunk per read, as nginx)."""
        body = self._body_stream
        if body is not None:
            body.read_over()

    def _body_timed(self) -> None:
        """client_body_timeout for a body streamed upstream (proxy_request_buffering off, or any
        grpc_pass body): nginx ends a request whose client sent nothing for that long with 408,
        resetting the stream (PROTOCOL_ERROR, as measured) and closing the peer. Not while the peer
        holds the body up (what came waits for it)."""
        self._body_timer = None
        if self.finished or not self.streaming_body:
            return
        loop = self.ctx.loop
        now = loop.time()
        body = self._body_stream
        ex = self._exchange
        held = body.parts if body is not None else isinstance(ex, GrpcExchange) and ex.body
        if held:  # what came waits for the peer (its window or socket is full): not the client's stall
            self._body_last = now
        due = self._body_last + self.ctx.client.body_timeout
        if now < due:
            self._body_timer = loop.call_at(due, self._body_timed)
            return
        if self.rec is not None and not self.rec.status:  # an answer begun keeps its status in the log
            self.rec.status = 408
        ex = self._exchange
        self._exchange = None
        if ex is not None:
            ex.abort()
        self._unpace()
        self._reset("timeout")

    def _arm_body_timer(self) -> None:
        """client_body_timeout from now, for a body that starts going upstream as it arrives."""
        self._body_last = self.ctx.loop.time()
        self._body_timer = self.ctx.loop.call_later(self.ctx.client.body_timeout, self._body_timed)

    def _stop_body_timer(self) -> None:
        timer = self._body_timer
        if timer is not None:
            self._body_timer = None
            timer.cancel()

    @property
    def streaming_body(self) -> bool:
        """Whether the request's body is being sent upstream as it arrives (not all in yet)."""
        body = self._body_stream
        if body is not None:
            return not body.ended
        ex = self._exchange
        return isinstance(ex, GrpcExchange) and ex.streaming and not ex.body_end

    def log_body(self, level: str, message: str, req: Request) -> None:
        """A line about the body of ``req`` (this stream's): with the upstream's context while it is
        streamed there."""
        ex = self._exchange
        if self._body_stream is not None and type(ex) is Exchange:
            ex.log_sending(message, level)
        else:
            log_for_request(self.ctx.log, req, level, message, self.conn_id)

    def log_timed_out(self, what: str) -> None:
        """send_timeout passed on the answer: nginx's line, from the downstream handler of what
        produces it ("while sending to client" proxied, "while sending response to client" else)."""
        ex = self._exchange
        if type(ex) is Exchange:
            ex.log_client_sending(what)
        elif self.request is not None:
            log_for_request(self.ctx.log, self.request, "info", f"{what} while sending response to client", self.conn_id)

    def log_reset(self, message: str, req: Request) -> None:
        """The client reset this stream (nginx's line ``message``): logged with the upstream's phase
        while a body streams there or a proxied answer is awaited or relayed. Other phases' context
        is not known to newproxy: nothing is logged there. An auth_request subrequest at work: its
        line, in its upstream's phase."""
        ex = self._exchange
        if self.finished or (type(ex) is not Exchange and type(ex) is not AuthExchange):
            return
        if self.streaming_body:
            self.log_body("info", message, req)
        elif not ex.done:
            ex.log_client(message)

    def _body_whole(self) -> None:
        """A request streamed from its HEADERS whose content handler reads the body whole instead
        (AwaitBody): the body is put together and the handler goes on."""
        request = self.request
        assert request is not None and self._awaiting is not None
        chunks = [chunk for chunk in self._body_buf if chunk is not None]
        self._body_buf = []
        self._body_state = _NOT_STREAMED
        request.body = b"".join(chunks)
        request.body_stream = None
        request.body_pending = False
        if request.body:
            self.events.consumed(len(request.body))  # type: ignore[attr-defined]
        waiting, self._awaiting = self._awaiting, None
        self._continue(waiting.resume)

    def body_too_large(self) -> None:
        """client_max_body_size passed by a streamed body: 413 while nothing was answered (nginx's),
        else the stream is reset."""
        self.body_failed(413)

    def body_failed(self, status: int) -> None:
        """The body of a request whose phases are running could not be read (413: too large; 500:
        its temporary file failed): ``status`` while nothing was answered, else the stream is reset."""
        self._drop_body()
        ex = self._exchange
        self._exchange = None
        self._current = None
        if ex is not None:
            ex.abort()
        self._unpace()
        if self._head is None and not self.finished:
            self.error(status, self.request)
        else:
            self._reset("broken")

    def body_consumed(self, n: int) -> None:
        """GrpcExchange: n streamed body bytes went upstream (or were dropped)."""
        self.events.consumed(n)  # type: ignore[attr-defined]

    def _drop_body(self) -> None:
        """The body is not wanted (or no longer): what waits is given back to the client's window."""
        if self._body_state == _NOT_STREAMED:
            return
        self._body_state = _DROPPED
        waiting = sum(len(chunk) for chunk in self._body_buf if chunk is not None)
        self._body_buf = []
        if waiting:
            self.events.consumed(waiting)  # type: ignore[attr-defined]

    def pause(self) -> None:
        self._paused = True
        ex = self._exchange
        if ex is not None:
            ex.pause()

    def resume(self) -> None:
        self._paused = False
        ex = self._exchange
        if ex is not None:
            ex.resume()

    def orphan(self, events: StreamEvents) -> bool:
        """The client reset this stream: with proxy_ignore_client_abort on, once the request's body is
        all in, nginx does not watch the client (ngx_http_upstream_init_request sets no broken
        connection check): the upstream's answer is read on, its writes go nowhere, and it is logged
        at its end with its status and what was sent before the reset. ``events`` take the answer's
        events from now on. False: not such a stream (the caller aborts it)."""
        ex = self._exchange
        if self.finished or type(ex) is not Exchange or ex.done or not ex.pp.proxy.ignore_client_abort \
                or self.streaming_body:
            return False
        self.events = events
        self._gone = True
        self._unpace()  # nothing is sent: nothing to pace
        self._paused = False
        if ex.paused:  # (held by the client's window or by pacing, which no longer matter)
            ex.resume()
        return True

    def abort(self) -> None:
        """The client's side went away (RST_STREAM, connection lost): drop whatever is in flight."""
        self._stop_body_timer()
        if self.finished:
            return
        self.finished = True
        streaming = self.streaming_body
        ex = self._exchange
        self._exchange = None
        if ex is not None:
            if type(ex) is FileSender:
                self._unsent += ex.unsent()  # counted when the head was written
            ex.abort()
        self._unpace()
        self._released()
        rec = self.rec
        if rec is not None:
            if not rec.status:
                # nginx's "client closed request"; a body being streamed upstream finds the stream
                # gone as it reads (ngx_http_v2_read_unbuffered_request_body's fc->error): 400.
                rec.status = 400 if streaming else 499
            self._logged()

    # -- running the engine's answer -------------------------------------------------------------
    def _answer(self, result: Result) -> None:
        ctx = self.request.context if self.request is not None else None
        if ctx is not None and ctx.errors:  # type: ignore[attr-defined]  # noted by the engine's phases
            self.ctx.log.request_errors(ctx, self.conn_id)
        if self.finished:
            if isinstance(result, FileResponse):
                close_file(result)
            return
        if self._body_state == _PENDING and isinstance(result, (Response, FileResponse)):
            self._drop_body()
        if isinstance(result, Response):
            if result.close_without_response:  # 444: nginx resets the stream
                if self.rec is not None:
                    self.rec.status = result.status
                self._reset("close")
                return
            self._whole(result.head, result.body, result.trailers)
            return
        if isinstance(result, FileResponse):
            self._release = result.release
            self._file(result)
            return
        if isinstance(result, Delayed):
            timer = self.ctx.loop.call_later(result.seconds, self._continue, result.resume)
            self._exchange = DelayWait(timer)
            return
        if isinstance(result, AwaitBody):
            if self._body_came:
                self._continue(result.resume)
            else:
                self._awaiting = result
                if self._body_state == _PENDING and None in self._body_buf:  # streamed, and all in
                    self._body_whole()
            return
        if isinstance(result, AuthSubrequest):
            auth = result
            sink = AuthSink(self.conn_id, lambda status, headers: self._continue(
                lambda: auth.resume(status, headers)))
            exchange = sink.exchange = AuthExchange(self.ctx.upstream, auth.proxy, sink)
            self._exchange = exchange
            exchange.start()
            return
        self._proxy(result)

    def _continue(self, resume: Callable[[], Result]) -> None:
        self._exchange = None
        if self.finished:
            return
        try:
            result = resume()
        except Exception as exc:  # noqa: BLE001 - as in start
            self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
            self.error(500, self.request)
            return
        self._answer(result)

    def _proxy(self, pp: ProxyPass) -> None:
        self._current = pp
        self._release = pp.release or self._release
        if pp.rate is not None:
            self._pacer = PacedWriter(pp.rate, self._write, self._throttle, self.ctx.loop)
        exchange = self._exchange = (Exchange if pp.grpc_headers is None else GrpcExchange)(self.ctx.upstream, pp, self)
        exchange.log = self.rec
        if self._body_state == _PENDING:
            if isinstance(exchange, GrpcExchange):
                self._body_state = _TO_UPSTREAM
                exchange.open_body()
                for chunk in self._body_buf:
                    exchange.feed(b"", True) if chunk is None else exchange.feed(chunk, False)
                self._body_buf = []
                if not exchange.body_end:
                    self._arm_body_timer()
            elif type(pp.body) is BodyStream:  # proxy_request_buffering off: sent on as it arrives
                self._body_state = _TO_UPSTREAM
                body = self._body_stream = pp.body
                body.on_taken = self.events.consumed  # type: ignore[attr-defined]
                pp.request.body_pending = False
                for chunk in self._body_buf:
                    body.end() if chunk is None else body.add(chunk)
                self._body_buf = []
                if not body.ended:
                    self._arm_body_timer()
            else:
                self._drop_body()
        elif self._body_state == _TO_UPSTREAM:  # a second pass (error_page): the body went to the first
            self._drop_body()
        exchange.start()

    def _whole(self, head: bytes, body: bytes, trailers: bytes = b"") -> None:
        """A complete answer: one head event (with the end when there is no body) and one data event
        (or the body, then the trailers)."""
        status, headers = split_head(head)
        self._count(head, len(body))
        self.finished = True
        if trailers:
            self.events.head(status, headers, False)
            if body:
                self.events.data(body, False)
            self.events.trailers(split_lines(trailers))
        else:
            self.events.head(status, headers, not body)
            if body:
                self.events.data(body, True)
        self._released()
        self._logged()

    def _file(self, resp: FileResponse) -> None:
        status, headers = split_head(resp.head)
        length = body_length(resp)
        self._count(resp.head, length)
        self._trailers = resp.trailers
        if not length and resp.trailers:
            close_file(resp)
            self._whole(resp.head, b"", resp.trailers)
            return
        if not length:
            close_file(resp)
            self.finished = True
            self.events.head(status, headers, True)
            self._released()
            self._logged()
            return
        self.events.head(status, headers, False)
        if not resp.trailers:
            self._file_left = length
        self.transport = _FileTransport(self)
        sender = FileSender(self, resp)  # type: ignore[arg-type]
        self._exchange = sender
        if self._paused:
            sender.pause()
        sender.start()

    def _count(self, head: bytes, body: int) -> None:
        stats.count_status(head)
        rec = self.rec
        if rec is not None:
            rec.wrote(head)  # (the head's size comes off again when the framing's count is logged)
            if not self._gone:
                rec.sent += body

    def _body(self, data: bytes) -> None:
        if self.finished or not data:
            return
        left = self._file_left
        if left > 0:
            left = self._file_left = left - len(data)
            if left <= 0:
                # The end goes with the last bytes (END_STREAM on the last DATA frame, as nginx
                # sends a file), not in a frame of its own when FileSender reports it.
                self.finished = True
                self.events.data(data, True)
                self._released()
                self._logged()
                return
        self.events.data(data, False)

    # -- ClientSink: the upstream exchange (and FileSender) report here ---------------------------
    def write(self, data: bytes) -> None:
        pacer = self._pacer
        if pacer is None:
            self._write(data)
        else:
            pacer.write(data)

    def _write(self, data: bytes) -> None:
        if self.finished:
            return
        if self._head is None:  # the exchange writes its whole head first, in one write
            end = data.find(_HEAD_END)
            head, data = data[:end + 4], data[end + 4:]
            stats.count_status(head)
            if self.rec is not None:
                self.rec.wrote(head)
            self._head = head
        if data and not self._gone:
            if self.rec is not None:
                self.rec.sent += len(data)
            self._flush_head(False)
            self.events.data(data, False)

    def _flush_head(self, end: bool) -> None:
        head = self._head
        if head:
            self._head = b""
            status, headers = split_head(head)
            self.events.head(status, headers, end)

    def upstream_done(self, keepalive: bool) -> None:
        pacer = self._pacer
        if pacer is not None and not pacer.idle:
            pacer.finish(lambda: self.upstream_done(keepalive))
            return
        self._unpace()
        self._exchange = None
        trailers = self._current.trailers if self._current is not None else self._trailers
        self._current = None
        if self.finished:  # a late report after abort
            return
        self.finished = True
        if trailers:
            self._flush_head(False)
            self.events.trailers(split_lines(trailers))
        elif self._head:
            self._flush_head(True)
        else:
            self.events.data(b"", True)
        self._released()
        self._logged()

    def upstream_trailers(self, trailers: Headers) -> None:
        """grpc_pass (newproxy/http/grpc_upstream.py): the upstream's trailers (grpc-status...) end the
        answer, after its head and whatever data came (nginx relays them as a trailing HEADERS frame)."""
        pacer = self._pacer
        if pacer is not None and not pacer.idle:
            pacer.finish(lambda: self.upstream_trailers(trailers))
            return
        self._unpace()
        self._exchange = None
        self._current = None
        if self.finished:
            return
        self.finished = True
        self._flush_head(False)
        self.events.trailers(trailers)
        self._released()
        self._logged()

    def upstream_error(self, status: int) -> None:
        self._unpace()
        pp = self._current
        self._current = None
        self._exchange = None
        if self.finished:
            return
        failed = getattr(self.ctx.engine, "upstream_failed", None)
        if pp is None or failed is None:
            self.error(status, self.request)
            return
        try:
            result = failed(pp, status)  # the location's error_page, or the built-in page
        except Exception as exc:  # noqa: BLE001
            self.ctx.log.error(f"request processing failed: {exc!r}", self.conn_id)
            self.error(500, self.request)
            return
        if isinstance(result, ProxyPass) and self.rec is not None and self.rec.upstream:
            self.rec.upstream.append(None)  # nginx's " : " between two upstream passes
        self._answer(result)

    def upstream_abort(self) -> None:
        self._unpace()
        self._exchange = None
        self._current = None
        self._reset("broken")

    def _reset(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.reset_reason = reason
        self.events.reset()
        self._released()
        self._logged()

    def accel_rate(self, limit: RateLimit | None) -> None:
        """An upstream's X-Accel-Limit-Rate (newproxy/http/upstream.py), before its answer's head is
        written: the pacing of the answer from now on (None: none), as h1.py's."""
        self._unpace()
        if limit is not None and not self._gone:
            self._pacer = PacedWriter(limit, self._write, self._throttle, self.ctx.loop)

    def _throttle(self, pause: bool) -> None:
        ex = self._exchange
        if ex is not None:
            ex.pause() if pause else ex.resume()

    def _unpace(self) -> None:
        pacer = self._pacer
        if pacer is not None:
            self._pacer = None
            pacer.cancel()

    def _released(self) -> None:
        release = self._release
        if release is not None:
            self._release = None
            release()

    def framing_done(self, sent: int, unsent: int = 0) -> None:
        """The front end wrote the stream's last frame (or gave up on it): ``sent`` bytes in all;
        ``unsent``: bytes of the answer's body it held (a shut window) and never sent."""
        self.framed = sent
        self._unsent += unsent
        rec = self._held
        if rec is not None:
            self._held = None
            self._log_framed(rec)

    def _log_framed(self, rec: LogRecord) -> None:
        body = max(rec.sent - rec.header_size - self._unsent, 0)  # $body_bytes_sent stays the payload sent
        rec.sent = self.framed
        rec.header_size = max(self.framed - body, 0)
        self.ctx.access.log(rec)  # type: ignore[union-attr]

    def _logged(self) -> None:
        rec = self.rec
        if rec is not None:
            self.rec = None
            framed = self.framed
            if framed == -2:
                self.ctx.access.log(rec)  # type: ignore[union-attr]
            elif framed == -1:
                self._held = rec
            else:
                self._log_framed(rec)
