"""nginx variables and complex values (``"$scheme://$host$request_uri"``), compiled once at load.

A template compiles to a tuple of parts: literal strings and getter functions. Evaluating it joins
the parts; a template without variables evaluates to its literal with no work at all.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext

Getter = Callable[["RequestContext"], str]


class UnknownVariable(ValueError):
    pass


def _header(ctx: RequestContext, lower_name: bytes) -> str:
    # nginx joins repeated headers only for a few names; for $http_* it takes the first occurrence,
    # except Cookie and X-Forwarded-For which it joins (with "; " and ", ").
    values = [v for k, v in ctx.request.headers if k.lower() == lower_name]
    if not values:
        return ""
    if lower_name == b"cookie" and len(values) > 1:
        return "; ".join(v.decode("latin-1") for v in values)
    if lower_name == b"x-forwarded-for" and len(values) > 1:
        return ", ".join(v.decode("latin-1") for v in values)
    return values[0].decode("latin-1")


def _http_getter(name: str) -> Getter:
    lower = name.replace("_", "-").lower().encode()
    return lambda ctx: _header(ctx, lower)


def _arg_getter(name: str) -> Getter:
    def get(ctx: RequestContext) -> str:
        for pair in ctx.args.split("&"):
            key, sep, value = pair.partition("=")
            if key.lower() == name.lower() and (sep or key):
                return value
        return ""

    return get


def _cookie_getter(name: str) -> Getter:
    def get(ctx: RequestContext) -> str:
        for value in [v for k, v in ctx.request.headers if k.lower() == b"cookie"]:
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == name:
                    return val
        return ""

    return get


def _proxy_add_x_forwarded_for(ctx: RequestContext) -> str:
    existing = _header(ctx, b"x-forwarded-for")
    return f"{existing}, {ctx.request.client_addr[0]}" if existing else ctx.request.client_addr[0]


def _body_length(ctx: RequestContext) -> str:
    # nginx sends a Content-Length upstream when the client sent a body (by length or chunked),
    # with the length of the body it buffered.
    for name, _ in ctx.request.headers:
        low = name.lower()
        if low in (b"content-length", b"transfer-encoding"):
            return str(len(ctx.request.body))
    return ""


_SIMPLE: dict[str, Getter] = {
    "host": lambda ctx: ctx.host,
    "uri": lambda ctx: ctx.uri,
    "document_uri": lambda ctx: ctx.uri,
    "request_uri": lambda ctx: ctx.request_uri,
    "args": lambda ctx: ctx.args,
    "query_string": lambda ctx: ctx.args,
    "is_args": lambda ctx: "?" if ctx.args else "",
    "request_method": lambda ctx: ctx.request.method.decode("latin-1"),
    "scheme": lambda ctx: ctx.request.scheme,
    "https": lambda ctx: "on" if ctx.request.scheme == "https" else "",
    "server_name": lambda ctx: ctx.server.primary_name,
    "server_port": lambda ctx: str(ctx.request.local_addr[1]),
    "server_addr": lambda ctx: ctx.request.local_addr[0],
    "remote_addr": lambda ctx: ctx.request.client_addr[0],
    "binary_remote_addr": lambda ctx: ctx.request.client_addr[0],
    "remote_port": lambda ctx: str(ctx.request.client_addr[1]),
    "server_protocol": lambda ctx: "HTTP/" + ctx.request.version.decode(),
    "request": lambda ctx: b" ".join((ctx.request.method, ctx.request.target, b"HTTP/" + ctx.request.version)).decode("latin-1"),
    "content_type": lambda ctx: _header(ctx, b"content-type"),
    "content_length": lambda ctx: _header(ctx, b"content-length"),
    "proxy_host": lambda ctx: ctx.proxy_host,
    "proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
    "proxy_internal_body_length": _body_length,
    # nginx sets this only when it streams a chunked body unbuffered, which newproxy does not do.
    "proxy_internal_chunked": lambda ctx: "",
}

_PREFIXED: dict[str, Callable[[str], Getter]] = {
    "http_": _http_getter,
    "arg_": _arg_getter,
    "cookie_": _cookie_getter,
}

KNOWN_VARIABLES: frozenset[str] = frozenset(_SIMPLE)
KNOWN_PREFIXES: tuple[str, ...] = tuple(_PREFIXED)


def _capture_getter(key: int | str) -> Getter:
    """$1..$9 and named captures: from the last regex that matched (location, else server name)."""

    def get(ctx: RequestContext) -> str:
        match = ctx.captures
        if match is None:
            return ""
        try:
            value = match.group(key)
        except IndexError:
            return ""
        return value or ""

    return get


def variable_getter(name: str, capture_names: frozenset[str] = frozenset()) -> Getter:
    if name.isdigit():
        return _capture_getter(int(name))
    if name in capture_names:
        return _capture_getter(name)
    if name in _SIMPLE:
        return _SIMPLE[name]
    for prefix, factory in _PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return factory(name[len(prefix):])
    raise UnknownVariable(f'unknown "{name}" variable')


# $name, ${name}; nginx variable names are [A-Za-z0-9_].
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def variable_names(template: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in _VARIABLE.finditer(template)]


class Template:
    """A compiled complex value."""

    __slots__ = ("text", "parts", "constant", "single")

    def __init__(self, text: str, capture_names: frozenset[str] = frozenset()) -> None:
        self.text = text
        parts: list[str | Getter] = []
        pos = 0
        for match in _VARIABLE.finditer(text):
            if match.start() > pos:
                parts.append(text[pos:match.start()])
            parts.append(variable_getter(match.group(1) or match.group(2), capture_names))
            pos = match.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts = tuple(parts)
        self.constant = text if all(isinstance(p, str) for p in parts) else None
        # "$remote_addr" alone, the most common form, renders with one call and no join.
        only = parts[0] if len(parts) == 1 else None
        self.single: Getter | None = None if only is None or isinstance(only, str) else only

    def render(self, ctx: RequestContext) -> str:
        if self.constant is not None:
            return self.constant
        if self.single is not None:
            return self.single(ctx)
        return "".join([p if isinstance(p, str) else p(ctx) for p in self.parts])
