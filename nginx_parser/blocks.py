"""Typed IR for the http-level data blocks: map, geo, split_clients.

Their bodies are data entries, not directives (crossplane reports ``~^/a 1;`` as a "directive" named
``~^/a``); the parameter words each block knows (``default``, ``hostnames``, ``ranges``...) are read
as nginx reads them, everything else is an entry. ``include`` inside them is already spliced by the loader.
"""

from __future__ import annotations

import re

from nginx_parser.errors import ConfigError
from nginx_parser.ir import (
    Directive,
    Geo,
    GeoEntry,
    Map,
    MapEntry,
    SplitBucket,
    SplitClients,
)


def _variable(arg: str, site: Directive) -> str:
    if not arg.startswith("$") or len(arg) < 2:
        raise ConfigError(f'invalid variable name "{arg}"', site.file, site.error_line)
    return arg[1:]


def _one_value(entry: Directive, block: str) -> str:
    if len(entry.args) != 1:
        raise ConfigError(f"invalid number of the {block} parameters", entry.file, entry.error_line)
    return entry.args[0]


def build_map(directive: Directive) -> Map:
    if len(directive.args) != 2:
        raise ConfigError('invalid number of arguments in "map" directive', directive.file, directive.error_line)
    source, target = directive.args
    result = Map(source=source, variable=_variable(target, directive), directive=directive)
    for entry in directive.children():
        if entry.name in ("hostnames", "volatile") and not entry.args:
            setattr(result, entry.name, True)
            continue
        value = _one_value(entry, "map")
        if entry.name == "default":
            result.default = value
            continue
        key = entry.name
        if key.startswith("~*"):
            kind, key = "regex_caseless", key[2:]
        elif key.startswith("~"):
            kind, key = "regex", key[1:]
        else:
            # a leading backslash escapes the parameter words and "~" (ngx_http_map: "\\" + key).
            key = key.removeprefix("\\")
            kind = "hostname" if result.hostnames and ("*" in key or key.startswith(".")) else "exact"
        result.entries.append(MapEntry(key=key, value=value, kind=kind, directive=entry))
    return result


def build_geo(directive: Directive) -> Geo:
    if len(directive.args) == 1:
        result = Geo(variable=_variable(directive.args[0], directive), directive=directive)
    elif len(directive.args) == 2:
        result = Geo(source=directive.args[0], variable=_variable(directive.args[1], directive), directive=directive)
    else:
        raise ConfigError('invalid number of arguments in "geo" directive', directive.file, directive.error_line)
    for entry in directive.children():
        if entry.name in ("ranges", "proxy_recursive") and not entry.args:
            setattr(result, entry.name, True)
        elif entry.name == "default":
            result.default = _one_value(entry, "geo")
        elif entry.name == "proxy":
            result.proxy.append(_one_value(entry, "geo"))
        elif entry.name == "delete":
            result.entries.append(GeoEntry(network=_one_value(entry, "geo"), value="", delete=True, directive=entry))
        else:
            result.entries.append(GeoEntry(network=entry.name, value=_one_value(entry, "geo"), directive=entry))
    return result


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def build_split_clients(directive: Directive) -> SplitClients:
    if len(directive.args) != 2:
        raise ConfigError('invalid number of arguments in "split_clients" directive', directive.file, directive.error_line)
    buckets: list[SplitBucket] = []
    total = 0.0
    for entry in directive.children():
        value = entry.args[0] if entry.args else ""
        if len(entry.args) > 1:
            raise ConfigError("invalid number of the split_clients parameters", entry.file, entry.error_line)
        if entry.name == "*":
            buckets.append(SplitBucket(percent=None, value=value, directive=entry))
            continue
        match = _PERCENT.fullmatch(entry.name)
        if match is None:
            raise ConfigError(f'invalid percent value "{entry.name}"', entry.file, entry.error_line)
        total += float(match.group(1))
        buckets.append(SplitBucket(percent=float(match.group(1)), value=value, directive=entry))
    if total > 100:
        raise ConfigError("percent total is greater than 100%", directive.file, directive.error_line)
    return SplitClients(
        source=directive.args[0], variable=_variable(directive.args[1], directive), buckets=buckets, directive=directive
    )
