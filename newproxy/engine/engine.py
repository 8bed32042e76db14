"""The request pipeline, in nginx's phase order, with no IO.

server selection -> server rewrite -> find location (413 check, auto-redirect) -> location
rewrite -> content (proxy_pass, or the 404 a location without content gives).
"""

from __future__ import annotations

import os
import stat

from newproxy.config import NewproxyConfig
from newproxy.engine.compiled import CompiledLocation, CompiledReturn, CompiledServer, CompiledTryFiles, ConfigCompiler
from newproxy.engine import rewrite, static
from newproxy.engine.context import RequestContext, set_captures
from newproxy.engine.proxy import upstream_head
from newproxy.engine.responses import CLOSE_CODES, REDIRECT_CODES, ResponseMaker
from newproxy.engine.status import CLOSE_AFTER
from newproxy.engine.servers import InvalidHost, ServerRouter, normalise_host
from newproxy.engine.types import ProxyPass, Request, Response
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.engine.uri import BadRequest, parse_target


_SERVER_REWRITE, _FIND, _NAMED = range(3)


class Engine:
    def __init__(self, config: NewproxyConfig) -> None:
        self.config = config
        self.upstream_groups: dict[str, UpstreamGroup] = {u.name: UpstreamGroup(u) for u in config.upstreams}
        self.maker = ResponseMaker(config.server_tokens)
        compiler = ConfigCompiler(config, self.upstream_groups, self.maker)
        compiled = [(server, compiler.server(server)) for server in config.servers]
        self.router: ServerRouter[CompiledServer] = ServerRouter(compiled)
        self.merge_slashes_everywhere = all(server.merge_slashes for server in config.servers)
        ipv6only = {
            (listen.address, listen.port): listen.ipv6only for server in config.servers for listen in server.listen
        }
        self.listen_addresses: list[tuple[str, int, bool]] = [
            (addr, port, ipv6only.get((addr, port), True)) for addr, port in self.router.bind_addresses()
        ]

    # -- entry points for the IO layer -------------------------------------------------------

    def error_response(self, status: int, request: Request | None, keepalive: bool) -> Response:
        return self.maker.error(status, request, keepalive)

    def max_body_size(self, request: Request) -> int:
        """The client_max_body_size that applies while reading the request body (0: no limit).

        Only proxied requests read the body; nginx discards any other body unchecked. A declared
        Content-Length over the limit is answered with 413 by ``handle`` itself, as nginx does at
        find-location time.
        """
        ctx = self._context(request)
        if isinstance(ctx, Response):
            return 0
        location = self._find_location(ctx)
        if ctx.server.rewrite or location is None or location.rewrite or location.proxy is None:
            return 0
        return location.client_max_body_size

    def handle(self, request: Request) -> Response | ProxyPass:
        ctx = self._context(request)
        if isinstance(ctx, Response):
            return ctx
        return self._serve(ctx, _SERVER_REWRITE)

    def _serve(self, ctx: RequestContext, entry: int) -> Response | ProxyPass:
        """The phases from ``entry``: the server rewrite phase (a new request, or an internal redirect),
        or the location rewrite phase of ``ctx.location`` (a named location)."""
        request = ctx.request
        try:
            if entry == _SERVER_REWRITE and ctx.server.rewrite:
                answer = rewrite.run(self, ctx, ctx.server.rewrite)
                if answer is not None:
                    return answer
            # The location may be searched again after a location-level rewrite changed $uri; with
            # internal redirects, up to 10 times (r->uri_changes), then "rewrite or internal
            # redirection cycle", a 500.
            while True:
                if entry != _NAMED:
                    found = ctx.server.locations.find(ctx.uri)
                    location = found.value if found is not None else None
                    ctx.location = location
                    # ngx_http_core_find_config_phase's order: internal, then 413, then auto_redirect.
                    if found is not None and found.match is not None:
                        set_captures(ctx, found.match)
                    if location is not None and location.internal and not ctx.internal:
                        return self._fail(ctx, 404)
                    limit = location.client_max_body_size if location is not None else ctx.server.client_max_body_size
                    if limit and _declared_length(request) > limit:
                        return self._fail(ctx, 413)
                    if found is not None and found.redirect:
                        assert location is not None
                        target = location.config.path + ("?" + ctx.args if ctx.args else "")
                        return self._redirect(ctx, 301, target)
                    if location is None:
                        return self._static(ctx)
                entry = _FIND
                location = ctx.location
                assert location is not None
                if not location.rewrite:
                    break
                ctx.uri_changed = False
                answer = rewrite.run(self, ctx, location.rewrite)
                if answer is not None:
                    return answer
                if not ctx.uri_changed:
                    location = ctx.location  # an if block may have put its own config in place
                    assert location is not None
                    break
                ctx.uri_changes -= 1
                if ctx.uri_changes == 0:
                    return self._fail(ctx, 500)
        except rewrite.RewriteError:
            return self._fail(ctx, 500)
        if location.try_files is not None:
            redirected = self._try_files(ctx, location.try_files)
            if redirected is not None:
                return redirected
        if location.proxy is not None:
            proxy = location.proxy
            ctx.proxy_host = proxy.config.proxy_host
            return ProxyPass(
                upstream=proxy.group,
                head=upstream_head(ctx, proxy),
                body=request.body if proxy.config.pass_request_body else b"",
                proxy=proxy.config,
                request=request,
                keepalive=request.keepalive,
                relay=proxy.relay,
                status_override=ctx.err_status,
                context=ctx,
                intercept=location.intercept,
            )
        return self._static(ctx)

    def _try_files(self, ctx: RequestContext, try_files: CompiledTryFiles) -> Response | ProxyPass | None:
        """ngx_http_core_try_files_phase. None: a file exists, $uri is now its name, go on to content."""
        for value, directory in try_files.files:
            name = value.render(ctx)  # a directory's value without its "/" (and $uri becomes that)
            path = try_files.root + name
            try:
                is_dir = stat.S_ISDIR(os.stat(path).st_mode)
            except (OSError, ValueError):
                continue
            if is_dir != directory:
                continue
            ctx.uri = name  # nginx: r->uri is the name that matched, args unchanged
            return None
        fallback = try_files.fallback.render(ctx)
        if fallback.startswith("="):
            return self._fail(ctx, int(fallback[1:]))
        ctx.uri_changes -= 1
        if ctx.uri_changes == 0:
            return self.maker.error(500, ctx.request, ctx.request.keepalive)
        ctx.internal = True
        if fallback.startswith("@"):
            named = ctx.server.named.get(fallback)
            if named is None:
                return self._fail(ctx, 500)
            ctx.location = named
            ctx.uri_changed = False
            return self._serve(ctx, _NAMED)
        uri, _, args = fallback.partition("?")
        ctx.uri = uri
        ctx.args = args  # ngx_http_split_args: a fallback without "?" drops the args
        ctx.valid_unparsed_uri = False
        ctx.valid_location = True
        ctx.location = None
        return self._serve(ctx, _SERVER_REWRITE)

    def _static(self, ctx: RequestContext) -> Response | ProxyPass:
        """nginx's index and static handlers (newproxy/engine/static.py); a FileResponse for a file."""
        return static.serve(self, ctx)  # type: ignore[return-value]

    # -- errors and error_page ---------------------------------------------------------------

    def upstream_failed(self, pp: ProxyPass, status: int) -> Response | ProxyPass:
        """The upstream client got no usable answer (502, 504): what nginx's special response handler
        does with that status for the request's location: its error_page (an internal redirect whose
        result may be another ProxyPass, a redirect, a =code answer) or the built-in page."""
        ctx = pp.context
        if not isinstance(ctx, RequestContext):
            return self.maker.error(status, pp.request, pp.keepalive)
        return self._fail(ctx, status)

    def _fail(self, ctx: RequestContext, status: int) -> Response | ProxyPass:
        """ngx_http_special_response_handler: the error_page for ``status`` if there is one, else the
        built-in page."""
        request = ctx.request
        where = ctx.location if ctx.location is not None else ctx.server
        pages = where.error_pages
        if pages is None or ctx.error_page:
            return self.maker.error(status, request, request.keepalive)
        page = pages.get(status)
        if page is None or ctx.uri_changes == 0:
            return self.maker.error(status, request, request.keepalive)
        if status in CLOSE_AFTER:
            request.keepalive = False  # nginx closes after these, error_page or not
        ctx.error_page = True
        ctx.err_status = page.response if page.response is not None else 0 if page.target_status else status
        target = page.target.render(ctx)
        if page.kind == "url":
            code = ctx.err_status if ctx.err_status in REDIRECT_CODES else 302
            return self.maker.error(code, request, request.keepalive, absolute_location=target.encode("latin-1"))
        ctx.uri_changes -= 1
        if ctx.uri_changes == 0:
            ctx.err_status = 0
            return self.maker.error(500, request, request.keepalive)
        ctx.internal = True
        if page.kind == "named":
            named = ctx.server.named.get(target)
            if named is None:
                ctx.err_status = 0
                return self.maker.error(500, request, request.keepalive)
            ctx.location = named
            ctx.uri_changed = False
            return self._serve(ctx, _NAMED)
        uri, _, args = target.partition("?")
        if request.method != b"HEAD":
            ctx.method = b"GET"
        ctx.uri = uri
        ctx.args = args
        ctx.valid_unparsed_uri = False
        ctx.valid_location = True
        ctx.location = None
        return self._serve(ctx, _SERVER_REWRITE)

    # -- what the rewrite phase answers with -------------------------------------------------

    def rewrite_return(self, ctx: RequestContext, step: CompiledReturn) -> Response:
        where = ctx.location if ctx.location is not None else ctx.server
        return self._return(ctx, step, where.content_type(ctx.uri))

    def rewrite_redirect(self, ctx: RequestContext, status: int, target: str) -> Response:
        return self._redirect(ctx, status, target)

    # -- phases ------------------------------------------------------------------------------

    def _context(self, request: Request) -> RequestContext | Response:
        hosts = [value for name, value in request.headers if name.lower() == b"host"]
        try:
            if len(hosts) > 1:
                raise InvalidHost("duplicate Host header")
            header_host = normalise_host(hosts[0]) if hosts else ""
            # nginx parses the URI with the merge_slashes of the address's default server.
            merge = True if self.merge_slashes_everywhere else \
                self.router.table_for(*request.local_addr).default.config.merge_slashes
            target = parse_target(request.target, merge)
        except (InvalidHost, BadRequest):
            return self.maker.error(400, request, False)
        if not hosts and request.version == b"1.1":
            return self.maker.error(400, request, False)
        host = target.host if target.host is not None else header_host
        table = self.router.table_for(*request.local_addr)
        server, name_match = table.find(host)
        ctx = RequestContext(
            request=request,
            server=server,
            host=host or server.primary_name,
            uri=target.uri,
            args=target.args,
            request_uri=target.request_uri,
            uri_needs_escape=target.needs_escape,
            redirect_host=host,
        )
        if name_match is not None:
            set_captures(ctx, name_match)
        return ctx

    def _find_location(self, ctx: RequestContext) -> CompiledLocation | None:
        found = ctx.server.locations.find(ctx.uri)
        return found.value if found is not None else None

    def _return(self, ctx: RequestContext, step: CompiledReturn, content_type: bytes) -> Response:
        request = ctx.request
        if step.text is None and step.status in CLOSE_CODES:
            return self.maker.close()
        text = step.text.render(ctx) if step.text is not None else None
        if step.status in REDIRECT_CODES:
            return self._redirect(ctx, step.status, text or "")
        # After an error_page, nginx's header filter answers with its status (r->err_status).
        status = ctx.err_status or step.status
        if text is not None:
            return self.maker.text(status, request, request.keepalive, content_type, text.encode("latin-1"))
        if step.status >= 400:
            return self._fail(ctx, step.status)  # type: ignore[return-value]
        # Below 400 with no page: nginx sends an empty body with the default type.
        return self.maker.text(status, request, request.keepalive, content_type, b"")

    def _redirect(self, ctx: RequestContext, status: int, target: str) -> Response:
        """A redirect page; a target starting with "/" is made absolute as ``absolute_redirect on`` does."""
        if target.startswith("/"):
            return self.maker.error(status, ctx.request, ctx.request.keepalive, location=self._absolute(ctx, target))
        return self.maker.error(status, ctx.request, ctx.request.keepalive, absolute_location=target.encode("latin-1"))

    @staticmethod
    def _absolute(ctx: RequestContext, path: str) -> bytes:
        request = ctx.request
        host = ctx.redirect_host or request.local_addr[0]
        port = request.local_addr[1]
        default_port = 443 if request.scheme == "https" else 80
        port_part = "" if port == default_port else f":{port}"
        return f"{request.scheme}://{host}{port_part}{path}".encode("latin-1")


def _declared_length(request: Request) -> int:
    """The Content-Length the client declared (a chunked body's size is the IO layer's to check)."""
    for name, value in request.headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
