"""nginx's client connection settings (client_header_timeout, client_body_timeout, keepalive_timeout,
keepalive_requests, send_timeout, lingering_time, lingering_timeout, client_header_buffer_size,
large_client_header_buffers, reset_timedout_connection) as ``newproxy.config.ClientConfig``.

newproxy applies one set per process. When every occurrence of a directive in the config gives
the same value, that value is used and every occurrence is exact; when they differ, the http-level
one (else nginx's default) is used, and each occurrence with another value is a caveat that says
which value applies instead. ``keepalive_timeout``'s second argument (the ``Keep-Alive:
timeout=N`` response header) is not sent: a caveat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from newproxy.config import ClientConfig
from nginx_parser import ConfigError, Directive, parse_time

if TYPE_CHECKING:
    from translator.translate import Translator

# Blocks whose directives are not client settings (upstream{} has its own keepalive_*).
_OTHER_BLOCKS = {"upstream", "map", "geo", "types", "split_clients", "limit_except"}


def _time(directive: Directive, value: str) -> float:
    return parse_time(value, directive)


def _count(directive: Directive, value: str) -> int:
    if not value.isdigit():
        raise ConfigError(f'"{directive.name}" directive invalid value', directive.file, directive.line)
    return int(value)


def _flag(directive: Directive, value: str) -> bool:
    if value not in ("on", "off"):
        raise ConfigError(f'invalid value "{value}" in "{directive.name}" directive, it must be "on" or "off"',
                          directive.file, directive.line)
    return value == "on"


def _size(directive: Directive, value: str) -> int:
    factors = {"k": 1024, "m": 1024 * 1024}
    unit = value[-1:].lower()
    digits = value[:-1] if unit in factors else value
    if not digits.isdigit() or int(digits) == 0:
        raise ConfigError(f'invalid value "{value}"', directive.file, directive.line)
    return int(digits) * factors.get(unit, 1)


# directive -> (ClientConfig fields, how each argument is read)
_SETTINGS: dict[str, tuple[tuple[str, ...], Callable[[Directive, str], float | int | bool]]] = {
    "client_header_timeout": (("header_timeout",), _time),
    "client_body_timeout": (("body_timeout",), _time),
    "send_timeout": (("send_timeout",), _time),
    "lingering_time": (("lingering_time",), _time),
    "lingering_timeout": (("lingering_timeout",), _time),
    "keepalive_timeout": (("keepalive_timeout",), _time),
    "keepalive_requests": (("keepalive_requests",), _count),
    "client_header_buffer_size": (("header_buffer_size",), _size),
    "reset_timedout_connection": (("reset_timedout_connection",), _flag),
}


def _shown(value: float | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}"


def _occurrences(directives: list[Directive], depth: int = 0) -> Iterator[tuple[Directive, int]]:
    """Every directive under http (depth 0: at http level), upstream{} and data blocks left out."""
    for directive in directives:
        if directive.name in _OTHER_BLOCKS:
            continue
        yield directive, depth
        if directive.block is not None:
            yield from _occurrences(list(directive.children()), depth + 1)


def _values(directive: Directive) -> dict[str, float | int]:
    if directive.name == "large_client_header_buffers":
        if len(directive.args) != 2:
            raise ConfigError(f'invalid number of arguments in "{directive.name}" directive', directive.file,
                              directive.line)
        return {"large_header_buffers": _count(directive, directive.args[0]),
                "large_header_buffer_size": _size(directive, directive.args[1])}
    fields, read = _SETTINGS[directive.name]
    return {fields[0]: read(directive, directive.args[0])}


def client_config(translator: Translator, http_directives: list[Directive]) -> ClientConfig:
    config = ClientConfig()
    reasons: dict[int, tuple[Directive, list[str]]] = {}
    names = {*_SETTINGS, "large_client_header_buffers"}
    found: dict[str, list[tuple[Directive, int, dict[str, float | int]]]] = {}
    for directive, depth in _occurrences(http_directives):
        if directive.name in names and directive.args:
            found.setdefault(directive.name, []).append((directive, depth, _values(directive)))
    for name, entries in found.items():
        distinct = {tuple(values.items()) for _, _, values in entries}
        if len(distinct) == 1:
            chosen = entries[0][2]
        else:
            at_http = [values for _, depth, values in entries if depth == 0]
            chosen = at_http[-1] if at_http else {k: getattr(config, k) for k in entries[0][2]}
            applied = ", ".join(f"{k.replace('_', ' ')} {_shown(v)}" for k, v in chosen.items())
            for directive, _, values in entries:
                if values != chosen:
                    reasons.setdefault(id(directive), (directive, []))[1].append(
                        f"newproxy applies one value for the whole process ({applied}, from the http level or "
                        "nginx's default); this one is not applied here")
        for field_name, value in chosen.items():
            setattr(config, field_name, value)
    for directive, _, _ in found.get("keepalive_timeout", []):
        if len(directive.args) > 1:
            reasons.setdefault(id(directive), (directive, []))[1].append(
                "the Keep-Alive: timeout=N response header (second argument) is not sent")
    for directive, texts in reasons.values():
        translator.note(directive, "caveat", "; ".join(texts))
    return config
