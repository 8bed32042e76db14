"""grpc_pass: the HTTP/2 request nginx's grpc module sends upstream (ngx_http_grpc_create_request).

Header order, as nginx writes them into its HEADERS frame:

1. ``:method`` (the client's, or GET after an error_page), ``:scheme`` (``https`` for grpcs),
   ``:path`` (the client's raw target while $uri is untouched, else $uri escaped plus ``?args``),
   ``:authority`` (the host[:port] of grpc_pass, ``proxy_host``) unless grpc_set_header sets Host
   (then the translator writes ``proxy_host`` empty and Host goes as an ordinary header);
2. the set headers in their order (grpc_set_header first, then nginx's defaults
   ``Content-Length: $content_length`` and ``TE: $grpc_internal_trailers``), those whose value is
   empty not sent; names lower-cased (HPACK);
3. every client header whose name is not among the set headers (nginx's defaults also hide Host,
   Connection, Proxy-Connection, Transfer-Encoding, Keep-Alive, Expect and Upgrade), in order.

Measured against nginx 1.22 in tests/test_differential_grpc.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.engine.context import RequestContext
from newproxy.engine.proxy import escape_uri
from newproxy.engine.types import ProxyPass

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledProxy

_HTTP = (b":scheme", b"http")
_HTTPS = (b":scheme", b"https")


def _path(ctx: RequestContext) -> bytes:
    """ngx_http_grpc_create_request's :path: the client's raw target while it is still valid, else
    $uri escaped wherever it needs it (unlike proxy_pass, whatever the client's own escaping) and
    ``?args``."""
    if ctx.valid_unparsed_uri and ctx.request_uri[:1] != "?":  # "?a": nginx's empty_path_in_uri, not valid
        return ctx.request_uri.encode("latin-1")
    path = escape_uri(ctx.uri)
    return path + b"?" + ctx.args.encode("latin-1") if ctx.args else path


def request_headers(ctx: RequestContext, proxy: CompiledProxy) -> list[tuple[bytes, bytes]]:
    request = ctx.request
    config = proxy.config
    headers = [(b":method", ctx.method or request.method), _HTTPS if config.tls is not None else _HTTP,
               (b":path", _path(ctx))]
    if config.proxy_host:  # the translator leaves it empty when grpc_set_header sets Host
        headers.append((b":authority", config.proxy_host.encode("latin-1")))
    for line, prefix, template in proxy.headers:
        constant = template.constant
        value = constant if constant is not None else template.render(ctx)
        if value:
            headers.append((prefix[:-2].lower(), value.encode("latin-1")))
    if config.pass_request_headers:
        suppressed = proxy.suppressed
        for name, value in request.headers:
            low = name.lower()
            if low not in suppressed:
                headers.append((low, value))
    return headers


def grpc_pass(ctx: RequestContext, location: CompiledLocation, proxy: CompiledProxy, balance_key: bytes) -> ProxyPass:
    """The ProxyPass of a grpc_pass location: no HTTP/1 head, the h2 headers instead."""
    request = ctx.request
    if request.length_added:
        # nginx reads a grpc request body unbuffered: no Content-Length is made up for it.
        request.length_added = False
        for i in range(len(request.headers) - 1, -1, -1):
            if request.headers[i][0] == b"content-length":
                del request.headers[i]
                break
    ctx.proxy_host = proxy.config.proxy_host
    body = request.body if proxy.config.pass_request_body else b""
    if not isinstance(body, bytes):  # a body in a file (HTTP/1): the gRPC client sends bytes
        body = body.read(0, len(body))
    return ProxyPass(
        upstream=proxy.group,
        head=b"",
        body=body,
        proxy=proxy.config,
        request=request,
        keepalive=request.keepalive,
        relay=proxy.relay,
        settings=proxy.settings,
        status_override=ctx.err_status,
        context=ctx,
        intercept=location.intercept,
        balance_key=balance_key,
        grpc_headers=request_headers(ctx, proxy),
    )
