"""nginx's log module without the files: log_format compiled to a line program, and the per-request
facts (``LogRecord``) the IO layer fills for it.

A format compiles once, at load, to a tuple of ops: literal bytes, or functions of the record that
return the bytes of one variable already escaped. nginx's rules, as ngx_http_log_module.c has them:

- the log module's own variables ($status, $body_bytes_sent, $bytes_sent, $request_length,
  $request_time, $msec, $time_local, $time_iso8601, $pipe) are written as they are, never escaped;
- any other variable is escaped per the format's ``escape``: ``default`` writes ``\\xHH`` for '"',
  '\\', bytes below 0x20 and from 0x7f; ``json`` escapes '"' and '\\' with a backslash, \\n \\r \\t \\b \\f,
  other control bytes as \\u00XX; ``none`` copies;
- a variable that is "not found" (no such header, no upstream, no query string...) is "-" with the
  default escape and nothing with json/none; a variable found with an empty value is empty.

Values are Python ``str`` holding bytes as latin-1 (as the engine keeps them), so escaping works on
the bytes the client sent.
"""

from __future__ import annotations

import binascii
import re
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newproxy.config import (
    AccessLogConfig,
    IfStep,
    LocationConfig,
    NewproxyConfig,
    RewriteStep,
    ServerConfig,
)
from newproxy.engine.requestfacts import (join_attempts, seconds as _seconds, upstream_cookie_value,
                                         upstream_header_value, upstream_seconds)
from newproxy.engine.variables import Getter, Template, UnknownVariable, header_matches, variable_getter

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext
    from newproxy.engine.types import Request, TlsInfo

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')


class LogFormatError(ValueError):
    """A log_format or access_log newproxy cannot compile: ``file:line: message`` when the source is known."""


class LogRecord:
    """What one request did, as the log phase needs it. The IO layer creates one per request (only
    when some access_log is configured), fills it as the request goes, and hands it to the writer
    when the response is complete.

    ``upstream``: one entry per upstream attempt, ``[addr, status, start, connect, header, response,
    bytes_received, response_length, bytes_sent, read, written]`` ($upstream_bytes_received: the bytes
    read with its head, then, once a relayed answer is over, all it read; $upstream_response_length:
    the bytes read after the head, then; $upstream_bytes_sent: ``written`` once the attempt is over;
    ``read``/``written``: the bytes read from and written to the peer so far)
    (times in seconds, -1 unset; status 0 unknown); a ``None`` entry separates the attempts of two
    proxied passes (an error_page that proxies again), written " : " as nginx does."""

    __slots__ = ("body_length", "client_addr", "conn_id", "conn_requests", "ctx", "cut_line", "cut_protocol", "head",
                 "header_size",
                 "line_only", "local_addr", "pipe", "request", "request_length", "sent", "start", "status",
                 "upstream")

    def __init__(self, conn_id: int, client_addr: tuple[str, int], local_addr: tuple[str, int]) -> None:
        self.start = time.time()
        self.conn_id = conn_id
        self.client_addr = client_addr
        self.local_addr = local_addr
        self.conn_requests = 0
        self.pipe = False
        self.request: Request | None = None
        self.ctx: RequestContext | None = None
        self.status = 0
        self.sent = 0
        self.header_size = 0
        self.head = b""  # the response head as sent: $sent_http_*
        self.request_length = 0  # the request line and headers as received
        self.body_length = 0  # the body as received (chunk framing included)
        # nginx refused the request line (a bad URI) before reading the headers: they are not logged.
        self.line_only = False
        # A head that timed out inside its request line: what arrived of the line, nginx's $request
        # then (and nothing of the request is known: $request_length 0, no method, no protocol).
        self.cut_line: bytes | None = None
        self.cut_protocol = False  # ... and its protocol had begun ($server_protocol "", not "-")
        self.upstream: list[list | None] | None = None  # type: ignore[type-arg]

    def wrote(self, data: bytes) -> None:
        """Bytes went to the client for this request; the first final head gives $status."""
        self.sent += len(data)
        if not self.header_size and data.startswith(b"HTTP/") and data[9:10] != b"1":
            end = data.find(b"\r\n\r\n")
            self.header_size = end + 4 if end >= 0 else len(data)
            self.head = data[:self.header_size]
            try:
                self.status = int(data[9:12])
            except ValueError:
                pass

    def upstream_attempt(self, addr: str) -> list:  # type: ignore[type-arg]
        """A new upstream attempt; the returned entry is filled in by the upstream client."""
        if self.upstream is None:
            self.upstream = []
        entry = [addr, 0, time.monotonic(), -1.0, -1.0, -1.0, 0, 0, 0, 0, 0]
        self.upstream.append(entry)
        return entry


# -- escaping -------------------------------------------------------------------------------

_DEFAULT_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\xff]')
_JSON_UNSAFE = re.compile(r'[\x00-\x1f"\\]')
_JSON_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", '"': '\\"', "\\": "\\\\"}


def escape_default(value: str) -> str:
    return _DEFAULT_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02X}", value)


def escape_json(value: str) -> str:
    return _JSON_UNSAFE.sub(lambda m: _JSON_SHORT.get(m.group()) or f"\\u{ord(m.group()):04X}", value)


# -- variables --------------------------------------------------------------------------------
# A log getter returns the value as str, or None when nginx would call it "not found".
LogGetter = Callable[[LogRecord], "str | None"]


def _request_time(rec: LogRecord) -> str:
    return _seconds(max(int((time.time() - rec.start) * 1000), 0))


def _body_bytes_sent(rec: LogRecord) -> str:
    return str(max(rec.sent - rec.header_size, 0))


def _server_protocol(rec: LogRecord) -> str | None:
    req = rec.request
    if req is None:
        return None
    if rec.cut_line is not None:  # a cut request line: "" once its "H" was read (nginx's http_protocol.data)
        return "" if rec.cut_protocol else None
    return "HTTP/" + req.version.decode("latin-1")


def _request_line(rec: LogRecord) -> str | None:
    req = rec.request
    if rec.cut_line is not None:
        return rec.cut_line.decode("latin-1")
    if req is None or not req.target:  # an HTTP/2 request without :path has no request line
        return None
    return f'{req.method.decode("latin-1")} {req.target.decode("latin-1")} HTTP/{req.version.decode("latin-1")}'


# The log module's own variables: written unescaped (ngx_http_log_vars).
_OWN: dict[str, Callable[[LogRecord], str]] = {
    "pipe": lambda rec: "p" if rec.pipe else ".",
    "time_local": lambda rec: _clock()[1],
    "time_iso8601": lambda rec: _clock()[2],
    "msec": lambda rec: _msec(),
    "request_time": _request_time,
    "status": lambda rec: f"{rec.status:03d}",
    "bytes_sent": lambda rec: str(rec.sent),
    "body_bytes_sent": _body_bytes_sent,
    "request_length": lambda rec: str(_request_length(rec)),
}


def _request_length(rec: LogRecord) -> int:
    """nginx counts the body only where it reads it (proxied requests); a body it discards (return,
    error pages, static files) is not counted. A request refused at its line: the line alone."""
    if rec.cut_line is not None:
        return 0
    if rec.line_only and rec.request is not None:
        req = rec.request
        return len(req.method) + len(req.target) + 12
    ctx = rec.ctx
    if ctx is not None and ctx.proxy_host:
        return rec.request_length + rec.body_length
    return rec.request_length


_CLOCK: list = [-1, "", ""]  # type: ignore[type-arg]  # [second, $time_local, $time_iso8601]


def _clock() -> list:  # type: ignore[type-arg]
    """$time_local and $time_iso8601, formatted once per second (nginx caches its clock too)."""
    now = int(time.time())
    clock = _CLOCK
    if clock[0] != now:
        local = time.localtime(now)
        offset = time.strftime("%z", local)
        clock[1] = time.strftime("%d/%b/%Y:%H:%M:%S ", local) + offset
        clock[2] = time.strftime("%Y-%m-%dT%H:%M:%S", local) + offset[:3] + ":" + offset[3:]
        clock[0] = now
    return clock


def _msec() -> str:
    now = time.time()
    return f"{int(now)}.{int(now * 1000) % 1000:03d}"


def _tls(rec: LogRecord) -> TlsInfo | None:
    """The connection's TLS session (None: plain, or no request parsed)."""
    return rec.request.tls if rec.request is not None else None  # type: ignore[return-value]


def _header_value(rec: LogRecord, lower: bytes) -> str | None:
    req = rec.request
    if req is None or rec.line_only:
        return None
    if lower in (b"cookie", b"x-forwarded-for"):  # the two nginx joins
        found = [v for k, v in req.headers if k.lower() == lower]
        if not found:
            return None
        return ("; " if lower == b"cookie" else ", ").join(v.decode("latin-1") for v in found)
    size = len(lower)
    for key, value in req.headers:
        if len(key) == size and header_matches(key, lower):
            return value.decode("latin-1")
    return None


def _http(name: str) -> LogGetter:
    lower = name.replace("_", "-").lower().encode("latin-1")
    return lambda rec: _header_value(rec, lower)


def _sent_http(name: str) -> LogGetter:
    """$sent_http_NAME: the header as the response head sent it (the first one of that name)."""
    lower = name.replace("_", "-").lower().encode("latin-1")

    def get(rec: LogRecord) -> str | None:
        for line in rec.head.split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.lower() == lower:
                return value.strip(b" \t").decode("latin-1")
        return None

    return get


def _remote_user(rec: LogRecord) -> str | None:
    """ngx_http_auth_basic_user: the user of an "Authorization: Basic" header, with or without
    auth_basic; not found when there is none or it does not decode."""
    value = _header_value(rec, b"authorization")
    if value is None or len(value) < 6 or value[:6].lower() != "basic ":
        return None
    token = value[6:].lstrip(" ")
    try:
        decoded = binascii.a2b_base64(token.encode("latin-1"), strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(b":")
    return user.decode("latin-1") if sep else None


def _binary_addr(rec: LogRecord) -> str:
    addr = rec.client_addr[0]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        return socket.inet_pton(family, addr).decode("latin-1")
    except OSError:
        return addr


def _upstream_join(rec: LogRecord, field: int) -> str | None:
    if not rec.upstream:
        return None
    if field == 0:
        return join_attempts(rec.upstream, field, str)
    if field == 1:
        return join_attempts(rec.upstream, field, lambda value: str(value) if value else "-")
    if field >= 6:  # byte counts
        return join_attempts(rec.upstream, field, str)
    return join_attempts(rec.upstream, field, upstream_seconds)


def _args(rec: LogRecord) -> str | None:
    ctx = rec.ctx
    if ctx is None or rec.line_only:
        return None
    # Measured against nginx 1.22: empty args ("/x?" too) are "not found".
    return ctx.args or None


_LOG_ONLY: dict[str, LogGetter] = {
    "remote_addr": lambda rec: rec.client_addr[0],
    "remote_port": lambda rec: str(rec.client_addr[1]),
    "server_addr": lambda rec: rec.local_addr[0],
    "server_port": lambda rec: str(rec.local_addr[1]),
    "remote_user": _remote_user,
    "binary_remote_addr": _binary_addr,
    "request": _request_line,
    "connection": lambda rec: str(rec.conn_id),
    "connection_requests": lambda rec: str(rec.conn_requests),
    "args": _args,
    "query_string": _args,
    "upstream_addr": lambda rec: _upstream_join(rec, 0),
    "upstream_status": lambda rec: _upstream_join(rec, 1),
    "upstream_connect_time": lambda rec: _upstream_join(rec, 3),
    "upstream_header_time": lambda rec: _upstream_join(rec, 4),
    "upstream_response_time": lambda rec: _upstream_join(rec, 5),
    "upstream_bytes_received": lambda rec: _upstream_join(rec, 6),
    "upstream_response_length": lambda rec: _upstream_join(rec, 7),
    "upstream_bytes_sent": lambda rec: _upstream_join(rec, 8),
    "gzip_ratio": lambda rec: None,  # set by the gzip filter when it compressed; newproxy's does not yet
    "scheme": lambda rec: rec.request.scheme if rec.request is not None else None,
    "server_protocol": _server_protocol,
    "request_method": lambda rec: (
        ((rec.ctx.method if rec.ctx is not None and rec.ctx.method else None) or rec.request.method).decode("latin-1")
        if rec.request is not None and rec.cut_line is None else None),
    # A head cut inside its request line has no URI yet ("-"); else the request's $uri.
    "uri": lambda rec: rec.ctx.uri if rec.ctx is not None and rec.cut_line is None else None,
    "document_uri": lambda rec: rec.ctx.uri if rec.ctx is not None and rec.cut_line is None else None,
    "request_uri": lambda rec: rec.ctx.request_uri if rec.ctx is not None and not rec.line_only else None,
    "content_type": lambda rec: _header_value(rec, b"content-type"),
    # nginx's ssl module: "not found" ("-") on a plain connection; $https is "" there.
    "ssl_protocol": lambda rec: _tls(rec).protocol if _tls(rec) is not None else None,
    "ssl_cipher": lambda rec: _tls(rec).cipher if _tls(rec) is not None else None,
    "ssl_server_name": lambda rec: (_tls(rec).server_name or None) if _tls(rec) is not None else None,  # no SNI: "-"
    "ssl_session_reused": lambda rec: ("r" if _tls(rec).session_reused else ".") if _tls(rec) is not None else None,
    "https": lambda rec: "on" if _tls(rec) is not None else "",
}

_LOG_PREFIXED: dict[str, Callable[[str], LogGetter]] = {"http_": _http, "sent_http_": _sent_http}


def _from_context(getter: Getter, empty_is_missing: bool) -> LogGetter:
    """An engine variable (newproxy/engine/variables.py), read from the request's context."""

    def get(rec: LogRecord) -> str | None:
        ctx = rec.ctx
        if ctx is None:
            return None
        value = getter(ctx)
        return None if empty_is_missing and not value else value

    return get


def log_getter(name: str, captures: frozenset[str], computed: dict[str, Getter]) -> LogGetter:
    getter = _LOG_ONLY.get(name)
    if getter is not None:
        return getter
    for prefix, found in (("upstream_http_", upstream_header_value), ("upstream_cookie_", upstream_cookie_value)):
        if name.startswith(prefix) and len(name) > len(prefix):
            value = found(name[len(prefix):])
            return lambda rec: value(rec.ctx) if rec.ctx is not None else None  # None: "-"
    for prefix, factory in _LOG_PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return factory(name[len(prefix):])
    # $arg_* and $cookie_* are "not found" when absent; an unset `set` variable too.
    missing = name.startswith(("arg_", "cookie_")) or name == "content_length" or (
        name in captures and name not in computed)
    return _from_context(variable_getter(name, captures, computed), missing)


# -- formats ------------------------------------------------------------------------------------

Op = "bytes | Callable[[LogRecord], bytes]"
_NAME = re.compile(r"[A-Za-z0-9_]*")


def _own_op(fn: Callable[[LogRecord], str]) -> Callable[[LogRecord], bytes]:
    return lambda rec: fn(rec).encode("latin-1")


def _var_op(getter: LogGetter, escape: str) -> Callable[[LogRecord], bytes]:
    if escape == "json":
        def op(rec: LogRecord) -> bytes:
            value = getter(rec)
            return escape_json(value).encode("latin-1") if value else b""
    elif escape == "none":
        def op(rec: LogRecord) -> bytes:
            value = getter(rec)
            return value.encode("latin-1") if value else b""
    else:
        def op(rec: LogRecord) -> bytes:
            value = getter(rec)
            if value is None:
                return b"-"
            return escape_default(value).encode("latin-1")
    return op


class LogProgram:
    """A compiled log_format: ``render`` joins the ops into one line (with its newline)."""

    __slots__ = ("fields", "name", "ops")

    def __init__(self, name: str, ops: tuple, fields: tuple[str, ...]) -> None:  # type: ignore[type-arg]
        self.name = name
        self.ops = ops
        self.fields = fields  # the variable names, in order (for tests that mask fields by position)

    def render(self, rec: LogRecord) -> bytes:
        return b"".join([op if op.__class__ is bytes else op(rec) for op in self.ops]) + b"\n"


def compile_format(name: str, text: str, escape: str, captures: frozenset[str],
                   computed: dict[str, Getter]) -> LogProgram:
    """ngx_http_log_compile_format: "$name" and "${name}" are variables; the rest is literal."""
    ops: list = []  # type: ignore[type-arg]
    fields: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            literal.append(ch)
            i += 1
            continue
        i += 1
        bracket = text.startswith("{", i)
        if bracket:
            i += 1
        var = _NAME.match(text, i).group()  # type: ignore[union-attr]
        i += len(var)
        if bracket:
            if not text.startswith("}", i):
                raise LogFormatError(f'the closing bracket in "{var}" variable is missing')
            i += 1
        if not var:
            raise LogFormatError(f'invalid parameter "{text[max(i - 1, 0):]}"')
        if literal:
            ops.append("".join(literal).encode("latin-1"))
            literal = []
        fields.append(var)
        own = _OWN.get(var)
        if own is not None:
            ops.append(_own_op(own))
            continue
        try:
            ops.append(_var_op(log_getter(var, captures, computed), escape))
        except UnknownVariable as exc:
            raise LogFormatError(str(exc)) from None
    if literal:
        ops.append("".join(literal).encode("latin-1"))
    return LogProgram(name, tuple(ops), tuple(fields))


class AccessLogSpec:
    """One access_log, compiled: where, in which format, buffered how, under which condition."""

    __slots__ = ("buffer", "condition", "flush", "path", "program")

    def __init__(self, config: AccessLogConfig, program: LogProgram, condition: Template | None) -> None:
        self.path = config.path
        self.program = program
        self.buffer = config.buffer
        self.flush = config.flush
        self.condition = condition

    def wanted(self, rec: LogRecord) -> bool:
        """``if=``: skipped when the condition is empty or "0" (a request with no context: kept)."""
        condition = self.condition
        if condition is None or rec.ctx is None:
            return True
        value = condition.render(rec.ctx)
        return value != "" and value != "0"


def _located(message: str, source: str | None) -> str:
    return f"{source}: {message}" if source else message


class LogPlan:
    """Every access_log of a config, compiled, and which apply where: keyed by the id() of the
    ServerConfig/LocationConfig objects (kept alive by the config the engine holds)."""

    def __init__(self, config: NewproxyConfig, captures: frozenset[str], computed: dict[str, Getter]) -> None:
        self.captures = captures
        self.computed = computed
        self.programs: dict[str, LogProgram] = {}
        seen: set[str] = set()
        for fmt in config.log_formats:
            if fmt.name in seen:
                raise LogFormatError(_located(f'duplicate "log_format" name "{fmt.name}"', fmt.source))
            seen.add(fmt.name)
            try:
                self.programs[fmt.name.lower()] = compile_format(fmt.name, fmt.format, fmt.escape, captures, computed)
            except LogFormatError as exc:
                raise LogFormatError(_located(str(exc), fmt.source)) from None
        if "combined" not in self.programs:
            self.programs["combined"] = compile_format("combined", COMBINED, "default", captures, computed)
        self.by_block: dict[int, tuple[AccessLogSpec, ...]] = {}
        self.specs: list[AccessLogSpec] = []
        for server in config.servers:
            self._bind(server)
            self._steps(server.rewrite)
            for location in server.locations:
                self._location(location)

    @property
    def enabled(self) -> bool:
        return bool(self.specs)

    def _bind(self, block: ServerConfig | LocationConfig) -> None:
        logs = block.access_logs
        specs = tuple(self._spec(log) for log in logs)
        self.by_block[id(block)] = specs
        self.specs.extend(specs)

    def _spec(self, log: AccessLogConfig) -> AccessLogSpec:
        program = self.programs.get(log.format.lower())
        if program is None:
            raise LogFormatError(_located(f'unknown log format "{log.format}"', log.source))
        condition = None
        if log.condition is not None:
            try:
                condition = Template(log.condition, self.captures, self.computed)
            except UnknownVariable as exc:
                raise LogFormatError(_located(str(exc), log.source)) from None
        return AccessLogSpec(log, program, condition)

    def _location(self, location: LocationConfig) -> None:
        self._bind(location)
        self._steps(location.rewrite)
        for child in location.locations:
            self._location(child)

    def _steps(self, steps: list[RewriteStep]) -> None:
        for step in steps:
            if isinstance(step, IfStep):
                if step.location is not None:
                    self._location(step.location)
                self._steps(step.steps)

    def for_context(self, ctx: RequestContext | None, server_config: object | None) -> tuple[AccessLogSpec, ...]:
        """The logs of the block the request ended in: its location, else its server."""
        if ctx is not None:
            block = ctx.location.config if ctx.location is not None else ctx.server.config
        else:
            block = server_config
        if block is None:
            return ()
        return self.by_block.get(id(block), ())
