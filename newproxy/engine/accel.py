"""X-Accel-Redirect: an upstream answer that names another URI (or a named location) to serve instead.

nginx (ngx_http_upstream_process_headers, 1.22), unless ``proxy_ignore_headers X-Accel-Redirect``:
once the upstream's head is read (after proxy_next_upstream and proxy_intercept_errors had their
say), the upstream request is finalized, its body dropped, and the request is redirected
internally: to ``@name`` as it is, else to the header's URI (``?`` splits the args, %-escapes are
decoded, "/../" or a NUL is a 404) with the method made GET unless it is HEAD (the client's body
stays: a proxied target still gets it, with its Content-Length). Six upstream headers are copied
into the answer first, whatever proxy_hide_header says (the ``redirect`` flag of
ngx_http_upstream_headers_in): Content-Type, Set-Cookie (through proxy_cookie_domain/_path),
Content-Disposition, Cache-Control, Expires, Accept-Ranges. They sit in the header list, so they
are written after Connection, before what the target adds (ETag, add_header...); Content-Type
replaces the one a file or a ``return`` text would get (error pages set text/html, a proxied
target's own Content-Type wins), and error pages clear Accept-Ranges. X-Accel-Charset,
-Expires and -Buffering change nothing without a cache or a charset (hidden, as by default);
X-Accel-Limit-Rate, read with the head, paces the redirect's answer (a file or a proxied one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newproxy.engine.context import RequestContext
from newproxy.engine.redirects import rewrite_header
from newproxy.engine.types import (
    FileResponse,
    ProxyPass,
    RateLimit,
    Response,
    Result,
    deferred,
)

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine

# The upstream headers with ``redirect`` set in ngx_http_upstream_headers_in (lower case).
_COPIED = frozenset({b"content-type", b"set-cookie", b"content-disposition", b"cache-control", b"expires",
                     b"accept-ranges"})

# ngx_http_parse_unsafe_uri's "usual" table: bytes that need no look (not controls, space, "#",
# "%", "+", ".", "/", "?", DEL).
_UNUSUAL = frozenset(range(0x21)) | frozenset(b"#%+./?") | {0x7F}
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


def unescape(raw: bytes) -> bytes:
    """ngx_unescape_uri with type 0: every %XX decoded; "%" then a non-hex byte drops the "%",
    "%X" then a non-hex byte drops all three."""
    if b"%" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        i += 1
        if ch != 0x25:
            out.append(ch)
            continue
        if i >= n:
            break
        high = _HEX.get(raw[i])
        i += 1
        if high is None:
            out.append(raw[i - 1])
            continue
        if i >= n:
            break
        low = _HEX.get(raw[i])
        i += 1
        if low is not None:
            out.append(high * 16 + low)
    return bytes(out)


def _dot_dot(raw: bytes, at: int) -> bool:
    """"/.." at ``at`` (the "/"), followed by the end or another "/": ngx_http_parse_unsafe_uri's test."""
    rest = len(raw) - at
    return rest > 2 and raw[at + 1:at + 3] == b".." and (rest == 3 or raw[at + 3] == 0x2F)


def parse_unsafe_uri(raw: bytes) -> tuple[bytes, bytes] | None:
    """ngx_http_parse_unsafe_uri: (uri, args), or None where nginx refuses the URI (a 404)."""
    if not raw or raw[0] == 0x3F or raw == b".." or raw.startswith(b"../"):
        return None
    uri, args = raw, b""
    quoted = False
    for i, ch in enumerate(raw):
        if ch not in _UNUSUAL:
            continue
        if ch == 0x25:
            quoted = True
        elif ch == 0x3F:
            uri, args = raw[:i], raw[i + 1:]
            break
        elif ch == 0 or ch == 0x2F and _dot_dot(raw, i):
            return None
    if quoted:
        uri = unescape(uri)
        if uri == b".." or uri.startswith(b"../") or 0 in uri:
            return None
        if any(ch == 0x2F and _dot_dot(uri, i) for i, ch in enumerate(uri)):
            return None
    return uri, args


def copied_headers(pp: ProxyPass, ctx: RequestContext, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The header lines nginx copies from the redirecting answer (Content-Type aside: the last one
    goes to ``ctx.accel_type``), with the location's proxy_cookie_* rules applied to Set-Cookie."""
    rewrites = pp.relay.rewrites
    lines: list[bytes] = []
    for name, value in headers:
        low = name.lower()
        if low not in _COPIED:
            continue
        if low == b"content-type":
            ctx.accel_type = value  # ngx_http_upstream_copy_content_type: each one replaces the last
            continue
        if rewrites is not None and low in rewrites.names:
            value, _ = rewrite_header(rewrites, ctx, low, value)
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines)


def follow(engine: Engine, ctx: RequestContext, pp: ProxyPass, output: Callable[[RequestContext, Result], Result]
           ) -> Result:
    """What nginx answers after an upstream's X-Accel-Redirect (``pp.redirect``), through the
    engine's output filters (``output``); the redirecting answer's X-Accel-Limit-Rate paces it."""
    assert pp.redirect is not None
    target, headers = pp.redirect
    pp.redirect = None
    answer = output(ctx, _redirect(engine, ctx, pp, target, headers))
    if pp.relay.accel_limit_rate:
        rate = next((v for n, v in headers if len(n) == 18 and n.lower() == b"x-accel-limit-rate"), None)
        if rate is not None and rate.isdigit():
            _pace(ctx, answer, int(rate))
    return answer


def _pace(ctx: RequestContext, answer: Result, rate: int) -> None:
    """nginx's r->limit_rate, set by the header before the redirect, is the answer's (limit_rate_set:
    the target location's limit_rate is not looked at; its limit_rate_after is). Answers made in
    memory are not paced by newproxy (a gap of limit_rate)."""
    if isinstance(answer, (FileResponse, ProxyPass)):
        current = answer.rate
        if not rate:
            answer.rate = None
        elif current is not None:
            answer.rate = RateLimit(rate, current.after, current.start)
        else:
            answer.rate = RateLimit(rate, 0, ctx.start_sec or int(time.time()))


def _redirect(engine: Engine, ctx: RequestContext, pp: ProxyPass, target: bytes,
              headers: list[tuple[bytes, bytes]]) -> Result:
    ctx.accel_head += copied_headers(pp, ctx, headers)  # they pile up over repeated redirects, as in nginx
    if target[:1] == b"@":
        answer: Result = engine.named_redirect(ctx, target.decode("latin-1"))
    else:
        parsed = parse_unsafe_uri(target)
        if parsed is None:
            answer = engine.fail(ctx, 404)
        else:
            if ctx.request.method != b"HEAD":
                ctx.method = b"GET"
            uri, args = parsed
            answer = engine.uri_redirect(ctx, uri.decode("latin-1"), args.decode("latin-1"))
    return with_copied(ctx, answer)


def with_copied(ctx: RequestContext, answer: Result) -> Result:
    """Put the copied lines into the answer where nginx's header filter writes its header list:
    after Connection, before what the target added; a page made by the special response handler
    (an error or a redirect page: text/html) loses the last Accept-Ranges, which that handler
    clears (r->headers_out.accept_ranges: the last one copied)."""
    later = deferred(answer, with_copied, ctx)
    if later is not None:
        return later
    lines = ctx.accel_head
    if not lines:
        return answer
    if isinstance(answer, ProxyPass):  # before the next upstream's own headers
        answer.extra_head = lines + answer.extra_head
        return answer
    head = answer.head
    if not head:
        return answer  # 444: nothing is sent
    if answer.status >= 300 and _builtin_page(answer):
        at = lines.lower().rfind(b"accept-ranges:")
        if at == 0 or at > 0 and lines[at - 2:at] == b"\r\n":
            lines = lines[:at] + lines[lines.find(b"\r\n", at) + 2:]
    at = head.find(b"\r\nConnection: ")
    end = head.find(b"\r\n", at + 2) + 2 if at >= 0 else len(head) - 2
    answer.head = head[:end] + lines + head[end:]
    return answer


def _builtin_page(answer: Response | FileResponse) -> bool:
    """A page ngx_http_send_special_response made (an error or redirect page, text/html)."""
    body = getattr(answer, "body", None)
    if body:
        return body.startswith(b"<html>\r\n<head><title>")
    return body is not None and b"\r\nContent-Type: text/html\r\n" in answer.head
