"""Response heads that strict llhttp refuses and nginx's parser takes, read as nginx reads them.

nginx reads an upstream's header lines with ngx_http_parse_header_line (allow_underscores on). It
refuses a line only for a control byte, a space or DEL in the name (or one starting with ":"), a
NUL in the value, or a CR not followed by LF; any other odd byte in a name (``@``, ``(``, ``/``, a
byte >= 0x80...) only marks the header invalid, and nginx relays it as it is. A line without a
colon is a header with an empty value; IIS's duplicate ``HTTP/1.1 ...`` status line is skipped;
lines may end in a bare LF. llhttp, which newproxy/http/upstream.py parses answers with, refuses
all of these (a 502 where nginx relays the answer).

So when llhttp refuses a head, ``nginx_head`` reads it with a port of nginx's states: refused
(the 502 stands), incomplete (wait for more), or done, with the header lines as nginx stores them
(name, and the value without the spaces around it). ``llhttp_head`` then writes the same lines in a
form llhttp takes, for a fresh parser to find the framing in (Content-Length, Transfer-Encoding,
Connection): each name with its odd bytes replaced by ``~`` (so it can never read as a framing
header, as nginx, whose header hash skips odd bytes, does not take it for one), CRLF line ends. The
answer is relayed with nginx's lines (UpstreamConn.on_headers_complete). A refused head's stop
is what nginx's error line quotes (invalidheader.py).
"""

from __future__ import annotations

HEAD_REFUSED, HEAD_MORE, HEAD_DONE = 0, 1, 2

_CR, _LF, _SP, _COLON, _DEL = 0x0D, 0x0A, 0x20, 0x3A, 0x7F
_START, _NAME, _BEFORE_VALUE, _VALUE, _AFTER_VALUE, _IGNORE, _ALMOST, _HEAD_ALMOST = range(8)

# Bytes of an HTTP token (RFC 9110 tchar); any other byte of a name is written as "~" for llhttp.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN_ONLY = bytes(ch if ch in _TCHAR else 0x7E for ch in range(256))


def nginx_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], int, int]:
    """(verdict, header lines, position, line start) for the bytes of an answer read so far: the
    status line, then the lines ngx_http_parse_header_line reads. HEAD_DONE: the position is just
    past the head's last LF. HEAD_REFUSED: it is where nginx's parser stopped (``r->header_end``),
    the line start the refused line's first byte (what nginx's error line quotes: invalidheader.py)."""
    eol = head.find(b"\n")
    if eol < 0:
        return HEAD_MORE, [], 0, 0
    lines: list[tuple[bytes, bytes]] = []
    state = _START
    name_start = name_end = value_start = value_end = 0
    for p in range(eol + 1, len(head)):
        ch = head[p]
        done = False
        if state == _START:
            name_start = p
            if ch == _CR:
                value_end = p
                state = _HEAD_ALMOST
            elif ch == _LF:
                return HEAD_DONE, lines, p + 1, 0
            elif ch <= _SP or ch == _DEL or ch == _COLON:
                return HEAD_REFUSED, lines, p, name_start
            else:
                state = _NAME
        elif state == _NAME:
            if ch == _COLON:
                name_end = p
                state = _BEFORE_VALUE
            elif ch == _CR:
                name_end = value_start = value_end = p
                state = _ALMOST
            elif ch == _LF:
                name_end = value_start = value_end = p
                done = True
            elif ch == 0x2F and p - name_start == 4 and head[name_start:p] == b"HTTP":
                state = _IGNORE  # IIS may send the duplicate "HTTP/1.1 ..." lines
            elif ch <= _SP or ch == _DEL:
                return HEAD_REFUSED, lines, p, name_start
        elif state == _BEFORE_VALUE:
            if ch == _SP:
                pass
            elif ch == _CR:
                value_start = value_end = p
                state = _ALMOST
            elif ch == _LF:
                value_start = value_end = p
                done = True
            elif ch == 0:
                return HEAD_REFUSED, lines, p, name_start
            else:
                value_start = p
                state = _VALUE
        elif state == _VALUE:
            if ch == _SP:
                value_end = p
                state = _AFTER_VALUE
            elif ch == _CR:
                value_end = p
                state = _ALMOST
            elif ch == _LF:
                value_end = p
                done = True
            elif ch == 0:
                return HEAD_REFUSED, lines, p, name_start
        elif state == _AFTER_VALUE:
            if ch == _SP:
                pass
            elif ch == _CR:
                state = _ALMOST  # the value's end stays at the first of the spaces
            elif ch == _LF:
                done = True
            elif ch == 0:
                return HEAD_REFUSED, lines, p, name_start
            else:
                state = _VALUE
        elif state == _IGNORE:
            if ch == _LF:
                state = _START
        elif state == _ALMOST:
            if ch == _LF:
                done = True
            elif ch != _CR:
                return HEAD_REFUSED, lines, value_end, name_start  # stopped where the value ended
        else:  # _HEAD_ALMOST: a CR at a line's start ends the head with its LF
            if ch == _LF:
                return HEAD_DONE, lines, p + 1, 0
            return HEAD_REFUSED, lines, value_end, name_start  # quotes nothing: the CR itself
        if done:
            lines.append((head[name_start:name_end], head[value_start:value_end]))
            state = _START
    return HEAD_MORE, lines, 0, 0


def llhttp_head(head: bytes, lines: list[tuple[bytes, bytes]]) -> bytes:
    """The head's status line and ``lines``, as llhttp takes them (see the module): CRLF ends."""
    eol = head.find(b"\n")
    status = head[:eol - 1 if head[eol - 1:eol] == b"\r" else eol] + b"\r\n"
    return status + b"".join(name.translate(_TOKEN_ONLY) + b": " + value + b"\r\n" for name, value in lines) + b"\r\n"
