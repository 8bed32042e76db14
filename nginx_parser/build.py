"""Build the typed IR from the directive tree, checking what nginx checks for the blocks we type."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

from nginx_parser import directives as table
from nginx_parser.blocks import build_geo, build_map, build_split_clients
from nginx_parser.errors import ConfigError
from nginx_parser.expr import ExpressionError, parse_condition
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
from nginx_parser.loader import PartialLoad, load
from nginx_parser.regex import RegexError, compile_regex

_LOCATION_MODIFIERS = {"=", "^~", "~", "~*"}
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}


def parse_time(value: str, directive: Directive) -> float:
    """nginx time syntax (``10``, ``30s``, ``1m30s``, ``500ms``) in seconds."""
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|[smhdwMy]?)", value):
        total += int(number) * _TIME_UNITS.get(unit or "s", 1)
    if not re.fullmatch(r"(\d+(ms|[smhdwMy])?)+", value):
        raise ConfigError(f'invalid value "{value}" in "{directive.name}" directive', directive.file, directive.error_line)
    return total


def parse_listen(directive: Directive) -> Listen:
    if not directive.args:
        raise ConfigError('invalid number of arguments in "listen" directive', directive.file, directive.error_line)
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
            raise ConfigError(f'invalid port in "{spec}" of the "listen" directive', directive.file, directive.error_line)
        listen.update(address="*" if host == "*" else host, port=int(port))
    else:
        listen.update(address=spec, port=80)
    if not (0 < listen["port"] < 65536) and listen["address"] != "unix":
        raise ConfigError(f'invalid port in "{spec}" of the "listen" directive', directive.file, directive.error_line)
    for flag in flags:
        if flag in ("default_server", "default"):
            listen["default_server"] = True
        elif flag == "ssl":
            listen["ssl"] = True
        elif flag == "http2":
            listen["http2"] = True
        elif flag == "quic":
            listen["quic"] = True
        elif flag == "ipv6only=off":
            listen["ipv6only"] = False
        else:
            listen["options"].append(flag)
    if listen.get("quic"):  # ngx_http_core_listen (nginx >= 1.25)
        for other in ("ssl", "http2"):
            if listen.get(other):
                raise ConfigError(f'"{other}" parameter is incompatible with "quic"', directive.file,
                                  directive.error_line)
        if "proxy_protocol" in listen["options"]:
            raise ConfigError('"proxy_protocol" parameter is incompatible with "quic"', directive.file,
                              directive.error_line)
    return Listen(**listen)


def location_modifier(directive: Directive) -> tuple[str, str]:
    """``(modifier, path)`` of a ``location`` directive, as nginx splits them."""
    args = directive.args
    if len(args) == 2 and args[0] in _LOCATION_MODIFIERS:
        return args[0], args[1]
    if len(args) == 1 and args[0].startswith("@"):
        return "@", args[0]
    if len(args) == 1:
        # nginx also accepts the modifier glued to the path: "location =/x", "location ~\.php$".
        for prefix in ("^~", "~*", "=", "~"):
            if args[0].startswith(prefix) and len(args[0]) > len(prefix):
                return prefix, args[0][len(prefix):]
        return "", args[0]
    raise ConfigError(f'invalid location modifier "{args[0] if args else ""}"', directive.file, directive.error_line)


def _build_location(directive: Directive, ancestors: list[Directive]) -> Location:
    modifier, path = location_modifier(directive)
    inner = [*ancestors, directive]
    nested = [_build_location(child, inner) for child in directive.children() if child.name == "location"]
    return Location(modifier=modifier, path=path, directive=directive, locations=nested, ancestors=ancestors)


def _build_server(directive: Directive, http: Directive) -> Server:
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
    locations = [_build_location(child, [http, directive]) for child in directive.children() if child.name == "location"]
    return Server(directive=directive, listens=listens, server_names=names or [""], locations=locations)


def _int_param(value: str, site: Directive, param: str = "") -> int:
    if not value.isdigit():  # nginx names the whole parameter ("weight=x")
        raise ConfigError(f'invalid parameter "{param or value}"', site.file, site.error_line)
    return int(value)


def _build_upstream_server(directive: Directive, backup_ok: bool = True) -> UpstreamServer:
    """``backup_ok``: False once hash, ip_hash or random came before this line (nginx checks the
    balancing method's flags as it reads each server line, so the order of the lines matters)."""
    if not directive.args:
        raise ConfigError('invalid number of arguments in "server" directive', directive.file, directive.error_line)
    fields: dict = {"address": directive.args[0], "directive": directive}
    for param in directive.args[1:]:
        key, _, value = param.partition("=")
        if key == "weight":
            fields["weight"] = _int_param(value, directive, param)
            if fields["weight"] == 0:
                raise ConfigError(f'invalid parameter "{param}"', directive.file, directive.error_line)
        elif key == "max_fails":
            fields["max_fails"] = _int_param(value, directive, param)
        elif key == "max_conns":
            fields["max_conns"] = _int_param(value, directive, param)
        elif key == "fail_timeout":
            fields["fail_timeout"] = parse_time(value, directive)
        elif param == "backup" and not backup_ok:
            raise ConfigError(f'balancing method does not support parameter "{param}"', directive.file,
                              directive.error_line)
        elif param in ("backup", "down"):
            fields[param] = True
        elif key not in ("resolve", "service", "route", "slow_start", "drain"):
            raise ConfigError(f'invalid parameter "{param}"', directive.file, directive.error_line)
    return UpstreamServer(**fields)


# Balancing methods whose servers cannot be backup (ngx_http_upstream_{hash,ip_hash,random}).
_NO_BACKUP_METHODS = frozenset({"hash", "ip_hash", "random"})


def _build_upstream(directive: Directive) -> Upstream:
    if len(directive.args) != 1:
        raise ConfigError('invalid number of arguments in "upstream" directive', directive.file, directive.error_line)
    servers = []
    backup_ok = True
    for child in directive.children():
        if child.name == "server":
            servers.append(_build_upstream_server(child, backup_ok))
        elif child.name in _NO_BACKUP_METHODS or child.name == "least_conn":
            backup_ok = child.name not in _NO_BACKUP_METHODS
            extra = child.args[1:] if child.name == "hash" else child.args
            allowed = {"hash": ["consistent"], "random": ["two", "least_conn"]}.get(child.name, [])
            for expected, arg in zip(allowed, extra):
                if arg != expected:
                    raise ConfigError(f'invalid parameter "{arg}"', child.file, child.error_line)
    if not servers:
        raise ConfigError('no servers are inside upstream', directive.file, directive.error_line)
    if all(server.backup for server in servers):
        raise ConfigError(f'no servers in upstream "{directive.args[0]}"', directive.file, directive.error_line)
    return Upstream(name=directive.args[0], servers=servers, directive=directive)


@lru_cache(maxsize=4096)
def _condition_problem(args: tuple[str, ...]) -> str | None:
    # cached: large configs repeat the same few conditions and regexes thousands of times
    try:
        parse_condition(list(args))
    except ExpressionError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=4096)
def _regex_problem(pattern: str, caseless: bool) -> str | None:
    try:
        compile_regex(pattern, caseless)
    except RegexError as exc:
        return str(exc)
    return None


def _expression_problem(directive: Directive) -> str | None:
    """Conditions and regexes nginx compiles at load time: ``if``, regex ``location``, ``rewrite``."""
    if directive.name == "if":
        return _condition_problem(tuple(directive.args))
    if directive.name == "rewrite" and directive.args:
        return _regex_problem(directive.args[0], False)
    if directive.name == "location" and directive.args:
        modifier, path = location_modifier(directive)
        if modifier in ("~", "~*"):
            return _regex_problem(path, modifier == "~*")
    return None


# Blocks nginx allows once in a config (their handlers refuse a second one).
_MAIN_SINGLETONS = frozenset({"http", "events", "stream", "mail"})


def check_contexts(block: list[Directive], context: table.Context | None = "main") -> None:
    """nginx's placement, arity and block/";" checks for every known directive, from the directive table.

    ``context`` None means a body that is not an nginx context (map/types entries, a third-party
    block): nothing inside is checked. Unknown directives are kept, never rejected here.
    """
    seen_singletons: set[str] = set()
    for directive in iter_spliced(block):
        if context == "main" and directive.name in _MAIN_SINGLETONS:
            if directive.name in seen_singletons:
                raise ConfigError(f'"{directive.name}" directive is duplicate', directive.file, directive.error_line)
            seen_singletons.add(directive.name)
        if context is not None and not directive.synthetic:
            problem = table.check(directive.name, directive.args, directive.block is not None, context)
            if problem is None:
                problem = _expression_problem(directive)
            if problem is not None:
                raise ConfigError(problem, directive.file, directive.error_line)
        if directive.block is not None and directive.name not in table.DATA_BLOCKS:
            check_contexts(directive.block, table.enter_block(directive.name, context))


def build(tree: list[Directive], main_file: str, files: list[str]) -> NginxConfig:
    check_contexts(tree)
    http_blocks = [d for d in iter_spliced(tree) if d.name == "http"]
    if len(http_blocks) > 1:
        second = http_blocks[1]
        raise ConfigError('"http" directive is duplicate', second.file, second.error_line)
    http = None
    if http_blocks:
        block = http_blocks[0]
        children = list(block.children())
        http = HttpBlock(
            directive=block,
            servers=[_build_server(c, block) for c in children if c.name == "server"],
            upstreams=[_build_upstream(c) for c in children if c.name == "upstream"],
            maps=[build_map(c) for c in children if c.name == "map"],
            geos=[build_geo(c) for c in children if c.name == "geo"],
            split_clients=[build_split_clients(c) for c in children if c.name == "split_clients"],
        )
    return NginxConfig(main_file=main_file, files=files, tree=tree, http=http)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing.

    Parsing allocates ~10^6 objects for a large config and none of them form cycles, yet each
    allocation burst triggers a collection that traverses the whole growing tree: ~40% of the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_config(
    path: str,
    prefix: str | None = None,
    context: str | None = "main",
    env: Mapping[str, str] | None = None,
    sysroot: str | None = None,
) -> NginxConfig:
    """Load and build an nginx config. Raises ``ConfigError`` with file:line on any problem.

    ``context``: where the file's directives live (main, http, server, location; None detects it).
    ``env``: envsubst placeholders to substitute before parsing (see templates.py for the rule).
    ``sysroot``: read absolute include paths under this directory.
    """
    with _gc_paused():
        try:
            tree, files = load(path, prefix, context, env, sysroot)
        except PartialLoad as partial:
            # nginx stops at the first problem in reading order: one in what was read before the
            # loading error comes first.
            check_contexts(partial.tree)
            raise partial from None  # a ConfigError that also carries what was read
        return build(tree, files[0] if files else path, files)
