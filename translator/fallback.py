"""The strangler fallback: what cannot be translated faithfully is proxied to the legacy nginx.

``nginx-migrate convert --fallback http://legacy:8080``: a location (or a whole server, when the
gap sits at server or http level) holding a directive the translator reports ``unsupported`` or
``unknown`` and that changes responses (fastcgi_pass, sub_filter, a Lua block...) becomes a
*fallback location* in the newproxy config: a ``proxy`` with ``pass_through: true`` to the legacy
nginx, which still runs the original config. newproxy sends the client's request as received
(method, raw URI, version, headers with Host, body) and relays legacy's answer as it is, so legacy
runs everything for that request from the start: server rewrites, internal redirects, its own
error pages. Those directive occurrences are reported as ``caveat`` ("served by legacy nginx via
fallback") instead of gaps.

Choices a production user should know (README "Strangler fallback"):

- No X-Forwarded-For is added: legacy would then pass a different header upstream than the nginx it
  replaces. Legacy sees newproxy's address as ``$remote_addr``; configure ``set_real_ip_from``
  (realip) on legacy with a header newproxy's operator adds in front, or keep legacy on the same host.
- Legacy makes a relative ``Location`` absolute with the Host it got and *its own* port
  (``port_in_redirect on``); newproxy replaces that prefix with the client's (scheme, host, port
  newproxy answered on), which is what the original nginx would have sent.
- Directives that only tune buffers, timeouts, logging or TLS of listens that are dropped anyway do
  not send a location to legacy: they stay reported as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newproxy.config import (
    LocationConfig,
    NewproxyConfig,
    ProxyConfig,
    ServerConfig,
    UpstreamConfig,
    UpstreamServerConfig,
)
from nginx_parser import Directive, Location

if TYPE_CHECKING:
    from translator.translate import Translator

# Unsupported directives with no effect on what a client gets back (tuning, logging, temp files,
# TLS settings of listens that are dropped as gaps themselves): they stay gaps, no fallback.
NO_RESPONSE_EFFECT = frozenset({
    "access_log", "log_format", "open_log_file_cache", "log_not_found", "log_subrequest", "error_log",
    "client_body_buffer_size", "client_header_buffer_size", "large_client_header_buffers",
    "client_body_timeout", "client_header_timeout", "send_timeout", "keepalive_timeout", "keepalive_requests",
    "keepalive_time", "lingering_close", "lingering_time", "lingering_timeout", "reset_timedout_connection",
    "proxy_buffering", "proxy_buffer_size", "proxy_buffers", "proxy_busy_buffers_size", "proxy_max_temp_file_size",
    "proxy_temp_file_write_size", "proxy_request_buffering", "output_buffers", "postpone_output", "aio",
    "directio", "open_file_cache", "open_file_cache_valid", "open_file_cache_min_uses", "open_file_cache_errors",
    "resolver_timeout", "server_names_hash_bucket_size", "variables_hash_bucket_size",
    # Blocks whose own gaps are reported where their variables are used.
    "map", "geo", "split_clients", "upstream", "listen",
})
_NO_RESPONSE_PREFIXES = ("ssl_", "client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp")
_GAP = ("unsupported", "unknown")
_URL = re.compile(r"^http://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?/?$")
# The handlers that set nginx's auto_redirect ("/path" answered with a redirect to "/path/").
_AUTO_REDIRECT = frozenset({"proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass", "grpc_pass"})
# The legacy nginx's own timeouts apply first; newproxy only bounds a legacy that hangs.
LEGACY_TIMEOUT = 3600.0


class FallbackError(ValueError):
    """A --fallback value newproxy cannot use."""


@dataclass(frozen=True)
class Fallback:
    """Where the legacy nginx listens. ``port`` None: on each server's own (first) listen port, for
    a legacy that runs the original config unchanged on another host, so that it picks the server
    by address as the original did. ``by_listen_port``: another legacy address for the servers whose
    first listen has that port (the shadow harness runs legacy on one port per logical listen)."""

    host: str
    port: int | None
    by_listen_port: dict[int, tuple[str, int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}" + (f":{self.port}" if self.port is not None else "")


def parse_fallback(value: str) -> Fallback:
    """``http://host[:port]`` (no port: each server's own listen port); anything else is a
    FallbackError saying why."""
    if not value.startswith("http://"):
        scheme = value.partition("://")[0] if "://" in value else ""
        why = (f'the scheme "{scheme}" is not supported (newproxy talks plain HTTP to legacy)' if scheme
               else "it is not a URL")
        raise FallbackError(f'--fallback "{value}": {why}; give http://HOST:PORT, e.g. http://legacy:8080')
    match = _URL.match(value)
    if match is None:
        raise FallbackError(f'--fallback "{value}": expected http://HOST:PORT with no path, e.g. '
                            "http://legacy:8080")
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise FallbackError(f'--fallback "{value}": port {port} is out of range (1-65535)')
    return Fallback(match.group("host").strip("[]"), port)


def affects_responses(directive: Directive) -> bool:
    name = directive.name
    return name not in NO_RESPONSE_EFFECT and not name.startswith(_NO_RESPONSE_PREFIXES)


class FallbackPlanner:
    """Decides which servers and locations go to legacy, rewrites them in the translated config and
    notes the occurrences. Runs after the translation, before the occurrences are collected."""

    def __init__(self, translator: Translator, fallback: Fallback) -> None:
        self.translator = translator
        self.fallback = fallback
        self.groups: dict[tuple[str, int], UpstreamConfig] = {}

    def apply(self, config: NewproxyConfig) -> None:
        http = self.translator.nginx.http
        if http is None:
            return
        http_level = self._triggers(http.directives(), nested=False)
        for server, server_config in zip(http.servers, config.servers, strict=True):
            address = self._address(server_config)
            triggers = http_level + self._triggers(server.directives(), nested=True)
            if triggers:
                self._fallback_server(server_config, address)
                self._mark_all(server.directive)
            else:
                self._locations(server.locations, server_config.locations, address, inherited=False)
        if http_level and http.servers:
            self._mark(http_level)
        config.upstreams.extend(self.groups.values())

    # -- deciding ------------------------------------------------------------------------------

    def _level(self, directive: Directive) -> str:
        return self.translator.levels.get(id(directive), ("exact", ""))[0]

    def _triggers(self, directives: Iterable[Directive], nested: bool) -> list[Directive]:
        """Gaps that change responses among ``directives`` (and, with ``nested``, inside their if and
        limit_except blocks: both are part of the same location or server)."""
        found = []
        for directive in directives:
            if directive.name in ("server", "upstream", "location", "types"):
                continue
            if self._level(directive) in _GAP and affects_responses(directive):
                found.append(directive)
            if nested and directive.name in ("if", "limit_except") and directive.block is not None:
                found.extend(self._triggers(directive.children(), nested=True))
        return found

    def _locations(self, locations: list[Location], configs: list[LocationConfig],
                   address: tuple[str, int], inherited: bool) -> None:
        for i, (location, config) in enumerate(zip(locations, configs, strict=True)):
            # Most location directives inherit into nested locations: a gap above one sends it too.
            if inherited or self._triggers(location.directives(), nested=True):
                self._mark_all(location.directive)
                configs[i] = self._fallback_location(location, config, address)
                self._locations(location.locations, configs[i].locations, address, inherited=True)
            else:
                self._locations(location.locations, config.locations, address, inherited=False)

    # -- rewriting the config ------------------------------------------------------------------

    def _address(self, server: ServerConfig) -> tuple[str, int]:
        first = server.listen[0].port if server.listen else 80
        if first in self.fallback.by_listen_port:
            return self.fallback.by_listen_port[first]
        return self.fallback.host, self.fallback.port if self.fallback.port is not None else first

    def _proxy(self, address: tuple[str, int], source: str | None) -> ProxyConfig:
        host, port = address
        if address not in self.groups:
            name = "legacy_nginx" if address == (self.fallback.host, self.fallback.port) else f"legacy_nginx_{port}"
            taken = {u.name for u in self.translator.upstreams} | {g.name for g in self.groups.values()}
            while name in taken:  # a config may have an upstream of that name already
                name += "_"
            # max_fails=0: one peer is never marked down; every request still reaches legacy.
            self.groups[address] = UpstreamConfig(
                name=name, servers=[UpstreamServerConfig(host=host, port=port, max_fails=0)])
        name = self.groups[address].name
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return ProxyConfig(upstream=name, proxy_host=authority, headers=[], pass_through=True, hide_headers=[],
                           next_upstream=["error", "timeout"], read_timeout=LEGACY_TIMEOUT,
                           send_timeout=LEGACY_TIMEOUT, source=source)

    def _fallback_location(self, location: Location, config: LocationConfig,
                           address: tuple[str, int]) -> LocationConfig:
        """Only what newproxy decides before handing over stays: the match, `internal` (a 404 from
        outside) and client_max_body_size (a 413 before reading the body, as nginx answers it)."""
        proxy = self._proxy(address, config.source)
        proxy.legacy_auto_redirect = any(d.name in _AUTO_REDIRECT for d in location.directives())
        out = LocationConfig(match=config.match, path=config.path, internal=config.internal,
                             client_max_body_size=config.client_max_body_size, proxy=proxy,
                             locations=config.locations, source=config.source)
        if "access_logs" in LocationConfig.model_fields:
            out.access_logs = config.access_logs  # newproxy still logs what it hands over
        return out

    def _fallback_server(self, config: ServerConfig, address: tuple[str, int]) -> None:
        """A gap at server or http level touches every request of the server: all of it goes to
        legacy, through one catch-all location (every request URI starts with "/"). No body limit
        here: legacy applies the one of the location it picks."""
        config.rewrite = []
        catch_all = LocationConfig(match="prefix", path="/", client_max_body_size=0,
                                   proxy=self._proxy(address, config.source), source=config.source)
        if "access_logs" in ServerConfig.model_fields and "access_logs" in LocationConfig.model_fields:
            catch_all.access_logs = config.access_logs  # newproxy still logs what it hands over
        config.locations = [catch_all]

    # -- reporting -----------------------------------------------------------------------------

    def _mark_all(self, block: Directive) -> None:
        """Every gap inside ``block`` is legacy's now: a caveat, not a gap."""
        self._mark(d for d in _walk(block.children()) if self._level(d) in _GAP)

    def _mark(self, directives: Iterable[Directive]) -> None:
        for directive in directives:
            _, reason = self.translator.levels.get(id(directive), ("", ""))
            self.translator.note(directive, "caveat",
                                 f"served by legacy nginx via fallback ({self.fallback.url}); {reason}".rstrip("; "))


def _walk(directives: Iterable[Directive]) -> Iterable[Directive]:
    for directive in directives:
        yield directive
        if directive.block is not None:
            yield from _walk(directive.children())


__all__ = ["Fallback", "FallbackError", "FallbackPlanner", "affects_responses", "parse_fallback"]


def fallback_locations(config: NewproxyConfig) -> list[tuple[str, str, str]]:
    """(server name, location, nginx file:line) of every location the config hands to legacy."""
    out: list[tuple[str, str, str]] = []

    def visit(server: str, locations: list[LocationConfig]) -> None:
        for location in locations:
            if location.proxy is not None and location.proxy.pass_through:
                label = f"location {_MODIFIER.get(location.match, '')} {location.path}".replace("  ", " ")
                out.append((server, label, location.source or ""))
            visit(server, location.locations)

    for server in config.servers:
        visit(server.server_names[0] if server.server_names else "", server.locations)
    return out


_MODIFIER = {"exact": "=", "prefix_priority": "^~", "prefix": "", "regex": "~", "regex_caseless": "~*", "named": ""}
