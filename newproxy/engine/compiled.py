"""The config compiled for request time: templates, location trees and upstream groups built once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from newproxy.config import LocationConfig, ProxyConfig, ReturnStep, ServerConfig
from newproxy.engine.locations import LocationLevel, LocationNode
from newproxy.engine.upstreams import UpstreamGroup
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
    headers: list[tuple[bytes, Template]]  # name, value; empty values are not sent
    suppressed: frozenset[bytes]  # lower-case names of client headers not passed on
    uri: str | None
    location_path: str  # the location prefix that the proxy_pass URI replaces
    version_suffix: bytes  # b" HTTP/1.0\r\n"


@dataclass(slots=True)
class CompiledLocation:
    config: LocationConfig
    rewrite: list[CompiledReturn]
    proxy: CompiledProxy | None
    default_type: bytes
    client_max_body_size: int


@dataclass(slots=True)
class CompiledServer:
    config: ServerConfig
    primary_name: str
    rewrite: list[CompiledReturn]
    locations: LocationLevel[CompiledLocation]
    named: dict[str, CompiledLocation] = field(default_factory=dict)
    default_type: bytes = b"text/plain"
    client_max_body_size: int = 1048576


def compile_rewrite(steps: list[ReturnStep]) -> list[CompiledReturn]:
    return [CompiledReturn(step.status, Template(step.text) if step.text is not None else None, step.source) for step in steps]


def compile_proxy(config: ProxyConfig, groups: dict[str, UpstreamGroup], location_path: str) -> CompiledProxy:
    headers = [(h.name.encode("latin-1"), Template(h.value)) for h in config.headers]
    return CompiledProxy(
        config=config,
        group=groups[config.upstream],
        headers=[(name, value) for name, value in headers if value.text != ""],
        suppressed=frozenset(name.lower() for name, _ in headers),
        uri=config.uri,
        location_path=location_path,
        version_suffix=f" HTTP/{config.http_version}\r\n".encode(),
    )


def _compile_location(
    config: LocationConfig, groups: dict[str, UpstreamGroup], named: dict[str, CompiledLocation]
) -> LocationNode[CompiledLocation]:
    compiled = CompiledLocation(
        config=config,
        rewrite=compile_rewrite(config.rewrite),
        proxy=compile_proxy(config.proxy, groups, config.path) if config.proxy else None,
        default_type=config.default_type.encode(),
        client_max_body_size=config.client_max_body_size,
    )
    if config.match == "named":
        named[config.path] = compiled
    regex = None
    if config.match == "regex":
        regex = re.compile(config.path)
    elif config.match == "regex_caseless":
        regex = re.compile(config.path, re.IGNORECASE)
    children = [_compile_location(child, groups, named) for child in config.locations]
    return LocationNode(
        match=config.match,
        path=config.path,
        value=compiled,
        auto_redirect=config.proxy is not None,
        regex=regex,
        children=LocationLevel.build(children) if children else None,
    )


def compile_server(config: ServerConfig, groups: dict[str, UpstreamGroup]) -> CompiledServer:
    named: dict[str, CompiledLocation] = {}
    nodes = [_compile_location(loc, groups, named) for loc in config.locations]
    primary = config.server_names[0] if config.server_names else ""
    return CompiledServer(
        config=config,
        primary_name=primary,
        rewrite=compile_rewrite(config.rewrite),
        locations=LocationLevel.build(nodes),
        named=named,
        default_type=config.default_type.encode(),
        client_max_body_size=config.client_max_body_size,
    )
