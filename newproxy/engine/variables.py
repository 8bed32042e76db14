"""nginx variables and complex values (``"$scheme://$host$request_uri"``), compiled once at load.

A template compiles to a tuple of parts: literal strings and getter functions. Evaluating it joins
the parts; a template without variables evaluates to its literal with no work at all.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import TYPE_CHECKING, Callable, Final, Mapping

from newproxy import stats
from newproxy.engine.htpasswd import basic_credentials

from newproxy.engine.limits import CONN_STATUS_NAMES, REQ_STATUS_NAMES, limit_rate_variable
from newproxy.engine import requestfacts

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext

Getter = Callable[["RequestContext"], str]


class UnknownVariable(ValueError):
    pass


# $http_NAME of the headers nginx reads itself (ngx_http_core_variables): the header of exactly that
# name. Any other NAME is ngx_http_variable_unknown_header, where a '_' of the header's name (kept
# with underscores_in_headers or ignore_invalid_headers off) matches too: $http_x_u reads "X_U".
_OWN_HEADERS: Final = frozenset({b"host", b"user-agent", b"referer", b"via", b"x-forwarded-for", b"cookie"})


def header_matches(key: bytes, lower_name: bytes) -> bool:
    """Whether the header ``key`` is the one $http_NAME reads (``lower_name``: NAME lower-cased, '-' for '_')."""
    key = key.lower()
    return key == lower_name or (b"_" in key and lower_name not in _OWN_HEADERS
                                 and key.replace(b"_", b"-") == lower_name)


def _header(ctx: RequestContext, lower_name: bytes, loose: bool = False) -> str:
    # nginx joins repeated headers only for a few names; for $http_* it takes the first occurrence,
    # except Cookie and X-Forwarded-For which it joins (with "; " and ", "). ``loose``: $http_NAME
    # of a header nginx does not read itself, where a name's '_' counts as '-' (header_matches).
    values = [v for k, v in ctx.request.headers
              if k.lower() == lower_name or loose and b"_" in k and header_matches(k, lower_name)]
    if not values:
        return ""
    if lower_name == b"cookie" and len(values) > 1:
        return "; ".join(v.decode("latin-1") for v in values)
    if lower_name == b"x-forwarded-for" and len(values) > 1:
        return ", ".join(v.decode("latin-1") for v in values)
    return values[0].decode("latin-1")


def _http_getter(name: str) -> Getter:
    lower = name.replace("_", "-").lower().encode()
    loose = lower not in _OWN_HEADERS
    return lambda ctx: _header(ctx, lower, loose)


def _arg_getter(name: str) -> Getter:
    def get(ctx: RequestContext) -> str:
        for pair in ctx.args.split("&"):
            key, sep, value = pair.partition("=")
            if key.lower() == name.lower() and (sep or key):
                return value
        return ""

    return get


def _cookie_getter(name: str) -> Getter:
    """ngx_http_parse_multi_header_lines as nginx 1.22 runs it for $cookie_NAME: over every Cookie
    header in order, a name compared with the case ignored at the start of an item (items are
    separated by ";" or ","), optional spaces, "=", spaces skipped, then the value up to ";"."""
    key = name.lower().encode("latin-1")
    size = len(key)

    def get(ctx: RequestContext) -> str:
        for header, raw in ctx.request.headers:
            if header.lower() != b"cookie":
                continue
            end = len(raw)
            start = 0
            while start < end:
                if raw[start:start + size].lower() == key:
                    pos = start + size
                    while pos < end and raw[pos] == 0x20:
                        pos += 1
                    if pos < end and raw[pos] == 0x3D:  # "="
                        pos += 1
                        while pos < end and raw[pos] == 0x20:
                            pos += 1
                        last = raw.find(b";", pos)
                        return raw[pos:last if last >= 0 else end].decode("latin-1")
                    start = pos
                while start < end:  # skip to the next item
                    ch = raw[start]
                    start += 1
                    if ch == 0x3B or ch == 0x2C:
                        break
                while start < end and raw[start] == 0x20:
                    start += 1
        return ""

    return get


def _proxy_add_x_forwarded_for(ctx: RequestContext) -> str:
    existing = _header(ctx, b"x-forwarded-for")
    return f"{existing}, {ctx.request.client_addr[0]}" if existing else ctx.request.client_addr[0]


def _body_length(ctx: RequestContext) -> str:
    # nginx sends a Content-Length upstream when the client sent a body (by length or chunked),
    # with the length of the body it buffered; with proxy_set_body, that body's length, always.
    if ctx.proxy_body is not None:
        return str(len(ctx.proxy_body))
    if ctx.proxy_chunked:
        return ""
    if ctx.request.body_stream is not None:  # read unbuffered: the client's Content-Length
        return str(len(ctx.request.body_stream))
    if ctx.subrequest:
        # An auth_request subrequest shares the client's headers before any of its body is read
        # (r->headers_in.content_length_n): the Content-Length as it came, body passed or not (hence
        # the documented proxy_set_header Content-Length ""), none for a chunked body.
        value = "" if ctx.request.length_added else _header(ctx, b"content-length").strip(" \t")
        return str(int(value)) if value.isdigit() else ""
    for name, _ in ctx.request.headers:
        # The length first (14, 17): every proxied request renders this, mostly for headers of neither name.
        if (len(name) == 14 or len(name) == 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            return str(len(ctx.request.body))
    return ""


def _content_length(ctx: RequestContext) -> str:
    """The Content-Length header; for a chunked body, the length nginx has read by then."""
    value = _header(ctx, b"content-length")
    if value:
        return value
    if _header(ctx, b"transfer-encoding"):
        # Measured against nginx 1.22: a `return` discards the body first and reads "0"; a proxied
        # request has the whole body buffered.
        return str(len(ctx.request.body)) if ctx.proxy_host else "0"
    return ""


def _grpc_internal_trailers(ctx: RequestContext) -> str:
    for name, value in ctx.request.headers:
        if len(name) == 2 and name.lower() == b"te":
            if any(token.strip().split(b";")[0].strip().lower() == b"trailers" for token in value.split(b",")):
                return "trailers"
            # nginx keeps one TE header (r->headers_in.te is the first): later ones are not looked at
            return ""
    return ""


def _request_id(ctx: RequestContext) -> str:
    """16 random bytes in hex, the same for the whole request (nginx: RAND_bytes)."""
    variables = ctx.vars
    if variables is None:
        variables = ctx.vars = {}
    value = variables.get(" request_id")  # a key no config variable can have
    if value is None:
        value = variables[" request_id"] = os.urandom(16).hex()
    return value


def _msec(ctx: RequestContext) -> str:
    now = time.time()
    return f"{int(now)}.{int(now * 1000) % 1000:03d}"


def _time_local(ctx: RequestContext) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())


def _time_iso8601(ctx: RequestContext) -> str:
    local = time.localtime()
    offset = time.strftime("%z", local)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + offset[:3] + ":" + offset[3:]


def _document_root(ctx: RequestContext) -> str:
    where = ctx.location if ctx.location is not None else ctx.server
    return where.config.root


def _request_filename(ctx: RequestContext) -> str:
    return _document_root(ctx) + ctx.uri


def _realpath_root(ctx: RequestContext) -> str:
    return os.path.realpath(_document_root(ctx))



def _remote_user(ctx: RequestContext) -> str:
    """The user of a Basic Authorization header, whether or not auth_basic checks it (as nginx)."""
    credentials = basic_credentials(ctx.request.headers)
    return credentials[0].decode("latin-1") if credentials is not None else ""

_HOSTNAME: Final = socket.gethostname()


_SIMPLE: Final[dict[str, Getter]] = {
    "host": lambda ctx: ctx.host,
    "uri": lambda ctx: ctx.uri,
    "document_uri": lambda ctx: ctx.uri,
    "request_uri": lambda ctx: ctx.request_uri,
    "args": lambda ctx: ctx.args,
    "query_string": lambda ctx: ctx.args,
    "is_args": lambda ctx: "?" if ctx.args else "",
    "request_method": lambda ctx: (ctx.method or ctx.request.method).decode("latin-1"),
    "scheme": lambda ctx: ctx.request.scheme,
    "https": lambda ctx: "on" if ctx.request.scheme == "https" else "",
    # nginx's ssl module: "" on a plain connection (the variables are "not found" there).
    "ssl_protocol": lambda ctx: ctx.request.tls.protocol if ctx.request.tls is not None else "",
    "ssl_cipher": lambda ctx: ctx.request.tls.cipher if ctx.request.tls is not None else "",
    "ssl_server_name": lambda ctx: ctx.request.tls.server_name if ctx.request.tls is not None else "",
    "ssl_session_reused": lambda ctx: ("r" if ctx.request.tls.session_reused else ".")
    if ctx.request.tls is not None else "",
    "server_name": lambda ctx: ctx.server.primary_name,
    "server_port": lambda ctx: str(ctx.request.local_addr[1]),
    "server_addr": lambda ctx: ctx.request.local_addr[0],
    "remote_addr": lambda ctx: ctx.request.client_addr[0],
    "binary_remote_addr": lambda ctx: ctx.request.client_addr[0],
    # Empty for a port 0: a unix client, or an address real_ip took from a header without a port.
    "remote_port": lambda ctx: str(ctx.request.client_addr[1]) if ctx.request.client_addr[1] else "",
    "realip_remote_addr": lambda ctx: (ctx.realip_from or ctx.request.client_addr)[0],
    "remote_user": _remote_user,
    "realip_remote_port": lambda ctx: str((ctx.realip_from or ctx.request.client_addr)[1]),
    "server_protocol": lambda ctx: "HTTP/" + ctx.request.version.decode(),
    "request": lambda ctx: b" ".join((ctx.request.method, ctx.request.target, b"HTTP/" + ctx.request.version)).decode("latin-1"),
    "content_type": lambda ctx: _header(ctx, b"content-type"),
    "content_length": _content_length,
    "proxy_host": lambda ctx: ctx.proxy_host,
    "request_id": _request_id,
    "document_root": _document_root,
    "request_filename": _request_filename,
    "realpath_root": _realpath_root,
    "hostname": lambda ctx: _HOSTNAME,
    "pid": lambda ctx: str(os.getpid()),
    "msec": _msec,
    "time_local": _time_local,
    "time_iso8601": _time_iso8601,
    "proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
    # nginx's limit modules (newproxy/engine/limits.py): "" until a limit applied to the request.
    "limit_req_status": lambda ctx: REQ_STATUS_NAMES[ctx.limit_req_status],
    "limit_conn_status": lambda ctx: CONN_STATUS_NAMES[ctx.limit_conn_status],
    "limit_rate": limit_rate_variable,
    "proxy_internal_body_length": _body_length,
    # "chunked" when a chunked body goes upstream as nginx streams it (proxy_request_buffering off).
    "proxy_internal_chunked": lambda ctx: "chunked" if ctx.proxy_chunked else "",
    # ngx_http_grpc_module's: "trailers" when the client's TE lists that token (grpc_pass's default TE).
    "grpc_internal_trailers": _grpc_internal_trailers,
    # ngx_http_stub_status_module's, summed over every worker (newproxy/stats.py).
    "connections_active": lambda ctx: str(stats.connections()[0]),
    "connections_reading": lambda ctx: str(stats.connections()[1]),
    "connections_writing": lambda ctx: str(stats.connections()[2]),
    "connections_waiting": lambda ctx: str(stats.connections()[3]),
}

_PREFIXED: Final[dict[str, Callable[[str], Getter]]] = {
    "http_": _http_getter,
    "arg_": _arg_getter,
    "cookie_": _cookie_getter,
}
# $connection, $request_time, $upstream_*...: read from the request's record (newproxy/engine/requestfacts.py).
_SIMPLE.update(requestfacts.SIMPLE)
_PREFIXED.update(requestfacts.PREFIXED)

KNOWN_VARIABLES: Final[frozenset[str]] = frozenset(_SIMPLE)
KNOWN_PREFIXES: Final[tuple[str, ...]] = tuple(_PREFIXED)


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

    get.is_capture = True  # type: ignore[attr-defined]
    return get


def _named_getter(name: str) -> Getter:
    """A variable made by ``set`` or by a named capture: "" until something sets it."""

    def get(ctx: RequestContext) -> str:
        variables = ctx.vars
        return variables.get(name, "") if variables is not None else ""

    return get


def variable_getter(name: str, capture_names: frozenset[str] = frozenset(),
                    computed: Mapping[str, Getter] | None = None) -> Getter:
    """``capture_names``: the names of the config's own variables (named captures and ``set`` targets);
    ``computed``: getters of the variables the config computes (map, split_clients)."""
    if name.isdigit():
        return _capture_getter(int(name))
    if computed is not None:
        getter = computed.get(name)
        if getter is not None:
            return getter
    if name in capture_names and name not in _SIMPLE:
        return _named_getter(name)
    if name in _SIMPLE:
        return _SIMPLE[name]
    for prefix, factory in _PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return factory(name[len(prefix):])
    raise UnknownVariable(f'unknown "{name}" variable')


# $name, ${name}; nginx variable names are [A-Za-z0-9_].
_VARIABLE: Final = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def variable_names(template: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in _VARIABLE.finditer(template)]


class Template:
    """A compiled complex value."""

    __slots__ = ("text", "parts", "constant", "single")

    def __init__(self, text: str, capture_names: frozenset[str] = frozenset(),
                 computed: Mapping[str, Getter] | None = None) -> None:
        self.text = text
        parts: list[str | Getter] = []
        pos = 0
        for match in _VARIABLE.finditer(text):
            if match.start() > pos:
                parts.append(text[pos:match.start()])
            parts.append(variable_getter(match.group(1) or match.group(2), capture_names, computed))
            pos = match.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts = tuple(parts)
        self.constant = text if all(isinstance(p, str) for p in parts) else None
        # "$remote_addr" alone, the most common form, renders with one call and no join.
        only = parts[0] if len(parts) == 1 else None
        self.single: Getter | None = None if only is None or isinstance(only, str) else only

    def constant_given(self, name: str, value: str) -> str | None:
        """The template's value when the variable ``name`` (a built-in one) is the only one it uses and
        is known to be ``value`` (fixed per location, as $proxy_host when proxy_pass has no
        variables): rendered once at load instead of per request. None when other variables remain."""
        getter = _SIMPLE[name]
        if not all(isinstance(part, str) or part is getter for part in self.parts):
            return None
        return "".join(part if isinstance(part, str) else value for part in self.parts)

    def render(self, ctx: RequestContext) -> str:
        if self.constant is not None:
            return self.constant
        if self.single is not None:
            return self.single(ctx)
        return "".join([p if isinstance(p, str) else p(ctx) for p in self.parts])
