"""Build the typed IR from the directive tree, checking what nginx checks for the blocks we type."""

from __future__ import annotations

import re

from nginx_parser.errors import ConfigError
from nginx_parser.ir import (
    Directive,
    HttpBlock,
    Listen,
    Location,
    NginxConfig,
    Server,
    Upstream,
    UpstreamServer,
    iter_spliced,
)
from nginx_parser.loader import load

_LOCATION_MODIFIERS = {"=", "^~", "~", "~*"}
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}


def parse_time(value: str, directive: Directive) -> float:
    """nginx time syntax (``10``, ``30s``, ``1m30s``, ``500ms``) in seconds."""
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|[smhdwMy]?)", value):
        total += int(number) * _TIME_UNITS.get(unit or "s", 1)
    if not re.fullmatch(r"(\d+(ms|[smhdwMy])?)+", value):
        raise ConfigError(f'invalid value "{value}" in "{directive.name}" directive', directive.file, directive.line)
    return total


def parse_listen(directive: Directive) -> Listen:
    if not directive.args:
        raise ConfigError('invalid number of arguments in "listen" directive', directive.file, directive.line)
    spec, *flags = directive.args
    listen: dict = {"directive": directive, "options": []}
    if spec.startswith("unix:"):
        listen.update(address="unix", port=0, unix_path=spec[5:])
    elif spec.startswith("["):
        host, _, port = spec[1:].partition("]")
        listen.update(address=host, port=int(port[1:]) if port.startswith(":") else 80)
    elif spec.isdigit():
        listen.update(address="*", port=int(spec))
    elif ":" in spec:
        host, _, port = spec.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f'invalid port in "{spec}" of the "listen" directive', directive.file, directive.line)
        listen.update(address="*" if host == "*" else host, port=int(port))
    else:
        listen.update(address=spec, port=80)
    if not (0 < listen["port"] < 65536) and listen["address"] != "unix":
        raise ConfigError(f'invalid port in "{spec}" of the "listen" directive', directive.file, directive.line)
    for flag in flags:
        if flag in ("default_server", "default"):
            listen["default_server"] = True
        elif flag == "ssl":
            listen["ssl"] = True
        elif flag == "http2":
            listen["http2"] = True
        elif flag == "ipv6only=off":
            listen["ipv6only"] = False
        else:
            listen["options"].append(flag)
    return Listen(**listen)


def _build_location(directive: Directive) -> Location:
    args = directive.args
    if len(args) == 2 and args[0] in _LOCATION_MODIFIERS:
        modifier, path = args
    elif len(args) == 1 and args[0].startswith("@"):
        modifier, path = "@", args[0]
    elif len(args) == 1:
        # nginx also accepts the modifier glued to the path: "location =/x", "location ~\.php$".
        for prefix in ("^~", "~*", "=", "~"):
            if args[0].startswith(prefix) and len(args[0]) > len(prefix):
                modifier, path = prefix, args[0][len(prefix):]
                break
        else:
            modifier, path = "", args[0]
    else:
        raise ConfigError(f'invalid location modifier "{args[0] if args else ""}"', directive.file, directive.line)
    nested = [_build_location(child) for child in directive.children() if child.name == "location"]
    return Location(modifier=modifier, path=path, directive=directive, locations=nested)


def _build_server(directive: Directive) -> Server:
    listens: list[Listen] = []
    names: list[str] = []
    for child in directive.children():
        if child.name == "listen":
            listens.append(parse_listen(child))
        elif child.name == "server_name":
            names.extend(child.args)
    if not listens:
        # nginx's default when a server has no listen and runs as root.
        listens.append(Listen(address="*", port=80))
    locations = [_build_location(child) for child in directive.children() if child.name == "location"]
    return Server(directive=directive, listens=listens, server_names=names or [""], locations=locations)


def _int_param(value: str, site: Directive) -> int:
    if not value.isdigit():
        raise ConfigError(f'invalid parameter "{value}"', site.file, site.line)
    return int(value)


def _build_upstream_server(directive: Directive) -> UpstreamServer:
    if not directive.args:
        raise ConfigError('invalid number of arguments in "server" directive', directive.file, directive.line)
    fields: dict = {"address": directive.args[0], "directive": directive}
    for param in directive.args[1:]:
        key, _, value = param.partition("=")
        if key == "weight":
            fields["weight"] = _int_param(value, directive)
        elif key == "max_fails":
            fields["max_fails"] = _int_param(value, directive)
        elif key == "fail_timeout":
            fields["fail_timeout"] = parse_time(value, directive)
        elif param in ("backup", "down"):
            fields[param] = True
        elif key not in ("max_conns", "resolve", "service", "route", "slow_start", "drain"):
            raise ConfigError(f'invalid parameter "{param}"', directive.file, directive.line)
    return UpstreamServer(**fields)


def _build_upstream(directive: Directive) -> Upstream:
    if len(directive.args) != 1:
        raise ConfigError('invalid number of arguments in "upstream" directive', directive.file, directive.line)
    servers = [_build_upstream_server(c) for c in directive.children() if c.name == "server"]
    if not servers:
        raise ConfigError('no servers are inside upstream', directive.file, directive.line)
    return Upstream(name=directive.args[0], servers=servers, directive=directive)


def _check_contexts(tree: list[Directive]) -> None:
    """The few placement rules nginx enforces that matter for the blocks we type."""
    for top in iter_spliced(tree):
        if top.name in ("server", "location", "upstream"):
            raise ConfigError(f'"{top.name}" directive is not allowed here', top.file, top.line)


def build(tree: list[Directive], main_file: str, files: list[str]) -> NginxConfig:
    _check_contexts(tree)
    http_blocks = [d for d in iter_spliced(tree) if d.name == "http"]
    if len(http_blocks) > 1:
        second = http_blocks[1]
        raise ConfigError('"http" directive is duplicate', second.file, second.line)
    http = None
    if http_blocks:
        block = http_blocks[0]
        servers = [_build_server(c) for c in block.children() if c.name == "server"]
        upstreams = [_build_upstream(c) for c in block.children() if c.name == "upstream"]
        http = HttpBlock(directive=block, servers=servers, upstreams=upstreams)
    return NginxConfig(main_file=main_file, files=files, tree=tree, http=http)


def parse_config(path: str, prefix: str | None = None) -> NginxConfig:
    """Load and build an nginx config. Raises ``ConfigError`` with file:line on any problem."""
    tree, files = load(path, prefix)
    return build(tree, files[0] if files else path, files)
