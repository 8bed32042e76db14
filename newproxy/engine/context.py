"""Per-request state the phases share: what nginx keeps in ngx_http_request_t."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.engine.types import Request

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledServer


@dataclass(slots=True)
class RequestContext:
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
    err_status: int = 0  # r->err_status: the status an error_page answers with (0: the target's own)


def set_captures(ctx: RequestContext, match: re.Match[str]) -> None:
    """A regex matched: $1..$9 come from it, and each named group becomes a variable (as nginx does)."""
    ctx.captures = match
    if match.re.groupindex:
        variables = ctx.vars
        if variables is None:
            variables = ctx.vars = {}
        for name, value in match.groupdict().items():
            variables[name] = value or ""
