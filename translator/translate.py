"""Translate the nginx IR into a newproxy config, recording what happened to every directive.

Inheritance is resolved here, so the newproxy config is explicit: a scalar directive (e.g.
``proxy_read_timeout``) comes from the innermost block that sets it; an array directive
(``proxy_set_header``, ``proxy_hide_header``) comes whole from the innermost block that has any,
as nginx merges them. nginx's implicit defaults are written out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from pydantic import BaseModel

from newproxy.config import (
    RealIpConfig,
    BUILTIN_MIME_TYPES,
    BreakStep,
    ErrorPageConfig,
    GeoConfig,
    GeoEntryConfig,
    HeaderSetting,
    IfCondition,
    IfStep,
    ListenConfig,
    LocationConfig,
    MapConfig,
    MapEntryConfig,
    NewproxyConfig,
    ProxyConfig,
    ReturnStep,
    RewriteRuleStep,
    RewriteStep,
    ServerConfig,
    SetStep,
    SplitBucketConfig,
    SplitClientsConfig,
    StaticConfig,
    TryFilesConfig,
    UpstreamConfig,
    UpstreamServerConfig,
    VariableConfig,
)
from newproxy.engine.regex import compile_regex
from newproxy.engine.variables import KNOWN_PREFIXES, KNOWN_VARIABLES, variable_names
from nginx_parser import ConfigError, Directive, Location, NginxConfig, Server, Upstream, parse_time
from translator.fallback import Fallback, FallbackPlanner
from translator.registry import Level, classify
from translator.redirects import cookie_rules, redirect_rules
from translator.headers import headers_config
from translator.gzip import gzip_config
from translator.logs import LogRules
from translator.static import static_config
from translator.access import access_config, real_ip_config
from translator.limits import limit_zones, limits_config
from translator.client import client_config
from translator.process import apply_process_settings
from translator.http2 import http2_config
from translator.http3 import http3_listens, shared_quic_ports
from translator.tls import ssl_on, tls_config
from translator.grpc import grpc_config
from translator.proxy_tls import session_sharing_gap, upstream_tls
from translator.resolver import resolver_config
from translator.values import scalar_flag

# ngx_http_proxy_headers: sent unless proxy_set_header names them; empty values only hide the client's.
DEFAULT_PROXY_HEADERS: list[tuple[str, str]] = [
    ("Host", "$proxy_host"),
    ("Connection", "close"),
    ("Content-Length", "$proxy_internal_body_length"),
    ("Transfer-Encoding", "$proxy_internal_chunked"),
    ("TE", ""),
    ("Keep-Alive", ""),
    ("Expect", ""),
    ("Upgrade", ""),
]
DEFAULT_HIDDEN = ["Date", "Server", "X-Pad", "X-Accel-Expires", "X-Accel-Redirect", "X-Accel-Limit-Rate",
                  "X-Accel-Buffering", "X-Accel-Charset"]
# Blocks whose entries are data (mime types, map pairs), not directives.
DATA_BLOCKS = frozenset({"types", "map", "geo", "split_clients", "charset_map", "match"})
_MODIFIERS = {"=": "exact", "^~": "prefix_priority", "": "prefix", "~": "regex", "~*": "regex_caseless", "@": "named"}
_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")


class Occurrence(BaseModel):
    file: str
    line: int
    directive: str
    args: list[str]
    context: str
    level: Level
    reason: str


class Translation(BaseModel):
    config: NewproxyConfig
    occurrences: list[Occurrence]

    def count(self, *levels: Level) -> int:
        return sum(1 for o in self.occurrences if o.level in levels)

    @property
    def gaps(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.level in ("caveat", "unsupported", "unknown")]


def _error_log_targets(directives: list[Directive]) -> str | list[str] | None:
    """One block's ``error_log FILE [LEVEL]`` lines (newproxy/http/errorlog.py reads both words):
    one string for one, a list for several (nginx writes a message to each whose level admits it)."""
    targets = [" ".join(d.args[:2]) for d in directives]
    if not targets:
        return None
    return targets[0] if len(targets) == 1 else targets


def parse_size(value: str, directive: Directive) -> int:
    match = _SIZE.match(value)
    if not match:
        raise ConfigError(f'"{directive.name}" directive invalid value', directive.file, directive.line)
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    return int(match.group(1)) * factor


@dataclass
class _Scope:
    """The directives of one block, for inheritance lookups."""

    directives: list[Directive]
    label: str
    name: str = ""  # a prefix or exact location's name (what proxy_redirect default puts back)

    def last(self, name: str) -> Directive | None:
        found = None
        for directive in self.directives:
            if directive.name == name:
                found = directive
        return found

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.directives if d.name == name]


@dataclass
class _Chain:
    scopes: list[_Scope] = field(default_factory=list)

    def push(self, scope: _Scope) -> _Chain:
        return _Chain([*self.scopes, scope])

    def scalar(self, name: str) -> Directive | None:
        for scope in reversed(self.scopes):
            found = scope.last(name)
            if found is not None:
                return found
        return None

    def array(self, name: str) -> list[Directive]:
        for scope in reversed(self.scopes):
            found = scope.all(name)
            if found:
                return found
        return []

    @property
    def label(self) -> str:
        return " > ".join(scope.label for scope in self.scopes)


class Translator:
    def __init__(self, nginx: NginxConfig, prefix: str | None = None, fallback: Fallback | None = None) -> None:
        self.nginx = nginx
        self.fallback = fallback  # the strangler fallback (translator/fallback.py); None: gaps stay gaps
        # nginx's prefix (-p), against which relative root/alias are read; Debian's by default.
        self.prefix = (prefix or "/usr/share/nginx").rstrip("/") + "/"
        self.levels: dict[int, tuple[Level, str]] = {}
        self.contexts: dict[int, str] = {}
        self.upstreams: list[UpstreamConfig] = []
        self.mime_types: dict[str, dict[str, str]] = {"builtin": dict(BUILTIN_MIME_TYPES)}
        self.capture_names = self._capture_names()
        self.upstream_names = {u.name for u in nginx.http.upstreams} if nginx.http else set()
        # translator/limits.py: the zones that translated (limit_req, limit_conn) and all declared ones;
        # whether auth_request is used (its subrequests are not limited).
        self.limit_zone_names: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        self.limit_auth = False
        # proxy_pass https:// groups -> the first location's TLS context settings (its proxy_pass):
        # translator/proxy_tls.py session_sharing_gap
        self.tls_session_contexts: dict[str, tuple[tuple[object, ...], Directive]] = {}
        self.zone_directives: dict[str, Directive] = {}  # upstream name -> its zone directive

    def _capture_names(self) -> set[str]:
        """Named groups of location and server_name regexes: nginx makes each a variable."""
        names: set[str] = set()
        for directive in self.nginx.all_directives():
            pattern = None
            if directive.name == "location" and directive.args and directive.args[0] in ("~", "~*"):
                pattern = directive.args[-1]
            elif directive.name == "server_name":
                for name in directive.args:
                    if name.startswith("~"):
                        names.update(_groups(name[1:], directive))
            elif directive.name == "rewrite" and directive.args:
                pattern = directive.args[0]
            elif directive.name == "if" and len(directive.args) == 3 and directive.args[1] in _IF_REGEX:
                pattern = directive.args[2]
            elif directive.name in ("set", "auth_request_set") and directive.args and directive.args[0].startswith("$"):
                names.add(directive.args[0][1:])
            if pattern is not None:
                names.update(_groups(pattern, directive))
        return names

    # -- bookkeeping -------------------------------------------------------------------------

    def note(self, directive: Directive, level: Level, reason: str) -> None:
        """Override the registry's level for one occurrence (e.g. a proxy_pass with variables)."""
        self.levels[id(directive)] = (level, reason)

    def _classify_tree(self, directives: Iterable[Directive], context: str, in_upstream: bool = False) -> None:
        for directive in directives:
            if directive.name == "include":
                self._classify_tree(directive.block or [], context, in_upstream)
                continue
            rule = classify(directive.name, in_upstream)
            self.levels.setdefault(id(directive), (rule.level, rule.reason))
            self.contexts[id(directive)] = context
            if directive.block is not None and directive.name not in DATA_BLOCKS:
                label = directive.name if not directive.args else f"{directive.name} {' '.join(directive.args)}"
                self._classify_tree(directive.block, f"{context} > {label}" if context else label,
                                    in_upstream=directive.name == "upstream")

    def occurrences(self) -> list[Occurrence]:
        out = []

        def visit(directives: Iterable[Directive]) -> None:
            for directive in directives:
                if directive.name == "include":
                    visit(directive.block or [])
                    continue
                level, reason = self.levels[id(directive)]
                out.append(Occurrence(file=directive.file, line=directive.line, directive=directive.name,
                                      args=directive.args, context=self.contexts[id(directive)], level=level,
                                      reason=reason))
                if directive.block is not None and directive.name not in DATA_BLOCKS:
                    visit(directive.block)

        visit(self.nginx.tree)
        return out

    # -- translation -------------------------------------------------------------------------

    def translate(self) -> Translation:
        self._classify_tree(self.nginx.tree, "")
        config = NewproxyConfig(source=self.nginx.main_file)
        main = _Scope(list(self.nginx.main_directives()), "main")
        pid = main.last("pid")
        if pid is not None:
            config.pid = pid.args[0]
        config.error_log = _error_log_targets(main.all("error_log"))
        apply_process_settings(config, self.nginx)
        if self.nginx.http is not None:
            http = _Chain([_Scope(list(self.nginx.http.directives()), "http")])
            tokens = http.scalar("server_tokens")
            config.server_tokens = tokens is None or tokens.args[0] != "off"
            for upstream in self.nginx.http.upstreams:
                translated = self._upstream(upstream)
                if translated.servers:  # a group of unix peers only is dropped (each peer is a gap)
                    self.upstreams.append(translated)
            config.variables = self._computed_variables()
            config.limit_req_zones, config.limit_conn_zones = limit_zones(self, http.scopes[0].directives)
            self.logs = LogRules(self, http)
            config.log_formats = self.logs.formats
            config.client = client_config(self, list(self.nginx.http.directive.children()))
            config.servers = [self._server(server, http) for server in self.nginx.http.servers]
            shared_quic_ports(self, self.nginx.http.servers, config.servers)
        config.upstreams = self.upstreams
        if self.fallback is not None:
            FallbackPlanner(self, self.fallback).apply(config)
        config.mime_types = self.mime_types
        return Translation(config=config, occurrences=self.occurrences())

    def _computed_variables(self) -> list[VariableConfig]:
        """map and split_clients blocks. One that uses a variable newproxy lacks is a gap, and so is
        every use of the variable it defines (it is left out of ``capture_names``)."""
        assert self.nginx.http is not None
        maps = list(getattr(self.nginx.http, "maps", []))
        splits = list(getattr(self.nginx.http, "split_clients", []))
        geos = []
        for geo in getattr(self.nginx.http, "geos", []):
            problem = None
            if geo.ranges:
                problem = "geo with ranges is not translated yet"
            elif geo.proxy or geo.proxy_recursive:
                problem = "geo with proxy (addresses from X-Forwarded-For) is not translated yet"
            else:
                for entry in geo.entries:
                    try:
                        ipaddress.ip_network(entry.network, strict=False)
                    except ValueError:
                        problem = f'geo entry "{entry.network}" is not an address or a CIDR block newproxy reads'
            if problem is not None:
                self.note(geo.directive, "unsupported", problem + ": its variable is unknown to newproxy")
            else:
                geos.append(geo)
        for block in maps:
            for entry in block.entries:
                if entry.kind in ("regex", "regex_caseless"):
                    self.capture_names.update(_groups(entry.key, entry.directive))
        defined = {block.variable for block in maps + splits + geos}
        builtin = {name for name in defined if name in KNOWN_VARIABLES or name.startswith(KNOWN_PREFIXES)}
        for block in maps + splits + geos:
            if block.variable in builtin:
                self.note(block.directive, "unsupported", f'redefining the built-in variable "${block.variable}" '
                                                          "is not supported")
        defined -= builtin
        while True:  # drop blocks that use unknown variables (or variables of dropped blocks)
            self.capture_names |= defined
            broken = set()
            for block in maps + splits + geos:
                if block.variable not in defined:
                    continue
                texts = [block.source] + ([e.value for e in block.entries] + [block.default] if block in maps else [])
                if not all(self._variables_known(text) for text in texts):
                    broken.add(block.variable)
            if not broken:
                break
            self.capture_names -= broken
            defined -= broken
        out: list[VariableConfig] = []
        for block in maps:
            if block.variable not in defined:
                self._variables_ok(block.directive, " ".join([block.source, block.default]
                                                             + [e.value for e in block.entries]))
                continue
            out.append(MapConfig(
                variable=block.variable, source_value=block.source, default=block.default,
                hostnames=block.hostnames, volatile=block.volatile,
                entries=[MapEntryConfig(kind=e.kind, key=e.key, value=e.value, source=e.directive.where)
                         for e in block.entries],
                source=block.directive.where))
        for geo in geos:
            if geo.variable not in defined:
                self._variables_ok(geo.directive, geo.source)
                continue
            entries: dict[str, GeoEntryConfig] = {}
            for entry in geo.entries:  # a later entry for the same network wins; delete removes it
                key = str(ipaddress.ip_network(entry.network, strict=False))
                if entry.delete:
                    entries.pop(key, None)
                else:
                    entries[key] = GeoEntryConfig(network=key, value=entry.value)
            out.append(GeoConfig(variable=geo.variable, source_value=geo.source, default=geo.default,
                                 entries=list(entries.values()), source=geo.directive.where))
        for block in splits:
            if block.variable not in defined:
                self._variables_ok(block.directive, block.source)
                continue
            out.append(SplitClientsConfig(
                variable=block.variable, source_value=block.source,
                buckets=[SplitBucketConfig(percent=b.percent, value=b.value) for b in block.buckets],
                source=block.directive.where))
        return out

    def _variables_known(self, text: str) -> bool:
        return all(name in KNOWN_VARIABLES or name.startswith(KNOWN_PREFIXES) or name.isdigit()
                   or name in self.capture_names for name in variable_names(text))

    def _upstream(self, upstream: Upstream) -> UpstreamConfig:
        servers = []
        for peer in upstream.servers:
            host, port, path = _peer_address(peer.address, peer.directive)
            servers.append(UpstreamServerConfig(host=host, port=port, unix_path=path, name=peer.address,
                                                weight=peer.weight,
                                                max_fails=peer.max_fails, fail_timeout=peer.fail_timeout,
                                                max_conns=peer.max_conns, backup=peer.backup, down=peer.down,
                                                source=peer.directive.where))
        config = UpstreamConfig(name=upstream.name, servers=servers, source=upstream.directive.where)
        for directive in upstream.directives():
            if directive.name in _BALANCERS:
                # nginx: a balancing method after `keepalive` replaces the keepalive wrapper too
                # ("load balancing method redefined"): the cache is gone.
                config.keepalive = 0
                config.balancer, config.hash_key = self._balancer(directive)
            elif directive.name == "keepalive":
                config.keepalive = int(directive.args[0])
            elif directive.name == "keepalive_requests":
                config.keepalive_requests = int(directive.args[0])
            elif directive.name == "keepalive_timeout":
                config.keepalive_timeout = parse_time(directive.args[0], directive)
            elif directive.name == "zone":
                config.zone = directive.args[0]
                self.zone_directives[config.name] = directive
        return config

    def _balancer(self, directive: Directive) -> tuple[str, str | None]:
        """(balancer, hash key) of least_conn, ip_hash, hash KEY [consistent], random [two [least_conn]];
        the parser has checked the arguments."""
        args = directive.args
        if directive.name == "hash":
            if not self._variables_known(args[0]):
                self.note(directive, "unsupported", "the hash key uses a variable newproxy does not provide; "
                                                    "round robin is used instead")
                return "round_robin", None
            return ("hash_consistent" if len(args) > 1 else "hash"), args[0]
        if directive.name == "random":
            return ("random_two" if args else "random"), None
        return directive.name, None

    def _server(self, server: Server, http: _Chain) -> ServerConfig:
        label = f"server {server.server_names[0]}" if server.server_names[0] else "server"
        chain = http.push(_Scope(list(server.directives()), label))
        listens = []
        ssl_all = ssl_on(chain)
        if ssl_all is not None:
            self.note(ssl_all, "caveat", 'the "ssl" directive is deprecated (nginx warns): translated as '
                                         '"listen ... ssl" on this server\'s listens')
        for listen in server.listens:
            if listen.directive is not None and listen.unix_path:
                self.note(listen.directive, "unsupported", "listen with unix sockets is not built yet; this listen "
                                                           "is dropped")
                continue
            if listen.directive is not None and listen.options:
                self.note(listen.directive, "caveat", f"listen parameters {listen.options} are ignored")
            address = "0.0.0.0" if listen.address == "*" else listen.address
            listens.append(ListenConfig(address=address, port=listen.port, default_server=listen.default_server,
                                        ipv6only=listen.ipv6only,
                                        ssl=(listen.ssl or ssl_all is not None) and not listen.quic, quic=listen.quic,
                                        http2=listen.http2 and not listen.quic,
                                        source=listen.directive.where if listen.directive else None))
        tls = tls_config(self, chain)
        listens, http3 = http3_listens(self, chain, server, listens, tls)
        if tls is None and any(listen.ssl for listen in listens):
            for listen in server.listens:
                if listen.directive is not None and (listen.ssl or ssl_all is not None):
                    self.note(listen.directive, "unsupported", 'no "ssl_certificate" is defined for the "listen ... '
                                                               'ssl" directive (nginx refuses to start): dropped')
            listens = [listen for listen in listens if not listen.ssl]
        config = ServerConfig(
            listen=listens,
            server_names=server.server_names,
            rewrite=self._rewrite(chain.scopes[-1].directives),
            default_type=self._default_type(chain),
            types=self._types(chain),
            client_max_body_size=self._body_size(chain),
            error_pages=self._error_pages(chain),
            merge_slashes=self._scalar_arg(chain, "merge_slashes", "on") == "on",
            underscores_in_headers=scalar_flag(chain, "underscores_in_headers", False),
            ignore_invalid_headers=scalar_flag(chain, "ignore_invalid_headers", True),
            stub_status=chain.scopes[-1].last("stub_status") is not None,
            root=self._root(chain),
            static=self._static(chain),
            limits=limits_config(self, chain),
            headers=headers_config(self, chain),
            gzip=gzip_config(self, chain),
            access_logs=self.logs.access_logs(chain),
            error_log=self._error_log(chain),
            access=access_config(self, chain),
            real_ip=real_ip_config(self, chain),
            tls=tls,
            http2=http2_config(self, chain),
            http3=http3,
            source=server.directive.where,
        )
        config.locations = [self._location(location, chain) for location in server.locations]
        return config

    def _location(self, location: Location, parent: _Chain) -> LocationConfig:
        label = f"location {location.modifier} {location.path}".replace("  ", " ")
        chain = parent.push(_Scope(list(location.directives()), label,
                                   location.path if location.modifier in ("", "=", "^~") else ""))
        match = _MODIFIERS[location.modifier]
        config = LocationConfig(
            match=match,  # type: ignore[arg-type]
            path=location.path,
            rewrite=self._rewrite(chain.scopes[-1].directives, chain, location),
            internal=chain.scopes[-1].last("internal") is not None,
            stub_status=chain.scopes[-1].last("stub_status") is not None,
            source=location.directive.where,
            **self._location_settings(chain),
        )
        try_files = chain.scopes[-1].last("try_files")
        if try_files is not None:
            config.try_files = self._try_files(try_files, chain)
        proxy_pass = chain.scopes[-1].last("proxy_pass")
        if proxy_pass is not None:
            config.proxy = self._proxy(proxy_pass, chain, location)
        grpc_pass = chain.scopes[-1].last("grpc_pass")
        if grpc_pass is not None and proxy_pass is None:
            config.proxy = grpc_config(self, grpc_pass, chain)
        config.locations = [self._location(nested, chain) for nested in location.locations]
        return config

    def _location_settings(self, chain: _Chain) -> dict[str, Any]:
        """What a location and the implicit location of an ``if`` in it both resolve from their
        chain of scopes (one list, so that a new setting cannot be forgotten in one of them)."""
        return {
            "default_type": self._default_type(chain),
            "types": self._types(chain),
            "client_max_body_size": self._body_size(chain),
            "error_pages": self._error_pages(chain),
            "root": self._root(chain),
            "static": self._static(chain),
            "limits": limits_config(self, chain),
            "headers": headers_config(self, chain),
            "gzip": gzip_config(self, chain),
            "access_logs": self.logs.access_logs(chain),
            "access": access_config(self, chain),
            "real_ip": self._location_real_ip(chain),
            "error_log": self._error_log(chain),
        }

    def _error_log(self, chain: _Chain) -> str | list[str] | None:
        """http/server/location ``error_log FILE [LEVEL]``: those of the innermost block that has some
        (None: main's)."""
        return _error_log_targets(chain.array("error_log"))

    def _location_real_ip(self, chain: _Chain) -> RealIpConfig | None:
        """realip for a location's preaccess phase: only when it differs from the server's, which the
        post-read phase has applied already (the same settings would find the same answer)."""
        own = real_ip_config(self, chain)
        return None if own == real_ip_config(self, _Chain(chain.scopes[:2])) else own

    def _if_location(self, directive: Directive, chain: _Chain, location: Location) -> LocationConfig:
        """The implicit location nginx makes of an ``if`` block: the enclosing location's settings with
        the block's own on top; its content handler is the block's proxy_pass, else the enclosing one."""
        config = LocationConfig(
            match=_MODIFIERS[location.modifier],  # type: ignore[arg-type]
            path=location.path,
            internal=chain.scopes[-2].last("internal") is not None,
            source=directive.where,
            **self._location_settings(chain),
        )
        own = chain.scopes[-1].last("proxy_pass")
        proxy_pass = own if own is not None else chain.scopes[-2].last("proxy_pass")
        if proxy_pass is not None:
            if own is not None and "$" not in own.args[0] and "/" in own.args[0].partition("://")[2]:
                raise ConfigError(
                    '"proxy_pass" cannot have URI part in location given by regular expression, or inside named '
                    'location, or inside "if" statement, or inside "limit_except" block', own.file, own.line)
            config.proxy = self._proxy(proxy_pass, chain, location)
        else:
            own_grpc = chain.scopes[-1].last("grpc_pass")
            grpc_pass = own_grpc if own_grpc is not None else chain.scopes[-2].last("grpc_pass")
            if grpc_pass is not None:
                config.proxy = grpc_config(self, grpc_pass, chain)
        return config

    def _rewrite(self, directives: list[Directive], chain: _Chain | None = None,
                 location: Location | None = None) -> list[RewriteStep]:
        """The rewrite-module directives of a block, in order, as steps (``if`` blocks nested)."""
        steps: list[RewriteStep] = []
        for directive in directives:
            step: RewriteStep | None = None
            if directive.name == "return":
                step = self._return(directive)
            elif directive.name == "rewrite":
                step = self._rewrite_rule(directive)
            elif directive.name == "set":
                step = self._set(directive)
            elif directive.name == "break":
                step = BreakStep(source=directive.where)
            elif directive.name == "if":
                step = self._if(directive, chain, location)
            if step is not None:
                steps.append(step)
        return steps

    def _rewrite_rule(self, directive: Directive) -> RewriteRuleStep | None:
        args = directive.args
        if len(args) not in (2, 3):
            raise ConfigError('invalid number of arguments in "rewrite" directive', directive.file, directive.line)
        flag = args[2] if len(args) == 3 else "none"
        if flag not in ("none", "last", "break", "redirect", "permanent") or len(args) == 3 and flag == "none":
            raise ConfigError(f'invalid parameter "{flag}"', directive.file, directive.line)
        _groups(args[0], directive)
        if not self._variables_ok(directive, args[1]):
            return None
        return RewriteRuleStep(regex=args[0], replacement=args[1], flag=flag, source=directive.where)  # type: ignore[arg-type]

    def _set(self, directive: Directive) -> SetStep | None:
        args = directive.args
        if len(args) != 2:
            raise ConfigError('invalid number of arguments in "set" directive', directive.file, directive.line)
        if not args[0].startswith("$"):
            raise ConfigError(f'invalid variable name "{args[0]}"', directive.file, directive.line)
        name = args[0][1:]
        # $args and $limit_rate are the built-in variables nginx lets `set` change.
        if name in KNOWN_VARIABLES and name not in ("args", "limit_rate") or name.startswith(KNOWN_PREFIXES):
            self.note(directive, "unsupported", f'setting the built-in variable "${name}" is not supported')
            return None
        if not self._variables_ok(directive, args[1]):
            return None
        return SetStep(variable=name, value=args[1], source=directive.where)

    def _if(self, directive: Directive, chain: _Chain | None, location: Location | None) -> IfStep | None:
        args = directive.args
        operand: str | None = None
        if len(args) == 1:
            operator, value = "true", args[0]
        elif len(args) == 2 and args[0] in _IF_FILE:
            operator, value = args[0], args[1]
        elif len(args) == 3 and args[1] in ("=", "!=", *_IF_REGEX):
            value, operator, operand = args
        else:
            raise ConfigError(f'invalid condition "{" ".join(args)}"', directive.file, directive.line)
        if operator not in _IF_FILE and not value.startswith("$"):
            raise ConfigError(f'invalid condition "{value}"', directive.file, directive.line)
        if operand is not None and operator in _IF_REGEX:
            _groups(operand, directive)
        texts = [value] + ([operand] if operand is not None and operator in ("=", "!=") else [])
        if not all(self._variables_ok(directive, text) for text in texts):
            return None
        block = list(directive.children())
        scope = _Scope(block, f"if ({' '.join(args)})")
        inner = chain.push(scope) if chain is not None else None
        steps = self._rewrite(block, inner, location)
        if_location = None
        others = [d for d in block if d.name not in _REWRITE_MODULE]
        if location is not None and inner is not None:
            # Every if that holds puts its own config in place, even one with rewrite directives only
            # (it then inherits the location's content handler: a later if wins over an earlier one).
            if_location = self._if_location(directive, inner, location)
        elif others:
            for other in others:
                if self.levels.get(id(other), ("exact",))[0] not in ("unsupported", "unknown"):
                    self.note(other, "unsupported", "only rewrite-module directives are translated inside a "
                                                    "server-level if")
        return IfStep(condition=IfCondition(operator=operator, value=value, operand=operand),  # type: ignore[arg-type]
                      steps=steps, location=if_location, source=directive.where)

    def _return(self, directive: Directive) -> ReturnStep | None:
        args = directive.args
        if not args or len(args) > 2:
            raise ConfigError('invalid number of arguments in "return" directive', directive.file, directive.line)
        if args[0].isdigit():
            status = int(args[0])
            if status > 999:
                raise ConfigError(f'invalid return code "{args[0]}"', directive.file, directive.line)
            text = args[1] if len(args) == 2 else None
        elif len(args) == 1 and args[0].startswith(("http://", "https://", "$scheme")):
            status, text = 302, args[0]
        else:
            raise ConfigError(f'invalid return code "{args[0]}"', directive.file, directive.line)
        if text is not None and not self._variables_ok(directive, text):
            return None
        return ReturnStep(status=status, text=text, source=directive.where)

    def _variables_ok(self, directive: Directive, text: str) -> bool:
        unknown = [name for name in variable_names(text)
                   if name not in KNOWN_VARIABLES and not name.startswith(KNOWN_PREFIXES)
                   and not name.isdigit() and name not in self.capture_names]
        if unknown:
            self.note(directive, "unsupported", f"uses variables newproxy does not provide yet: {', '.join(unknown)}")
            return False
        return True

    def _root(self, chain: _Chain) -> str:
        """The root in effect, absolute: a relative one is read against Debian's nginx prefix."""
        directive = chain.scalar("root")
        root = directive.args[0] if directive is not None else "html"
        if directive is not None and "$" in root:
            self.note(directive, "unsupported", "root with variables is not translated: $document_root, "
                                                "$request_filename and try_files would not see it")
        return root if root.startswith("/") else self.prefix + root

    def _try_files(self, directive: Directive, chain: _Chain) -> TryFilesConfig | None:
        args = directive.args
        if len(args) < 2:
            raise ConfigError('invalid number of arguments in "try_files" directive', directive.file, directive.line)
        if chain.scalar("alias") is not None:
            self.note(directive, "unsupported", "try_files with alias is not translated yet")
            return None
        root_directive = chain.scalar("root")
        root = root_directive.args[0] if root_directive is not None else "html"
        if "$" in root:
            self.note(directive, "unsupported", "try_files under a root with variables is not translated yet")
            return None
        if not all(self._variables_ok(directive, arg) for arg in args):
            return None
        if not root.startswith("/"):
            root = self.prefix + root
            self.note(directive, "caveat", f"the relative root is read against nginx's prefix: {root}")
        return TryFilesConfig(files=args[:-1], fallback=args[-1], root=root, source=directive.where)

    def _static(self, chain: _Chain) -> StaticConfig:
        """root/alias (inherited together: the innermost of either), index, autoindex, etag,
        if_modified_since, as nginx's static, index and autoindex modules read them."""
        return static_config(self, chain)

    def _error_pages(self, chain: _Chain) -> list[ErrorPageConfig]:
        """error_page, inherited whole from the innermost block that has any (an array directive)."""
        pages = []
        for directive in chain.array("error_page"):
            args = directive.args
            if len(args) < 2:
                raise ConfigError('invalid number of arguments in "error_page" directive', directive.file,
                                  directive.line)
            target = args[-1]
            codes_end = len(args) - 1
            response: int | None = None
            target_status = False
            if args[-2].startswith("="):
                codes_end -= 1
                if args[-2] == "=":
                    target_status = True
                elif args[-2][1:].isdigit():
                    response = int(args[-2][1:])
                else:
                    raise ConfigError(f'invalid value "{args[-2]}"', directive.file, directive.line)
            codes = []
            for code in args[:codes_end]:
                if not code.isdigit() or not 300 <= int(code) <= 599 or int(code) == 499:
                    raise ConfigError(f'value "{code}" must be between 300 and 599', directive.file, directive.line)
                codes.append(int(code))
            if not codes:
                raise ConfigError('invalid number of arguments in "error_page" directive', directive.file,
                                  directive.line)
            if not self._variables_ok(directive, target):
                continue
            pages.append(ErrorPageConfig(codes=codes, target=target, response=response, target_status=target_status,
                                         source=directive.where))
        return pages

    def _types(self, chain: _Chain) -> str:
        """The name of the MIME table in effect: the innermost block with `types` wins whole."""
        blocks = chain.array("types")
        if not blocks:
            return "builtin"
        name = ",".join(block.where for block in blocks)
        if name not in self.mime_types:
            table: dict[str, str] = {}
            for block in blocks:
                for entry in block.children():
                    for ext in entry.args:
                        table[ext.lower()] = entry.name  # a later duplicate wins, as in nginx
            self.mime_types[name] = table
        return name

    def _default_type(self, chain: _Chain) -> str:
        directive = chain.scalar("default_type")
        return directive.args[0] if directive is not None else "text/plain"

    def _body_size(self, chain: _Chain) -> int:
        directive = chain.scalar("client_max_body_size")
        return parse_size(directive.args[0], directive) if directive is not None else 1024 * 1024

    def _proxy(self, directive: Directive, chain: _Chain, location: Location) -> ProxyConfig | None:
        url = directive.args[0]
        if "$" in url:
            if not self._variables_ok(directive, url):
                redirect_rules([(scope.directives, scope.name) for scope in chain.scopes], self._variables_ok)
                return None
            # The scheme is known per request only: the proxy_ssl_* settings are kept for an https:// one.
            return self._proxy_settings(directive, chain, upstream="", proxy_host="", uri=None, url=url,
                                        tls=upstream_tls(self, chain),
                                        resolver=resolver_config(
                                            chain.scalar("resolver"), chain.scalar("resolver_timeout"),
                                            lambda d, why: self.note(d, "unsupported", why)))
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ConfigError(f'invalid URL prefix in "{url}"', directive.file, directive.line)
        if rest.startswith("unix:"):  # http://unix:/path/to.sock[:/uri] (ngx_parse_unix_domain_url)
            path, colon, uri_part = rest[5:].partition(":")
            authority, uri = f"unix:{path}", (uri_part if colon else None)
        else:
            slash = rest.find("/")
            authority, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
        if uri is not None and location.modifier in ("~", "~*", "@"):
            raise ConfigError(
                '"proxy_pass" cannot have URI part in location given by regular expression, or inside named '
                'location, or inside "if" statement, or inside "limit_except" block', directive.file, directive.line)
        if authority in self.upstream_names:
            group = authority
            if not self._reachable_group(directive, group):
                return None
        else:
            group = authority
            if scheme == "https" and not authority.startswith("unix:") and not _has_port(authority):
                group = f"{authority}:443"  # https's default port (the group is named apart from :80's)
            host, port, path = _peer_address(group, directive)
            self._implicit_group(directive, group, host, port, path)
            if path is not None:
                authority = "localhost"  # nginx's $proxy_host (and Host) for a unix socket
        tls = upstream_tls(self, chain) if scheme == "https" else None
        if tls is not None:
            session_sharing_gap(self, group, tls, directive)
        return self._proxy_settings(directive, chain, upstream=group, proxy_host=authority, uri=uri, tls=tls)

    def _reachable_group(self, directive: Directive, group: str) -> bool:
        """Whether the upstream block a proxy_pass/grpc_pass names has a peer newproxy can reach (else reported)."""
        if any(u.name == group and u.servers for u in self.upstreams):
            return True
        self.note(directive, "unsupported", f'upstream "{group}" has no peer newproxy can reach')
        return False

    def _implicit_group(self, directive: Directive, group: str, host: str, port: int, path: str | None) -> None:
        """The one-peer group nginx makes for a pass to an address (once per name); a host name is
        resolved by newproxy when connecting, by nginx once at start."""
        if all(u.name != group for u in self.upstreams):
            self.upstreams.append(UpstreamConfig(
                name=group, servers=[UpstreamServerConfig(host=host, port=port, unix_path=path,
                                                          source=directive.where)],
                implicit=True, source=directive.where))
        if path is None and not _is_ip(host):
            self.note(directive, "caveat", f'"{host}" is resolved when connecting; nginx resolves it once at start')

    def _proxy_settings(self, directive: Directive, chain: _Chain, **target: Any) -> ProxyConfig:
        """Every proxy_* setting of the location, for the target (upstream, proxy_host, uri, url...)."""
        headers = self._proxy_headers(chain)
        _check_ignore_headers(chain)
        blocks = [(scope.directives, scope.name) for scope in chain.scopes]
        buffer_size = self._size(chain, "proxy_buffer_size", 4096)
        buffers, max_temp_file_size = _pipe_sizes(chain, buffer_size)
        return ProxyConfig(
            **target,
            http_version=self._scalar_arg(chain, "proxy_http_version", "1.0"),  # type: ignore[arg-type]
            headers=headers,
            pass_request_headers=self._scalar_arg(chain, "proxy_pass_request_headers", "on") == "on",
            pass_request_body=self._scalar_arg(chain, "proxy_pass_request_body", "on") == "on",
            method=self._proxy_value(chain, "proxy_method"),
            body=self._proxy_value(chain, "proxy_set_body"),
            connect_timeout=self._time(chain, "proxy_connect_timeout", 60.0),
            send_timeout=self._time(chain, "proxy_send_timeout", 60.0),
            read_timeout=self._time(chain, "proxy_read_timeout", 60.0),
            next_upstream=self._next_upstream(chain),
            next_upstream_tries=int(self._scalar_arg(chain, "proxy_next_upstream_tries", "0")),
            next_upstream_timeout=self._time(chain, "proxy_next_upstream_timeout", 0.0),
            intercept_errors=self._scalar_arg(chain, "proxy_intercept_errors", "off") == "on",
            ignore_client_abort=self._scalar_arg(chain, "proxy_ignore_client_abort", "off") == "on",
            hide_headers=_hidden_headers(chain),
            buffer_size=buffer_size,
            buffering=self._scalar_arg(chain, "proxy_buffering", "on") == "on",
            buffers=buffers,
            max_temp_file_size=max_temp_file_size,
            temp_path=self._temp_path(chain),
            client_body_buffer_size=self._size(chain, "client_body_buffer_size", 16384),
            client_body_temp_path=self._temp_path(chain, "client_body_temp_path"),
            accel_buffering=_heeded(chain, "x-accel-buffering"),
            request_buffering=self._scalar_arg(chain, "proxy_request_buffering", "on") == "on",
            accel_redirect=_heeded(chain, "x-accel-redirect"),
            accel_limit_rate=_heeded(chain, "x-accel-limit-rate"),
            redirects=redirect_rules(blocks, self._variables_ok),
            cookie_domains=cookie_rules(blocks, "proxy_cookie_domain", self._variables_ok),
            cookie_paths=cookie_rules(blocks, "proxy_cookie_path", self._variables_ok),
            source=directive.where,
        )

    def _temp_path(self, chain: _Chain, name: str = "proxy_temp_path") -> str | None:
        """proxy_temp_path's (or client_body_temp_path's) directory (the levels do not matter:
        newproxy's files are unlinked at once); a relative one is read against nginx's prefix."""
        directive = chain.scalar(name)
        if directive is None:
            return None
        path = directive.args[0]
        return path if path.startswith("/") else self.prefix + path

    def _proxy_headers(self, chain: _Chain, set_header: str = "proxy_set_header",
                       defaults: list[tuple[str, str]] = DEFAULT_PROXY_HEADERS) -> list[HeaderSetting]:
        """``set_header`` (proxy_set_header, grpc_set_header: the innermost level with any, whole), then
        the module's defaults not named there."""
        settings: list[HeaderSetting] = []
        for directive in chain.array(set_header):
            if len(directive.args) != 2:
                raise ConfigError(f'invalid number of arguments in "{set_header}" directive',
                                  directive.file, directive.line)
            if self._variables_ok(directive, directive.args[1]):
                settings.append(HeaderSetting(name=directive.args[0], value=directive.args[1], source=directive.where))
        names = {s.name.lower() for s in settings}
        for name, value in defaults:
            if name.lower() not in names:
                settings.append(HeaderSetting(name=name, value=value))
        return settings

    def _proxy_value(self, chain: _Chain, name: str) -> str | None:
        """proxy_method / proxy_set_body: a complex value, or None (not set, or using a variable
        newproxy lacks: then reported unsupported and the client's method/body are sent)."""
        directive = chain.scalar(name)
        if directive is None or not self._variables_ok(directive, directive.args[0]):
            return None
        return directive.args[0]

    def _next_upstream(self, chain: _Chain) -> list:  # type: ignore[type-arg]
        directive = chain.scalar("proxy_next_upstream")
        return list(directive.args) if directive is not None else ["error", "timeout"]

    @staticmethod
    def _scalar_arg(chain: _Chain, name: str, default: str) -> str:
        directive = chain.scalar(name)
        return directive.args[0] if directive is not None else default

    @staticmethod
    def _time(chain: _Chain, name: str, default: float) -> float:
        directive = chain.scalar(name)
        return parse_time(directive.args[0], directive) if directive is not None else default

    @staticmethod
    def _size(chain: _Chain, name: str, default: int) -> int:
        directive = chain.scalar(name)
        return parse_size(directive.args[0], directive) if directive is not None else default


_BALANCERS = frozenset({"least_conn", "ip_hash", "hash", "random"})
_IF_REGEX = ("~", "~*", "!~", "!~*")
_IF_FILE = ("-f", "!-f", "-d", "!-d", "-e", "!-e", "-x", "!-x")
_REWRITE_MODULE = frozenset({"return", "rewrite", "set", "break", "if", "rewrite_log", "uninitialized_variable_warn"})
# Regexes that match every URI ($uri always starts with "/").
_MATCH_ALL = frozenset({"^", "^/", "^(.*)$", "^/(.*)$", "^(.*)", "^/(.*)", ".*", "^.*$", "(.*)", "^.*", "/"})


def _groups(pattern: str, directive: Directive) -> list[str]:
    try:
        return list(compile_regex(pattern).groupindex)
    except re.error as exc:
        raise ConfigError(f'regex "{pattern}" is not supported by newproxy yet ({exc})',
                          directive.file, directive.line) from None


def _hidden_headers(chain: _Chain, hide: str = "proxy_hide_header", pass_: str = "proxy_pass_header",
                    defaults: list[str] = DEFAULT_HIDDEN) -> list[str]:
    """ngx_http_upstream_hide_headers_hash: the module's default hidden set plus ``hide``
    (proxy_hide_header), minus every ``pass_`` (proxy_pass_header) name (caseless; a passed name wins
    over a hidden one)."""
    hidden: list[str] = []
    for name in defaults + [d.args[0] for d in chain.array(hide)]:
        if all(name.lower() != h.lower() for h in hidden):
            hidden.append(name)
    passed = {d.args[0].lower() for d in chain.array(pass_)}
    return [name for name in hidden if name.lower() not in passed]


def _pipe_sizes(chain: _Chain, buffer_size: int) -> tuple[int, int]:
    """proxy_buffers (in all) and proxy_max_temp_file_size, checked as ngx_http_proxy_merge_loc_conf
    checks them with proxy_busy_buffers_size and proxy_temp_file_write_size: nginx refuses to start
    otherwise, with these words (at the block's end; here at the directive that breaks the rule)."""
    buffers = chain.scalar("proxy_buffers")
    number, size = _buffers(buffers) if buffers is not None else (8, 4096)  # 8 4k on a 4 KiB page
    largest = max(buffer_size, size)
    busy, busy_at = _size_setting(chain, "proxy_busy_buffers_size")
    write, write_at = _size_setting(chain, "proxy_temp_file_write_size")
    most, most_at = _size_setting(chain, "proxy_max_temp_file_size")
    busy_at = busy_at or buffers or chain.scalar("proxy_buffer_size")  # the default is 2 x largest
    busy = 2 * largest if busy is None else busy
    one_of = 'the maximum of the value of "proxy_buffer_size" and one of the "proxy_buffers"'
    if busy < largest:
        raise _at(busy_at, f'"proxy_busy_buffers_size" must be equal to or greater than {one_of}')
    if busy > (number - 1) * size:
        raise _at(busy_at, '"proxy_busy_buffers_size" must be less than the size of all "proxy_buffers" '
                           'minus one buffer')
    if write is not None and write < largest:
        raise _at(write_at, f'"proxy_temp_file_write_size" must be equal to or greater than {one_of}')
    most = 1024**3 if most is None else most
    if most != 0 and most < largest:
        raise _at(most_at, '"proxy_max_temp_file_size" must be equal to zero to disable temporary files usage '
                           f'or must be equal to or greater than {one_of}')
    return number * size, most


def _buffers(directive: Directive) -> tuple[int, int]:
    """proxy_buffers NUMBER SIZE (ngx_conf_set_bufs_slot, then the merge's "at least 2")."""
    if len(directive.args) != 2:
        raise _at(directive, 'invalid number of arguments in "proxy_buffers" directive')
    count, size = directive.args
    if not count.isdigit() or int(count) == 0 or _size_value(size, directive) == 0:
        raise _at(directive, '"proxy_buffers" directive invalid value')
    if int(count) < 2:
        raise _at(directive, 'there must be at least 2 "proxy_buffers"')
    return int(count), _size_value(size, directive)


def _size_setting(chain: _Chain, name: str) -> tuple[int | None, Directive | None]:
    directive = chain.scalar(name)
    return (_size_value(directive.args[0], directive), directive) if directive is not None else (None, None)


def _size_value(value: str, directive: Directive) -> int:
    """ngx_parse_size (ngx_conf_set_size_slot, the bufs slot): k and m, not g as offsets take."""
    if value[-1:] in ("g", "G"):
        raise _at(directive, f'"{directive.name}" directive invalid value')
    return parse_size(value, directive)


def _at(directive: Directive | None, message: str) -> ConfigError:
    return ConfigError(message, directive.file if directive else None, directive.line if directive else None)


def _heeded(chain: _Chain, header: str) -> bool:
    """Whether an upstream's ``header`` (lower case) is acted on: proxy_ignore_headers does not name it."""
    return all(value.lower() != header for d in chain.array("proxy_ignore_headers") for value in d.args)


def _check_ignore_headers(chain: _Chain, name: str = "proxy_ignore_headers") -> None:
    """proxy_ignore_headers (or grpc_ignore_headers) is checked; of its values X-Accel-Redirect,
    X-Accel-Limit-Rate and X-Accel-Buffering change what newproxy does (ProxyConfig.accel_*, proxy
    module only): see _IGNORABLE."""
    for directive in chain.array(name):
        for value in directive.args:
            if value.lower() not in _IGNORABLE:
                raise ConfigError(f'invalid value "{value}"', directive.file, directive.line)  # nginx's words


# proxy_ignore_headers values (ngx_http_upstream_ignore_headers_masks). newproxy has no cache and does
# not act on the others (-Charset and -Expires change nothing nginx sends without a cache or a
# charset), which is what ignoring them means. X-Accel-Redirect is followed (newproxy/engine/accel.py),
# X-Accel-Limit-Rate paces the answer and X-Accel-Buffering switches proxy_buffering for it
# (newproxy/http/upstream.py), unless ignored.
_IGNORABLE = frozenset({"x-accel-redirect", "x-accel-expires", "x-accel-limit-rate", "x-accel-buffering",
                        "x-accel-charset", "expires", "cache-control", "set-cookie", "vary"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _has_port(authority: str) -> bool:
    return ":" in authority.rpartition("]")[2]


def _peer_address(address: str, directive: Directive) -> tuple[str, int, str | None]:
    """(host, port, unix path) of a server address: ``unix:/path`` gives ("localhost", 0, path)."""
    if address.startswith("unix:"):
        if len(address) == 5:
            raise ConfigError(f'no path in the unix domain socket in upstream "{address}"',
                              directive.file, directive.line)
        return "localhost", 0, address[5:]
    host, port = _split_host_port(address, directive)
    return host, port, None


def _split_host_port(address: str, directive: Directive) -> tuple[str, int]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "80"
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, "80"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'invalid port in upstream "{address}"', directive.file, directive.line)
    return host, int(port)


def translate(nginx: NginxConfig, prefix: str | None = None, fallback: Fallback | None = None) -> Translation:
    return Translator(nginx, prefix, fallback).translate()

