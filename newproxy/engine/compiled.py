"""The config compiled for request time: templates, location trees and upstream groups built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from newproxy.config import (
    AccessConfig,
    AddHeaderConfig,
    BreakStep,
    ErrorPageConfig,
    GzipConfig,
    GeoConfig,
    IfStep,
    LocationConfig,
    MapConfig,
    NewproxyConfig,
    ProxyConfig,
    ResponseHeadersConfig,
    ReturnStep,
    RewriteRuleStep,
    RewriteStep,
    ServerConfig,
    SetStep,
    TryFilesConfig,
    UpstreamTlsConfig,
)
from newproxy.engine.regex import compile_regex
from newproxy.engine.gzip import CompiledGzip, compile_gzip
from newproxy.engine.headers import ADD, REPLACE, AddHeader, ExpiresRule, HeaderProgram
from newproxy.engine.limits import CompiledLimits, ConnZone, ReqZone, Zones
from newproxy.engine.access import CompiledAccess, compile_access
from newproxy.engine.realip import CompiledRealIp, compile_realip
from newproxy.engine.locations import LocationLevel, LocationNode
from newproxy.engine.proxy import ResponseRelay
from newproxy.engine.proxyurl import UNRESOLVED, GroupLookup
from newproxy.engine.redirects import HeaderRewrites, compile_rules
from newproxy.engine.requestfacts import fact_names, uses_upstream_answer
from newproxy.engine.responses import ResponseMaker
from newproxy.engine.rewrite import (
    CompiledBreak,
    CompiledIf,
    CompiledRewrite,
    CompiledSet,
    Step,
    compile_condition,
    escape_args,
)
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.engine.types import UpstreamSettings
from newproxy.engine.uri import extension
from newproxy.engine.computed import compile_geo, compile_map, compile_split_clients
from newproxy.engine.context import RequestContext
from newproxy.engine.variables import Getter, Template


@dataclass(slots=True)
class CompiledReturn:
    status: int
    text: Template | None
    source: str | None


@dataclass(slots=True)
class CompiledProxy:
    config: ProxyConfig
    group: UpstreamGroup
    # (whole line when the value is constant, b"Name: ", value template); empty values are not sent
    headers: list[tuple[bytes | None, bytes, Template]]
    suppressed: frozenset[bytes]  # lower-case names of client headers not passed on
    uri: str | None
    location_path: str  # the location prefix that the proxy_pass URI replaces
    version_suffix: bytes  # b" HTTP/1.0\r\n"
    relay: ResponseRelay
    settings: UpstreamSettings  # what the upstream client reads of config on every exchange
    # config's fields every proxied request reads, copied: read here, they are native fields (a
    # pydantic model's are Python attribute lookups, ~300 instructions each when compiled code reads them)
    pass_through: bool
    grpc: bool  # config.protocol == "grpc"
    proxy_host: str
    tls: UpstreamTlsConfig | None
    pass_request_headers: bool
    pass_request_body: bool
    method: Template | None = None  # proxy_method; None: the client's
    body: Template | None = None  # proxy_set_body; None: the client's body
    url: Template | None = None  # proxy_pass with variables (engine/proxyurl.py); ``group`` is then unused
    lookup: GroupLookup | None = None  # with ``url``: the groups its host may name
    tls_name: Template | None = None  # proxy_ssl_name with variables (rendered per request)


@dataclass(slots=True)
class CompiledErrorPage:
    target: Template
    kind: str  # "uri", "named" or "url"
    response: int | None
    target_status: bool


ErrorPages = dict[int, CompiledErrorPage]


@dataclass(slots=True)
class CompiledTryFiles:
    files: list[tuple[Template, bool]]  # (value, names a directory)
    fallback: Template
    root: str


@dataclass(slots=True)
class CompiledLocation:
    config: LocationConfig
    rewrite: list[Step]
    proxy: CompiledProxy | None
    default_type: bytes
    types: dict[str, bytes]
    client_max_body_size: int
    error_pages: ErrorPages | None = None
    internal: bool = False
    try_files: CompiledTryFiles | None = None
    intercept: frozenset[int] = frozenset()  # proxy_intercept_errors: the statuses it has an error_page for
    limits: CompiledLimits | None = None  # limit_req/limit_conn/limit_rate; None: none configured
    headers: HeaderProgram | None = None  # expires/add_header/add_trailer; None: nothing to do
    gzip: CompiledGzip | None = None  # nginx's gzip filter; None: gzip off
    access: CompiledAccess | None = None  # allow/deny, auth_basic, auth_request; None: none
    real_ip: CompiledRealIp | None = None  # realip in preaccess (when it differs from the server's)

    def content_type(self, uri: str) -> bytes:
        return self.types.get(extension(uri), self.default_type)


@dataclass(slots=True)
class CompiledServer:
    config: ServerConfig
    primary_name: str
    rewrite: list[Step]
    locations: LocationLevel[CompiledLocation]
    named: dict[str, CompiledLocation] = field(default_factory=dict)
    default_type: bytes = b"text/plain"
    types: dict[str, bytes] = field(default_factory=dict)
    client_max_body_size: int = 1048576
    error_pages: ErrorPages | None = None
    limits: CompiledLimits | None = None  # limits for requests matching no location
    headers: HeaderProgram | None = None  # for requests matching no location
    gzip: CompiledGzip | None = None  # gzip for requests matching no location
    access: CompiledAccess | None = None  # the access phase for requests matching no location
    real_ip: CompiledRealIp | None = None  # realip in the post-read phase

    def content_type(self, uri: str) -> bytes:
        return self.types.get(extension(uri), self.default_type)


MimeTables = dict[str, dict[str, bytes]]


def compile_mime_tables(tables: dict[str, dict[str, str]]) -> MimeTables:
    return {name: {ext.lower(): mime.encode() for ext, mime in table.items()} for name, table in tables.items()}


def _step_names(steps: list[RewriteStep], names: set[str]) -> None:
    for step in steps:
        if isinstance(step, RewriteRuleStep):
            names.update(compile_regex(step.regex).groupindex)
        elif isinstance(step, SetStep):
            names.add(step.variable)
        elif isinstance(step, IfStep):
            if step.condition.operator in ("~", "~*", "!~", "!~*") and step.condition.operand is not None:
                names.update(compile_regex(step.condition.operand).groupindex)
            _step_names(step.steps, names)
            if step.location is not None:
                _step_names(step.location.rewrite, names)


def capture_names(config: NewproxyConfig) -> frozenset[str]:
    """The config's own variables: named groups of every regex (nginx makes each one a variable) and
    the targets of ``set``."""
    names: set[str] = set()

    def visit(locations: list[LocationConfig]) -> None:
        for location in locations:
            if location.match in ("regex", "regex_caseless"):
                names.update(compile_regex(location.path).groupindex)
            _step_names(location.rewrite, names)
            if location.access is not None:  # auth_request_set defines its variables
                names.update(setting.variable for setting in location.access.auth_request_set)
            visit(location.locations)

    for server in config.servers:
        for name in server.server_names:
            if name.startswith("~"):
                names.update(compile_regex(name[1:]).groupindex)
        _step_names(server.rewrite, names)
        visit(server.locations)
    for variable in config.variables:
        if isinstance(variable, MapConfig):
            for entry in variable.entries:
                if entry.kind in ("regex", "regex_caseless"):
                    names.update(compile_regex(entry.key).groupindex)
    return frozenset(names)


def _quoting(getter: Getter) -> Getter:
    """A capture copied into args (or a redirect): escaped when the client's URI had "%" or "+"."""

    def get(ctx: RequestContext) -> str:
        value = getter(ctx)
        if ctx.uri_needs_escape or "+" in ctx.request_uri.partition("?")[0]:
            return escape_args(value)
        return value

    return get


def _late(table: dict[str, Getter], name: str) -> Getter:
    """A getter that looks ``name`` up when called: for maps that use maps defined after them."""
    return lambda ctx: table[name](ctx)


def _split_replacement(text: str) -> tuple[str, str | None, bool]:
    """(uri part, args part or None, add_args) of a rewrite replacement, split at its first literal "?"."""
    add_args = True
    if text.endswith("?"):
        text, add_args = text[:-1], False
    question = text.find("?")
    if question < 0:
        return text, None, add_args
    return text[:question], text[question + 1:], add_args


class ConfigCompiler:
    """Compiles servers and locations once, sharing the upstream groups, MIME tables and capture names."""

    def __init__(self, config: NewproxyConfig, groups: dict[str, UpstreamGroup], maker: ResponseMaker) -> None:
        self.groups = groups
        self.maker = maker
        self.config = config
        self.lookup: GroupLookup | None = None  # made for the first proxy_pass with variables
        self.header_programs = 0  # how many locations have a headers filter (0: the engine skips it)
        # $connection, $upstream_*... named anywhere (newproxy/engine/requestfacts.py): what must be recorded.
        self.fact_names = fact_names(config)
        self.gzips = 0  # how many locations and servers have gzip on (0: the engine skips the filter)
        self.mime = compile_mime_tables(config.mime_types)
        self.captures = capture_names(config)
        # map and split_clients getters; filled before any template is compiled, and looked up by
        # templates at compile time (a map's value may use another map, in any order: late binding).
        self.computed: dict[str, Getter] = {}
        late: dict[str, Getter] = {}
        for variable in config.variables:
            late[variable.variable] = _late(late, variable.variable)
        self.computed = dict(late)
        for variable in config.variables:
            if isinstance(variable, MapConfig):
                late[variable.variable] = compile_map(variable, self.template)
            elif isinstance(variable, GeoConfig):
                late[variable.variable] = compile_geo(variable, self.template)
            else:
                late[variable.variable] = compile_split_clients(variable, self.template)
        self.computed = {name: late[name] for name in late}
        # limit_req_zone / limit_conn_zone: the process-wide limit state (newproxy/engine/limits.py).
        self.zones = Zones(
            req={z.name: ReqZone(z, self.template(z.key)) for z in config.limit_req_zones},
            conn={z.name: ConnZone(z, self.template(z.key)) for z in config.limit_conn_zones},
            rate_set="limit_rate" in self.captures,
        )
        for group in groups.values():  # hash KEY: a complex value, rendered per request
            if group.hash_key is not None:
                group.key_template = self.template(group.hash_key)

    def template(self, text: str) -> Template:
        return Template(text, self.captures, self.computed)

    def rewrite(self, steps: list[RewriteStep], location_path: str = "") -> list[Step]:
        return [self.step(step, location_path) for step in steps]

    def step(self, step: RewriteStep, location_path: str) -> Step:
        if isinstance(step, ReturnStep):
            return CompiledReturn(step.status, self.template(step.text) if step.text is not None else None, step.source)
        if isinstance(step, RewriteRuleStep):
            uri, args, add_args = _split_replacement(step.replacement)
            redirect = 0
            if step.flag == "permanent":
                redirect = 301
            elif step.flag == "redirect" or step.replacement.startswith(("http://", "https://", "$scheme")):
                redirect = 302
            uri_template = self.template(uri)
            args_template = self.template(args) if args is not None else None
            if args_template is not None:
                self._quote_captures(args_template)
            if redirect:
                self._quote_captures(uri_template)
            return CompiledRewrite(compile_regex(step.regex), uri_template, args_template, add_args, redirect,
                                   step.flag, step.source)
        if isinstance(step, SetStep):
            return CompiledSet(step.variable, self.template(step.value), step.source)
        if isinstance(step, BreakStep):
            return CompiledBreak(step.source)
        condition = step.condition
        operand: Template | object | None = None
        if condition.operator in ("~", "~*", "!~", "!~*"):
            operand = compile_regex(condition.operand or "", caseless=condition.operator.endswith("*"))
        elif condition.operand is not None:
            operand = self.template(condition.operand)
        test = compile_condition(condition.operator, self.template(condition.value), operand)  # type: ignore[arg-type]
        location = self.compiled_location(step.location) if step.location is not None else None
        return CompiledIf(test, self.rewrite(step.steps, location_path), location, step.source)

    @staticmethod
    def _quote_captures(template: Template) -> None:
        parts = tuple(_quoting(p) if callable(p) and getattr(p, "is_capture", False) else p for p in template.parts)
        template.parts = parts
        if template.single is not None and getattr(template.single, "is_capture", False):
            template.single = parts[0]  # type: ignore[assignment]

    def header_program(self, config: ResponseHeadersConfig | None) -> HeaderProgram | None:
        """The headers filter of a location, or None when it has nothing to do (no per-response cost)."""
        if config is None or (config.expires is None and not config.add and not config.trailers):
            return None
        self.header_programs += 1
        expires = None
        if config.expires is not None:
            e = config.expires
            expires = ExpiresRule(e.mode, e.seconds, self.template(e.value) if e.value is not None else None)

        def compile_add(items: list[AddHeaderConfig], replacing: bool) -> list[AddHeader]:
            out = []
            for item in items:
                lower = item.name.lower().encode("latin-1")
                # add_header ETag/Last-Modified replace the response's own; add_trailer only appends.
                kind = REPLACE if replacing and lower in (b"etag", b"last-modified") else ADD
                out.append(AddHeader(item.name.encode("latin-1"), lower, self.template(item.value), item.always, kind))
            return out

        headers, trailers = compile_add(config.add, True), compile_add(config.trailers, False)
        has_always = any(h.always for h in headers) or any(t.always for t in trailers)
        return HeaderProgram(expires, headers, trailers, has_always)

    def proxy(self, config: ProxyConfig, location_path: str,
              headers: HeaderProgram | None = None, gzip: CompiledGzip | None = None) -> CompiledProxy:
        set_headers = [(h.name.encode("latin-1"), self.template(h.value)) for h in config.headers]
        sent = []
        for name, value in set_headers:
            if value.text == "":
                continue  # only hides the client's header of that name
            constant = value.constant
            if constant is None and config.url is None:
                # $proxy_host is the proxy_pass host, the same for every request (the default
                # `Host $proxy_host` included): the line is made once here. An empty value is
                # still not sent, as upstream_head does for a rendered one.
                constant = value.constant_given("proxy_host", config.proxy_host)
            if constant == "":
                continue
            line = None if constant is None else name + b": " + constant.encode("latin-1") + b"\r\n"
            sent.append((line, name + b": ", value))
        lookup = None
        if config.url is not None:
            if self.lookup is None:
                self.lookup = GroupLookup(self.config, self.groups)
            lookup = self.lookup
        return CompiledProxy(
            config=config,
            group=self.groups[config.upstream] if config.url is None else UNRESOLVED,
            url=self.template(config.url) if config.url is not None else None,
            lookup=lookup,
            tls_name=self.template(config.tls.name) if config.tls is not None and config.tls.name is not None
            and "$" in config.tls.name else None,
            headers=sent,
            suppressed=frozenset(name.lower() for name, _ in set_headers),
            uri=config.uri,
            location_path=location_path,
            version_suffix=f" HTTP/{config.http_version}\r\n".encode(),
            settings=UpstreamSettings(config),
            pass_through=config.pass_through,
            grpc=config.protocol == "grpc",
            proxy_host=config.proxy_host,
            tls=config.tls,
            pass_request_headers=config.pass_request_headers,
            pass_request_body=config.pass_request_body,
            method=self.template(config.method) if config.method is not None else None,
            body=self.template(config.body) if config.body is not None else None,
            relay=ResponseRelay(self.maker, frozenset(h.lower().encode("latin-1") for h in config.hide_headers),
                                headers=headers, pass_through=config.pass_through, gzip=gzip,
                                upstream_answer=uses_upstream_answer(self.fact_names),
                                accel_redirect=config.accel_redirect and not config.pass_through,
                                accel_limit_rate=config.accel_limit_rate and not config.pass_through,
                                rewrites=HeaderRewrites.build(compile_rules(config.redirects, self.template),
                                                              compile_rules(config.cookie_domains, self.template),
                                                              compile_rules(config.cookie_paths, self.template))),
        )

    def compiled_location(self, config: LocationConfig) -> CompiledLocation:
        error_pages = self.error_pages(config.error_pages)
        intercepts = config.proxy is not None and config.proxy.intercept_errors and error_pages is not None
        headers = self.header_program(config.headers)
        gzip = compile_gzip(config.gzip)
        if gzip is not None:
            self.gzips += 1
        return CompiledLocation(
            config=config,
            rewrite=self.rewrite(config.rewrite, config.path),
            proxy=self.proxy(config.proxy, config.path, headers, gzip) if config.proxy else None,
            default_type=config.default_type.encode(),
            types=self.mime[config.types],
            client_max_body_size=config.client_max_body_size,
            limits=self.zones.compile(config.limits, self.template) if config.limits is not None else None,
            error_pages=error_pages,
            internal=config.internal,
            try_files=self.try_files(config.try_files) if config.try_files is not None else None,
            intercept=frozenset(error_pages) if intercepts and error_pages is not None else frozenset(),
            headers=headers,
            gzip=gzip,
            access=self.access(config.access),
            real_ip=compile_realip(config.real_ip) if config.real_ip is not None else None,
        )

    def access(self, config: AccessConfig | None) -> CompiledAccess | None:
        if config is None:
            return None
        return compile_access(config, self.template, self.computed, self.captures)

    def try_files(self, config: TryFilesConfig) -> CompiledTryFiles:
        files = [(self.template(f[:-1] if f.endswith("/") else f), f.endswith("/")) for f in config.files]
        return CompiledTryFiles(files, self.template(config.fallback), config.root.rstrip("/"))

    def error_pages(self, pages: list[ErrorPageConfig]) -> ErrorPages | None:
        if not pages:
            return None
        table: ErrorPages = {}
        for page in pages:
            target = page.target
            kind = "uri" if target.startswith("/") else "named" if target.startswith("@") else "url"
            compiled = CompiledErrorPage(self.template(target), kind, page.response, page.target_status)
            for code in page.codes:
                table.setdefault(code, compiled)
        return table

    def location(self, config: LocationConfig, named: dict[str, CompiledLocation]) -> LocationNode[CompiledLocation]:
        compiled = self.compiled_location(config)
        if config.match == "named":
            named[config.path] = compiled
        regex = None
        if config.match in ("regex", "regex_caseless"):
            regex = compile_regex(config.path, caseless=config.match == "regex_caseless")
        children = [self.location(child, named) for child in config.locations]
        return LocationNode(
            match=config.match,
            path=config.path,
            value=compiled,
            # A fallback location matches "/path" for "/path/" only where nginx would redirect it
            # (the engine then hands the request to legacy, which makes the redirect).
            auto_redirect=config.proxy is not None and (not config.proxy.pass_through
                                                        or config.proxy.legacy_auto_redirect),
            regex=regex,
            children=LocationLevel.build(children) if children else None,
        )

    def server(self, config: ServerConfig) -> CompiledServer:
        named: dict[str, CompiledLocation] = {}
        nodes = [self.location(loc, named) for loc in config.locations]
        return CompiledServer(
            config=config,
            primary_name=primary_name(config.server_names),
            rewrite=self.rewrite(config.rewrite),
            locations=LocationLevel.build(nodes),
            named=named,
            default_type=config.default_type.encode(),
            types=self.mime[config.types],
            client_max_body_size=config.client_max_body_size,
            limits=self.zones.compile(config.limits, self.template) if config.limits is not None else None,
            error_pages=self.error_pages(config.error_pages),
            headers=self.header_program(config.headers),
            gzip=self._server_gzip(config.gzip),
            access=self.access(config.access),
            real_ip=compile_realip(config.real_ip) if config.real_ip is not None else None,
        )

    def _server_gzip(self, config: GzipConfig | None) -> CompiledGzip | None:
        gzip = compile_gzip(config)
        if gzip is not None:
            self.gzips += 1
        return gzip


def primary_name(names: list[str]) -> str:
    """$server_name, as ngx_http_core_merge_srv_conf sets it: the first name, lower-cased unless a
    regex (which keeps its "~"), without the leading dot of the ".example.com" form."""
    name = names[0] if names else ""
    if name.startswith("~"):
        return name
    return name[1:].lower() if name.startswith(".") else name.lower()

