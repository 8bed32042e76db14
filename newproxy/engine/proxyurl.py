"""proxy_pass with variables: the URL evaluated per request, and where it leads.

As ngx_http_proxy_eval and ngx_http_upstream_init_request do it:

- the value must start with ``http://`` or ``https://`` (caseless), else 500 ("invalid URL prefix");
- the host (up to ``:``, ``/`` or ``?``) and optional port are split off; a bad port or no host: 500;
- ``$proxy_host`` (and so Host) is the host, with ``:port`` unless there is none or it is the scheme's
  default; ``localhost`` for ``unix:``;
- the URI: the URL's own from its ``/`` or ``?`` on, sent exactly as evaluated (nothing appended; a
  leading ``?`` gets a ``/`` before it); without one, what a literal proxy_pass without URI sends;
- the target: an upstream block of that name (only when no port is written), or a group made for a
  literal ``proxy_pass`` with the same host and port, keeping its balancing state; otherwise an IP
  address (IPv4 or [IPv6]) or a unix socket, tried alone; otherwise a name for ``resolver`` (no
  resolver: 502, "no resolver defined to resolve"), looked up by the IO layer
  (newproxy/http/resolver.py). Such ad-hoc peers are made per request, as nginx makes them (no
  failure marks carry over; several addresses are tried in order, the next on error; a cached
  answer comes rotated, so requests spread over the addresses).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from newproxy.config import (
    NewproxyConfig,
    ResolverConfig,
    UpstreamConfig,
    UpstreamServerConfig,
    UpstreamTlsConfig,
)
from newproxy.engine.upstreams import UpstreamGroup

# The group a ProxyPass carries while its host is still to be resolved (never chosen from).
UNRESOLVED = UpstreamGroup(UpstreamConfig(name="", servers=[]))


@dataclass(slots=True, frozen=True)
class Resolve:
    """A host name to look up before connecting (ProxyPass.resolve)."""

    name: str
    port: int
    resolver: ResolverConfig | None  # None: no resolver configured, the IO layer answers 502


@dataclass(slots=True)
class Target:
    """What a URL evaluated to: 500 (``error``), or the upstream request's authority and URI and
    either a group (``group``) or a name to resolve (``resolve``)."""

    error: str = ""
    proxy_host: str = ""
    uri: bytes | None = None  # None: the URI a literal proxy_pass without URI part sends
    group: UpstreamGroup | None = None
    resolve: Resolve | None = None
    tls: bool = False


class GroupLookup:
    """nginx's search of umcf->upstreams for a variable URL's host, built once at load."""

    def __init__(self, config: NewproxyConfig, groups: dict[str, UpstreamGroup]) -> None:
        self.blocks: dict[str, UpstreamGroup] = {}  # upstream{} by lower-case name (matched without a port)
        self.implicit: dict[tuple[str, int], UpstreamGroup] = {}  # literal proxy_pass groups by (host, port)
        for upstream in config.upstreams:
            group = groups.get(upstream.name)
            if group is None:
                continue
            if upstream.implicit:
                server = upstream.servers[0]
                if server.unix_path is None:
                    self.implicit.setdefault((server.host.lower(), server.port), group)
            else:
                self.blocks.setdefault(upstream.name.lower(), group)

    @staticmethod
    def adhoc(addresses: tuple[str, ...], port: int, name: str) -> UpstreamGroup:
        return adhoc_group(addresses, port, name)


_ADHOC: dict[tuple[str, int], UpstreamConfig] = {}


def adhoc_group(addresses: tuple[str, ...], port: int, name: str) -> UpstreamGroup:
    """A fresh group of these addresses (nginx's ngx_http_upstream_create_round_robin_peer: made per
    request, so no state carries over); the config objects are made once per distinct address list."""
    key = (" ".join(addresses) + " " + name, port)
    config = _ADHOC.get(key)
    if config is None:
        servers = [UpstreamServerConfig(host="localhost", port=0, unix_path=a[5:]) if a.startswith("unix:")
                   else UpstreamServerConfig(host=a, port=port) for a in addresses]
        config = UpstreamConfig(name=name, servers=servers)
        if len(_ADHOC) < 4096:  # bounded: names and addresses come from requests
            _ADHOC[key] = config
    return UpstreamGroup(config)


def evaluate(url: str, lookup: GroupLookup, resolver: ResolverConfig | None) -> Target:
    lower = url[:8].lower()
    if lower.startswith("http://"):
        rest, default_port, tls = url[7:], 80, False
    elif lower.startswith("https://"):
        rest, default_port, tls = url[8:], 443, True
    else:
        return Target(error=f'invalid URL prefix in "{url}"')
    if rest[:5].lower() == "unix:":
        path, colon, uri_text = rest[5:].partition(":")
        if not path:
            return Target(error=f'no path in the unix domain socket in upstream "{rest}"')
        uri = _uri(uri_text) if colon else None
        return Target(proxy_host="localhost", uri=uri, tls=tls,
                      group=lookup.adhoc((f"unix:{path}",), 0, f"unix:{path}"))
    end = len(rest)
    for stop in "/?":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, uri_text = rest[:end], rest[end:]
    uri = _uri(uri_text) if uri_text else None
    if authority.startswith("["):  # [IPv6][:port]
        close = authority.find("]")
        if close < 0:
            return Target(error=f'invalid host in upstream "{rest}"')
        host, port_text = authority[:close + 1], authority[close + 2:] if authority[close + 1:close + 2] == ":" else ""
        if authority[close + 1:] and not authority[close + 1:].startswith(":"):
            return Target(error=f'invalid host in upstream "{rest}"')
    else:
        host, colon, port_text = authority.partition(":")
        if colon and not port_text:
            return Target(error=f'invalid port in upstream "{rest}"')
    if not host:
        return Target(error=f'no host in upstream "{rest}"')
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return Target(error=f'invalid port in upstream "{rest}"')
        port = int(port_text)
    else:
        port = default_port
    proxy_host = host if not port_text or port == default_port else f"{host}:{port_text}"
    target = Target(proxy_host=proxy_host, uri=uri, tls=tls)
    lowered = host.lower()
    group = lookup.blocks.get(lowered) if not port_text else None
    if group is None:
        group = lookup.implicit.get((lowered, port))
    if group is not None:
        target.group = group
        return target
    literal = host[1:-1] if host.startswith("[") else host
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        target.resolve = Resolve(host, port, resolver)
        return target
    if ip.version == 4 and host != str(ip):
        target.resolve = Resolve(host, port, resolver)  # "0127.1" and the like: nginx's inet_addr refuses
        return target
    target.group = lookup.adhoc((literal,), port, host)
    return target


def _uri(text: str) -> bytes:
    """The URL's URI part as nginx sends it: as evaluated, a leading "?" preceded by "/"."""
    raw = text.encode("latin-1", "replace")
    return b"/" + raw if raw.startswith(b"?") else raw


def ssl_name(tls: UpstreamTlsConfig, proxy_host: str, rendered: str | None = None) -> str:
    """ngx_http_upstream_ssl_name: proxy_ssl_name (``rendered`` when it has variables), else
    $proxy_host, cut at its first ":" (after a "[...]" literal): the name checked against the
    certificate, and sent as SNI when it may be."""
    name = rendered if rendered is not None else tls.name if tls.name is not None else proxy_host
    start = name.find("]") + 1 if name.startswith("[") else 0
    colon = name.find(":", start)
    return name[:colon] if colon >= 0 else name
