"""Whether nginx reads a request's body or discards it, decided once the head is read.

nginx reads a body only for a content handler that wants it (proxy_pass, grpc_pass...). Every other
answer (``return``, a redirect, a file, an index or autoindex page, stub_status, an error page)
goes through ngx_http_discard_request_body: nginx answers at once, without waiting for the body,
then reads and drops it. The HTTP/1 and HTTP/2 front ends ask ``discards`` before reading a body:
when no proxy can be reached, they run the request at its head and drop the body as nginx does;
otherwise they read the body whole first, as for any proxied request.

How it knows: the request's own rewrite phases and location search run here on a context of its
own, as the engine runs them, and their answers are looked at, not made (``_Probe``); then its
try_files checks. Where that leads to an error page or an index name, the targets are followed
without running anything (constant targets only, at most ``_DEPTH`` internal redirects, error
pages not followed within an error page's target, as recursive_error_pages off): a location whose
rewrites only answer or stay, with no proxy, try_files or auth_request. What cannot be followed
(a target with variables, an auth_request, a deeper chain) counts as reading the body: the answer
then waits for it (the caveat of the translator's error_page/index/auth_request notes).

A request that reaches an auth_request location is AUTH_FIRST (``plan``): nginx sends the subrequest
before reading anything of the body, so the HTTP/1 front end runs its phases at the head; a refusal
discards the body, an acceptance reads it for the content handler (types.AwaitBody). One that
reaches a proxy_pass reading its body unbuffered (proxy_request_buffering off) is STREAM: run at the
head too, its body sent upstream as it comes.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from newproxy.engine import rewrite, trace
from newproxy.engine.compiled import CompiledLocation, CompiledReturn, CompiledServer
from newproxy.engine.context import RequestContext, set_captures
from newproxy.engine.proxy import streams_body
from newproxy.engine.rewrite import (
    CompiledBreak,
    CompiledIf,
    CompiledRewrite,
    CompiledSet,
    Step,
)
from newproxy.engine.types import Response

_DEPTH = 4  # internal redirects followed before giving up (reading the body whole, the safe way)


class _Probe:
    """The engine's rewrite answers, without their effects (an error page may run the phases
    again, limits and all): which kind of answer the rewrite phase made."""

    __slots__ = ("redirected", "returned")

    def __init__(self) -> None:
        self.redirected = False
        self.returned: CompiledReturn | None = None

    def rewrite_redirect(self, ctx: RequestContext, status: int, target: str) -> Response:
        self.redirected = True
        return _ANSWERED

    def rewrite_return(self, ctx: RequestContext, step: CompiledReturn) -> Response:
        self.returned = step
        return _ANSWERED


_ANSWERED = Response(0, b"", b"", False)


READ: Final = 0
DISCARD: Final = 1
AUTH_FIRST: Final = 2
STREAM: Final = 3


def discards(ctx: RequestContext) -> bool:
    """True when nginx would not read this request's body (see ``plan``)."""
    return plan(ctx) == DISCARD


def plan(ctx: RequestContext) -> int:
    """What nginx does with this request's body: DISCARD it (answered without it), READ it whole
    for the content handler, AUTH_FIRST: an auth_request location, whose subrequest nginx sends
    before it reads anything of the body (and whose refusal then discards it), or STREAM: a
    proxy_pass that reads it unbuffered (proxy_request_buffering off), run at the head and sent
    upstream as it arrives (newproxy/http/bodystream.py). ``ctx`` is a context
    of its own (the request is run afresh afterwards): the rewrite phases and the location search
    run on it as the engine runs them (Engine._serve), with the answers they make looked at, not made."""
    if trace.tracer is not None:
        return READ  # a traced request: its steps are not to be reported twice
    reached = _reached(ctx)
    if isinstance(reached, bool):
        return DISCARD if reached else READ
    location = reached
    if location.access is not None and location.access.auth_request is not None:
        return AUTH_FIRST
    if location.proxy is not None:
        return STREAM if location.try_files is None and streams_body(location.proxy, ctx.request) else READ
    if location.try_files is not None:
        return DISCARD if _try_files_discards(ctx, location) else READ
    return DISCARD if _where_discards(ctx.server, location, ctx.uri, _DEPTH, True) else READ


def _reached(ctx: RequestContext) -> CompiledLocation | bool:
    """The location the request's phases reach, or whether an answer on the way discards the body."""
    server = ctx.server
    probe = _Probe()
    location: CompiledLocation | None = None
    try:
        if server.rewrite and rewrite.run(probe, ctx, server.rewrite) is not None:
            return _answered(server, server, probe)
        for _ in range(10):
            found = server.locations.find(ctx.uri)
            if found is None:
                return _where_discards(server, server, ctx.uri, _DEPTH, True)
            location = ctx.location = found.value
            if found.match is not None:
                set_captures(ctx, found.match)
            if location.internal and not ctx.internal:  # a 404 (its error page) before anything else
                return _where_discards(server, location, "", _DEPTH, True)
            if found.redirect:  # the auto_redirect 301 at find-config time
                return (location.proxy is None or not location.proxy.config.pass_through) \
                    and _where_discards(server, location, "", _DEPTH, True)
            if not location.rewrite:
                break
            ctx.uri_changed = False
            if rewrite.run(probe, ctx, location.rewrite) is not None:
                return _answered(server, ctx.location or location, probe)
            if not ctx.uri_changed:
                location = ctx.location  # an if block's configuration
                break
        else:
            return False  # a rewrite cycle: a 500, not worth following
    except rewrite.RewriteError:  # a 500, and its error page
        return _where_discards(server, ctx.location or server, "", _DEPTH, True)
    assert location is not None
    return location


def _answered(server: CompiledServer, where: CompiledLocation | CompiledServer, probe: _Probe) -> bool:
    """The rewrite phase answered: a redirect or a return discard the body, but an error status
    without text goes to its error page (Engine._return)."""
    step = probe.returned
    if probe.redirected or step is None or step.text is not None or step.status < 400 or step.status == 444:
        return True
    return _where_discards(server, where, "", _DEPTH, True)


def _try_files_discards(ctx: RequestContext, location: CompiledLocation) -> bool:
    """Where ngx_http_core_try_files_phase sends this request (Engine._try_files, without its
    effects): a file or directory served from this location, a status, or a redirect."""
    server = ctx.server
    try_files = location.try_files
    assert try_files is not None
    for value, directory in try_files.files:
        name = value.render(ctx)
        try:
            is_dir = stat.S_ISDIR(os.stat(try_files.root + name).st_mode)
        except (OSError, ValueError):
            continue
        if is_dir == directory:
            return _where_discards(server, location, name, _DEPTH, True)  # $uri is now its name
    fallback = try_files.fallback.render(ctx)
    if fallback.startswith("="):
        return _where_discards(server, location, "", _DEPTH, True)  # its error page
    if fallback.startswith("@"):
        named = server.named.get(fallback)
        return named is not None and _location_discards(server, named, ctx.uri, _DEPTH - 1)
    return _uri_discards(server, fallback.partition("?")[0], _DEPTH - 1)


def _uri_discards(server: CompiledServer, uri: str, depth: int, pages: bool = True, internal: bool = True) -> bool:
    """``internal``: reached by an internal redirect (an ``internal`` location may answer it)."""
    found = server.locations.find(uri)
    if found is None:
        return _where_discards(server, server, uri, depth, pages)
    if found.value.internal and not internal:  # a 404 first (ngx_http_core_find_config_phase's order)
        return _where_discards(server, found.value, "", depth, pages)
    if found.redirect:  # the auto_redirect 301, made at find-config time (a 413 before it: its error pages)
        location = found.value
        return (location.proxy is None or not location.proxy.config.pass_through) \
            and _where_discards(server, location, "", depth, pages)
    return _location_discards(server, found.value, uri, depth, pages)


def _location_discards(server: CompiledServer, location: CompiledLocation, uri: str, depth: int,
                       pages: bool = True) -> bool:
    if depth <= 0 or location.proxy is not None or location.try_files is not None:
        return False
    if location.access is not None and location.access.auth_request is not None:
        return False  # its subrequest is proxied with the main request's body, if read
    if location.rewrite and not _steps_stay(location.rewrite):
        return False
    for step in location.rewrite:
        if isinstance(step, CompiledIf) and step.location is not None \
                and not _location_discards(server, step.location, uri, depth - 1, pages):
            return False
    return _where_discards(server, location, uri, depth, pages)


def _where_discards(server: CompiledServer, where: CompiledLocation | CompiledServer, uri: str, depth: int,
                    pages: bool) -> bool:
    """A location (or the server, for a URI no location matches) that answers itself: its
    error pages (``pages``: not within an error page's own target, which gets the built-in pages,
    as with recursive_error_pages off) and, for a URI ending in "/", its index names must not
    lead to a proxy."""
    if depth <= 0:
        return False
    if pages and where.error_pages:
        for page in where.error_pages.values():
            target = page.target.constant
            if page.kind == "url":
                continue  # a redirect, answered discarding the body
            if target is None:
                return False
            if page.kind == "named":
                named = server.named.get(target)
                if named is None or not _location_discards(server, named, uri, depth - 1, False):
                    return False
            elif not _uri_discards(server, target.partition("?")[0], depth - 1, False):
                return False
    if uri.endswith("/") and not where.config.stub_status:
        for name in where.config.static.index:
            if "$" in name:
                return False
            target = name if name.startswith("/") else uri + name
            if not _uri_discards(server, target, depth - 1, pages):
                return False
    return True


def _steps_stay(steps: list[Step]) -> bool:
    """Rewrite steps that answer or change nothing of where the request goes: return, set, break,
    a redirecting rewrite. Any other rewrite changes the URI (a new location, or another index)."""
    for step in steps:
        if isinstance(step, (CompiledReturn, CompiledSet, CompiledBreak)):
            continue
        if isinstance(step, CompiledRewrite):
            if step.redirect:
                continue
            return False
        if isinstance(step, CompiledIf):
            if not _steps_stay(step.steps):
                return False
            continue
        return False
    return True
