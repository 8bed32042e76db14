"""The text of nginx's ``upstream sent invalid header: "..."`` error line.

ngx_http_proxy_process_header logs, for a response header line ngx_http_parse_header_line refuses,
``upstream sent invalid header: "%*s\\x%02xd..."``: the line from its first byte up to the byte
the parser stopped at (``r->header_end``), then that byte in hex. newproxy parses responses with
llhttp, which says that a head is bad but not where nginx's parser would stop, so this module
re-reads the head (kept while it arrives: upstream.UpstreamConn.data_received) with a port of the
parser's states, on the failure path only.

Where the parser sets ``header_end`` matters: a NUL or a control byte in a name stops at that byte;
a CR followed by anything but LF stops at the CR ending a value, or at the first of the spaces
before it (``sw_space_after_value`` does not move ``header_end``); a CR at a line's start that is
not followed by LF quotes nothing. The bytes are written as they are (nginx does not escape them).
"""

from __future__ import annotations

_CR = 0x0D
_LF = 0x0A


def _name_char(ch: int) -> bool:
    """Bytes ngx_http_parse_header_line's lowcase table keeps in a name (or ``_``, allowed for
    upstream headers: allow_underscores is 1 there)."""
    return ch == 0x2D or ch == 0x5F or 0x30 <= ch <= 0x39 or 0x41 <= ch <= 0x5A or 0x61 <= ch <= 0x7A


def invalid_header_quote(head: bytes) -> tuple[bytes, int] | None:
    """The quoted part and the byte nginx's parser stopped at, for the first header line of
    ``head`` (status line included) that ngx_http_parse_header_line refuses; None when it refuses
    none (the head is then bad only to llhttp, or incomplete)."""
    eol = head.find(b"\n")
    if eol < 0:
        return None
    start = eol + 1  # ngx_http_parse_status_line stops after the status line's LF
    name_start = start
    end = -1
    state = "start"
    for p in range(start, len(head)):
        ch = head[p]
        if state == "start":
            name_start = p
            if ch == _CR:
                end = p
                state = "header_almost_done"
            elif ch == _LF:
                return None  # the head is complete: nothing refused
            elif _name_char(ch) or not (ch <= 0x20 or ch == 0x7F or ch == 0x3A):
                state = "name"  # an odd byte only marks the header invalid (ignored), not refused
            else:
                return head[name_start:p], ch
        elif state == "name":
            if _name_char(ch):
                continue
            if ch == 0x3A:
                state = "space_before_value"
            elif ch == _CR:
                end = p
                state = "almost_done"
            elif ch == _LF:
                state = "start"
            elif ch == 0x2F and p - name_start == 4 and head[name_start:p] == b"HTTP":
                state = "ignore_line"  # IIS may send a duplicate "HTTP/1.1 ..." line
            elif ch <= 0x20 or ch == 0x7F:
                return head[name_start:p], ch
        elif state == "space_before_value":
            if ch == 0x20:
                continue
            if ch == _CR:
                end = p
                state = "almost_done"
            elif ch == _LF:
                state = "start"
            elif ch == 0:
                return head[name_start:p], ch
            else:
                state = "value"
        elif state == "value":
            if ch == 0x20:
                end = p
                state = "space_after_value"
            elif ch == _CR:
                end = p
                state = "almost_done"
            elif ch == _LF:
                state = "start"
            elif ch == 0:
                return head[name_start:p], ch
        elif state == "space_after_value":
            if ch == 0x20:
                continue
            if ch == _CR:
                state = "almost_done"
            elif ch == _LF:
                state = "start"
            elif ch == 0:
                return head[name_start:p], ch
            else:
                state = "value"
        elif state == "ignore_line":
            if ch == _LF:
                state = "start"
        elif state == "almost_done":
            if ch == _LF:
                state = "start"
            elif ch != _CR:
                return head[name_start:end], head[end]  # header_end is where the line's CR was seen
        else:  # header_almost_done: a CR that does not end the head
            if ch == _LF:
                return None
            return head[name_start:end], head[end]
    return None


def invalid_header_message(head: bytes) -> str:
    """The error line's message for a head llhttp refused (latin-1 text of nginx's bytes)."""
    found = invalid_header_quote(head)
    if found is None:  # nginx's parser would not refuse it (nor lenienthead.py's): no quote to give
        return "upstream sent invalid header while reading response header from upstream"
    quoted, stop = found
    return (f'upstream sent invalid header: "{quoted.decode("latin-1")}\\x{stop:02x}..." '
            "while reading response header from upstream")
