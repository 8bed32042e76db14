"""The config compiled for request time: templates, location trees and upstream groups built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from newproxy.config import LocationConfig, NewproxyConfig, ProxyConfig, ReturnStep, ServerConfig
from newproxy.engine.regex import compile_regex
from newproxy.engine.locations import LocationLevel, LocationNode
from newproxy.engine.proxy import ResponseRelay
from newproxy.engine.responses import ResponseMaker
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.engine.uri import extension
from newproxy.engine.variables import Template


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


@dataclass(slots=True)
class CompiledLocation:
    config: LocationConfig
    rewrite: list[CompiledReturn]
    proxy: CompiledProxy | None
    default_type: bytes
    types: dict[str, bytes]
    client_max_body_size: int

    def content_type(self, uri: str) -> bytes:
        return self.types.get(extension(uri), self.default_type)


@dataclass(slots=True)
class CompiledServer:
    config: ServerConfig
    primary_name: str
    rewrite: list[CompiledReturn]
    locations: LocationLevel[CompiledLocation]
    named: dict[str, CompiledLocation] = field(default_factory=dict)
    default_type: bytes = b"text/plain"
    types: dict[str, bytes] = field(default_factory=dict)
    client_max_body_size: int = 1048576

    def content_type(self, uri: str) -> bytes:
        return self.types.get(extension(uri), self.default_type)


MimeTables = dict[str, dict[str, bytes]]


def compile_mime_tables(tables: dict[str, dict[str, str]]) -> MimeTables:
    return {name: {ext.lower(): mime.encode() for ext, mime in table.items()} for name, table in tables.items()}


def capture_names(config: NewproxyConfig) -> frozenset[str]:
    """Named groups of every location and server-name regex: nginx makes each one a variable."""
    names: set[str] = set()

    def visit(locations: list[LocationConfig]) -> None:
        for location in locations:
            if location.match in ("regex", "regex_caseless"):
                names.update(compile_regex(location.path).groupindex)
            visit(location.locations)

    for server in config.servers:
        for name in server.server_names:
            if name.startswith("~"):
                names.update(compile_regex(name[1:]).groupindex)
        visit(server.locations)
    return frozenset(names)


class ConfigCompiler:
    """Compiles servers and locations once, sharing the upstream groups, MIME tables and capture names."""

    def __init__(self, config: NewproxyConfig, groups: dict[str, UpstreamGroup], maker: ResponseMaker) -> None:
        self.groups = groups
        self.maker = maker
        self.mime = compile_mime_tables(config.mime_types)
        self.captures = capture_names(config)

    def template(self, text: str) -> Template:
        return Template(text, self.captures)

    def rewrite(self, steps: list[ReturnStep]) -> list[CompiledReturn]:
        return [CompiledReturn(step.status, self.template(step.text) if step.text is not None else None, step.source)
                for step in steps]

    def proxy(self, config: ProxyConfig, location_path: str) -> CompiledProxy:
        headers = [(h.name.encode("latin-1"), self.template(h.value)) for h in config.headers]
        sent = []
        for name, value in headers:
            if value.text == "":
                continue  # only hides the client's header of that name
            line = None if value.constant is None else name + b": " + value.constant.encode("latin-1") + b"\r\n"
            sent.append((line, name + b": ", value))
        return CompiledProxy(
            config=config,
            group=self.groups[config.upstream],
            headers=sent,
            suppressed=frozenset(name.lower() for name, _ in headers),
            uri=config.uri,
            location_path=location_path,
            version_suffix=f" HTTP/{config.http_version}\r\n".encode(),
            relay=ResponseRelay(self.maker, frozenset(h.lower().encode("latin-1") for h in config.hide_headers)),
        )

    def location(self, config: LocationConfig, named: dict[str, CompiledLocation]) -> LocationNode[CompiledLocation]:
        compiled = CompiledLocation(
            config=config,
            rewrite=self.rewrite(config.rewrite),
            proxy=self.proxy(config.proxy, config.path) if config.proxy else None,
            default_type=config.default_type.encode(),
            types=self.mime[config.types],
            client_max_body_size=config.client_max_body_size,
        )
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
            auto_redirect=config.proxy is not None,
            regex=regex,
            children=LocationLevel.build(children) if children else None,
        )

    def server(self, config: ServerConfig) -> CompiledServer:
        named: dict[str, CompiledLocation] = {}
        nodes = [self.location(loc, named) for loc in config.locations]
        return CompiledServer(
            config=config,
            primary_name=config.server_names[0] if config.server_names else "",
            rewrite=self.rewrite(config.rewrite),
            locations=LocationLevel.build(nodes),
            named=named,
            default_type=config.default_type.encode(),
            types=self.mime[config.types],
            client_max_body_size=config.client_max_body_size,
        )
