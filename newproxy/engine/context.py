"""Per-request state the phases share: what nginx keeps in ngx_http_request_t."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from newproxy.engine.types import Request

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledServer


class RequestContext:
    """What the phases know of a request (nginx's ngx_http_request_t beyond the request as read). A
    plain class, not a dataclass: compiled (newproxy/native.py), the phases read and write it
    without Python's generic attribute lookup."""

    request: Request
    server: CompiledServer
    host: str  # $host
    uri: str  # $uri
    args: str  # $args
    request_uri: str  # $request_uri
    uri_needs_escape: bool
    redirect_host: str  # the client's host (Host header or absolute URI), "" if none: for Location
    location: CompiledLocation | None = None
    captures: re.Match[str] | None = None  # the last regex that matched: $1..$9
    proxy_host: str = ""
    # Variables made by `set` and by named captures (nginx stores both in r->variables); None until one is.
    vars: dict[str, str] | None = None
    # nginx's r->internal: the URI was rewritten; $uri is re-escaped when sent upstream.
    internal: bool = False
    # r->valid_unparsed_uri: $uri is still the client's; proxy_pass without a URI part sends the raw target.
    valid_unparsed_uri: bool = True
    # r->valid_location: false after `rewrite ... break`: proxy_pass then ignores its URI part.
    valid_location: bool = True
    uri_changed: bool = False  # r->uri_changed: search the location again after the rewrite phase
    uri_changes: int = 11  # r->uri_changes: rewrites and internal redirects left before a 500 (cycle)
    method: bytes | None = None  # the method after an error_page redirect made it GET
    error_page: bool = False  # r->error_page: an error_page has been followed (recursive_error_pages off)
    # r->expect_tested: the answer is an error page (or a 413 at the head): nginx sends no
    # "100 Continue" before it, where a discarded body of any other answer gets one.
    expect_tested: bool = False
    err_status: int = 0  # r->err_status: the status an error_page answers with (0: the target's own)
    # Access phase (newproxy/engine/access.py, realip.py). real_ip: the connection's own address once
    # a trusted header replaced Request.client_addr ($realip_remote_addr), None before.
    realip_from: tuple[str, int] | None = None
    # r->headers_out.www_authenticate: the WWW-Authenticate values a 401 from auth_basic/auth_request put
    # in the answer (kept across error_page, as in nginx); None when there are none.
    www_authenticate: list[bytes] | None = None
    subrequest: bool = False  # an auth_request subrequest: no access phase (r != r->main)
    # The upstream answer (status, headers) an auth_request subrequest got, for $upstream_* in auth_request_set;
    # on a proxied request, the one relayed or intercepted ($upstream_http_NAME: engine/requestfacts.py).
    upstream_answer: tuple[int, list[tuple[bytes, bytes]]] | None = None
    gzip_filtered: bool = False  # the static handler ran the gzip filter itself (before the range filter)
    last_modified: int = -1  # r->headers_out.last_modified_time of a file answer: what `expires modified` uses
    # A 416 made by the range filter, which runs after the headers filter: that one saw a 200 first.
    range_rejected: bool = False
    # r->main->limit_req_status / limit_conn_status (newproxy/engine/limits.py): 0 until a limit applied;
    # once set, the preaccess limits are not applied again after an internal redirect.
    limit_req_status: int = 0
    limit_conn_status: int = 0
    holds: object = None  # the limit_conn counts this request holds (limits.Holds), released at its end
    static_file: tuple[str, object] | None = None  # (path, stat) of a file answered from the file cache
    proxy_body: bytes | None = None  # proxy_set_body's value for this request: its length is the Content-Length
    # X-Accel-Redirect (newproxy/engine/accel.py): the first upstream's Content-Type, which the answer of the
    # redirect target keeps unless that sets its own (files and `return` text do not); None: none.
    accel_type: bytes | None = None
    accel_head: bytes = b""  # the header lines copied from every X-Accel-Redirect answer so far
    proxy_chunked: bool = False  # the body goes upstream chunked ($proxy_internal_chunked)
    # Error-log messages (level, text) the phases noted, written by the IO layer (newproxy/engine/errors.py).
    errors: list[tuple[int, str]] | None = None
    start_sec: int = 0  # nginx's r->start_sec, kept when limit_req delays the request (0: now is close enough)

    def __init__(self, request: Request, server: CompiledServer, host: str, uri: str, args: str, request_uri: str,
                 uri_needs_escape: bool, redirect_host: str, vars: dict[str, str] | None = None,
                 internal: bool = False, valid_unparsed_uri: bool = True, method: bytes | None = None,
                 subrequest: bool = False, realip_from: tuple[str, int] | None = None) -> None:
        self.request = request
        self.server = server
        self.host = host
        self.uri = uri
        self.args = args
        self.request_uri = request_uri
        self.uri_needs_escape = uri_needs_escape
        self.redirect_host = redirect_host
        self.vars = vars
        self.internal = internal
        self.valid_unparsed_uri = valid_unparsed_uri
        self.method = method
        self.subrequest = subrequest
        self.realip_from = realip_from


def set_captures(ctx: RequestContext, match: re.Match[str]) -> None:
    """A regex matched: $1..$9 come from it, and each named group becomes a variable (as nginx does)."""
    ctx.captures = match
    if match.re.groupindex:
        variables = ctx.vars
        if variables is None:
            variables = ctx.vars = {}
        for name, value in match.groupdict().items():
            variables[name] = value or ""
