"""proxy_pass: the request nginx sends upstream, and the response head it relays to the client.

Upstream request (ngx_http_proxy_create_request): the method as received; the client's raw URI
when proxy_pass has no URI part, else the URI part plus the rest of $uri after the location prefix
(re-escaped when the client's URI had %-escapes) plus ``?args``; the set headers in their order
(empty values not sent), then every client header whose name is not among them.

Client response: nginx's own status line with the upstream's code and reason phrase, Server, Date,
Content-Type, Content-Length, Transfer-Encoding, Connection, then the other upstream headers in
their order, minus hop-by-hop and proxy_hide_header ones (measured against nginx 1.22: upstream
Location and Last-Modified keep their place in the list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from newproxy.engine.context import RequestContext
from newproxy.engine.gzip import CompiledGzip, rewrite_head
from newproxy.engine.headers import HeaderProgram
from newproxy.engine.redirects import HeaderRewrites, absolute_location, rewrite_header
from newproxy.engine.responses import ResponseMaker
from newproxy.engine.status import REASONS
from newproxy.engine.types import LocationFix, ProxyPass, Request

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledProxy
    from newproxy.http.bodyfile import BodyFile
    from newproxy.http.bodystream import BodyStream


@dataclass(slots=True, frozen=True)
class ResponseRelay:
    """Per-location, built at load: what client_response_head needs besides the upstream's answer."""

    maker: ResponseMaker
    hidden: frozenset[bytes]  # lower-case proxy_hide_header names
    pass_through: bool = False  # the strangler fallback: relay the legacy nginx's head as it is
    rewrites: HeaderRewrites | None = None  # proxy_redirect, proxy_cookie_domain/_path; None: none
    headers: HeaderProgram | None = None  # the location's expires/add_header/add_trailer
    gzip: CompiledGzip | None = None  # the location's gzip filter; None: gzip off (no cost)
    accel_redirect: bool = False  # follow an upstream's X-Accel-Redirect (newproxy/engine/accel.py)
    accel_limit_rate: bool = False  # an upstream's X-Accel-Limit-Rate paces the answer (newproxy/http/upstream.py)
    # Some value of the config reads $upstream_http_NAME/$upstream_cookie_NAME: keep_upstream_answer.
    upstream_answer: bool = False
    # An upstream header name as sent -> what client_response_head does with it (_HIDDEN...): one
    # lookup a header instead of lowering the name and testing it against each set. Names come
    # from peers: emptied when full (one per proxied location: a few dozen names is the usual).
    kinds: dict[bytes, int] = field(default_factory=dict, compare=False, hash=False)

    def kind_of(self, name: bytes) -> int:
        """``name``'s kind, read and remembered (the order of client_response_head's tests)."""
        low = lower_name(name)
        if low in self.hidden:
            kind = _HIDDEN
        elif low == b"content-type":
            kind = _CONTENT_TYPE
        elif low == b"content-length":
            kind = _CONTENT_LENGTH
        elif low in _HOP_BY_HOP:
            kind = _HIDDEN  # (nginx frames the body itself)
        elif self.rewrites is not None and low in self.rewrites.names:
            kind = _REWRITTEN
        else:
            kind = _RELAYED
        kinds = self.kinds
        if len(kinds) >= _KINDS_MAX:
            kinds.clear()
        kinds[name] = kind
        return kind


# ngx_escape_uri(NGX_ESCAPE_URI): " ", "#", "%", "?", controls and bytes >= 0x7f.
_ESCAPE: Final = frozenset(b" #%?") | frozenset(range(0x00, 0x20)) | frozenset(range(0x7F, 0x100))
_ESCAPED: Final = {byte: b"%%%02X" % byte for byte in _ESCAPE}

# Upstream response headers nginx never relays (it frames the body itself).
_HOP_BY_HOP: Final = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})

# What client_response_head does with an upstream header (ResponseRelay.kind_of).
_RELAYED: Final = 0  # passed on as it is
_HIDDEN: Final = 1  # proxy_hide_header (or nginx's default set), or hop-by-hop: dropped
_CONTENT_TYPE: Final = 2
_CONTENT_LENGTH: Final = 3
_REWRITTEN: Final = 4  # proxy_redirect / proxy_cookie_* look at it
_KINDS_MAX: Final = 256  # names a location remembers (ResponseRelay.kinds)

# header name -> its lower case. Names repeat across requests (the request parser's are even the
# same objects, whose hash bytes keep): a lookup costs a fraction of a lower() call. Emptied when
# full: names come from clients and peers.
_LOWER: Final[dict[bytes, bytes]] = {}
_LOWER_MAX: Final = 4096


# status -> b"HTTP/1.1 <status> ": one lookup where formatting the number costs a generic call.
_STATUS_PREFIX: Final[dict[int, bytes]] = {}


def _status_prefix(status: int) -> bytes:
    prefix = _STATUS_PREFIX.get(status)
    if prefix is None:
        prefix = b"HTTP/1.1 %d " % status
        if len(_STATUS_PREFIX) < 1000:  # (an HTTP status has three digits)
            _STATUS_PREFIX[status] = prefix
    return prefix


def lower_name(name: bytes) -> bytes:
    low = _LOWER.get(name)
    if low is None:
        low = name.lower()
        if len(_LOWER) >= _LOWER_MAX:
            _LOWER.clear()
        _LOWER[name] = low
    return low


def escape_uri(uri: str) -> bytes:
    raw = uri.encode("latin-1")
    if not any(byte in _ESCAPE for byte in raw):
        return raw
    return b"".join(_ESCAPED.get(byte) or bytes((byte,)) for byte in raw)


def upstream_uri(ctx: RequestContext, proxy: CompiledProxy) -> bytes:
    """ngx_http_proxy_create_request's URI.

    No URI part and $uri still the client's: the raw target. Otherwise the URI part (dropped after
    ``rewrite ... break``, which clears r->valid_location) plus $uri after the location prefix (the
    whole $uri when there is no URI part or after break), re-escaped when the client's URI had
    %-escapes or a rewrite changed it (r->quoted_uri || r->internal), plus "?" $args.
    """
    # An absolute-form target without a path ("http://h?a": $request_uri "?a") is not a valid
    # unparsed URI for nginx (empty_path_in_uri): "/" and the args are sent instead.
    if proxy.uri is None and ctx.valid_unparsed_uri and ctx.request_uri[:1] != "?":
        return ctx.request_uri.encode("latin-1")
    if proxy.uri is not None and ctx.valid_location:
        prefix = proxy.uri.encode("latin-1")
        tail = ctx.uri[len(proxy.location_path):] if ctx.uri.startswith(proxy.location_path) else ctx.uri
    else:
        prefix = b""
        tail = ctx.uri
    tail_bytes = escape_uri(tail) if ctx.uri_needs_escape or ctx.internal else tail.encode("latin-1")
    uri = prefix + tail_bytes
    if ctx.args:
        uri += b"?" + ctx.args.encode("latin-1")
    return uri


def pass_through_head(request: Request) -> bytes:
    """The strangler fallback's upstream request: the client's request line and headers as received
    (raw target, not a re-encoded $uri; Host, Connection and every other header in their order and
    case), so the legacy nginx runs its whole config on exactly what the client sent."""
    parts = [request.method, b" ", request.target, b" HTTP/", request.version, b"\r\n"]
    for name, value in request.headers:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def pass_through_body(request: Request) -> bytes | BodyFile:
    """The body as the client framed it: a chunked request (decoded by the front end) is chunked
    again, in one chunk, since its Transfer-Encoding header is passed on unchanged."""
    for name, value in request.headers:
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return one_chunk(request.body)
    return request.body


def one_chunk(body: bytes | BodyFile) -> bytes | BodyFile:
    """A whole body as one chunk and the last chunk (just the last chunk when it is empty); a body
    in a file that kept its reads, a chunk per read (as ``body_parts``)."""
    if not body:
        return b"0\r\n\r\n"
    if isinstance(body, bytes):
        return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return body.chunked()


def streams_body(proxy: CompiledProxy, request: Request) -> bool:
    """Whether nginx reads this request's body unbuffered for this proxy_pass, sending it upstream as
    it arrives (ngx_http_proxy_handler's r->request_body_no_buffering): proxy_request_buffering off,
    no proxy_set_body, the body passed, and not a chunked one to an HTTP/1.0 upstream."""
    config = proxy.config
    if config.request_buffering or proxy.body is not None or not config.pass_request_body \
            or config.pass_through or config.protocol != "http":
        return False
    return config.http_version == "1.1" or not is_chunked(request)


def is_chunked(request: Request) -> bool:
    """Whether the body comes without a length: chunked over HTTP/1.1; over HTTP/2 and HTTP/3,
    without Content-Length (nginx's r->headers_in.chunked for those)."""
    if request.version in (b"2.0", b"3.0"):
        return not any(name == b"content-length" for name, _ in request.headers)
    return any(len(name) == 17 and name.lower() == b"transfer-encoding" for name, _ in request.headers)


def upstream_body(ctx: RequestContext, proxy: CompiledProxy) -> bytes | BodyFile | BodyStream:
    """The body sent upstream: proxy_set_body's value (for any method; the client's body is read but
    not sent), else the client's body unless proxy_pass_request_body is off. Evaluated before the
    head, as ngx_http_proxy_create_request does: $proxy_internal_body_length is then its length."""
    if proxy.body is not None:
        body = proxy.body.render(ctx).encode("latin-1")
        ctx.proxy_body = body
        return body
    if not proxy.pass_request_body:
        return b""
    request = ctx.request
    stream = request.body_stream
    if stream is not None:  # sent as it arrives (a later pass gets what is left of it: not compared)
        ctx.proxy_chunked = stream.chunked
        return stream
    if request.chunked_late:
        request.chunked_late = False  # a later pass (error_page, X-Accel-Redirect) finds it read whole
        parts, request.body_parts = request.body_parts, None
        if not proxy.config.request_buffering and proxy.config.http_version == "1.1":
            # nginx connects while the body still arrives and sends it on chunked
            # (ngx_http_proxy_create_request: r->reading_body); newproxy has it whole by now and sends
            # the same bytes in one chunk.
            ctx.proxy_chunked = True
            if request.length_added:  # HTTP/2's made-up Content-Length: nginx had none to send
                request.length_added = False
                request.headers = [h for h in request.headers if h[0] != b"content-length"]
            if parts:  # HTTP/2: a chunk per read, as nginx forwarded them
                return b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in parts) + b"0\r\n\r\n"
            return one_chunk(request.body)
    elif ctx.proxy_chunked:
        ctx.proxy_chunked = False
    return request.body


def upstream_head(ctx: RequestContext, proxy: CompiledProxy, uri: bytes | None = None) -> bytes:
    """The request line and headers; ``uri``: a variable proxy_pass URL's own URI part, sent as it is."""
    # proxy_method replaces the method, also after an error_page made it GET (plcf->method comes first).
    method = proxy.method.render(ctx).encode("latin-1") if proxy.method is not None else None
    parts = [method if method is not None else ctx.method or ctx.request.method, b" ",
             upstream_uri(ctx, proxy) if uri is None else uri, proxy.version_suffix]
    for line, prefix, template in proxy.headers:
        if line is not None:
            parts.append(line)
            continue
        value = template.render(ctx)
        if value:
            parts.append(prefix + value.encode("latin-1") + b"\r\n")
    if proxy.pass_request_headers:
        suppressed = proxy.suppressed
        for name, header_value in ctx.request.headers:
            if lower_name(name) not in suppressed:
                # joined once below: no bytes made per line (appends: compiled, += a tuple is generic)
                parts.append(name)
                parts.append(b": ")
                parts.append(header_value)
                parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def keep_upstream_answer(pp: ProxyPass, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """nginx's r->upstream->headers_in, which $upstream_http_NAME and $upstream_cookie_NAME read: the
    answer being relayed, or the one an error_page or X-Accel-Redirect replaced (kept for its target)."""
    if isinstance(pp.context, RequestContext):
        pp.context.upstream_answer = (status, headers)


def carry_www_authenticate(pp: ProxyPass, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """proxy_intercept_errors took an upstream answer (ngx_http_upstream_intercept_errors): for a
    401, nginx 1.22 carries the answer's first WWW-Authenticate over to the error_page's answer."""
    if status == 401 and isinstance(pp.context, RequestContext):
        found = next((v for n, v in headers if len(n) == 16 and n.lower() == b"www-authenticate"), None)
        if found is not None:
            ctx = pp.context
            ctx.www_authenticate = [found] if ctx.www_authenticate is None else [*ctx.www_authenticate, found]


def client_response_head(
    pp: ProxyPass, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: str
) -> tuple[bytes, str]:
    """The head to send the client for an upstream response, and how to frame its body."""
    if pp.relay.pass_through:
        return _relay_as_is(pp, status, reason, headers, framing)
    if pp.relay.upstream_answer:
        keep_upstream_answer(pp, status, headers)
    maker = pp.relay.maker
    hidden = pp.relay.hidden
    if pp.status_override:  # error_page: nginx's own status line for the error code
        status, reason = pp.status_override, REASONS.get(pp.status_override, "").encode()
    content_type: bytes | None = None
    content_length: bytes | None = None
    rest: list[bytes] = []
    relay = pp.relay
    rewrites = relay.rewrites
    kinds = relay.kinds
    location_at = -1  # proxy_redirect: the last Location a rule rewrote (nginx's headers_out.location)
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = relay.kind_of(name)
        if kind == _RELAYED:
            # (pieces, joined once with the head; a rewritten line below is one piece)
            rest.append(name)
            rest.append(b": ")
            rest.append(value)
            rest.append(b"\r\n")
        elif kind == _CONTENT_TYPE:
            if content_type is None:
                content_type = value
        elif kind == _CONTENT_LENGTH:
            content_length = value
        elif kind == _REWRITTEN:
            assert rewrites is not None
            value, rewritten_location = rewrite_header(rewrites, pp.context, lower_name(name), value)
            if rewritten_location:
                location_at = len(rest)
            rest.append(name + b": " + value + b"\r\n")
    moved_location = None
    if location_at >= 0 and rest[location_at][10:11] == b"/":
        # A rewritten relative Location leaves its place: the header filter writes it absolute,
        # after Content-Length (absolute_redirect on).
        moved_location = absolute_location(pp.context, rest.pop(location_at)[10:-2])
    client_framing = framing
    chunked = False
    if framing in ("chunked", "close"):
        if pp.request.version == b"1.1":
            client_framing, chunked = "chunked", True
        else:
            client_framing = "close"
    keepalive = pp.keepalive and client_framing != "close"
    # proxy_pass_header Server/Date: nginx's own line is never written, only the upstream's, in its place
    # in the list, if it sent one (ngx_http_proxy_process_header adds an empty one that hides nginx's).
    parts = [_status_prefix(status) + reason + b"\r\n",
             maker.server_line if b"server" in hidden else b"",
             maker.date.line() if b"date" in hidden else b""]
    if content_type is None and isinstance(pp.context, RequestContext):
        content_type = pp.context.accel_type  # an X-Accel-Redirect's upstream sent one: it stays
    if content_type is not None:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    if content_length is not None and framing in ("length", "none"):
        parts.append(b"Content-Length: " + content_length + b"\r\n")
    if moved_location is not None:
        parts.append(b"Location: " + moved_location + b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if status == 101:  # nginx's header filter: a switch says "upgrade" (the Upgrade line passes)
        parts.append(b"Connection: upgrade\r\n")
    else:
        parts.append(b"Connection: keep-alive\r\n" if keepalive else b"Connection: close\r\n")
    if pp.extra_head:
        parts.append(pp.extra_head)
    parts.extend(rest)
    parts.append(b"\r\n")
    head = b"".join(parts)
    program = pp.relay.headers
    if program is not None:
        head, client_framing = _filter_headers(program, pp, status, head, headers, client_framing)
    gz = pp.relay.gzip
    if gz is not None:  # after the headers filter, as in nginx
        head, client_framing = _gzip(gz, pp, head, client_framing)
    return head, client_framing


def _gzip(gz: CompiledGzip, pp: ProxyPass, head: bytes, framing: str) -> tuple[bytes, str]:
    """nginx's gzip filter on a proxied response head. A compressed body is framed "gzip-chunked"
    (HTTP/1.1) or "gzip-close" (HTTP/1.0): the upstream client streams it through a compressor."""
    request = pp.request
    ctx = pp.context
    method = (ctx.method if isinstance(ctx, RequestContext) else None) or request.method
    head, decision, _ = rewrite_head(gz, request, method, head, True)
    if decision != 2 or framing == "none":
        return head, framing
    return head, "gzip-chunked" if request.version == b"1.1" else "gzip-close"


def _filter_headers(program: HeaderProgram, pp: ProxyPass, status: int, head: bytes,
                    upstream_headers: list[tuple[bytes, bytes]], framing: str) -> tuple[bytes, str]:
    """The headers filter on a proxied response: expires (``modified`` counts from the upstream's
    Last-Modified), add_header, and add_trailer, which makes an HTTP/1.1 body chunked (nginx's
    chunked filter does so when a trailer is expected, dropping Content-Length)."""
    from newproxy.engine.static import parse_http_time  # static imports the engine; late import

    ctx = pp.context if isinstance(pp.context, RequestContext) else None
    last_modified = -1
    if program.expires is not None and program.expires.mode == "modified":
        for name, value in upstream_headers:
            if name.lower() == b"last-modified" and b"last-modified" not in pp.relay.hidden:
                last_modified = parse_http_time(value)
                break
    head = program.apply(head, status, ctx, pp.relay.maker.date.second, last_modified)
    if program.trailers and framing != "none" and pp.request.version >= b"2":
        pp.trailers = program.trailer_lines(status, ctx) or b""  # HTTP/2 and 3: after the body
    if program.trailers and framing != "none" and pp.request.version == b"1.1":
        lines = program.trailer_lines(status, ctx)
        if lines is not None:
            if framing == "length":
                start = head.lower().find(b"\r\ncontent-length:")
                if start >= 0:
                    end = head.find(b"\r\n", start + 2)
                    head = head[:start] + head[end:]
                keep_alive = head.find(b"\r\nConnection: ")
                head = head[:keep_alive] + b"\r\nTransfer-Encoding: chunked" + head[keep_alive:]
                framing = "chunked"
            pp.last_chunk = b"0\r\n" + lines + b"\r\n"
    return head, framing


def _fix_location(value: bytes, fix: LocationFix) -> bytes:
    """``http://HOST[:PORT]rest`` with HOST one legacy writes for itself and PORT legacy's own:
    the client's scheme, host and port instead; any other Location as it is."""
    end = len(value)
    for stop in (b"/", b"?", b"#"):
        at = value.find(stop, 7)
        if 0 <= at < end:
            end = at
    authority = value[7:end]
    colon = authority.rfind(b":")
    if colon >= 0 and not authority.endswith(b"]"):
        host, port = authority[:colon], authority[colon:]
    else:
        host, port = authority, b""
    own_host = fix.hosts.get(host.lower())
    if own_host is None or port != fix.legacy_port:
        return value
    return fix.scheme + own_host + fix.port + value[end:]


def _relay_as_is(
    pp: ProxyPass, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: str
) -> tuple[bytes, str]:
    """The strangler fallback's client head: the legacy nginx's status line and headers in their
    order, its Server and Date included (it made the response; normalising them would hide which
    proxy answered). Only what belongs to the hop is newproxy's: Connection (closed when legacy
    closes, as the original nginx would have closed the client's connection), Keep-Alive (only on a
    kept connection) and the framing headers. A Location legacy made absolute with its own host and
    port (``absolute_redirect``/``port_in_redirect``, nginx's defaults) gets the client's instead."""
    client_framing = framing
    chunked = False
    if framing in ("chunked", "close"):
        if pp.request.version == b"1.1":
            client_framing, chunked = "chunked", True
        else:
            client_framing = "close"
    rewrite = pp.location_rewrite
    lines: list[bytes] = []
    connection_at = -1
    keep_alive_line = b""
    legacy_close = False
    for name, value in headers:
        low = name.lower()
        if low == b"connection":
            legacy_close = legacy_close or b"close" in value.lower()
            if connection_at < 0:
                connection_at = len(lines)
                lines.append(b"")  # filled in below, in legacy's place
            continue
        if low == b"transfer-encoding":
            if chunked:
                lines.append(b"Transfer-Encoding: chunked\r\n")
                chunked = False  # written
            continue
        if low == b"keep-alive":
            keep_alive_line = name + b": " + value + b"\r\n"
            continue
        if low == b"content-length" and framing not in ("length", "none"):
            continue
        if rewrite is not None and low == b"location" and value.startswith(b"http://"):
            value = _fix_location(value, rewrite)
        lines.append(name + b": " + value + b"\r\n")
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if legacy_close:
        pp.keepalive = False  # read by the IO layer when the response is done
    keepalive = pp.keepalive and client_framing != "close"
    connection = b"Connection: keep-alive\r\n" + keep_alive_line if keepalive else b"Connection: close\r\n"
    if connection_at >= 0:
        lines[connection_at] = connection
    else:
        lines.append(connection)
    return b"".join([b"HTTP/1.1 %d " % status + reason + b"\r\n", *lines, b"\r\n"]), client_framing
