"""newproxy's HTTP/1.x request parser: nginx 1.22's decisions, sans-IO, fed with bytes.

It follows ngx_http_parse_request_line, ngx_http_parse_header_line and ngx_http_parse_chunked
(src/http/ngx_http_parse.c) and the header-time checks of ngx_http_request.c (unique header lines,
Host, the header buffers of ngx_http_alloc_large_header_buffer), so that a request is accepted,
rejected or normalised where nginx does it, with nginx's status:

- 400 a malformed request line or header line, a duplicate unique header (Host, Content-Length,
  Transfer-Encoding, Authorization, If-*...), an invalid Host, a bad chunked body;
- 414 a request line longer than a large header buffer (or no large buffer left);
- 494 a header line longer than a large header buffer, or no large buffer left, or more than
  MAX_HEADERS header lines;
- 505 an HTTP major version over 1.

What nginx checks once the whole head is read (Host missing, Content-Length's value, the
Transfer-Encoding value, TRACE) is left to the front end (``newproxy/http/h1.py``), which has the
request in hand for the answer; this module gives it the facts (``host``, ``length``, ``te``...).

Two ways through a head, with the same results (tests/test_h1parse.py feeds byte by byte and in
one buffer and compares):
- the fast path: the whole head is buffered, all its lines end with CRLF, the request line is
  ``METHOD /target HTTP/1.d`` and no header name has a byte nginx refuses. One ``find``, one
  ``split``, then cached verdicts: per request line (a regex on a miss), per header line (a
  C-level scan for stray CR/LF/NUL and a split on a miss), per header name, per Host value;
- the slow path: a byte-wise, resumable port of nginx's state machines, for everything else
  (bare LF, leading CRLF, absolute-form targets, odd bytes, a head arriving in pieces).

The body is framed as nginx frames it: Content-Length bytes, or chunks (extensions ignored,
trailers read and discarded, sizes bounded as nginx bounds them).

Callbacks, on the ``proto`` object given at construction (h1.H1Protocol):
``on_message_begin()``, ``on_headers_complete()`` (reads the parser's attributes),
``on_body(bytes)``, ``on_chunk(size)`` (a chunk's data begins: nginx checks
client_max_body_size against the size then), ``on_message_complete()``. An exception raised by
a callback stops parsing and propagates out of ``feed_data``. A bad request raises ``ParseError``. After a request that
asks for a protocol upgrade (``Connection: upgrade`` with ``Upgrade``), ``feed_data`` raises
``UpgradeRequest`` carrying the bytes not parsed yet (the front end holds them for the tunnel).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Final, Protocol

from mypy_extensions import mypyc_attr

from newproxy.engine.servers import host_valid

if TYPE_CHECKING:
    from newproxy.http.h1 import H1Protocol

CR: Final = 13
LF: Final = 10
SP: Final = 32

# ngx_max_off_t: Content-Length and chunk sizes are bounded by it.
MAX_OFF_T: Final = (1 << 63) - 1
# Debian's nginx 1.22.1 carries the max_headers limit of later nginx (default 1000): the header
# line past it is refused as "too many header lines" (494).
MAX_HEADERS: Final = 1000


def _logged_line(line: bytes, value: bytes) -> bytes:
    """A header line as nginx's "client sent invalid header line" shows it: up to the end of its
    value (r->header_end: trailing spaces cut, unless the value is empty)."""
    return line.rstrip(b" ") if value.strip(b" ") else line


class ParseError(Exception):
    """A request nginx refuses while reading it: ``status`` is nginx's answer; ``head_only`` is set
    when the method was already read as HEAD (nginx then sends the error page's head only)."""

    def __init__(self, status: int, head_only: bool = False, v09: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.head_only = head_only
        self.v09 = v09  # an HTTP/0.9 request: nginx sends the error page without a head


class UpgradeRequest(Exception):
    """A request with ``Connection: upgrade`` was parsed: parsing pauses; ``rest`` is what follows it."""

    def __init__(self, rest: bytes) -> None:
        super().__init__(len(rest))
        self.rest = rest


class Callbacks(Protocol):
    def on_message_begin(self) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_chunk(self, size: int) -> None: ...
    def on_message_complete(self) -> None: ...


# Header names nginx handles itself (ngx_http_headers_in): the unique ones refuse a duplicate.
_H_OTHER: Final = 0
_H_HOST: Final = 1
_H_CL: Final = 2
_H_TE: Final = 3
_H_CONNECTION: Final = 4
_H_EXPECT: Final = 5
_H_UNIQUE: Final = 6
_H_UPGRADE: Final = 7
_SPECIAL: Final = {
    b"host": _H_HOST, b"content-length": _H_CL, b"transfer-encoding": _H_TE, b"connection": _H_CONNECTION,
    b"expect": _H_EXPECT, b"upgrade": _H_UPGRADE,
    b"if-modified-since": _H_UNIQUE, b"if-unmodified-since": _H_UNIQUE, b"if-match": _H_UNIQUE,
    b"if-none-match": _H_UNIQUE, b"content-range": _H_UNIQUE, b"if-range": _H_UNIQUE,
    b"authorization": _H_UNIQUE,
}
# A valid header name: letters, digits and '-' (and '_' with underscores_in_headers on). Any other
# byte over 0x20 makes the name invalid: its line is dropped with ignore_invalid_headers on (still
# counted in the head's length), kept as any other header with it off; a byte <= 0x20 or DEL is a 400.
_PLAIN_NAME: Final = re.compile(rb"[A-Za-z0-9-]+").fullmatch
_UNDERSCORE_NAME: Final = re.compile(rb"[A-Za-z0-9_-]+").fullmatch
# The kinds of an invalid name: only '_' makes it so (valid with underscores_in_headers on), or
# another byte ('.', '@', over 0x7f...). A parser drops a line whose kind is below its ``_drop``.
INVALID_UNDERSCORE: Final = -1
INVALID_OTHER: Final = -2
# name -> its kind (one of _SPECIAL's, _H_OTHER, or an invalid kind). Names repeat across requests.
_NAME_KIND: Final[dict[bytes, int]] = {}
_CACHE_MAX: Final = 4096  # bounded: names come from clients
# Only short keys are cached: 4,096 entries of at most 256 bytes each bound the caches to ~1 MiB a
# worker, whatever clients send (long request lines and values are rare and parsed each time).
_CACHE_KEY_MAX: Final = 256

# The request line of the fast path: origin-form, single spaces, HTTP/1.<one digit>. A target byte
# is anything but a control byte, space or DEL (nginx's sw_check_uri / sw_uri).
_CR_LF_NUL: Final = b"\r\n\x00"  # what a line of the fast path's common form never holds
_FAST_LINE: Final = re.compile(rb"([A-Z_-]+) (/[\x21-\x7e\x80-\xff]*) HTTP/1\.([0-9])").fullmatch

# Slow-path character classes (ngx_http_parse.c).
_METHOD_CH: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_-")
_ALPHA: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGIT: Final = frozenset(b"0123456789")
_SCHEMA_CH: Final = _ALPHA | _DIGIT | frozenset(b"+-.")
_HOST_CH: Final = _ALPHA | _DIGIT | frozenset(b".-")
_IP_LITERAL_CH: Final = _ALPHA | _DIGIT | frozenset(b":-._~!$&'()*+,;=")
_NAME_CH: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HEX: Final = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
# A chunk-size line of the common form; anything else goes through the state machine.
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,14})\r\n").match  # 14 digits never near nginx's bounds

# Request-line states (ngx_http_parse_request_line).
(RL_START, RL_METHOD, RL_SPACES_BEFORE_URI, RL_SCHEMA, RL_SCHEMA_SLASH, RL_SCHEMA_SLASH_SLASH, RL_HOST_START,
 RL_HOST, RL_HOST_IP_LITERAL, RL_PORT, RL_URI, RL_HTTP_09, RL_HTTP_H, RL_HTTP_HT, RL_HTTP_HTT, RL_HTTP_HTTP,
 RL_FIRST_MAJOR, RL_MAJOR, RL_FIRST_MINOR, RL_MINOR, RL_SPACES_AFTER_DIGIT, RL_ALMOST_DONE) = range(22)
# Header-line states (ngx_http_parse_header_line); H_START is nginx's "state 0".
(H_START, H_NAME, H_SPACE_BEFORE_VALUE, H_VALUE, H_SPACE_AFTER_VALUE, H_ALMOST_DONE,
 H_HEADER_ALMOST_DONE) = range(100, 107)
# Chunked states (ngx_http_parse_chunked).
(C_START, C_SIZE, C_EXT, C_EXT_ALMOST, C_DATA, C_AFTER_DATA, C_AFTER_DATA_ALMOST, C_LAST_EXT,
 C_LAST_EXT_ALMOST, C_TRAILER, C_TRAILER_ALMOST, C_TRAILER_HEADER, C_TRAILER_HEADER_ALMOST) = range(13)

# What the parser is reading.
_HEAD: Final = 0
_BODY: Final = 1
_CHUNKED: Final = 2


# Compiled (newproxy/native.py), it stays open to tests/test_h1parse.py's parsers that take one
# path alone.
@mypyc_attr(allow_interpreted_subclasses=True)
class RequestParser:
    """One connection's requests, in order. Invariants: ``_buf[_pos:]`` is what is not parsed yet;
    while a head is being read ``_buf[_start:]`` holds all of it (offsets index ``_buf``); the
    nginx buffer model (``_limit``, ``_cap``, ``_nbusy``) is kept in the same offsets."""

    __slots__ = (
        "_avail",
        "_buf",
        "_by_host",
        "_cap",
        "_chunk_new",
        "_chunk_size",
        "_chunk_state",
        "_drop",
        "_drop0",
        "dropped",
        "_h_end",
        "_h_name_end",
        "_h_start",
        "_h_state",
        "_h_vstart",
        "_host_end",
        "_host_start",
        "_large",
        "_limit",
        "_line",
        "_major",
        "_minor",
        "_nbusy",
        "_num",
        "_pos",
        "_h1",
        "_proto",
        "_protocol_start",
        "_remaining",
        "_rl_state",
        "_seen",
        "_small",
        "_start",
        "_state",
        "_switch",
        "_target_end",
        "_target_start",
        "_uri_start",
        "body_bytes",
        "connection",
        "content_length",
        "expect",
        "head_length",
        "headers",
        "host",
        "http_version",
        "keepalive",
        "length",
        "method",
        "target",
        "te",
        "upgrade",
        "version",
    )

    def __init__(self, proto: Callbacks, buffer_size: int = 1024, large_size: int = 8192, large_num: int = 4) -> None:
        self._proto = proto
        self._h1: H1Protocol | None = None  # ``proto`` when it is the front end's (native_callbacks)
        self._small = buffer_size
        self._large = large_size
        self._num = large_num
        self._buf = b""
        self._pos = 0
        self._state = _HEAD
        # nginx's header buffer: the current one ends at _limit; _nbusy large ones are in use.
        self._cap = buffer_size
        self._limit = buffer_size
        self._nbusy = 0
        self._avail = 0
        self._remaining = 0
        self._chunk_state = C_START
        self._chunk_size = 0
        self._chunk_new = False
        self.target = b""
        self.version = b"1.0"  # b"1.1" (any HTTP/1.x over 1.0), b"1.0", b"0.9"
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_length = 0
        self.body_bytes = 0
        self.keepalive = False
        self.length = 0
        self._uri_start = self._target_start = self._target_end = -1
        self._host_start = self._host_end = self._protocol_start = -1
        self._h_name_end = self._h_vstart = self._h_end = -1
        self._major = self._minor = 0
        # Header names (underscores_in_headers, ignore_invalid_headers): lines of a kind below _drop
        # are dropped. _drop0 is the setting of the server a request starts with (the default server
        # of the address, or the SNI's); _by_host, when servers there differ, gives the setting of
        # the server a host names, and _switch is it until the request line's host or the Host
        # header has chosen the server (the lines after it are read with that server's setting).
        self._drop = self._drop0 = 0
        # The header lines dropped (ignore_invalid_headers), each as nginx logs it ("client sent
        # invalid header line"), with the number of header lines kept before it; None: none. The
        # protocol takes them (and sets None) once the head is read, or cut short.
        self.dropped: list[tuple[bytes, int]] | None = None
        self._by_host: Callable[[bytes], int] | None = None
        self._switch: Callable[[bytes], int] | None = None
        self._new_request(0)

    def header_rules(self, drop: int, by_host: Callable[[bytes], int] | None) -> None:
        """The connection's header-name settings (see ``drop_below``); the defaults need no call."""
        self._drop = self._drop0 = drop
        self._by_host = self._switch = by_host

    def native_callbacks(self, h1: H1Protocol) -> None:
        """``proto`` is ``h1``, the front end's: compiled, its callbacks are then called directly
        (through ``proto``, a protocol type, each is a method lookup by name). Tests give a recorder."""
        self._h1 = h1

    def _on_message_begin(self) -> None:
        h1 = self._h1
        if h1 is not None:
            h1.on_message_begin()
        else:
            self._proto.on_message_begin()

    def _on_headers_complete(self) -> None:
        h1 = self._h1
        if h1 is not None:
            h1.on_headers_complete()
        else:
            self._proto.on_headers_complete()

    def _on_message_complete(self) -> None:
        h1 = self._h1
        if h1 is not None:
            h1.on_message_complete()
        else:
            self._proto.on_message_complete()

    # -- per request -------------------------------------------------------------------------
    def _new_request(self, start: int) -> None:
        self._start = start
        self._line = start  # the start of the line being read (nginx's request_start / header_name_start)
        self._rl_state = RL_START
        self._h_state = H_START
        # method, target, version and headers are set by whichever path reads the head (the
        # byte-wise one resets them at the request's first byte); method and http_version are
        # read by _fail before that.
        self.method = b""
        self.http_version = 1000  # nginx's major * 1000 + minor (HTTP/1.0 until the line says)
        self.host: bytes | None = None
        self.content_length: bytes | None = None  # the raw value; h1 checks it (nginx does once the head is read)
        self.te: bytes | None = None
        self.connection = 0  # 0: no Connection header; 1: close; 2: keep-alive (ngx_http_process_connection)
        self.expect = False  # Expect: 100-continue
        self.upgrade = False  # Connection: upgrade with an Upgrade header
        self._seen = 0  # unique headers seen (a bit per kind), Host included

    def unparsed(self) -> int:
        """Bytes buffered past what has been parsed (from on_message_complete: the next request's)."""
        return len(self._buf) - self._pos

    def in_chunks(self) -> bool:
        """Whether parsing is inside a chunked body (a ParseError there is a bad chunk)."""
        return self._state == _CHUNKED

    def idle(self) -> bool:
        """Between requests with nothing buffered and nginx's buffer state back to a fresh
        connection's: a new parser would read what comes next the same way (parking.py relies on it)."""
        pos = self._pos
        return (self._state == _HEAD and pos == len(self._buf) and self._start == pos
                and self._rl_state == RL_START and self._nbusy == 0 and self._cap == self._small
                and self._limit - pos == self._small and self._avail <= pos)

    def _fail(self, status: int) -> ParseError:
        # nginx knows the method once the space after it is read (r->method): so does ``method``.
        return ParseError(status, self.method == b"HEAD", self.http_version == 9)

    def cut_head(self) -> tuple[bytes | None, bool, int]:
        """A head that never completed (it timed out), as nginx logs it: the request line as its
        $request shows it when that line is not complete (what arrived of it, up to a CR or LF;
        None once it is complete: ``method``, ``target``, ``version`` and ``headers`` hold what was
        read), whether its protocol had begun (nginx's http_protocol), and $request_length, the
        bytes of the complete lines (from the first method byte)."""
        buf = self._buf
        start = self._start
        if self._rl_state != -1:
            end = start
            n = len(buf)
            while end < n and buf[end] != CR and buf[end] != LF:
                end += 1
            return buf[start:end], self._protocol_start >= 0, 0
        line_end = self._pos if self._h_state == H_START else self._line
        return None, True, line_end - start

    # -- feeding ----------------------------------------------------------------------------
    def feed_data(self, data: bytes) -> None:
        pos = self._pos
        if pos:
            buf = self._buf
            if self._state != _HEAD or self._start == pos:
                # Nothing of a head pending (the common case): drop what is parsed.
                self._buf = buf[pos:] + data if pos < len(buf) else data
                self._pos = 0
                self._start -= pos
                self._line -= pos
                self._limit -= pos
                self._avail -= pos
            else:
                # Keep the head being read: the byte-wise parser's offsets point into it.
                cut = self._start
                self._buf = buf[cut:] + data
                self._shift(cut)
        elif self._buf:
            self._buf += data
        else:
            self._buf = data
        # The loop over what is buffered (inlined here: this runs on every read).
        buf = self._buf
        n = len(buf)
        while self._pos < n:
            state = self._state
            if state == _HEAD:
                if self._pos == self._start and self._rl_state == RL_START and self._fast():
                    pass
                elif not self._slow():
                    return  # the head is incomplete
                self._finish_head()
                continue
            if state == _BODY:
                pos = self._pos
                take = min(self._remaining, n - pos)
                end = pos + take
                self._pos = end
                self._remaining -= take
                self.body_bytes += take
                self._proto.on_body(buf[pos:end] if pos or end != n else buf)
                if self._remaining == 0:
                    self._message_complete()
                continue
            if not self._chunked():
                return
        if self._state == _HEAD and self._start == n and self._rl_state == RL_START:
            # All of it is parsed: let go of the bytes now rather than at the next read, or an idle
            # keep-alive connection would hold its last request's bytes (as the next read would).
            self._buf = b""
            self._pos = self._start = 0
            self._line -= n
            self._limit -= n
            self._avail -= n

    def _shift(self, cut: int) -> None:
        self._pos -= cut
        self._start -= cut
        self._line -= cut
        self._limit -= cut
        self._avail -= cut
        for name in ("_uri_start", "_target_start", "_target_end", "_host_start", "_host_end",
                     "_protocol_start", "_h_name_end", "_h_vstart", "_h_end"):
            value = getattr(self, name)
            if value >= 0:
                setattr(self, name, value - cut)

    # -- the head: fast path --------------------------------------------------------------------
    def _fast(self) -> bool:
        """The whole head at once, when it is of the common form; False: let the slow path read it."""
        buf = self._buf
        start = self._pos
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            return False
        head = buf[start:end]
        lines = head.split(b"\r\n")
        n = len(lines) - 1
        # The common form has every CR and LF paired and no NUL: a line holding one goes to the slow
        # path. The request line's pattern has none of them; a header line is checked when it is not
        # in _HEADER_LINES, which holds only lines that passed (a line seen before costs nothing).
        request_line = _LINES.get(lines[0])
        if request_line is None:
            request_line = _read_line(lines[0])
            if request_line is None:
                return False
        end += 4
        if end > self._limit or n > MAX_HEADERS:
            # One C-speed pass over the head: each CRLF accounts for two of the bytes deleted; any
            # stray CR, LF or NUL makes one more.
            if len(head) - len(head.translate(None, _CR_LF_NUL)) != n + n:
                return False
            return self._fast_large(request_line, lines)
        # The head fits in the current buffer and has few lines: the only refusals left are those
        # of a header nginx reads itself (_special), made in line order, and before that nothing
        # is changed.
        kinds = _NAME_KIND
        known = _HEADER_LINES
        headers: list[tuple[bytes, bytes]] = []
        specials = []
        dropped = None
        host = length = None
        drop = self._drop0
        del lines[0]  # the request line, read already
        for line in lines:
            entry = known.get(line)
            if entry is None:
                if len(line.translate(None, _CR_LF_NUL)) != len(line):
                    return False  # a stray CR, LF or NUL: the slow path reads it as nginx does
                name, colon, value = line.partition(b":")
                kind = kinds.get(name)
                if kind is None:
                    kind = _classify(name)
                    if kind is None:
                        return False  # a byte nginx refuses in the name: the slow path answers
                if not colon:
                    return False  # a line without a colon: the slow path reads it
                if kind < 0:  # an invalid name: dropped, or kept as any other (ignore_invalid_headers)
                    if kind < drop:
                        if dropped is None:
                            dropped = []
                        dropped.append((_logged_line(line, value), len(headers)))
                        continue
                    headers.append((name, value.strip(b" ")))
                    continue
                entry = ((name, value.strip(b" ")), kind)
                if len(line) <= _CACHE_KEY_MAX:
                    if len(known) >= _CACHE_MAX:
                        known.clear()  # (not frozen when full, as the others: new values keep coming)
                    known[line] = entry
            pair, kind = entry
            if kind:
                value = pair[1]
                # The first valid Host, the common case, without _special's bookkeeping.
                if kind == _H_HOST and host is None and (_HOST_OK.get(value) or _host_ok(value)):
                    host = value
                    if self._by_host is not None:  # it chooses the server whose setting reads on
                        drop = self._by_host(value)
                elif kind == _H_CL and length is None:
                    length = value
                else:
                    specials.append((kind, pair[0], value))
            headers.append(pair)
        self._on_message_begin()
        self.method, self.target, self.http_version, self.version = request_line
        if host is not None:
            self.host = host
            self._seen = _HOST_BIT
        if length is not None:
            self.content_length = length
            self._seen |= _CL_BIT
        for kind, name, value in specials:
            self._special(kind, name, value)
        self.headers = headers
        if dropped is not None:
            self.dropped = dropped
        self._pos = end
        return True

    def _fast_large(self, request_line: tuple[bytes, bytes, int, bytes], lines: list[bytes]) -> bool:
        """The fast path for a head that needs more header buffers, or has many lines: the buffer
        arithmetic (and nginx's refusals) line by line."""
        kinds = _NAME_KIND
        for line in lines[1:]:  # nothing is decided before every line is known of the fast kind
            name, colon, _ = line.partition(b":")
            if not colon or (name not in kinds and _classify(name) is None):
                return False
        self._on_message_begin()
        self.headers = []
        self.method, self.target, self.http_version, self.version = request_line
        self._drop = self._drop0
        self._switch = self._by_host
        pos = self._pos
        line_end = pos + len(lines[0]) + 2
        if line_end > self._limit:
            self._alloc_lines(True, pos, line_end)
        for line in lines[1:]:
            pos = line_end
            line_end = pos + len(line) + 2
            if line_end > self._limit:
                self._alloc_lines(False, pos, line_end)
            name, _, value = line.partition(b":")
            kind = kinds.get(name)
            if kind is None:
                kind = _classify(name)
                assert kind is not None  # the loop above returned False for a name without a kind
            if kind < 0:
                if kind < self._drop:
                    self._note_dropped(_logged_line(line, value))
                    continue
                kind = _H_OTHER
            if len(self.headers) >= MAX_HEADERS:
                raise self._fail(494)
            value = value.strip(b" ")
            if kind:
                self._special(kind, name, value)
            self.headers.append((name, value))
        # The blank line ending the head is a line of its own for the buffers.
        pos = line_end
        line_end = pos + 2
        if line_end > self._limit:
            self._alloc_lines(False, pos, line_end)
        self._pos = line_end
        return True

    def _alloc_lines(self, request_line: bool, line_start: int, line_end: int) -> None:
        """The buffers a line from ``line_start`` to ``line_end`` needs past the current one."""
        while line_end > self._limit:
            self._alloc(request_line, self._limit == line_start, line_start, self._limit)

    def _alloc(self, request_line: bool, state0: bool, line_start: int, at: int) -> None:
        """ngx_http_alloc_large_header_buffer: the parser needs the byte at ``at``, past the end of
        the current buffer. The line being read moves to a new large buffer, if one is left."""
        if request_line and state0:
            self._limit = at + self._cap  # only CR/LF so far: nginx reuses the buffer from its start
            return
        if not state0 and at - line_start >= self._large or self._nbusy >= self._num:
            raise self._fail(414 if request_line else 494)
        self._nbusy += 1
        self._cap = self._large
        self._limit = (at if state0 else line_start) + self._large

    # -- the head: slow path (nginx's state machines, byte by byte) --------------------------------
    def _slow(self) -> bool:
        """Parse from ``_pos``; True once the head is complete (``_pos`` past it)."""
        buf = self._buf
        n = len(buf)
        p = self._pos
        limit = self._limit
        while p < n:
            if p >= limit:
                if self._rl_state != -1:
                    self._alloc(True, self._rl_state == RL_START, self._line, p)
                else:
                    self._alloc(False, self._h_state == H_START, self._line, p)
                limit = self._limit
                continue
            ch = buf[p]
            if self._rl_state != -1:
                done = self._request_line_byte(ch, p)
                p += 1
                if done:
                    if self.http_version < 1000:  # HTTP/0.9: no headers
                        self._pos = p
                        return True
                    self._rl_state = -1
                    self._line = p
            else:
                done = self._header_byte(ch, p)
                p += 1
                if done:
                    self._pos = p
                    return True
        self._pos = p
        return False

    def _request_line_byte(self, ch: int, p: int) -> bool:
        """One byte of the request line; True when it ends the line."""
        state = self._rl_state
        if state == RL_START:
            if ch == CR or ch == LF:
                self._start = self._line = p + 1
                return False
            if ch not in _METHOD_CH:
                raise self._fail(400)
            self._on_message_begin()
            self._start = self._line = p
            self._rl_state = RL_METHOD
            self.target = b""
            self.version = b"1.0"
            self.headers = []
            self._drop = self._drop0
            self._switch = self._by_host
            self._uri_start = self._target_start = self._target_end = -1
            self._host_start = self._host_end = self._protocol_start = -1
            self._h_name_end = self._h_vstart = self._h_end = -1
            self._major = self._minor = 0
        elif state == RL_METHOD:
            if ch == SP:
                self.method = self._buf[self._start:p]
                self._rl_state = RL_SPACES_BEFORE_URI
            elif ch not in _METHOD_CH:
                raise self._fail(400)
        elif state == RL_SPACES_BEFORE_URI:
            if ch == 0x2F:  # '/'
                self._target_start = self._uri_start = p
                self._rl_state = RL_URI
            elif ch in _ALPHA:
                self._target_start = p
                self._rl_state = RL_SCHEMA
            elif ch != SP:
                raise self._fail(400)
        elif state == RL_SCHEMA:
            if ch == 0x3A:  # ':'
                self._rl_state = RL_SCHEMA_SLASH
            elif ch not in _SCHEMA_CH:
                raise self._fail(400)
        elif state == RL_SCHEMA_SLASH or state == RL_SCHEMA_SLASH_SLASH:
            if ch != 0x2F:
                raise self._fail(400)
            self._rl_state = RL_SCHEMA_SLASH_SLASH if state == RL_SCHEMA_SLASH else RL_HOST_START
        elif state == RL_HOST_START or state == RL_HOST:
            if state == RL_HOST_START:
                self._host_start = p
                if ch == 0x5B:  # '['
                    self._rl_state = RL_HOST_IP_LITERAL
                    return False
                self._rl_state = RL_HOST
            if ch not in _HOST_CH:
                return self._host_end_byte(ch, p)
        elif state == RL_HOST_IP_LITERAL:
            if ch == 0x5D:  # ']'
                self._rl_state = -2  # sw_host_end
            elif ch not in _IP_LITERAL_CH:
                raise self._fail(400)
        elif state == -2:
            return self._host_end_byte(ch, p)
        elif state == RL_PORT:
            if ch not in _DIGIT:
                self._authority_end(ch, p)
        elif state == RL_URI:
            # sw_after_slash_in_uri, sw_check_uri and sw_uri differ only in what they flag for
            # ngx_http_parse_complex_uri (the engine's uri.py); they accept the same bytes.
            if ch == SP:
                self._target_end = p
                self._rl_state = RL_HTTP_09
            elif ch == CR:
                self._target_end = p
                self._set_09()
                self._rl_state = RL_ALMOST_DONE
            elif ch == LF:
                self._target_end = p
                return self._line_done_09()
            elif ch < 0x20 or ch == 0x7F:
                raise self._fail(400)
        elif state == RL_HTTP_09:
            if ch == SP:
                pass
            elif ch == CR:
                self._set_09()
                self._rl_state = RL_ALMOST_DONE
            elif ch == LF:
                return self._line_done_09()
            elif ch == 0x48:  # 'H'
                self._protocol_start = p
                self._rl_state = RL_HTTP_H
            else:
                raise self._fail(400)
        elif state in (RL_HTTP_H, RL_HTTP_HT, RL_HTTP_HTT, RL_HTTP_HTTP):
            if ch != b"TTP/"[state - RL_HTTP_H]:
                raise self._fail(400)
            self._rl_state = state + 1
        elif state == RL_FIRST_MAJOR:
            if ch < 0x31 or ch > 0x39:
                raise self._fail(400)
            self._major = ch - 0x30
            if self._major > 1:
                raise self._fail(505)
            self._rl_state = RL_MAJOR
        elif state == RL_MAJOR:
            if ch == 0x2E:  # '.'
                self._rl_state = RL_FIRST_MINOR
            elif ch not in _DIGIT:
                raise self._fail(400)
            else:
                self._major = self._major * 10 + ch - 0x30
                if self._major > 1:
                    raise self._fail(505)
        elif state == RL_FIRST_MINOR:
            if ch not in _DIGIT:
                raise self._fail(400)
            self._minor = ch - 0x30
            self._rl_state = RL_MINOR
        elif state == RL_MINOR:
            if ch == CR:
                self._rl_state = RL_ALMOST_DONE
            elif ch == LF:
                return self._line_done()
            elif ch == SP:
                self._rl_state = RL_SPACES_AFTER_DIGIT
            elif ch not in _DIGIT or self._minor > 99:
                raise self._fail(400)
            else:
                self._minor = self._minor * 10 + ch - 0x30
        elif state == RL_SPACES_AFTER_DIGIT:
            if ch == CR:
                self._rl_state = RL_ALMOST_DONE
            elif ch == LF:
                return self._line_done()
            elif ch != SP:
                raise self._fail(400)
        elif state == RL_ALMOST_DONE:
            if ch != LF:
                raise self._fail(400)
            return self._line_done_09() if self._major == 0 else self._line_done()
        return False

    def _host_end_byte(self, ch: int, p: int) -> bool:
        """sw_host_end: the authority of an absolute-form target ends."""
        self._host_end = p
        if ch == 0x3A:  # ':'
            self._rl_state = RL_PORT
        else:
            self._authority_end(ch, p)
        return False

    def _authority_end(self, ch: int, p: int) -> None:
        """After the host or the port of an absolute-form target: the path, or the target ends."""
        if ch == 0x2F or ch == 0x3F:  # '/', '?'
            self._uri_start = p
            self._rl_state = RL_URI
        elif ch == SP:
            self._target_end = p
            self._rl_state = RL_HTTP_09
        else:
            raise self._fail(400)

    def _set_09(self) -> None:
        self._major = 0  # nginx's http_minor = 9 before the CR's LF: an HTTP/0.9 request line
        self._minor = 9

    def _line_done_09(self) -> bool:
        self.http_version = 9
        self.version = b"0.9"
        if self.method != b"GET":
            raise self._fail(400)  # NGX_HTTP_PARSE_INVALID_09_METHOD
        return self._target_done()

    def _line_done(self) -> bool:
        self.http_version = self._major * 1000 + self._minor
        self.version = b"1.1" if self.http_version > 1000 else b"1.0"
        return self._target_done()

    def _target_done(self) -> bool:
        buf = self._buf
        self.target = buf[self._target_start:self._target_end]
        if self._host_end >= 0:
            host = buf[self._host_start:self._host_end]
            if not host_valid(host):
                raise self._fail(400)  # "client sent invalid host in request line"
            # The request line's host chooses the server (a Host header no longer does).
            switch = self._switch
            if switch is not None:
                self._drop = switch(host)
                self._switch = None
        return True

    def _header_byte(self, ch: int, p: int) -> bool:
        """One byte of a header line (ngx_http_parse_header_line); True when the blank line ending
        the head is read. Whether the name is valid is decided on the whole name (_header_done)."""
        state = self._h_state
        if state == H_START:
            self._line = p
            if ch == CR:
                self._h_state = H_HEADER_ALMOST_DONE
            elif ch == LF:
                return True
            else:
                self._h_state = H_NAME
                if ch not in _NAME_CH and (ch <= 0x20 or ch == 0x7F or ch == 0x3A):
                    raise self._fail(400)
        elif state == H_NAME:
            if ch in _NAME_CH:
                pass
            elif ch == 0x3A:  # ':'
                self._h_name_end = p
                self._h_state = H_SPACE_BEFORE_VALUE
            elif ch == CR or ch == LF:
                # A line without a colon: a header with an empty value (nginx keeps it).
                self._h_name_end = self._h_vstart = self._h_end = p
                if ch == LF:
                    self._header_done(p + 1)
                else:
                    self._h_state = H_ALMOST_DONE
            elif ch <= 0x20 or ch == 0x7F:
                raise self._fail(400)
        elif state == H_SPACE_BEFORE_VALUE:
            if ch == SP:
                pass
            elif ch == CR or ch == LF:
                self._h_vstart = self._h_end = p
                if ch == LF:
                    self._header_done(p + 1)
                else:
                    self._h_state = H_ALMOST_DONE
            elif ch == 0:
                raise self._fail(400)
            else:
                self._h_vstart = p
                self._h_state = H_VALUE
        elif state == H_VALUE:
            if ch == SP:
                self._h_end = p
                self._h_state = H_SPACE_AFTER_VALUE
            elif ch == CR:
                self._h_end = p
                self._h_state = H_ALMOST_DONE
            elif ch == LF:
                self._h_end = p
                self._header_done(p + 1)
            elif ch == 0:
                raise self._fail(400)
        elif state == H_SPACE_AFTER_VALUE:
            if ch == SP:
                pass
            elif ch == CR:
                self._h_state = H_ALMOST_DONE
            elif ch == LF:
                self._header_done(p + 1)
            elif ch == 0:
                raise self._fail(400)
            else:
                self._h_state = H_VALUE
        elif state == H_ALMOST_DONE:
            if ch == LF:
                self._header_done(p + 1)
            elif ch != CR:
                raise self._fail(400)
        elif state == H_HEADER_ALMOST_DONE:
            if ch != LF:
                raise self._fail(400)
            return True
        return False

    def _header_done(self, end: int) -> None:
        self._h_state = H_START
        buf = self._buf
        name = buf[self._line:self._h_name_end]
        kind = _NAME_KIND.get(name)
        if kind is None:
            kind = _classify(name)  # never None: _header_byte refused the bytes it refuses
        if kind < 0:  # type: ignore[operator]
            if kind < self._drop:  # type: ignore[operator]
                self._note_dropped(buf[self._line:self._h_end])
                return
            kind = _H_OTHER
        value = buf[self._h_vstart:self._h_end]
        if len(self.headers) >= MAX_HEADERS:
            raise self._fail(494)
        if kind:
            self._special(kind, name, value)
        self.headers.append((name, value))

    def _note_dropped(self, line: bytes) -> None:
        if self.dropped is None:
            self.dropped = []
        self.dropped.append((line, len(self.headers)))

    def _special(self, kind: int, name: bytes, value: bytes) -> None:
        """A header nginx reads while parsing (ngx_http_headers_in): a second unique one, or a bad
        Host, is a 400 at once."""
        if kind == _H_CONNECTION:
            connection, upgrade = _CONNECTION_VALUES.get(value) or _connection_value(value)
            if connection:
                self.connection = connection
            if upgrade:
                self.upgrade = True
            return
        if kind == _H_UPGRADE:
            return
        bit = 1 << kind if kind != _H_UNIQUE else 1 << (8 + _UNIQUE_BIT[name.lower()])
        if self._seen & bit:
            raise self._fail(400)
        self._seen |= bit
        if kind == _H_HOST:
            ok = _HOST_OK.get(value)
            if ok is None:
                ok = _host_ok(value)
            if not ok:
                raise self._fail(400)
            self.host = value
            switch = self._switch
            if switch is not None:  # the server it names reads the lines after it
                self._drop = switch(value)
                self._switch = None
        elif kind == _H_CL:
            self.content_length = value
        elif kind == _H_TE:
            self.te = value
        elif kind == _H_EXPECT:
            self.expect = len(value) == 12 and value.lower() == b"100-continue"

    # -- the head is read -------------------------------------------------------------------------
    def _finish_head(self) -> None:
        """Hand the head over and set up the body (or end the request: no body)."""
        buf = self._buf
        self._avail = min(len(buf), self._limit)  # what nginx has read into its header buffer
        self.head_length = self._pos - self._start  # the request line and header lines as received
        self.body_bytes = 0  # the body as received, chunk framing included
        # nginx's r->keepalive before the location's keepalive settings (ngx_http_handler).
        connection = self.connection
        self.keepalive = self.http_version > 1000 if connection == 0 else connection == 2
        cl = self.content_length
        # The body's length (ngx_atoof): -1 when nginx refuses the value (h1 answers 400).
        self.length = length = content_length(cl) if cl is not None else 0
        if self.upgrade and not any(len(n) == 7 and n.lower() == b"upgrade" for n, _ in self.headers):
            self.upgrade = False
        self._on_headers_complete()
        te = self.te
        if te is not None and self.http_version >= 1001 and len(te) == 7 and te.lower() == b"chunked":
            self._state = _CHUNKED
            self._chunk_state = C_START
            self._chunk_size = 0
            return
        if length > 0:
            self._state = _BODY
            self._remaining = length
            return
        self._message_complete()

    def _message_complete(self) -> bool:
        upgrade = self.upgrade
        self._on_message_complete()
        pos = self._pos
        # The next request: in the same nginx buffer when its first byte was read with this head
        # (a pipelined request), else in a fresh client_header_buffer_size one.
        if pos >= self._avail:
            self._cap = self._small
            self._limit = pos + self._small
            self._nbusy = 0
        else:
            self._nbusy = 1 if self._cap == self._large else 0
        self._state = _HEAD
        # _new_request(pos), inlined: this runs once per request.
        self._start = self._line = pos
        self._rl_state = RL_START
        self._h_state = H_START
        self.method = self.target = b""
        self.headers = []  # the request has its own: an idle connection holds none (each head starts a new one)
        self.http_version = 1000
        self.host = self.content_length = self.te = None
        self.connection = 0
        self.expect = self.upgrade = False
        self._seen = 0
        if upgrade:
            rest = self._buf[pos:]
            self._buf = b""
            self._shift(pos)
            self._pos = 0
            self._limit = self._small
            self._cap = self._small
            raise UpgradeRequest(rest)
        return True

    # -- chunked body (ngx_http_parse_chunked) -----------------------------------------------------
    def _chunked(self) -> bool:
        """Read chunks from ``_pos``; False when more input is needed."""
        buf = self._buf
        n = len(buf)
        p = self._pos
        state = self._chunk_state
        size = self._chunk_size
        proto = self._proto
        while p < n:
            if state == C_DATA:
                if self._chunk_new:  # the chunk's first data byte is here: nginx's NGX_OK
                    self._chunk_new = False
                    proto.on_chunk(size)
                take = min(size, n - p)
                proto.on_body(buf[p:p + take])
                p += take
                self.body_bytes += take
                size -= take
                if size:
                    break
                state = C_AFTER_DATA
                continue
            if state == C_START:
                m = _CHUNK_LINE(buf, p)
                if m is not None:
                    size = int(m.group(1), 16)
                    self.body_bytes += m.end() - p
                    p = m.end()
                    if size:
                        state = C_DATA
                        self._chunk_new = True
                    else:
                        state = C_TRAILER
                    continue
            ch = buf[p]
            p += 1
            self.body_bytes += 1
            if state == C_START:
                if ch not in _HEX:
                    raise self._fail(400)
                size = _HEX[ch]
                state = C_SIZE
            elif state == C_SIZE:
                if size > MAX_OFF_T // 16:
                    raise self._fail(400)
                digit = _HEX.get(ch)
                if digit is not None:
                    size = size * 16 + digit
                elif ch == CR:
                    state = C_EXT_ALMOST if size else C_LAST_EXT_ALMOST
                elif ch == LF:
                    state = C_DATA if size else C_TRAILER
                elif ch == 0x3B or ch == SP or ch == 0x09:  # ';', ' ', '\t'
                    state = C_EXT if size else C_LAST_EXT
                else:
                    raise self._fail(400)
            elif state == C_EXT or state == C_LAST_EXT:
                if ch == CR:
                    state += 1  # the matching _ALMOST state
                elif ch == LF:
                    state = C_DATA if state == C_EXT else C_TRAILER
            elif state == C_EXT_ALMOST or state == C_LAST_EXT_ALMOST or state == C_AFTER_DATA_ALMOST:
                if ch != LF:
                    raise self._fail(400)
                state = C_DATA if state == C_EXT_ALMOST else C_TRAILER if state == C_LAST_EXT_ALMOST else C_START
            elif state == C_AFTER_DATA:
                if ch == CR:
                    state = C_AFTER_DATA_ALMOST
                elif ch == LF:
                    state = C_START
                else:
                    raise self._fail(400)
            elif state == C_TRAILER:
                if ch == CR:
                    state = C_TRAILER_ALMOST
                elif ch == LF:
                    return self._chunked_done(p)
                else:
                    state = C_TRAILER_HEADER
            elif state == C_TRAILER_ALMOST:
                if ch != LF:
                    raise self._fail(400)
                return self._chunked_done(p)
            elif state == C_TRAILER_HEADER:
                if ch == CR:
                    state = C_TRAILER_HEADER_ALMOST
                elif ch == LF:
                    state = C_TRAILER
            elif state == C_TRAILER_HEADER_ALMOST:
                if ch != LF:
                    raise self._fail(400)
                state = C_TRAILER
            if state == C_DATA:
                if size > MAX_OFF_T - 5:
                    raise self._fail(400)
                self._chunk_new = True
        self._pos = p
        self._chunk_state = state
        self._chunk_size = size
        if state == C_SIZE and size > MAX_OFF_T - 5:
            raise self._fail(400)
        return False

    def _chunked_done(self, p: int) -> bool:
        self._pos = p
        self._chunk_state = C_START
        self._chunk_size = 0
        return self._message_complete()


_HOST_BIT: Final = 1 << _H_HOST
_CL_BIT: Final = 1 << _H_CL
_UNIQUE_BIT: Final = {name: i for i, name in enumerate(n for n, k in _SPECIAL.items() if k == _H_UNIQUE)}


def drop_below(underscores_in_headers: bool, ignore_invalid_headers: bool) -> int:
    """A server's header-name settings as the threshold a parser drops invalid kinds under: 0 (nginx's
    defaults) drops every invalid name, -1 keeps names with '_', -2 keeps every invalid name."""
    if not ignore_invalid_headers:
        return INVALID_OTHER
    return INVALID_UNDERSCORE if underscores_in_headers else 0


# request line -> (method, target, http_version, version) for the fast path's common form. Request
# lines repeat (the same URLs); a hit costs one lookup instead of a regex match.
_LINES: Final[dict[bytes, tuple[bytes, bytes, int, bytes]]] = {}


def _read_line(raw: bytes) -> tuple[bytes, bytes, int, bytes] | None:
    m = _FAST_LINE(raw)
    if m is None:
        return None
    minor = int(m.group(3))
    line = (m.group(1), m.group(2), 1000 + minor, b"1.0" if minor == 0 else b"1.1")
    if len(_LINES) < _CACHE_MAX and len(raw) <= _CACHE_KEY_MAX:
        _LINES[raw] = line
    return line


_HOST_OK: Final[dict[bytes, bool]] = {}  # Host values repeat too
# A header line of a valid name -> ((name, value), kind), as the fast path reads it: most lines of a
# head repeat across requests (User-Agent, Accept...); a hit is one lookup instead of splitting the
# line, and the request's header list shares the pair.
_HEADER_LINES: Final[dict[bytes, tuple[tuple[bytes, bytes], int]]] = {}


def _connection_value(value: bytes) -> tuple[int, bool]:
    """What ngx_http_process_connection reads in a Connection value: "close" anywhere in it (any
    case) is 1, else "keep-alive" is 2, else 0 (no change); and whether "upgrade" is in it.
    (``find``, not ``in``: a bytes ``in`` tries the needle as an int first, an exception each time.)"""
    low = value.lower()
    connection = 1 if low.find(b"close") >= 0 else 2 if low.find(b"keep-alive") >= 0 else 0
    return connection, low.find(b"upgrade") >= 0


# The values browsers and clients send, read once.
_CONNECTION_VALUES: Final = {value: _connection_value(value) for value in (
    b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade", b"keep-alive, Upgrade",
    b"Keep-Alive, Upgrade")}


def _host_ok(host: bytes) -> bool:
    ok = host_valid(host)
    if len(_HOST_OK) < _CACHE_MAX and len(host) <= _CACHE_KEY_MAX:
        _HOST_OK[host] = ok
    return ok


def _classify(name: bytes) -> int | None:
    """A header name's kind (cached): _SPECIAL's, _H_OTHER, or an invalid kind (-1 with '_' only,
    -2 with another byte: see ``drop_below``); None when the name needs the slow path's verdict (a
    byte that makes the line a 400, or an empty name). An invalid name is never a special one."""
    if _PLAIN_NAME(name) is not None:
        kind = _SPECIAL.get(name.lower(), _H_OTHER)
    elif not name or any(c <= 0x20 or c == 0x7F for c in name):
        return None
    else:
        kind = INVALID_UNDERSCORE if _UNDERSCORE_NAME(name) is not None else INVALID_OTHER
    if len(_NAME_KIND) < _CACHE_MAX and len(name) <= _CACHE_KEY_MAX:
        _NAME_KIND[name] = kind
    return kind


def content_length(value: bytes) -> int:
    """ngx_atoof: digits only, at most ngx_max_off_t; -1 when invalid (nginx answers 400)."""
    if not value.isdigit() or not value.isascii():
        return -1
    length = int(value)
    return length if length <= MAX_OFF_T else -1
