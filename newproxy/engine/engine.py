"""The request pipeline, in nginx's phase order, with no IO.

server selection -> server rewrite -> find location (413 check, auto-redirect) -> location
rewrite -> content (proxy_pass, or the 404 a location without content gives).
"""

from __future__ import annotations

from newproxy.config import NewproxyConfig
from newproxy.engine.compiled import CompiledLocation, CompiledReturn, CompiledServer, ConfigCompiler
from newproxy.engine.context import RequestContext
from newproxy.engine.proxy import upstream_head
from newproxy.engine.responses import CLOSE_CODES, REDIRECT_CODES, ResponseMaker
from newproxy.engine.servers import InvalidHost, ServerRouter, normalise_host
from newproxy.engine.types import ProxyPass, Request, Response
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.engine.uri import BadRequest, parse_target


class Engine:
    def __init__(self, config: NewproxyConfig) -> None:
        self.config = config
        self.upstream_groups: dict[str, UpstreamGroup] = {u.name: UpstreamGroup(u) for u in config.upstreams}
        self.maker = ResponseMaker(config.server_tokens)
        compiler = ConfigCompiler(config, self.upstream_groups, self.maker)
        compiled = [(server, compiler.server(server)) for server in config.servers]
        self.router: ServerRouter[CompiledServer] = ServerRouter(compiled)
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
        # Every rewrite step is a ``return`` for now, so the first step ends the phase.
        if ctx.server.rewrite:
            return self._return(ctx, ctx.server.rewrite[0], ctx.server.content_type(ctx.uri))
        found = ctx.server.locations.find(ctx.uri)
        location = found.value if found is not None else None
        ctx.location = location
        limit = location.client_max_body_size if location is not None else ctx.server.client_max_body_size
        if limit and _declared_length(request) > limit:
            return self.maker.error(413, request, request.keepalive)
        if found is not None and found.redirect:
            assert location is not None
            target = location.config.path + ("?" + ctx.args if ctx.args else "")
            return self._redirect(ctx, 301, target)
        if found is not None and found.match is not None:
            ctx.captures = found.match
        if location is None:
            return self.maker.error(404, request, request.keepalive)
        if location.rewrite:
            return self._return(ctx, location.rewrite[0], location.content_type(ctx.uri))
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
            )
        return self.maker.error(404, request, request.keepalive)

    # -- phases ------------------------------------------------------------------------------

    def _context(self, request: Request) -> RequestContext | Response:
        hosts = [value for name, value in request.headers if name.lower() == b"host"]
        try:
            if len(hosts) > 1:
                raise InvalidHost("duplicate Host header")
            header_host = normalise_host(hosts[0]) if hosts else ""
            target = parse_target(request.target)
        except (InvalidHost, BadRequest):
            return self.maker.error(400, request, False)
        if not hosts and request.version == b"1.1":
            return self.maker.error(400, request, False)
        host = target.host if target.host is not None else header_host
        table = self.router.table_for(*request.local_addr)
        server, name_match = table.find(host)
        return RequestContext(
            request=request,
            server=server,
            host=host or server.primary_name,
            uri=target.uri,
            args=target.args,
            request_uri=target.request_uri,
            uri_needs_escape=target.needs_escape,
            redirect_host=host,
            captures=name_match,
        )

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
        if text is not None:
            return self.maker.text(step.status, request, request.keepalive, content_type, text.encode("latin-1"))
        if step.status >= 400:
            return self.maker.error(step.status, request, request.keepalive)
        # Below 400 with no page: nginx sends an empty body with the default type.
        return self.maker.text(step.status, request, request.keepalive, content_type, b"")

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
