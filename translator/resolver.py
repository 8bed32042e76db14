"""nginx ``resolver`` / ``resolver_timeout`` -> newproxy's ResolverConfig (used by a proxy_pass whose
URL is made of variables: newproxy/http/resolver.py asks these servers over UDP, as nginx does)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from newproxy.config import ResolverConfig
from nginx_parser import ConfigError, Directive, parse_time


def resolver_config(resolver: Directive | None, timeout: Directive | None,
                    gap: Callable[[Directive, str], None]) -> ResolverConfig | None:
    """The resolver in effect (inherited like any scalar), or None when none is configured. A server
    given by name is reported through ``gap`` and left out (nginx resolves it once at start)."""
    if resolver is None:
        return None
    config = ResolverConfig(servers=[])
    servers = config.servers
    for arg in resolver.args:
        key, eq, value = arg.partition("=")
        if eq and key == "valid":
            config.valid = parse_time(value, resolver)
        elif eq and key in ("ipv4", "ipv6"):
            if value not in ("on", "off"):
                raise ConfigError(f'invalid parameter: {arg}', resolver.file, resolver.line)
            setattr(config, key, value == "on")
        elif eq and key == "status_zone":
            continue  # a statistics zone (nginx plus): nothing to run
        else:
            server = _server(arg, resolver)
            if server is None:
                gap(resolver, f'the resolver "{arg}" is a name: newproxy needs its IP address (nginx resolves '
                              'it once at start); it is left out')
            else:
                servers.append(server)
    if not config.ipv4 and not config.ipv6:
        raise ConfigError('"ipv4" and "ipv6" cannot both be "off"', resolver.file, resolver.line)
    if timeout is not None:
        config.timeout = parse_time(timeout.args[0], timeout)
    return config


def _server(address: str, directive: Directive) -> str | None:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as "IP:PORT"; None for a name."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif address.count(":") == 1:
        host, port = address.split(":")
    elif ":" in address:
        host, port = address, "53"  # a bare IPv6 address
    else:
        host, port = address, "53"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'invalid port in resolver "{address}"', directive.file, directive.line)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
