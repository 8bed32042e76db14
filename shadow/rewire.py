"""Rewire a config for the shadow run: loopback listens, recording upstreams, files in a temp dir.

``plan(config)`` finds every distinct listen address and every upstream address of a config and
names them logically (as written in the original config). ``rewire(...)`` then produces the
directive tree for one target:

- every ``listen`` of an http server gets ``127.0.0.1:PORT``, one port per distinct original
  address:port, so servers that shared a socket still share one (flags such as ``default_server``
  are kept; ``ipv6only`` is dropped since the address is IPv4 now); a server without ``listen``
  (nginx's implicit ``*:80``) gets one written out;
- every upstream address - ``server`` lines in ``upstream{}`` and the host:port of
  ``proxy_pass`` URLs that do not name an upstream block - points at the recording upstream of that
  address. Both targets share the recording upstreams, so ``$proxy_host`` and the ``Host`` header
  sent upstream are identical for both;
- ``https://`` upstreams become ``http://`` (the recording upstreams speak plain HTTP) and the
  other ``*_pass`` protocols (FastCGI, uwsgi, SCGI, gRPC, memcached) point at a refusing port;
- main-level ``pid``/``user``/``daemon``/``master_process``/``worker_processes``/``error_log`` are
  replaced, every ``error_log``/``access_log`` path goes to the target's directory (each distinct
  access_log path its own ``access-...`` file, see ``access_log_name``), and for nginx the
  ``*_temp_path`` directives go there too. One worker process, so that the order in which
  round-robin peers are chosen is deterministic on both sides;
- relative certificate/password file paths are made absolute against the original config's
  directory and relative ``root``/``alias`` against nginx's prefix, since the rewired config is
  run from a different directory; nginx's implicit ``root html`` is written out the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator

from nginx_parser import ConfigError, Directive, Listen, NginxConfig, parse_listen

# Main-level directives the harness owns.
_MAIN_OWNED = {"pid", "user", "daemon", "master_process", "worker_processes", "error_log"}
_TEMP_PATHS = ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
# Directives whose relative path nginx resolves against the config's directory.
_CONF_RELATIVE = {
    "ssl_certificate",
    "ssl_certificate_key",
    "ssl_trusted_certificate",
    "ssl_client_certificate",
    "ssl_dhparam",
    "ssl_crl",
    "ssl_password_file",
    "ssl_stapling_file",
    "ssl_session_ticket_key",
    "auth_basic_user_file",
}
# Directives whose relative path nginx resolves against its prefix.
_PREFIX_RELATIVE = {"root", "alias"}
# nginx >= 1.25's HTTP/3 directives: nginx 1.22 refuses them, so nginx's side runs without them (and
# without its quic listens); newproxy is compared over h3 with both over HTTP/1.1 (shadow/h3.py).
_NGINX_125_ONLY = {"http3", "http3_hq", "http3_max_concurrent_streams", "http3_stream_buffer_size", "quic_retry",
                   "quic_gso", "quic_host_key", "quic_active_connection_id_limit", "quic_bpf"}
QUIC_SUFFIX = " quic"  # the logical name of a quic listen: "*:443 quic", apart from the TCP "*:443"
_OTHER_PASS = {"fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass"}
# The scheme may be a variable ($scheme://backend): only the host decides where a request can go.
_URL = re.compile(r"^(?P<scheme>https?|\$\w+|\$\{\w+\})://(?P<rest>.*)$", re.IGNORECASE)
DEFAULT_NGINX_PREFIX = "/usr/share/nginx"


def access_log_name(path: str) -> str:
    """The file an access_log writes to in a target's directory: one per distinct original path (so
    that logs in different formats stay apart), named the same for both targets."""
    return "access-" + re.sub(r"[^A-Za-z0-9.]+", "_", path.strip("/")) if path else "access.log"


def listen_name(listen: Listen) -> str:
    """The logical name of a listen address: how the original config spells the socket."""
    if listen.unix_path is not None:
        return f"unix:{listen.unix_path}"
    suffix = QUIC_SUFFIX if listen.quic else ""
    if ":" in listen.address:
        return f"[{listen.address}]:{listen.port}{suffix}"
    return f"{listen.address}:{listen.port}{suffix}"


def _hostport(address: str, default_port: int) -> str:
    """``host``, ``host:port``, ``[v6]:port`` or ``unix:/path`` as a canonical logical name."""
    if address.startswith("unix:"):
        return address
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else str(default_port)
        return f"[{host.lower()}]:{port}"
    host, sep, port = address.rpartition(":")
    if not sep:
        return f"{address.lower()}:{default_port}"
    return f"{host.lower()}:{port}"


@dataclass
class ListenInfo:
    name: str
    port: int  # the original port, for curl commands in the report
    ssl: bool = False
    http2: bool = False
    proxy_protocol: bool = False
    quic: bool = False  # UDP, newproxy only: h3 traffic from shadow/h3.py

    @property
    def plain_http1(self) -> bool:
        """Whether the harness's HTTP/1.x client can talk to it (over TLS for ssl listens:
        ``traffic.with_tls``: ALPN lets HTTP/1.1 in next to h2); h2c, proxy_protocol and quic listens
        get no HTTP/1.x traffic (h2c gets HTTP/2 traffic with ``run_shadow(protocol="h2")``)."""
        return not ((self.http2 and not self.ssl) or self.proxy_protocol or self.quic)


@dataclass
class UpstreamInfo:
    name: str
    refuse: bool = False  # not HTTP (fastcgi_pass...): a refusing port, nothing to record


@dataclass
class Plan:
    """The logical sockets of a config: what the harness must provide for both targets."""

    listens: dict[str, ListenInfo] = field(default_factory=dict)
    upstreams: dict[str, UpstreamInfo] = field(default_factory=dict)
    upstream_blocks: set[str] = field(default_factory=set)  # names of upstream{} blocks (lowercase)
    notes: list[str] = field(default_factory=list)
    # Where a target could reach a real backend (an address the rewiring cannot replace: a *_pass
    # with variables); the runner refuses to run unless the user allows it (--allow-unsafe).
    unsafe: list[str] = field(default_factory=list)


@dataclass
class Wiring:
    """Where one target's logical sockets really are."""

    workdir: str
    listen_ports: dict[str, int]  # logical listen name -> 127.0.0.1 port of this target
    upstream_addrs: dict[str, str]  # logical upstream name -> "127.0.0.1:port" (shared by the targets)
    for_nginx: bool = True
    nginx_prefix: str = DEFAULT_NGINX_PREFIX
    conf_dir: str = "."
    tls_upstreams: frozenset[str] = frozenset()  # logical upstreams whose recording upstream speaks TLS


def _proxy_target(url: str, plan: Plan) -> tuple[str, str, str] | None:
    """Split a proxy_pass URL into (scheme, logical upstream name, uri), or None if it is left alone."""
    match = _URL.match(url)
    if not match:
        return None
    scheme, rest = match["scheme"].lower(), match["rest"]
    if rest.startswith("unix:"):
        # http://unix:/path/to.sock:/uri
        path, sep, uri = rest[5:].partition(":")
        return scheme, f"unix:{path}", uri if sep else ""
    slash = rest.find("/")
    hostpart, uri = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "$" in hostpart:
        return None  # resolved at run time from variables: cannot be rewired statically
    if ":" not in hostpart.lstrip("[").split("]")[-1] and hostpart.lower() in plan.upstream_blocks:
        return None  # names an upstream{} block, whose servers are rewired instead
    return scheme, _hostport(hostpart, 443 if scheme == "https" else 80), uri


def _variable_host(url: str) -> bool:
    """Whether a proxy_pass URL's host comes from variables (nginx resolves it per request, so the
    rewiring cannot point it at a recording upstream). Variables in the URI part alone are harmless."""
    match = _URL.match(url)
    if not match:
        return "$" in url  # the whole value is a variable, e.g. proxy_pass $backend;
    rest = match["rest"]
    return "$" in (rest.split("/", 1)[0] if not rest.startswith("unix:") else rest)


def _walk(directives: list[Directive], ctx: tuple[str, ...]) -> Iterator[tuple[Directive, tuple[str, ...]]]:
    """Every directive with the names of the blocks around it; includes are transparent."""
    for directive in directives:
        if directive.name == "include":
            yield from _walk(directive.block or [], ctx)
            continue
        yield directive, ctx
        if directive.block is not None:
            yield from _walk(directive.block, (*ctx, directive.name))


def plan(config: NginxConfig) -> Plan:
    """Collect the distinct listens and upstream addresses of ``config``, in order of appearance."""
    result = Plan()
    result.upstream_blocks = {u.name.lower() for u in config.http.upstreams} if config.http else set()
    if config.http:
        for server in config.http.servers:
            for listen in server.listens:
                name = listen_name(listen)
                info = result.listens.setdefault(name, ListenInfo(name=name, port=listen.port))
                info.ssl |= listen.ssl
                info.http2 |= listen.http2
                info.quic |= listen.quic
                info.proxy_protocol |= "proxy_protocol" in listen.options
    for directive, ctx in _walk(config.tree, ()):
        if directive.name == "server" and ctx[-1:] == ("upstream",) and directive.args:
            name = _hostport(directive.args[0], 80)
            result.upstreams.setdefault(name, UpstreamInfo(name=name))
        elif directive.name == "proxy_pass" and directive.args:
            target = _proxy_target(directive.args[0], result)
            if target is None:
                if _variable_host(directive.args[0]):
                    result.notes.append(f"{directive.where}: proxy_pass with variables is not rewired")
                    result.unsafe.append(f"{directive.where}: proxy_pass {directive.args[0]}")
                continue
            scheme, name, _uri = target
            result.upstreams.setdefault(name, UpstreamInfo(name=name))
            if scheme != "http":
                result.notes.append(f"{directive.where}: https upstream {name} is shadowed over plain http")
        elif directive.name in _OTHER_PASS and directive.args:
            address = re.sub(r"^grpcs?://", "", directive.args[0])
            if "$" in address:
                result.unsafe.append(f"{directive.where}: {directive.name} {directive.args[0]}")
                continue
            if address.lower() in result.upstream_blocks:
                continue
            name = _hostport(address, 80)
            result.upstreams.setdefault(name, UpstreamInfo(name=name, refuse=True))
            result.notes.append(f"{directive.where}: {directive.name} {name} points at a refusing port")
    return result


class _Rewriter:
    def __init__(self, config: NginxConfig, the_plan: Plan, wiring: Wiring) -> None:
        self.config = config
        self.plan = the_plan
        self.wiring = wiring

    def path(self, name: str) -> str:
        return os.path.join(self.wiring.workdir, name)

    def upstream_addr(self, logical: str, where: Directive) -> str:
        try:
            return self.wiring.upstream_addrs[logical]
        except KeyError:
            raise ConfigError(f"no recording upstream for {logical}", where.file, where.line) from None

    def listen(self, directive: Directive) -> Directive:
        listen = parse_listen(directive)
        port = self.wiring.listen_ports[listen_name(listen)]
        flags = [a for a in directive.args[1:] if not a.startswith("ipv6only=")]
        return directive.model_copy(update={"args": [f"127.0.0.1:{port}", *flags]})

    def proxy_pass(self, directive: Directive) -> Directive:
        target = _proxy_target(directive.args[0], self.plan)
        if target is None:
            return directive
        scheme, logical, uri = target
        addr = self.upstream_addr(logical, directive)
        # A variable scheme is kept as written; https only to a recording upstream that speaks TLS.
        if not scheme.startswith("$"):
            scheme = "https" if scheme == "https" and logical in self.wiring.tls_upstreams else "http"
        if addr.startswith("unix:"):  # http://unix:/path[:/uri]
            url = f"{scheme}://{addr}:{uri}" if uri else f"{scheme}://{addr}"
        else:
            url = f"{scheme}://{addr}{uri}"
        return directive.model_copy(update={"args": [url, *directive.args[1:]]})

    def other_pass(self, directive: Directive) -> Directive:
        address = re.sub(r"^grpcs?://", "", directive.args[0])
        if "$" in address or address.lower() in self.plan.upstream_blocks:
            return directive
        prefix = directive.args[0][: len(directive.args[0]) - len(address)]
        new = prefix + self.upstream_addr(_hostport(address, 80), directive)
        return directive.model_copy(update={"args": [new, *directive.args[1:]]})

    def log_path(self, directive: Directive) -> Directive:
        """error_log/access_log anywhere: same level/format/options, file in the work dir."""
        args = list(directive.args)
        if not args or args[0] == "off" or args[0] in ("stderr",) or args[0].startswith("memory:"):
            return directive
        args[0] = self.path("error.log" if directive.name == "error_log" else access_log_name(args[0]))
        return directive.model_copy(update={"args": args})

    def file_path(self, directive: Directive, base: str) -> Directive:
        args = list(directive.args)
        if args and not os.path.isabs(args[0]) and not args[0].startswith(("$", "data:", "engine:")):
            args[0] = os.path.join(base, args[0])
            return directive.model_copy(update={"args": args})
        return directive

    def block(self, directives: list[Directive], ctx: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for directive in directives:
            name = directive.name
            if name == "include":
                out.append(directive.model_copy(update={"block": self.block(directive.block or [], ctx)}))
                continue
            if ctx == () and name in _MAIN_OWNED:
                continue
            if name in _TEMP_PATHS and self.wiring.for_nginx:
                continue
            if self.wiring.for_nginx and (name in _NGINX_125_ONLY or (
                    name == "listen" and ctx[-2:] == ("http", "server") and parse_listen(directive).quic)):
                continue
            if name == "listen" and ctx[-2:] == ("http", "server"):
                directive = self.listen(directive)
            elif name == "server" and ctx[-1:] == ("upstream",) and directive.args:
                logical = _hostport(directive.args[0], 80)
                addr = self.upstream_addr(logical, directive)
                directive = directive.model_copy(update={"args": [addr, *directive.args[1:]]})
            elif name == "proxy_pass" and directive.args:
                directive = self.proxy_pass(directive)
            elif name in _OTHER_PASS and directive.args:
                directive = self.other_pass(directive)
            elif name in ("error_log", "access_log"):
                directive = self.log_path(directive)
            elif name in _CONF_RELATIVE:
                directive = self.file_path(directive, self.wiring.conf_dir)
            elif name in _PREFIX_RELATIVE:
                directive = self.file_path(directive, self.wiring.nginx_prefix)
            if directive.block is not None:
                inner = self.block(directive.block, (*ctx, name))
                if name == "http":
                    inner = self.http_additions(inner) + inner
                elif name == "server" and ctx == ("http",) and not _has_listen(inner):
                    # nginx's implicit "listen *:80" (as root), written out so it can be rewired.
                    port = self.wiring.listen_ports["*:80"]
                    inner = [_synthetic(directive, "listen", [f"127.0.0.1:{port}"]), *inner]
                directive = directive.model_copy(update={"block": inner})
            out.append(directive)
        if ctx == ():
            out = self.main_additions(out) + out
        return out

    def main_additions(self, tree: list[Directive]) -> list[Directive]:
        anchor = tree[0] if tree else Directive(name="#", args=[], file=self.config.main_file, line=1)
        pid = "nginx.pid" if self.wiring.for_nginx else "newproxy.pid"
        added = [
            _synthetic(anchor, "worker_processes", ["1"]),
            _synthetic(anchor, "pid", [self.path(pid)]),
            _synthetic(anchor, "error_log", [self.path("error.log"), "notice"]),
        ]
        if self.wiring.for_nginx and hasattr(os, "geteuid") and os.geteuid() == 0:
            # Workers would otherwise drop to "nobody" and could not read the work dir.
            added.insert(0, _synthetic(anchor, "user", ["root"]))
        if not any(d.name == "events" for d in _spliced(tree)):
            # A conf.d snippet (read with a detected context) has none; nginx will not start without one.
            added.append(Directive(name="events", args=[], file=anchor.file, line=anchor.line, block=[]))
        return added

    def http_additions(self, inner: list[Directive]) -> list[Directive]:
        anchor = inner[0] if inner else Directive(name="#", args=[], file=self.config.main_file, line=1)
        added: list[Directive] = []
        if not any(d.name == "access_log" for d in _spliced(inner)):
            added.append(_synthetic(anchor, "access_log", [self.path("access.log")]))
        if not any(d.name == "root" for d in _spliced(inner)):
            # nginx's default "root html" is relative to its prefix, which is the work dir here:
            # written out against the real prefix, it serves what production would.
            added.append(_synthetic(anchor, "root", [os.path.join(self.wiring.nginx_prefix, "html")]))
        if self.wiring.for_nginx:
            for name in _TEMP_PATHS:
                added.append(_synthetic(anchor, name, [self.path(name.removesuffix("_path"))]))
        return added


def _spliced(directives: list[Directive]) -> list[Directive]:
    out: list[Directive] = []
    for directive in directives:
        if directive.name == "include":
            out.extend(_spliced(directive.block or []))
        else:
            out.append(directive)
    return out


def _has_listen(directives: list[Directive]) -> bool:
    return any(d.name == "listen" for d in _spliced(directives))


def _synthetic(anchor: Directive, name: str, args: list[str]) -> Directive:
    """A directive the harness adds; it carries its anchor's position so errors still point somewhere."""
    return Directive(name=name, args=args, file=anchor.file, line=anchor.line)


def rewire(config: NginxConfig, the_plan: Plan, wiring: Wiring) -> list[Directive]:
    """The directive tree of ``config`` rewired for one target (see the module docstring)."""
    return _Rewriter(config, the_plan, wiring).block(config.tree, ())
