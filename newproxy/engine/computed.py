"""Variables the config computes per request: ``map`` and ``split_clients``, compiled once at load.

Each becomes a getter like a built-in variable's. It is evaluated when a request first uses it and
the value is kept for the rest of that request (in ``ctx.vars``, as nginx caches it in
r->variables), except for a ``volatile`` map.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Callable

from newproxy.config import GeoConfig, MapConfig, MapEntryConfig, SplitClientsConfig
from newproxy.engine import trace
from newproxy.engine.context import set_captures
from newproxy.engine.regex import compile_regex

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext
    from newproxy.engine.variables import Getter, Template

TemplateFactory = Callable[[str], "Template"]


def _cached(name: str, compute: Getter, volatile: bool = False) -> Getter:
    if volatile:
        return compute

    def get(ctx: RequestContext) -> str:
        variables = ctx.vars
        if variables is None:
            variables = ctx.vars = {}
        else:
            value = variables.get(name)
            if value is not None:
                return value
        value = compute(ctx)
        variables[name] = value
        return value

    return get


def compile_map(config: MapConfig, template: TemplateFactory) -> Getter:
    """A map as a variable getter (cached per request unless volatile); traced for coverage when a
    tracer is set at compile time."""
    tracer = trace.tracer
    compute = _plain_map(config, template) if tracer is None else _traced_map(config, template, tracer)
    return _cached(config.variable, compute, config.volatile)


def _plain_map(config: MapConfig, template: TemplateFactory) -> Getter:
    """ngx_http_map_find: exact (case ignored), head wildcards (longest), tail wildcards, regexes, default."""
    source = template(config.source_value)
    exact: dict[str, Template] = {}
    heads: list[tuple[str, bool, Template]] = []  # (suffix, also_bare, value), longest first
    tails: list[tuple[str, Template]] = []  # (prefix with its final ".", value), longest first
    regexes: list[tuple[re.Pattern[str], Template]] = []
    for entry in config.entries:
        value = template(entry.value)
        if entry.kind == "exact":
            exact.setdefault(entry.key.lower(), value)
        elif entry.kind == "hostname":
            key = entry.key.lower()
            if key.startswith("*."):
                heads.append((key[1:], False, value))
            elif key.startswith("."):
                heads.append((key, True, value))
            elif key.endswith(".*"):
                tails.append((key[:-1], value))
            else:
                exact.setdefault(key, value)
        else:
            regexes.append((compile_regex(entry.key, caseless=entry.kind == "regex_caseless"), value))
    heads.sort(key=lambda item: -len(item[0]))
    tails.sort(key=lambda item: -len(item[0]))
    default = template(config.default)
    hostnames = config.hostnames

    def compute(ctx: RequestContext) -> str:
        value = source.render(ctx)
        if hostnames and value.endswith("."):
            value = value[:-1]
        key = value.lower()
        found = exact.get(key)
        if found is not None:
            return found.render(ctx)
        if hostnames and key:
            for suffix, bare, result in heads:
                if key.endswith(suffix) and len(key) > len(suffix) or bare and key == suffix[1:]:
                    return result.render(ctx)
            for prefix, result in tails:
                if key.startswith(prefix) and len(key) > len(prefix):
                    return result.render(ctx)
        for regex, result in regexes:
            match = regex.search(value)
            if match is not None:
                set_captures(ctx, match)
                return result.render(ctx)
        return default.render(ctx)

    return compute


def _entry_order(entry: MapEntryConfig) -> tuple[int, int]:
    """nginx's lookup order: exact keys, head wildcards (longest first), tail wildcards (longest
    first), then regexes in config order (a stable sort keeps it)."""
    if entry.kind == "exact":
        return (0, 0)
    if entry.kind == "hostname":
        key = entry.key
        if key.startswith(("*.", ".")):
            return (1, -len(key.lstrip("*")))
        if key.endswith(".*"):
            return (2, -len(key))
        return (0, 0)
    return (3, 0)


_MISS = "\x00no entry"


def _traced_map(config: MapConfig, template: TemplateFactory, tracer: trace.Tracer) -> Getter:
    """The map as coverage sees it: each entry also compiled alone, so that the entry that answers
    is known (the first, in nginx's order, that gives a value); None for the default."""
    whole = _plain_map(config, template)
    singles = [(entry, _plain_map(config.model_copy(update={"entries": [entry], "default": _MISS}), template))
               for entry in sorted(config.entries, key=_entry_order)]

    def compute(ctx: RequestContext) -> str:
        value = whole(ctx)
        for entry, single in singles:
            if single(ctx) != _MISS:
                tracer("map", config.source, entry.source)
                return value
        tracer("map", config.source, None)
        return value

    return compute


def murmur_hash2(data: bytes) -> int:
    """ngx_murmur_hash2."""
    m = 0x5BD1E995
    length = len(data)
    h = length & 0xFFFFFFFF
    i = 0
    while length >= 4:
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 4
        length -= 4
    if length == 3:
        h ^= data[i + 2] << 16
    if length >= 2:
        h ^= data[i + 1] << 8
    if length >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def split_bounds(percents: list[float | None]) -> list[int]:
    """Each bucket's upper bound in the 32-bit hash space, as ngx_http_split_clients_block computes it
    (percentages in hundredths, cumulative; 0 marks the "*" bucket, which takes the rest)."""
    bounds = []
    total = 0
    for percent in percents:
        if not percent:  # nginx reads a "0%" bucket like "*"
            bounds.append(0)
            continue
        total += int(round(percent * 100))
        bounds.append(total * 0xFFFFFFFF // 10000)
    return bounds


def compile_split_clients(config: SplitClientsConfig, template: TemplateFactory) -> Getter:
    source = template(config.source_value)
    # The bucket values are plain strings (no variables), as in nginx.
    buckets = list(zip(split_bounds([b.percent for b in config.buckets]), [b.value for b in config.buckets]))

    def compute(ctx: RequestContext) -> str:
        digest = murmur_hash2(source.render(ctx).encode("latin-1"))
        for bound, value in buckets:
            if bound == 0 or digest < bound:
                return value
        return ""

    return _cached(config.variable, compute)


_NONE = ipaddress.IPv4Address("255.255.255.255")
_DOTTED = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")  # INADDR_NONE: what nginx looks up for a non-address


def compile_geo(config: GeoConfig, template: TemplateFactory) -> Getter:
    """ngx_http_geo_cidr_variable: the longest matching network (a radix tree in nginx), else default."""
    source = template(config.source_value)
    v4: dict[int, dict[int, str]] = {}  # prefix length -> network address -> value
    v6: dict[int, dict[int, str]] = {}
    for entry in config.entries:
        network = ipaddress.ip_network(entry.network, strict=False)
        table = v4 if network.version == 4 else v6
        table.setdefault(network.prefixlen, {})[int(network.network_address)] = entry.value
    tables = {
        4: sorted(((32 - length, nets) for length, nets in v4.items()), key=lambda item: item[0]),
        6: sorted(((128 - length, nets) for length, nets in v6.items()), key=lambda item: item[0]),
    }
    default = config.default

    def compute(ctx: RequestContext) -> str:
        text = source.render(ctx)
        address: ipaddress.IPv4Address | ipaddress.IPv6Address
        if _DOTTED.fullmatch(text):  # ngx_inet_addr: decimal octets, leading zeros allowed
            octets = [int(part) for part in text.split(".")]
            address = ipaddress.IPv4Address(bytes(octets)) if max(octets) <= 255 else _NONE
        else:
            try:
                address = ipaddress.IPv6Address(text)
            except ValueError:
                address = _NONE
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        number = int(address)
        for shift, nets in tables[address.version]:
            value = nets.get(number >> shift << shift)
            if value is not None:
                return value
        return default

    return _cached(config.variable, compute)
