"""The request pipeline, in nginx's phase order, with no IO.

server selection -> post-read (real_ip) -> server rewrite -> find location (413 check,
auto-redirect) -> location rewrite -> preaccess (real_ip, limit_req, limit_conn) -> access
(allow/deny, auth_basic, auth_request; satisfy) -> try_files -> content (proxy_pass, or files).
"""

from __future__ import annotations

import os
import stat
from typing import Final, cast

from newproxy import stats
from newproxy.config import LocationConfig, NewproxyConfig
from newproxy.engine.compiled import (CompiledLocation, CompiledProxy, CompiledReturn, CompiledServer,
                                     CompiledTryFiles, ConfigCompiler)
from newproxy.engine import accel, access, discard, errors, grpc, gzip, limits, proxyurl, realip, rewrite, static, trace
from newproxy.engine.headers import filter_answer
from newproxy.engine.context import RequestContext, set_captures
from newproxy.engine.logformat import LogPlan
from newproxy.engine.memo import StaticMemo
from newproxy.engine.proxy import pass_through_body, pass_through_head, streams_body, upstream_body, upstream_head
from newproxy.engine.requestfacts import uses_request_facts
from newproxy.engine.responses import CLOSE_CODES, REDIRECT_CODES, ResponseMaker
from newproxy.engine.status import CLOSE_AFTER
from newproxy.engine.servers import InvalidHost, ServerRouter, canonical_address, covering, normalise_host
from newproxy.engine.types import AwaitBody, FileResponse, LocationFix, ProxyPass, Request, Response, Result, deferred
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.reqmetrics import RequestMetrics, lanes_for
from newproxy.engine.uri import BadRequest, parse_target


_SERVER_REWRITE: Final = 0
_FIND: Final = 1
_NAMED: Final = 2
# client_body_buffer_size and client_body_temp_path when no proxied location reads the body.
_DEFAULT_BODY_BUFFER: Final[tuple[int, str | None, bool]] = (16384, None, True)


class Engine:
    def __init__(self, config: NewproxyConfig) -> None:
        self.config = config
        self.upstream_groups: dict[str, UpstreamGroup] = {u.name: UpstreamGroup(u) for u in config.upstreams}
        self.maker = ResponseMaker(config.server_tokens)
        self.memo: StaticMemo | None = StaticMemo(self.maker.date)
        compiler = ConfigCompiler(config, self.upstream_groups, self.maker)
        compiled = [(server, compiler.server(server)) for server in config.servers]
        self.log_plan = LogPlan(config, compiler.captures, compiler.computed)  # access_log, for the IO layer
        self.filters_headers = compiler.header_programs > 0  # expires/add_header/add_trailer anywhere
        # $connection, $request_time, $upstream_*...: the front ends record each request (newproxy/engine/requestfacts.py).
        self.request_facts = uses_request_facts(compiler.fact_names)
        self.gzips = compiler.gzips > 0  # gzip on anywhere
        self.zones = compiler.zones  # limit_req/limit_conn state (newproxy/engine/limits.py)
        self.limits_on = self.zones.compiled > 0 or self.zones.rate_set  # False: no limits work per request
        self.router: ServerRouter[CompiledServer] = ServerRouter(compiled)
        # /metrics by server, location, status and upstream (newproxy/reqmetrics.py); None: not configured.
        self.request_metrics: RequestMetrics | None = None
        if config.metrics is not None:
            self.request_metrics = RequestMetrics([c for _, c in compiled], self.upstream_groups,
                                                  lanes_for(config.worker_processes))
        self.merge_slashes_everywhere = all(server.merge_slashes for server in config.servers)
        self.grpc_on = any(_grpc_anywhere(server.locations) for server in config.servers)  # False: no body_streamed work
        ipv6only = {
            (listen.address, listen.port): listen.ipv6only for server in config.servers for listen in server.listen
        }
        self.listen_addresses: list[tuple[str, int, bool]] = [
            (addr, port, ipv6only.get((addr, port), True)) for addr, port in self.router.bind_addresses()
        ]
        # `listen ... quic` sockets are UDP (newproxy/http/h3.py): apart from the TCP ones above.
        self.quic_addresses: list[tuple[str, int, bool]] = []
        if any(listen.quic for server in config.servers for listen in server.listen):
            tcp: list[tuple[str, int]] = []
            quic: list[tuple[str, int]] = []
            for server in config.servers:
                for listen in server.listen:
                    (quic if listen.quic else tcp).append((canonical_address(listen.address), listen.port))
            self.listen_addresses = [(addr, port, ipv6only.get((addr, port), True)) for addr, port in covering(tcp)]
            self.quic_addresses = [(addr, port, ipv6only.get((addr, port), True)) for addr, port in covering(quic)]
        # newproxy's Prometheus endpoint: bound with the rest, served by newproxy/http/metrics.py.
        self.metrics_address: tuple[str, int] | None = None
        if config.metrics is not None:
            self.metrics_address = (config.metrics.address, config.metrics.port)
            if any(key[:2] == self.metrics_address for key in self.listen_addresses):
                raise ValueError(f"metrics: {config.metrics.address}:{config.metrics.port} is also a server's listen")
            self.listen_addresses.append((*self.metrics_address, True))

    # -- entry points for the IO layer -------------------------------------------------------

    def error_response(self, status: int, request: Request | None, keepalive: bool,
                       local_addr: tuple[str, int] | None = None) -> Response:
        """An error the IO layer found (``request`` None when the request line itself was bad; then
        ``local_addr``, the connection's address, tells the default server)."""
        if status == 497 and request is not None:  # plain HTTP on an ssl port: the server's error_page applies
            ctx = self._context(request)
            if isinstance(ctx, RequestContext):
                request.keepalive = False
                page = self._fail(ctx, 497)
                if isinstance(page, Response):
                    return cast(Response, self._output(ctx, page))  # the filters keep a Response one
        answer = self.maker.error(status, request, keepalive)
        if status == 413 and request is not None and self.filters_headers:
            # client_max_body_size: found once the location was, whose headers filter applies.
            ctx = self._context(request)
            if isinstance(ctx, RequestContext):
                ctx.location = self._find_location(ctx)
                return filter_answer(answer, ctx, self.maker.date.second)
        return self._early(answer, request, local_addr)

    def _early(self, answer: Response, request: Request | None, local_addr: tuple[str, int] | None = None
               ) -> Response:
        """An error before a location was chosen. Found while reading the request line or a header
        (``request`` None), nginx answers with the default server's configuration; found once the
        head is read (ngx_http_process_request_header: TRACE, Transfer-Encoding, Content-Length),
        with the server the Host chose. Either way that server's ``always`` headers apply."""
        if not self.filters_headers:
            return answer
        address = request.local_addr if request is not None else local_addr
        if address is None:
            return answer
        ctx = self._context(request) if request is not None else None
        server = ctx.server if isinstance(ctx, RequestContext) else self._connection_server(address, request)
        if server.headers is None or answer.close_without_response:
            return answer
        if request is not None and not isinstance(ctx, RequestContext):
            # No usable Host: the headers' variables ($request_time, $uri...) still have what nginx
            # knows of the request, as its log line does.
            ctx = self.log_context(request, address)[0]
        answer.head = server.headers.apply(answer.head, answer.status, ctx if isinstance(ctx, RequestContext) else None,
                                           self.maker.date.second)
        return answer

    def _connection_server(self, address: tuple[str, int], request: Request | None) -> CompiledServer:
        """The server a connection has before any Host: the address's default, or on TLS the one
        the SNI name chose at the handshake (ngx_http_ssl_servername sets the connection's server)."""
        table = self.router.table_for(*address)
        tls = request.tls if request is not None else None
        if tls is not None and tls.server_name:
            try:
                return table.find(normalise_host(tls.server_name.encode()))[0]
            except InvalidHost:
                pass
        return table.default

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
        ctx.location = location  # a 413 while reading the body is logged by this location's access_log
        proxy = location.proxy if location is not None else None
        # The body's buffer: this location's, the defaults when a rewrite may take the request
        # elsewhere (the location that reads it is known only then).
        request.body_buffer = _DEFAULT_BODY_BUFFER if proxy is None else \
            (proxy.config.client_body_buffer_size, proxy.config.client_body_temp_path, proxy.config.request_buffering)
        if ctx.server.rewrite or location is None or location.rewrite or proxy is None:
            return 0
        return location.client_max_body_size

    def discards_body(self, request: Request) -> bool:
        """HTTP/1: whether nginx would answer this request without reading its body (it discards it:
        newproxy/engine/discard.py), so the front end runs it at its head and drops the body."""
        ctx = self._context(request)
        return isinstance(ctx, Response) or discard.discards(ctx)

    def body_plan(self, request: Request) -> int:
        """HTTP/1: what nginx does with the body of a request whose head is read (discard.plan):
        discard it, read it whole first, or run the phases at once (AUTH_FIRST) and read it when the
        content handler wants it."""
        ctx = self._context(request)
        return discard.DISCARD if isinstance(ctx, Response) else discard.plan(ctx)

    def body_streamed(self, request: Request) -> bool:
        """HTTP/2: whether the request goes to a grpc_pass location, whose body nginx sends upstream as
        it arrives (grpc_pass never buffers it), so the front end runs the request at its HEADERS.
        Only when no rewrite phase could move it elsewhere (those read the body whole first)."""
        if not self.grpc_on:
            return False
        ctx = self._context(request)
        if isinstance(ctx, Response) or ctx.server.rewrite:
            return False
        location = self._find_location(ctx)
        if location is None or location.rewrite or location.try_files is not None or location.proxy is None:
            return False
        config = location.proxy.config
        return config.protocol == "grpc" and not config.pass_through and config.pass_request_body

    def handle(self, request: Request) -> Result:
        memo = self.memo
        if memo is not None:
            remembered = memo.lookup(request)
            if remembered is not None:
                return remembered
        ctx = self._context(request)
        if isinstance(ctx, Response):
            return self._early(ctx, request)
        if ctx.server.real_ip is not None:  # realip's post-read handler, with the server's settings
            realip.apply(ctx, ctx.server.real_ip)
        answer = self._output(ctx, self._serve(ctx, _SERVER_REWRITE))
        if memo is not None and ctx.static_file is not None and type(answer) is Response and answer.status == 200:
            memo.store(request, ctx, answer, *ctx.static_file)  # type: ignore[arg-type]  # (path, stat_result)
        return answer

    def subrequest(self, sub: RequestContext) -> Result:
        """An auth_request subrequest (newproxy/engine/access.py): the phases from server rewrite, without
        access and without the output filters (its answer is not sent)."""
        return self._serve(sub, _SERVER_REWRITE)

    def _output(self, ctx: RequestContext, answer: Result) -> Result:
        """The output filters over what the phases answered; a limit_req delay gets them over the
        answer it resumes with."""
        if type(answer) is ProxyPass and not self.limits_on:
            return answer  # the common proxied case: its filters run on the upstream's head (client_response_head)
        later = deferred(answer, self._output, ctx)  # the filters run over the answer it resumes with
        if later is not None:
            return later
        if self.filters_headers and isinstance(answer, (Response, FileResponse)):  # proxied: in client_response_head
            answer = filter_answer(answer, ctx, self.maker.date.second)
        if self.gzips and isinstance(answer, Response):  # after the headers filter, as in nginx
            self._gzip(ctx, answer)
        if self.limits_on:
            limits.finish(ctx, answer, self.zones)
        return answer

    def _serve(self, ctx: RequestContext, entry: int) -> Result:
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
                    if trace.tracer is not None and location is not None:
                        trace.tracer("location", location.config.source, None)
                    # ngx_http_core_find_config_phase's order: internal, then 413, then auto_redirect.
                    if found is not None and found.match is not None:
                        set_captures(ctx, found.match)
                    if location is not None and location.internal and not ctx.internal:
                        return self._fail(ctx, 404)
                    limit = location.client_max_body_size if location is not None else ctx.server.client_max_body_size
                    if limit and (declared := _declared_length(request)) > limit:
                        ctx.expect_tested = True  # ngx_http_core_find_config_handler: no 100 for a 413
                        errors.note(ctx, errors.ERR, f"client intended to send too large body: {declared} bytes")
                        return self._fail(ctx, 413)
                    if found is not None and found.redirect:
                        assert location is not None
                        if location.proxy is not None and location.proxy.config.pass_through:
                            return self._fallback(ctx, location.proxy)
                        target = location.config.path + ("?" + ctx.args if ctx.args else "")
                        return self._redirect(ctx, 301, target)
                    if location is None:
                        if ctx.server.limits is not None:  # preaccess with the server's own settings
                            return limits.preaccess(ctx, ctx.server.limits, self.zones, self._fail,
                                                    lambda: self._no_location(ctx))
                        return self._no_location(ctx)
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
        if location.real_ip is not None:  # preaccess: realip with the location's settings, before the limits
            realip.apply(ctx, location.real_ip)
        if location.limits is not None:  # the preaccess phase: limit_req, limit_conn (newproxy/engine/limits.py)
            return limits.preaccess(ctx, location.limits, self.zones, self._fail,
                                    lambda: self._after_preaccess(ctx, location))
        return self._after_preaccess(ctx, location)

    def _after_preaccess(self, ctx: RequestContext, location: CompiledLocation) -> Result:
        """The phases after preaccess: access (newproxy/engine/access.py), then try_files and content."""
        if location.access is not None and not ctx.subrequest:
            return access.run(self, ctx, location.access, lambda: self._after_access(ctx, location))
        return self._after_access(ctx, location)

    def _no_location(self, ctx: RequestContext) -> Result:
        """No location matched: the access phase with the server's settings, then the static handler
        (or the server's stub_status, which nginx runs for requests that match no location)."""
        content = self._stub_status if ctx.server.config.stub_status else self._static
        if ctx.server.access is not None and not ctx.subrequest:
            return access.run(self, ctx, ctx.server.access, lambda: content(ctx))
        return content(ctx)

    def _after_access(self, ctx: RequestContext, location: CompiledLocation) -> Result:
        """try_files, then the content handler (proxy_pass, or files)."""
        if location.try_files is not None:
            redirected = self._try_files(ctx, location.try_files)
            if redirected is not None:
                return redirected
        if location.proxy is not None and ctx.request.body_pending:
            # The phases ran at the head (h1.py: an auth_request location, or discard.STREAM).
            request = ctx.request
            if request.body_stream is not None and streams_body(location.proxy, request):
                return self._content(ctx, location)  # proxied now, its body sent on as it comes
            # Proxying reads the body whole first. nginx's proxy handler has run by then
            # ($proxy_host; the log counts the body it reads).
            request.body_stream = None
            ctx.proxy_host = location.proxy.config.proxy_host
            return AwaitBody(lambda: self._content(ctx, location))
        return self._content(ctx, location)

    def _content(self, ctx: RequestContext, location: CompiledLocation) -> Result:
        """The content handler: proxy_pass (or grpc_pass, the fallback), else files."""
        request = ctx.request
        if location.proxy is not None:
            proxy = location.proxy
            if proxy.pass_through:
                return self._fallback(ctx, proxy)
            if proxy.grpc:
                return grpc.grpc_pass(ctx, location, proxy,
                                      _balance_key(proxy.group, ctx) if proxy.group.needs_key else b"")
            ctx.proxy_host = proxy.proxy_host
            group, uri, resolve, tls = proxy.group, None, None, proxy.tls
            if proxy.url is not None:  # proxy_pass with variables: where this request goes
                assert proxy.lookup is not None
                target = proxyurl.evaluate(proxy.url.render(ctx), proxy.lookup, proxy.config.resolver)
                if target.error:
                    return self._fail(ctx, 500)
                ctx.proxy_host, uri, resolve = target.proxy_host, target.uri, target.resolve
                group = target.group or proxyurl.UNRESOLVED
                tls = tls if target.tls else None
            body = upstream_body(ctx, proxy)  # before the head: proxy_set_body fixes its Content-Length
            # Positional (upstream, head, body, proxy, request, keepalive, relay, settings,
            # status_override, context, intercept), the other fields only when this request needs
            # them: keyword arguments cost more, on every proxied request.
            pp = ProxyPass(group, upstream_head(ctx, proxy, uri), body, proxy.config, request, request.keepalive,
                           proxy.relay, proxy.settings, ctx.err_status, ctx, location.intercept)
            if group.needs_key:
                pp.balance_key = _balance_key(group, ctx)
            if resolve is not None:
                pp.resolve = resolve
            if tls is not None:
                pp.tls = tls
                pp.tls_name = proxyurl.ssl_name(tls, ctx.proxy_host, proxy.tls_name.render(ctx)
                                                if proxy.tls_name is not None else None)
            return pp
        if location.config.stub_status:
            return self._stub_status(ctx)
        return self._static(ctx)

    def _stub_status(self, ctx: RequestContext) -> Result:
        """ngx_http_stub_status_handler: GET and HEAD only, text/plain, counts of every worker."""
        request = ctx.request
        if request.method not in (b"GET", b"HEAD"):
            return self._fail(ctx, 405)
        return self.maker.text(200, request, request.keepalive, b"text/plain", stats.stub_status_text())

    def _try_files(self, ctx: RequestContext, try_files: CompiledTryFiles) -> Result | None:
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
            if trace.tracer is not None:
                trace.tracer("location", named.config.source, None)
            ctx.uri_changed = False
            return self._serve(ctx, _NAMED)
        uri, _, args = fallback.partition("?")
        ctx.uri = uri
        ctx.args = args  # ngx_http_split_args: a fallback without "?" drops the args
        ctx.valid_unparsed_uri = False
        ctx.valid_location = True
        ctx.location = None
        return self._serve(ctx, _SERVER_REWRITE)

    def _static(self, ctx: RequestContext) -> Result:
        """nginx's index and static handlers (newproxy/engine/static.py); a FileResponse for a file."""
        return static.serve(self, ctx)

    # -- errors and error_page ---------------------------------------------------------------

    def upstream_failed(self, pp: ProxyPass, status: int) -> Result:
        """The upstream client got no usable answer (502, 504): what nginx's special response handler
        does with that status for the request's location: its error_page (an internal redirect whose
        result may be another ProxyPass, a redirect, a =code answer) or the built-in page."""
        ctx = pp.context
        if not isinstance(ctx, RequestContext):
            return self.maker.error(status, pp.request, pp.keepalive)
        if pp.redirect is not None:  # the upstream's X-Accel-Redirect, not a failure
            return accel.follow(self, ctx, pp, self._output)
        answer = self._fail(ctx, status)
        if ctx.www_authenticate:  # an intercepted 401's (engine/proxy.py carry_www_authenticate)
            answer = access.with_www_authenticate(ctx, answer)
        return self._output(ctx, answer)

    # -- internal redirects made outside the phases (X-Accel-Redirect: newproxy/engine/accel.py) ------

    def fail(self, ctx: RequestContext, status: int) -> Result:
        return self._fail(ctx, status)

    def uri_redirect(self, ctx: RequestContext, uri: str, args: str) -> Result:
        """ngx_http_internal_redirect: the phases again from the server rewrite phase, for ``uri``;
        the 11th redirect of a request is a 500 (\"rewrite or internal redirection cycle\")."""
        ctx.uri_changes -= 1
        if ctx.uri_changes == 0:
            return self.maker.error(500, ctx.request, False)
        ctx.internal = True
        ctx.uri = uri
        ctx.args = args
        ctx.valid_unparsed_uri = False
        ctx.valid_location = True
        ctx.location = None
        return self._serve(ctx, _SERVER_REWRITE)

    def named_redirect(self, ctx: RequestContext, name: str) -> Result:
        """ngx_http_named_location: the named location's rewrite phase, $uri unchanged; an unknown
        name or a cycle is a 500."""
        ctx.uri_changes -= 1
        if ctx.uri_changes == 0:
            return self.maker.error(500, ctx.request, False)
        named = ctx.server.named.get(name)
        if named is None:  # "could not find named location": a 500 as any other, error_page and all
            return self._fail(ctx, 500)
        ctx.internal = True
        ctx.location = named
        if trace.tracer is not None:
            trace.tracer("location", named.config.source, None)
        ctx.uri_changed = False
        return self._serve(ctx, _NAMED)

    @staticmethod
    def _gzip(ctx: RequestContext, answer: Response) -> None:
        """nginx's gzip filter over a response the engine made, with the final location's settings
        (static files ran it themselves, before the range filter)."""
        where = ctx.location if ctx.location is not None else ctx.server
        if where.gzip is not None and not ctx.gzip_filtered:
            gzip.filter_response(where.gzip, ctx.request, ctx.method or ctx.request.method, answer)

    def _fail(self, ctx: RequestContext, status: int) -> Result:
        """ngx_http_special_response_handler: the error_page for ``status`` if there is one, else the
        built-in page."""
        request = ctx.request
        ctx.accel_type = None  # the handler clears the Content-Type (an X-Accel-Redirect's, say)
        # nginx marks the expectation tested unless it follows an error_page internal redirect.
        tested, ctx.expect_tested = ctx.expect_tested, True
        where = ctx.location if ctx.location is not None else ctx.server
        pages = where.error_pages
        if pages is None or ctx.error_page:
            return self.maker.error(status, request, request.keepalive)
        page = pages.get(status)
        if page is None or ctx.uri_changes == 0:
            return self.maker.error(status, request, request.keepalive)
        if status in CLOSE_AFTER:
            request.keepalive = False  # nginx closes after these, error_page or not
        # ngx_http_send_error_page marks the expectation tested unless the page answers with its own
        # status (a bare "=") or "=200": only then may its target still send a "100 Continue".
        kept = page.target_status or page.response == 200
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
            if trace.tracer is not None:
                trace.tracer("location", named.config.source, None)
            ctx.uri_changed = False
            ctx.expect_tested = tested or not kept
            return self._serve(ctx, _NAMED)
        uri, _, args = target.partition("?")
        ctx.expect_tested = tested or not kept
        if request.method != b"HEAD":
            ctx.method = b"GET"
        ctx.uri = uri
        ctx.args = args
        ctx.valid_unparsed_uri = False
        ctx.valid_location = True
        ctx.location = None
        return self._serve(ctx, _SERVER_REWRITE)

    # -- what the rewrite phase answers with -------------------------------------------------

    def rewrite_return(self, ctx: RequestContext, step: CompiledReturn) -> Result:
        where = ctx.location if ctx.location is not None else ctx.server
        return self._return(ctx, step, ctx.accel_type or where.content_type(ctx.uri))

    def rewrite_redirect(self, ctx: RequestContext, status: int, target: str) -> Response:
        return self._redirect(ctx, status, target)

    # -- phases ------------------------------------------------------------------------------

    def _context(self, request: Request) -> RequestContext | Response:
        host_value: bytes | None = None
        try:
            for name, value in request.headers:
                # The length first: one compare per other header; then the usual spelling, without a lower().
                if len(name) == 4 and (name == b"Host" or name.lower() == b"host"):
                    if host_value is not None:
                        raise InvalidHost("duplicate Host header")
                    host_value = value
            header_host = normalise_host(host_value) if host_value is not None else ""
            # nginx parses the URI with the merge_slashes of the address's default server.
            local_ip, local_port = request.local_addr  # (not table_for(*...): compiled, a star call is generic)
            merge = True if self.merge_slashes_everywhere else \
                self.router.table_for(local_ip, local_port).default.config.merge_slashes
            target = parse_target(request.target, merge)
        except (InvalidHost, BadRequest):
            return self.maker.error(400, request, False)
        if host_value is None and request.version >= b"1.1":  # HTTP/1.1 and later (2.0, 3.0) need a Host
            return self.maker.error(400, request, False)
        host = target.host if target.host is not None else header_host
        table = self.router.table_for(local_ip, local_port)
        server, name_match = table.find(host)
        # Positional (request, server, $host, $uri, $args, $request_uri, uri_needs_escape, redirect_host):
        # keyword arguments cost the slots dataclass ~0.3 µs more, on every request.
        ctx = RequestContext(request, server, host or server.primary_name, target.uri, target.args,
                             target.request_uri, target.needs_escape, host)
        request.context = ctx  # the log phase reads the context the request ended with
        if trace.tracer is not None:
            trace.tracer("server", server.config.source, None)
        if name_match is not None:
            set_captures(ctx, name_match)
        return ctx

    def log_context(self, request: Request | None, local_addr: tuple[str, int]) -> tuple[RequestContext | None, object, bool]:
        """The log phase of a request the front end answered itself (400, 414...): the context and
        server nginx would log it with (the server chosen by Host, else the address's default), and
        whether nginx had read only the request line (a bad URI is refused before the headers)."""
        if request is not None:
            ctx = request.context if isinstance(request.context, RequestContext) else self._context(request)
            if isinstance(ctx, RequestContext):
                return ctx, ctx.server.config, False
            default = self.router.table_for(*local_addr).default
            try:  # no usable Host: nginx logs with the default server and the URI it parsed
                target = parse_target(request.target, default.config.merge_slashes)
            except BadRequest:
                ctx = RequestContext(request=request, server=default, host=default.primary_name, uri="", args="",
                                     request_uri="", uri_needs_escape=False, redirect_host="")
                return ctx, default.config, True
            server, host = default, default.primary_name
            if target.host is not None:  # an absolute-form target's host chose the server (HTTP/1.1 without Host)
                server = self.router.table_for(*local_addr).find(target.host)[0]
                host = target.host
            ctx = RequestContext(request=request, server=server, host=host, uri=target.uri,
                                 args=target.args, request_uri=target.request_uri,
                                 uri_needs_escape=target.needs_escape, redirect_host="")
            return ctx, server.config, False
        return None, self.router.table_for(*local_addr).default.config, False

    def _find_location(self, ctx: RequestContext) -> CompiledLocation | None:
        found = ctx.server.locations.find(ctx.uri)
        return found.value if found is not None else None

    def _return(self, ctx: RequestContext, step: CompiledReturn, content_type: bytes) -> Result:
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
            return self._fail(ctx, step.status)
        # Below 400 with no page: nginx sends an empty body with the default type.
        return self.maker.text(status, request, request.keepalive, content_type, b"")

    def _redirect(self, ctx: RequestContext, status: int, target: str) -> Response:
        """A redirect page; a target starting with "/" is made absolute as ``absolute_redirect on`` does."""
        if target.startswith("/"):
            return self.maker.error(status, ctx.request, ctx.request.keepalive, location=self._absolute(ctx, target))
        return self.maker.error(status, ctx.request, ctx.request.keepalive, absolute_location=target.encode("latin-1"))

    def _fallback(self, ctx: RequestContext, proxy: CompiledProxy) -> ProxyPass:
        """The strangler fallback: the client's request, as received, to the legacy nginx, which runs
        the original config on it from the start (server rewrites, internal redirects and all)."""
        request = ctx.request
        # What legacy's header filter writes for a relative Location (absolute_redirect on,
        # port_in_redirect on): http://, the client's Host (its server_name with
        # server_name_in_redirect; without a Host, the address the connection reached: the legacy
        # peer's), legacy's port unless 80. The client should see what nginx would have written on
        # newproxy's address instead.
        peer = self.config.upstream(proxy.config.upstream).servers[0]
        local_host, local_port = request.local_addr
        hosts = {ctx.redirect_host.encode("latin-1"): ctx.redirect_host.encode("latin-1")} if ctx.redirect_host \
            else {peer.host.lower().encode("latin-1"): local_host.encode("latin-1")}
        server_name = ctx.server.primary_name
        if server_name and not server_name.startswith("~"):
            hosts.setdefault(server_name.encode("latin-1"), server_name.encode("latin-1"))
        default_port = 443 if request.scheme == "https" else 80
        fix = LocationFix(hosts, b"" if peer.port == 80 else b":%d" % peer.port, request.scheme.encode() + b"://",
                          b"" if local_port == default_port else b":%d" % local_port)
        return ProxyPass(
            upstream=proxy.group,
            head=pass_through_head(request),
            body=pass_through_body(request),
            proxy=proxy.config,
            request=request,
            keepalive=request.keepalive,
            relay=proxy.relay,
            settings=proxy.settings,
            context=ctx,
            location_rewrite=fix,
        )

    @staticmethod
    def _absolute(ctx: RequestContext, path: str) -> bytes:
        request = ctx.request
        host = ctx.redirect_host or request.local_addr[0]
        port = request.local_addr[1]
        default_port = 443 if request.scheme == "https" else 80
        port_part = "" if port == default_port else f":{port}"
        return f"{request.scheme}://{host}{port_part}{path}".encode("latin-1")


def _grpc_anywhere(locations: list[LocationConfig]) -> bool:
    return any(loc.proxy is not None and loc.proxy.protocol == "grpc" or _grpc_anywhere(loc.locations)
               for loc in locations)


def _declared_length(request: Request) -> int:
    """The Content-Length the client declared (a chunked body's size is the IO layer's to check)."""
    for name, value in request.headers:
        if len(name) == 14 and name.lower() == b"content-length":  # the length first: it runs per request
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _balance_key(group: UpstreamGroup, ctx: RequestContext) -> bytes:
    """What ip_hash or hash balances by: the client address, or the key rendered now (after rewrites)."""
    template = group.key_template
    if template is None:
        return ctx.request.client_addr[0].encode("latin-1")
    return template.render(ctx).encode("latin-1")
