"""Variables read from what the IO layer records about a request as it goes (the access log's
``LogRecord``, ``Request.log``): $connection, $connection_requests, $request_length, $request_time
and the $upstream_* variables, as nginx evaluates them in the middle of a request (a ``return``, a
``proxy_set_header``, an ``add_header`` on the way out), not at the log phase.

The front ends make a record only when something reads it: an access_log, /metrics, or a config
using one of these variables (``uses_request_facts``, Engine.request_facts); otherwise no request
pays for them. Without a record (the engine driven directly, as unit tests do) the values are what
a fresh request on a fresh connection would read.

nginx's values, from ngx_http_variables.c and ngx_http_upstream.c (1.22), measured against the
binary by tests/test_differential_request_facts.py:

- $connection: the connection's serial number; $connection_requests: the requests it has had so
  far, this one included (over HTTP/2 and HTTP/3, its streams).
- $request_length: the request line and header block as received (HTTP/2: the HEADERS block as
  HPACK-coded), plus the body where nginx read it (a proxied request); a body nginx discards (a
  ``return``, a file) is not counted.
- $request_time: seconds since the request began, with milliseconds ("0.000").
- $upstream_addr/_status/_connect_time/_header_time/_response_time/_bytes_received/
  _response_length/_bytes_sent: one entry per
  upstream attempt, ", " between attempts, " : " between two proxied passes; "" with no upstream
  attempt (not found). At header time the attempt being answered has its status, connect and
  header times and the bytes read with its head (up to proxy_buffer_size), and no response time
  yet ("-": ngx_http_upstream_connect sets it to -1 and only the end of the attempt fills it in).
- $upstream_http_NAME: the first header of the upstream's answer whose name, lower-cased with "-"
  as "_", is NAME; $upstream_cookie_NAME: the value of cookie NAME in its Set-Cookie headers
  (ngx_http_parse_set_cookie_lines: the first line starting with NAME, spaces, "="). Both read
  the answer being relayed (RequestContext.upstream_answer, set by the proxied answer's headers
  filter); "" before or without one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newproxy.config import NewproxyConfig
    from newproxy.engine.context import RequestContext

Getter = Callable[["RequestContext"], str]

# The names whose values need a record (the upstream ones read its attempts).
_FACT = re.compile(r"\$\{?(connection|connection_requests|request_length|request_time|upstream_[A-Za-z0-9_]+)"
                   r"(?![A-Za-z0-9_])", re.IGNORECASE)


def fact_names(config: NewproxyConfig) -> frozenset[str]:
    """The variables of this module that values of ``config`` name (lower case). Read off the whole
    config once at load: a literal "$connection" text only costs the records, never a wrong value."""
    return frozenset(match.group(1).lower() for match in _FACT.finditer(config.model_dump_json()))


def uses_request_facts(names: frozenset[str]) -> bool:
    """The front ends keep a record per request even without an access_log (Engine.request_facts)."""
    return bool(names)


def uses_upstream_answer(names: frozenset[str]) -> bool:
    """The proxied answer's headers filter keeps the upstream's headers for $upstream_http_/_cookie_."""
    return any(name.startswith(("upstream_http_", "upstream_cookie_")) for name in names)


def seconds(ms: int) -> str:
    """nginx's "%T.%03M" of a non-negative millisecond count."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def upstream_seconds(value: object) -> str:
    """An upstream attempt's time as nginx prints it: seconds with milliseconds, "-" when not measured."""
    time_taken = float(value)  # type: ignore[arg-type]
    return seconds(max(int(time_taken * 1000), 0)) if time_taken >= 0 else "-"


# What a pass separator (None in the states) reads as where nginx prints it: the zeroed
# ngx_http_upstream_state_t that ngx_http_upstream_init_request pushes for a later pass (no peer,
# status 0, times and byte counts 0).
_ZEROED = ("", 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0)


def join_attempts(states: list, field: int, form: Callable[[object], str]) -> str:  # type: ignore[type-arg]
    """``form`` of each upstream attempt's ``field``, joined as ngx_http_upstream_*_variable join
    them: ", " between attempts, " : " between two proxied passes (None in ``states``). As nginx's
    loop, a separator is skipped, except in the first place: a first pass that made no attempt
    (its upstream name did not resolve) leaves the states empty, so the second pass's separator
    comes first and prints as a zeroed state ("-" status, no address), followed by ", "."""
    parts: list[str] = []
    count = len(states)
    i = 0
    entry = states[0]
    parts.append(form((entry if entry is not None else _ZEROED)[field]))
    while True:
        i += 1
        if i == count:
            break
        entry = states[i]
        if entry is not None:
            parts.append(", ")
        else:
            parts.append(" : ")
            i += 1
            if i == count:
                break
            entry = states[i]
        parts.append(form((entry if entry is not None else _ZEROED)[field]))
    return "".join(parts)


def _connection(ctx: RequestContext) -> str:
    rec = ctx.request.log
    return str(rec.conn_id) if rec is not None else "0"  # type: ignore[attr-defined]


def _connection_requests(ctx: RequestContext) -> str:
    rec = ctx.request.log
    return str(rec.conn_requests) if rec is not None else "1"  # type: ignore[attr-defined]


def _request_length(ctx: RequestContext) -> str:
    rec = ctx.request.log
    if rec is None:
        return "0"
    # nginx counts the body as it reads it, and only a proxied request's body is read (buffered
    # before the upstream request is made); the others are discarded uncounted.
    if ctx.proxy_host:
        return str(rec.request_length + rec.body_length)  # type: ignore[attr-defined]
    return str(rec.request_length)  # type: ignore[attr-defined]


def _request_time(ctx: RequestContext) -> str:
    rec = ctx.request.log
    if rec is None:
        return "0.000"
    return seconds(max(int((time.time() - rec.start) * 1000), 0))  # type: ignore[attr-defined]


def _attempts(field: int, form: Callable[[object], str]) -> Getter:
    """A $upstream_* variable: ``form`` of each attempt's ``field`` (LogRecord.upstream_attempt's
    list), joined as ngx_http_upstream_*_variable join them."""

    def get(ctx: RequestContext) -> str:
        rec = ctx.request.log
        states = rec.upstream if rec is not None else None  # type: ignore[attr-defined]
        return join_attempts(states, field, form) if states else ""

    return get


def _bytes(value: object) -> str:
    return str(value)


def _upstream_header(name: str) -> Getter:
    """$upstream_http_NAME: ngx_http_variable_unknown_header over the upstream's headers."""
    value = upstream_header_value(name)
    return lambda ctx: value(ctx) or ""


def upstream_header_value(name: str) -> Callable[[RequestContext], str | None]:
    """$upstream_http_NAME's value; None: not found (an access log writes "-")."""
    wanted = name.lower().encode("latin-1")

    def get(ctx: RequestContext) -> str | None:
        answer = ctx.upstream_answer
        if answer is None:
            return None
        for key, value in answer[1]:
            if len(key) == len(wanted) and key.lower().replace(b"-", b"_") == wanted:
                return value.decode("latin-1")
        return None

    return get


def _upstream_cookie(name: str) -> Getter:
    """$upstream_cookie_NAME: ngx_http_parse_set_cookie_lines over the upstream's Set-Cookie lines."""
    value = upstream_cookie_value(name)
    return lambda ctx: value(ctx) or ""


def upstream_cookie_value(name: str) -> Callable[[RequestContext], str | None]:
    """$upstream_cookie_NAME's value; None: not found (an access log writes "-")."""
    wanted = name.lower().encode("latin-1")
    size = len(wanted)

    def get(ctx: RequestContext) -> str | None:
        answer = ctx.upstream_answer
        if answer is None:
            return None
        for key, value in answer[1]:
            if len(key) != 10 or key.lower() != b"set-cookie" or size >= len(value) \
                    or value[:size].lower() != wanted:
                continue
            pos, end = size, len(value)
            while pos < end and value[pos] == 0x20:
                pos += 1
            if pos == end or value[pos] != 0x3D:  # "=": else an invalid line, skipped
                continue
            pos += 1
            while pos < end and value[pos] == 0x20:
                pos += 1
            last = value.find(b";", pos)
            return value[pos:last if last >= 0 else end].decode("latin-1")
        return None

    return get


SIMPLE: dict[str, Getter] = {
    "connection": _connection,
    "connection_requests": _connection_requests,
    "request_length": _request_length,
    "request_time": _request_time,
    "upstream_addr": _attempts(0, str),
    "upstream_status": _attempts(1, lambda status: str(status) if status else "-"),
    "upstream_connect_time": _attempts(3, upstream_seconds),
    "upstream_header_time": _attempts(4, upstream_seconds),
    "upstream_response_time": _attempts(5, upstream_seconds),
    "upstream_bytes_received": _attempts(6, _bytes),
    "upstream_response_length": _attempts(7, _bytes),
    "upstream_bytes_sent": _attempts(8, _bytes),
}

PREFIXED: dict[str, Callable[[str], Getter]] = {
    "upstream_http_": _upstream_header,
    "upstream_cookie_": _upstream_cookie,
}
