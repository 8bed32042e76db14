"""nginx's headers filter (ngx_http_headers_filter_module): ``expires``, ``add_header`` and
``add_trailer`` for every response a location sends (files, return, redirects, error pages, proxied).

What nginx does, and this module mirrors (measured against nginx 1.22 by
tests/test_differential_headers.py):

- The filter runs after not_modified (so a 304 gets the headers; a 412 is made before it and gets
  only ``always`` ones) and before range (a 206 was a 200 when it ran, and the range filter's
  Accept-Ranges/Content-Range come after the added headers; a 416 keeps what the filter added to
  the 200, minus ETag/Last-Modified, and then passes the filter again as a 416). A response whose
  status is not one of ``SAFE_STATUSES`` gets only the ``always`` headers, and no ``expires``.
- Errors before a server is chosen (bad request line or Host) get the default server's.
- ``expires`` first: it replaces the value of an ``Expires`` header already in the list (a proxied
  one) in place, or adds one; likewise the first ``Cache-Control`` (the others are dropped).
- Then each ``add_header`` in order, appended after the headers nginx writes itself. An empty value
  adds nothing. ``Cache-Control`` and ``Link`` are appended too; ``ETag`` and ``Last-Modified``
  replace the response's own (in place when it is in the list, as a proxied one is) and an empty
  value removes it.
- ``add_trailer`` (``HeaderProgram.trailer_lines``): trailers go only with chunked encoding, and
  nginx's chunked filter makes an HTTP/1.1 body chunked (dropping Content-Length) when a trailer
  applies to the status; not for HEAD, 204, 304 or HTTP/1.0. Empty values send no line.

A location with none of these directives has no program (``None``): no cost per response.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from newproxy.engine.types import FileResponse, Response
from newproxy.engine.variables import Template

_Answer = TypeVar("_Answer", bound="Response | FileResponse")  # filter_answer changes an answer in place

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext

SAFE_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

_MAX_INT = 2**63 - 1
_EPOCH = (b"Thu, 01 Jan 1970 00:00:01 GMT", b"no-cache")
_MAX = (b"Thu, 31 Dec 2037 23:55:55 GMT", b"max-age=315360000")


def parse_time(text: str) -> int | None:
    """ngx_parse_time(value, is_sec=1): seconds, or None when nginx would reject the value."""
    units = {"y": (1, 31536000), "M": (2, 2592000), "w": (3, 604800), "d": (4, 86400), "h": (5, 3600),
             "m": (6, 60), "s": (7, 1), " ": (7, 1)}
    step = 0
    value = total = 0
    valid = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if "0" <= ch <= "9":
            value = value * 10 + ord(ch) - 48
            if value > _MAX_INT:
                return None
            valid = True
            continue
        if ch == "m" and i < n and text[i] == "s":
            return None  # milliseconds are refused where nginx wants seconds
        unit = units.get(ch)
        if unit is None:
            return None
        order, scale = unit
        # nginx: "y" only first; every other unit after a larger one; " " ends a number like "s".
        if (ch == "y" and step > 0) or (ch != "y" and step >= order):
            return None
        step = 8 if ch == " " else order
        value *= scale
        if total > _MAX_INT - value:
            return None
        total += value
        value = 0
        while i < n and text[i] == " ":
            i += 1
    if not valid or total > _MAX_INT - value:
        return None
    return total + value


def parse_expires(text: str, modified: bool) -> tuple[str, int] | str:
    """ngx_http_parse_expires: (mode, seconds) with mode "epoch", "max", "off", "daily" or "time"
    ("access" or "modified" as written before the value), or an error message."""
    if not modified and text in ("epoch", "max", "off"):
        return text, 0
    minus = False
    mode = "time"
    if text.startswith("@"):
        if modified:
            return 'daily time cannot be used with "modified" parameter'
        text, mode = text[1:], "daily"
    elif text.startswith("+"):
        text = text[1:]
    elif text.startswith("-"):
        text, minus = text[1:], True
    seconds = parse_time(text)
    if seconds is None:
        return "invalid value"
    if mode == "daily" and seconds > 24 * 60 * 60:
        return "daily time value must be less than 24 hours"
    return mode, -seconds if minus else seconds


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def http_time(t: int) -> bytes:
    """ngx_http_time: "Thu, 01 Jan 1970 00:00:01 GMT"."""
    tm = time.gmtime(t)
    return b"%s, %02d %s %d %02d:%02d:%02d GMT" % (_DAYS[tm.tm_wday], tm.tm_mday, _MONTHS[tm.tm_mon - 1],
                                                   tm.tm_year, tm.tm_hour, tm.tm_min, tm.tm_sec)


def next_time(when: int, now: int) -> int:
    """ngx_next_time: the next moment (after now) at that time of day, in local time."""
    tm = list(time.localtime(now))
    tm[3], tm[4], tm[5] = when // 3600, when % 3600 // 60, when % 60
    upcoming = int(time.mktime(tuple(tm)))  # type: ignore[arg-type]
    if upcoming - now > 0:
        return upcoming
    tm[2] += 1  # mktime normalises the 32nd of a month
    return int(time.mktime(tuple(tm)))  # type: ignore[arg-type]


@dataclass(slots=True)
class ExpiresRule:
    """``expires``: ``mode`` is "epoch", "max", "access", "modified" or "daily"; ``value`` is a
    template when the value has variables (parsed per request; an invalid or "off" one sets nothing)."""

    mode: str
    seconds: int
    value: Template | None = None
    # A fixed "access" value changes once a second: (second, values) of the last computation.
    _cached: tuple[int, tuple[bytes, bytes] | None] = (-1, None)

    def lines(self, ctx: RequestContext | None, now: int, last_modified: int) -> tuple[bytes, bytes] | None:
        """(Expires line, Cache-Control line), or None when the value sets nothing."""
        if self.value is None and self.mode in ("access", "epoch", "max"):
            second, cached = self._cached
            if second != now:
                values = self.values(ctx, now, last_modified)
                cached = None if values is None else (b"Expires: " + values[0] + b"\r\n",
                                                      b"Cache-Control: " + values[1] + b"\r\n")
                self._cached = (now, cached)
            return cached
        values = self.values(ctx, now, last_modified)
        return None if values is None else (b"Expires: " + values[0] + b"\r\n", b"Cache-Control: " + values[1] + b"\r\n")

    def values(self, ctx: RequestContext | None, now: int, last_modified: int) -> tuple[bytes, bytes] | None:
        """(Expires, Cache-Control) values, as ngx_http_set_expires computes them."""
        mode, seconds, conf_seconds = self.mode, self.seconds, self.seconds
        if self.value is not None:
            if ctx is None:
                return None
            parsed = parse_expires(self.value.render(ctx), mode == "modified")
            if isinstance(parsed, str) or parsed[0] == "off":
                return None
            kind, seconds = parsed
            conf_seconds = 0  # nginx tests its configured time, which a variable value leaves at 0
            if kind in ("epoch", "max", "daily"):
                mode = kind
        if mode == "epoch":
            return _EPOCH
        if mode == "max":
            return _MAX
        if seconds == 0 and mode != "daily":
            return http_time(now), b"max-age=0"
        if mode == "daily":
            expires = next_time(seconds, now)
            max_age = expires - now
        elif mode == "access" or last_modified == -1:
            max_age = seconds
            expires = now + seconds
        else:
            expires = last_modified + seconds
            max_age = expires - now
        if conf_seconds < 0 or max_age < 0:
            return http_time(expires), b"no-cache"
        return http_time(expires), b"max-age=%d" % max_age


# How an add_header line lands (ngx_http_set_headers): appended, or replacing the response's own.
ADD, REPLACE = 0, 1


@dataclass(slots=True)
class AddHeader:
    name: bytes
    lower: bytes
    value: Template
    always: bool
    kind: int  # ADD, or REPLACE for ETag and Last-Modified
    line: bytes | None = None  # the whole line, made at load, for a constant non-empty value appended

    def __post_init__(self) -> None:
        text = self.value.constant
        if text and self.kind == ADD and not any(c in text for c in "\r\n\0"):
            self.line = self.name + b": " + text.encode("latin-1", "replace") + b"\r\n"

    def render(self, ctx: RequestContext | None) -> bytes:
        if self.value.constant is not None:
            text = self.value.constant
        elif ctx is None:
            return b""
        else:
            text = self.value.render(ctx)
        # ngx_http_sanitize_header_value: NUL, CR and LF become spaces.
        if "\r" in text or "\n" in text or "\0" in text:
            text = text.replace("\r", " ").replace("\n", " ").replace("\0", " ")
        return text.encode("latin-1", "replace")


def _find_line(head: bytes, lower_name: bytes, start: int = 0) -> tuple[int, int]:
    """(start, end) of the first header line named ``lower_name`` (case-insensitive) at or after
    ``start`` in ``head``, end including its CRLF; (-1, -1) when there is none."""
    low = head.lower()
    key = b"\r\n" + lower_name + b":"
    at = low.find(key, max(start - 2, 0))
    if at < 0:
        return -1, -1
    end = head.find(b"\r\n", at + 2)
    return at + 2, end + 2


def _replace(head: bytes, lower_name: bytes, line: bytes) -> bytes | None:
    """``head`` with the first ``lower_name`` line replaced by ``line`` (b"" removes it); None if absent."""
    start, end = _find_line(head, lower_name)
    if start < 0:
        return None
    return head[:start] + line + head[end:]


@dataclass(slots=True)
class HeaderProgram:
    """The expires/add_header/add_trailer program of one location, compiled at config load."""

    expires: ExpiresRule | None
    headers: list[AddHeader]
    trailers: list[AddHeader]
    has_always: bool  # some add_header or add_trailer applies whatever the status

    def apply(self, head: bytes, status: int, ctx: RequestContext | None, now: int, last_modified: int = -1,
              fixed_last_modified: bool = False) -> bytes:
        """``head`` (status line and headers, ending with the blank line) with the filter applied.

        ``fixed_last_modified``: the head's Last-Modified is the one nginx's header filter writes at
        its fixed place (a file's), not a list entry (a proxied one): add_header Last-Modified then
        removes it and appends its own."""
        safe = status in SAFE_STATUSES
        if not safe and not self.has_always:
            return head
        if self.expires is not None and safe:
            lines = self.expires.lines(ctx, now, last_modified)
            if lines is not None:
                head = _set_expires(head, lines)
        tail: list[bytes] = []
        for header in self.headers:
            if not safe and not header.always:
                continue
            if header.line is not None:
                tail.append(header.line)
                continue
            value = header.render(ctx)
            line = header.name + b": " + value + b"\r\n" if value else b""
            if header.kind == REPLACE:
                # The response's own ETag/Last-Modified: replaced where it is, removed by "".
                fixed = fixed_last_modified and header.lower == b"last-modified"
                replaced = _replace(head, header.lower, b"" if fixed else line)
                if replaced is not None:
                    head = replaced
                    if not fixed:
                        continue
            if line:
                tail.append(line)
        if tail:
            head = head[:-2] + b"".join(tail) + b"\r\n"
        return head

    def trailer_lines(self, status: int, ctx: RequestContext | None) -> bytes | None:
        """The trailer lines for a response with this status (b"" when all values are empty), or
        None when no add_trailer applies (ngx_http_headers_filter's r->expect_trailers)."""
        safe = status in SAFE_STATUSES
        applies = [t for t in self.trailers if safe or t.always]
        if not applies:
            return None
        out = []
        for trailer in applies:
            value = trailer.render(ctx)
            if value:
                out.append(trailer.name + b": " + value + b"\r\n")
        return b"".join(out)


def _set_expires(head: bytes, lines: tuple[bytes, bytes]) -> bytes:
    expires_line, cache_line = lines
    low = head.lower()
    if b"\r\nexpires:" not in low and b"\r\ncache-control:" not in low:  # the usual case: append both
        return head[:-2] + expires_line + cache_line + b"\r\n"
    replaced = _replace(head, b"expires", expires_line)
    appended = b""
    if replaced is None:
        appended = expires_line
    else:
        head = replaced
    start, end = _find_line(head, b"cache-control")
    if start < 0:
        appended += cache_line
    else:
        head = head[:start] + cache_line + head[end:]
        # every further Cache-Control is dropped (nginx clears their hash)
        while True:
            more, more_end = _find_line(head, b"cache-control", start + len(cache_line))
            if more < 0:
                break
            head = head[:more] + head[more_end:]
    if appended:
        head = head[:-2] + appended + b"\r\n"
    return head


def chunk_body(body: bytes, trailers: bytes) -> bytes:
    """A whole body in chunked encoding, ending with the last chunk and ``trailers``."""
    if not body:
        return b"0\r\n" + trailers + b"\r\n"
    return b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailers + b"\r\n"


_NO_CHUNKS = frozenset({204, 304})


def filter_answer(answer: _Answer, ctx: RequestContext, now: int) -> _Answer:
    """The headers filter on a response the engine made (file, return, redirect, error page), with
    the program of the location in effect when it was sent (the server's outside any location)."""
    where = ctx.location if ctx.location is not None else ctx.server
    program = where.headers
    if program is None or isinstance(answer, Response) and answer.close_without_response:
        return answer
    head = answer.head
    # The range filter runs after the headers filter: its Accept-Ranges/Content-Range come last.
    at = _range_lines(head)
    late = b""
    if at >= 0:
        head, late = head[:at] + b"\r\n", head[at:-2]
    if ctx.range_rejected:
        # The headers filter ran on the 200 before the range filter made it a 416, whose special
        # response clears ETag and Last-Modified and goes through the filter again: both passes count.
        head = program.apply(head, 200, ctx, now, ctx.last_modified, True)
        for name in (b"etag", b"last-modified"):
            head = _replace(head, name, b"") or head
        head, late = head[:-2] + late + b"\r\n", b""
    head = program.apply(head, answer.status, ctx, now, ctx.last_modified, True)
    answer.head = head[:-2] + late + b"\r\n" if late else head
    if program.trailers:
        _add_trailers(program, answer, ctx)
    return answer


def _range_lines(head: bytes) -> int:
    """Where the range filter's lines (Accept-Ranges, Content-Range) start in a file answer's head
    (after a CRLF), or -1."""
    found = [at for at in (head.find(b"\r\nAccept-Ranges: "), head.find(b"\r\nContent-Range: ")) if at >= 0]
    return min(found) + 2 if found else -1


def _add_trailers(program: HeaderProgram, answer: Response | FileResponse, ctx: RequestContext) -> None:
    """nginx's chunked filter, asked for trailers: an HTTP/1.1 body (not HEAD, 204, 304) is sent
    chunked, without Content-Length, ending with the trailers."""
    request = ctx.request
    if request.version >= b"2" and (ctx.method or request.method) != b"HEAD" and answer.status not in _NO_CHUNKS:
        # HTTP/2 and 3: a trailing HEADERS frame, the length kept (nginx's v2 filter); none when every
        # value is empty.
        answer.trailers = program.trailer_lines(answer.status, ctx) or b""
        return
    if request.version != b"1.1" or (ctx.method or request.method) == b"HEAD" or answer.status in _NO_CHUNKS:
        return
    lines = program.trailer_lines(answer.status, ctx)
    if lines is None:
        return
    head = answer.head
    last = b"0\r\n" + lines + b"\r\n"
    if b"\r\ntransfer-encoding: chunked\r\n" in head.lower():  # autoindex: chunked already
        if isinstance(answer, Response) and answer.body.endswith(b"0\r\n\r\n"):
            answer.body = answer.body[:-5] + last
        return
    start, end = _find_line(head, b"content-length")
    if start >= 0:
        head = head[:start] + head[end:]
    at = head.find(b"\r\nConnection: ")
    answer.head = head[:at] + b"\r\nTransfer-Encoding: chunked" + head[at:]
    if isinstance(answer, Response):
        answer.body = chunk_body(answer.body, lines)
        return
    length = sum(len(p) if isinstance(p, bytes) else p[1] for p in answer.parts)
    if length:
        answer.parts = [b"%x\r\n" % length, *answer.parts, b"\r\n" + last]
    else:
        answer.parts = [last]
