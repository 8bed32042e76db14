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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.engine.context import RequestContext
from newproxy.engine.responses import ResponseMaker
from newproxy.engine.status import REASONS
from newproxy.engine.types import ProxyPass

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledProxy


@dataclass(slots=True, frozen=True)
class ResponseRelay:
    """Per-location, built at load: what client_response_head needs besides the upstream's answer."""

    maker: ResponseMaker
    hidden: frozenset[bytes]  # lower-case proxy_hide_header names

# ngx_escape_uri(NGX_ESCAPE_URI): " ", "#", "%", "?", controls and bytes >= 0x7f.
_ESCAPE = frozenset(b" #%?") | frozenset(range(0x00, 0x20)) | frozenset(range(0x7F, 0x100))
_ESCAPED = {byte: b"%%%02X" % byte for byte in _ESCAPE}

# Upstream response headers nginx never relays (it frames the body itself).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})


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
    if proxy.uri is None and ctx.valid_unparsed_uri:
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


def upstream_head(ctx: RequestContext, proxy: CompiledProxy) -> bytes:
    parts = [ctx.method or ctx.request.method, b" ", upstream_uri(ctx, proxy), proxy.version_suffix]
    for line, prefix, template in proxy.headers:
        if line is not None:
            parts.append(line)
            continue
        value = template.render(ctx)
        if value:
            parts.append(prefix + value.encode("latin-1") + b"\r\n")
    if proxy.config.pass_request_headers:
        suppressed = proxy.suppressed
        for name, value in ctx.request.headers:
            if name.lower() not in suppressed:
                parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def client_response_head(
    pp: ProxyPass, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: str
) -> tuple[bytes, str]:
    """The head to send the client for an upstream response, and how to frame its body."""
    maker = pp.relay.maker
    hidden = pp.relay.hidden
    if pp.status_override:  # error_page: nginx's own status line for the error code
        status, reason = pp.status_override, REASONS.get(pp.status_override, "").encode()
    content_type: bytes | None = None
    content_length: bytes | None = None
    rest: list[bytes] = []
    for name, value in headers:
        low = name.lower()
        if low in hidden:
            continue
        if low == b"content-type":
            if content_type is None:
                content_type = value
        elif low == b"content-length":
            content_length = value
        elif low in _HOP_BY_HOP:
            continue
        else:
            rest.append(name + b": " + value + b"\r\n")
    client_framing = framing
    chunked = False
    if framing in ("chunked", "close"):
        if pp.request.version == b"1.1":
            client_framing, chunked = "chunked", True
        else:
            client_framing = "close"
    keepalive = pp.keepalive and client_framing != "close"
    parts = [b"HTTP/1.1 %d " % status + reason + b"\r\n", maker.server_line, maker.date.line()]
    if content_type is not None:
        parts.append(b"Content-Type: " + content_type + b"\r\n")
    if content_length is not None and framing in ("length", "none"):
        parts.append(b"Content-Length: " + content_length + b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"Connection: keep-alive\r\n" if keepalive else b"Connection: close\r\n")
    parts.extend(rest)
    parts.append(b"\r\n")
    return b"".join(parts), client_framing
