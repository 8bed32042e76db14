"""The values that cross between the sans-IO engine and the IO edges.

The HTTP front end turns bytes into a ``Request``; the engine answers with a ``Response`` (send it)
or a ``ProxyPass`` (forward it upstream, then turn the upstream's answer into the client's with
``ProxyPass.client_head``). Nothing here touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from newproxy.config import ProxyConfig, UpstreamTlsConfig
    from newproxy.http.bodyfile import BodyFile
    from newproxy.http.bodystream import BodyStream
    from newproxy.engine.context import RequestContext
    from newproxy.engine.logformat import LogRecord
    from newproxy.engine.proxy import ResponseRelay
    from newproxy.engine.proxyurl import Resolve
    from newproxy.engine.upstreams import UpstreamGroup


class Request:
    """A request as the front end read it. A plain class, not a dataclass: compiled (newproxy/native.py),
    its fields are read and its instances made without Python's generic attribute lookup, on every request."""

    method: bytes  # b"GET", as received
    target: bytes  # the raw request-target, as received
    version: bytes  # b"1.1", b"1.0"
    headers: list[tuple[bytes, bytes]]  # as received: original case, order and duplicates
    # Read whole; past client_body_buffer_size, in a temporary file (newproxy/http/bodyfile.py).
    body: bytes | BodyFile
    client_addr: tuple[str, int]
    local_addr: tuple[str, int]  # the address and port the request arrived on
    scheme: str
    # Set by the front end from the Connection header and the version (HTTP/1.1 defaults to keep-alive).
    keepalive: bool
    # The engine's RequestContext once the request has been processed (the log phase reads it).
    context: object
    # The access-log record the IO layer fills for this request (newproxy/http/accesslog.py); None
    # when no access_log is configured.
    log: LogRecord | None
    # The TLS session of the connection (newproxy/http/tls.py TlsInfo) for $ssl_* variables; None
    # on plain connections.
    tls: TlsInfo | None
    # HTTP/2 and HTTP/3: the front end appended the Content-Length of a body read whole (nginx's
    # ngx_http_v2_read_request_body); grpc_pass, which nginx reads unbuffered, takes it out again.
    length_added: bool = False
    # A chunked body whose end came in a later read than the head: with proxy_request_buffering off
    # and HTTP/1.1 upstream, nginx was still reading it when it connected and sends it chunked.
    chunked_late: bool = False
    # HTTP/2: a body without Content-Length as it arrived, one piece per read (with chunked_late):
    # the chunks nginx forwards with proxy_request_buffering off; None: one chunk of the whole body.
    body_parts: list[bytes] | None = None
    # HTTP/1: the phases run at the head while the body is still coming (an auth_request location,
    # as nginx runs them: newproxy/http/h1.py): a content handler that reads the body waits (AwaitBody).
    body_pending: bool = False
    # HTTP/1, proxy_request_buffering off: the body as it arrives, for the proxy to send on while
    # it does (discard.STREAM: newproxy/http/bodystream.py); ``body`` stays empty, as nginx's
    # $request_body is for a body it reads unbuffered.
    body_stream: BodyStream | None = None
    # Set by the engine when the front end asks for the body's limit (Engine.max_body_size): the
    # location's client_body_buffer_size, client_body_temp_path and proxy_request_buffering.
    body_buffer: tuple[int, str | None, bool] | None = None

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes | BodyFile, client_addr: tuple[str, int], local_addr: tuple[str, int],
                 scheme: str = "http", keepalive: bool = True, context: object = None,
                 log: LogRecord | None = None, tls: TlsInfo | None = None) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.client_addr = client_addr
        self.local_addr = local_addr
        self.scheme = scheme
        self.keepalive = keepalive
        self.context = context
        self.log = log
        self.tls = tls

    def without_body(self, method: bytes) -> Request:
        """A copy for an auth_request subrequest: ``method``, no body, and nothing of this one's body
        (ngx_http_subrequest shares the headers, the connection and the variables)."""
        copy = Request(method, self.target, self.version, self.headers, b"", self.client_addr, self.local_addr,
                       self.scheme, self.keepalive, self.context, self.log, self.tls)
        copy.length_added = self.length_added
        copy.chunked_late = self.chunked_late
        copy.body_parts = self.body_parts
        copy.body_stream = self.body_stream
        copy.body_buffer = self.body_buffer
        return copy


@dataclass(slots=True, frozen=True)
class TlsInfo:
    """What nginx's $ssl_* variables read, taken once when a connection's handshake completes."""

    protocol: str  # "TLSv1.3" ($ssl_protocol)
    cipher: str  # OpenSSL's name, "TLS_AES_256_GCM_SHA384" ($ssl_cipher)
    server_name: str  # the SNI name as sent, "" without SNI ($ssl_server_name)
    session_reused: bool  # $ssl_session_reused: "r" or "."


@dataclass(slots=True)
class Response:
    """A complete answer made by the engine (return, redirect, error page)."""

    status: int
    head: bytes  # status line and headers, ending with the blank line
    body: bytes  # empty for HEAD requests and bodiless statuses
    keepalive: bool  # False: close the connection after sending
    close_without_response: bool = False  # nginx's 444: send nothing, close
    # add_trailer's lines ("Name: value\r\n"...) for an HTTP/2 or HTTP/3 answer, sent after the body
    # (HTTP/1.1 ones are in the chunked body); b"": none.
    trailers: bytes = b""


@dataclass(slots=True)
class FileResponse:
    """A file answer (nginx's static handler): ``head``, then ``parts`` in order, each either bytes
    (a multipart boundary) or an (offset, length) range of the open file ``fd``, which the IO layer
    sends without copying it through Python where it can. No parts: a HEAD, or an empty file.

    Ownership: the engine opened ``fd`` (as nginx opens, then fstats); whoever receives this value
    must close it, whatever happens."""

    status: int
    head: bytes
    fd: int
    parts: list[bytes | tuple[int, int]]
    keepalive: bool
    size: int  # the file's size when the engine looked at it
    # limit_conn: called once when the answer is over (sent, or the connection lost); None: nothing held.
    release: Callable[[], None] | None = None
    # limit_rate / limit_rate_after (bytes per second; 0: no pacing), decided when the answer is made.
    rate: RateLimit | None = None
    trailers: bytes = b""  # as Response.trailers


@dataclass(slots=True, frozen=True)
class LocationFix:
    """A Location ``http://HOST[:PORT]...`` made by the legacy nginx for a relative redirect: HOST is
    the Host it got, its server_name (``server_name_in_redirect``) or, without a Host, its own
    address; PORT its own (omitted for 80). ``hosts`` maps such a host (lower case) to the one the
    original nginx would have written; ``legacy_port`` is what legacy writes after it (b":8080" or
    b""), ``scheme`` and ``port`` what the client used (b"http://", b":8000")."""

    hosts: dict[bytes, bytes]
    legacy_port: bytes
    scheme: bytes
    port: bytes


class UpstreamSettings:
    """The ``proxy`` settings the upstream client reads on every exchange, copied from the location's
    ProxyConfig once (newproxy/engine/compiled.py): compiled code reads these as native fields, and a
    pydantic model's through Python's attribute lookup (~300 instructions each)."""

    buffering: bool
    buffer_size: int
    connect_timeout: float
    read_timeout: float
    next_upstream_tries: int

    def __init__(self, config: ProxyConfig) -> None:
        self.buffering = config.buffering
        self.buffer_size = config.buffer_size
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.next_upstream_tries = config.next_upstream_tries


class ProxyPass:
    """Forward ``head`` + ``body`` to a peer of ``upstream`` and relay its answer. A plain class, for
    the reason Request is one."""

    upstream: UpstreamGroup
    head: bytes  # request line and headers for the upstream, ending with the blank line
    # A file past client_body_buffer_size: sent in pieces (newproxy/http/upstream.py); a stream: sent
    # as the client sends it (proxy_request_buffering off).
    body: bytes | BodyFile | BodyStream
    proxy: ProxyConfig
    request: Request
    keepalive: bool  # whether the client connection may be kept after this response
    relay: ResponseRelay  # how to turn the upstream's response head into the client's
    settings: UpstreamSettings  # proxy's hot fields (the same location's)
    status_override: int = 0  # an error_page's status, which replaces the upstream's (0: keep it)
    # The engine's RequestContext, kept for Engine.upstream_failed (error_page after a 502/504).
    context: object = None
    # proxy_intercept_errors: the upstream statuses that get the location's error_page instead.
    intercept: frozenset[int] = frozenset()
    # limit_conn: called once when the exchange is over (after any error_page retry); None: nothing held.
    release: Callable[[], None] | None = None
    # limit_rate / limit_rate_after for the client's answer (None: not paced).
    rate: RateLimit | None = None
    # The end of a chunked body to the client: the last chunk, with add_trailer's trailers if any.
    last_chunk: bytes = b"0\r\n\r\n"
    # Fallback (pass_through): how to put the client's address back into a Location the legacy
    # nginx made absolute with its own. None: Location is left alone.
    location_rewrite: LocationFix | None = None
    # ip_hash: the client address; hash: the rendered key (empty for the other methods).
    balance_key: bytes = b""
    # proxy_pass with variables naming a host to look up (engine/proxyurl.py): the IO layer resolves
    # it and replaces ``upstream`` with a group of its addresses before connecting. None: connect.
    resolve: Resolve | None = None
    # https:// upstream: how to talk TLS to the peer, and the name for SNI and the certificate check
    # (proxy_ssl_name, else $proxy_host; its port stripped, as ngx_http_upstream_ssl_name does).
    tls: UpstreamTlsConfig | None = None
    tls_name: str = ""
    # Header lines the request already holds for the client, written after Connection and before the
    # upstream's: the WWW-Authenticate of a 401 whose error_page is proxied (newproxy/engine/access.py).
    extra_head: bytes = b""
    # add_trailer's lines for an HTTP/2 or HTTP/3 client, set by the headers filter on the response
    # head (as Response.trailers); b"": none.
    trailers: bytes = b""
    # An upstream's X-Accel-Redirect to follow (its value, and the upstream's headers): set by the upstream
    # client, read by Engine.upstream_failed (newproxy/engine/accel.py).
    redirect: tuple[bytes, list[tuple[bytes, bytes]]] | None = None
    # grpc_pass (newproxy/engine/grpc.py): the HTTP/2 request headers, pseudo-headers first, lower-case
    # names; ``head`` is then empty and newproxy/http/grpc_upstream.py sends them as a HEADERS frame.
    grpc_headers: list[tuple[bytes, bytes]] | None = None

    def __init__(self, upstream: UpstreamGroup, head: bytes, body: bytes | BodyFile | BodyStream,
                 proxy: ProxyConfig, request: Request, keepalive: bool, relay: ResponseRelay,
                 settings: UpstreamSettings, status_override: int = 0, context: object = None, intercept: frozenset[int] = frozenset(),
                 release: Callable[[], None] | None = None, rate: RateLimit | None = None,
                 last_chunk: bytes = b"0\r\n\r\n", location_rewrite: LocationFix | None = None,
                 balance_key: bytes = b"", resolve: Resolve | None = None,
                 tls: UpstreamTlsConfig | None = None, tls_name: str = "", extra_head: bytes = b"",
                 grpc_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.upstream = upstream
        self.head = head
        self.body = body
        self.proxy = proxy
        self.request = request
        self.keepalive = keepalive
        self.relay = relay
        self.settings = settings
        self.status_override = status_override
        self.context = context
        self.intercept = intercept
        self.release = release
        self.rate = rate
        self.last_chunk = last_chunk
        self.location_rewrite = location_rewrite
        self.balance_key = balance_key
        self.resolve = resolve
        self.tls = tls
        self.tls_name = tls_name
        self.extra_head = extra_head
        self.grpc_headers = grpc_headers


@dataclass(slots=True)
class RateLimit:
    """nginx's limit_rate for one answer: ``rate`` bytes per second once ``after`` bytes are sent.
    ``start`` is the wall-clock second the request began (nginx's r->start_sec): nginx allows
    ``rate * (now_sec - start + 1)`` bytes by whole second ``now_sec``, and waits sent/rate after each send."""

    rate: int
    after: int
    start: int


@dataclass(slots=True)
class Delayed:
    """limit_req delayed the request: the IO layer waits ``seconds`` (without blocking), then calls
    ``resume`` for the answer, which may be any engine result. Nothing is held while waiting
    (limit_conn counts after the delay, as in nginx), so a client gone meanwhile just drops it."""

    seconds: float
    resume: Callable[[], Result]


@dataclass(slots=True)
class AuthSubrequest:
    """auth_request: the access phase waits for a subrequest that goes upstream. The IO layer runs
    ``proxy`` like any ProxyPass but sends nothing to the client: it reads the response head (the
    body is dropped), then calls ``resume(status, headers)`` (status 502/504 when the upstream
    failed) for the answer, which may be any engine result, this one included."""

    proxy: ProxyPass
    resume: Callable[[int, list[tuple[bytes, bytes]]], Result]


@dataclass(slots=True)
class AwaitBody:
    """The content handler reads the request body, which is still coming (``Request.body_pending``):
    the IO layer calls ``resume`` for the answer once the body is all in, as nginx's
    ngx_http_read_client_request_body runs the handler when the body is read."""

    resume: Callable[[], Result]


Result = Union[Response, FileResponse, ProxyPass, Delayed, AuthSubrequest, AwaitBody]


def deferred(answer: Result, then: Callable[[RequestContext, Result], Result], ctx: RequestContext) -> Result | None:
    """For an answer that is not final yet (a limit_req delay, an auth_request subrequest): the same
    wait, with ``then(ctx, ...)`` applied to whatever it resumes with; None for a final answer (then
    the caller applies ``then``'s work itself)."""
    if isinstance(answer, Delayed):
        resume = answer.resume
        return Delayed(answer.seconds, lambda: then(ctx, resume()))
    if isinstance(answer, AuthSubrequest):
        resume_auth = answer.resume
        return AuthSubrequest(answer.proxy, lambda status, headers: then(ctx, resume_auth(status, headers)))
    if isinstance(answer, AwaitBody):
        resume_body = answer.resume
        return AwaitBody(lambda: then(ctx, resume_body()))
    return None
