"""The text of nginx's ``upstream sent invalid header: "..."`` error line.

ngx_http_proxy_process_header logs, for a response header line ngx_http_parse_header_line refuses,
``upstream sent invalid header: "%*s\\x%02xd..."``: the line from its first byte up to the byte
the parser stopped at (``r->header_end``), then that byte in hex. newproxy parses responses with
llhttp, which says that a head is bad but not where nginx's parser would stop, so the head (kept
while it arrives: upstream.UpstreamConn.data_received) is read again with the port of nginx's
parser in lenienthead.py, on the failure path only.

Where the parser sets ``header_end`` matters: a NUL or a control byte in a name stops at that byte;
a CR followed by anything but LF stops at the CR ending a value, or at the first of the spaces
before it (``sw_space_after_value`` does not move ``header_end``); a CR at a line's start that is
not followed by LF quotes nothing. The bytes are written as they are (nginx does not escape them).
"""

from __future__ import annotations

from newproxy.http.lenienthead import HEAD_REFUSED, nginx_head


def invalid_header_quote(head: bytes) -> tuple[bytes, int] | None:
    """The quoted part and the byte nginx's parser stopped at, for the first header line of
    ``head`` (status line included) that ngx_http_parse_header_line refuses; None when it refuses
    none (the head is then bad only to llhttp, or incomplete)."""
    verdict, _, stop, line_start = nginx_head(head)
    return (head[line_start:stop], head[stop]) if verdict == HEAD_REFUSED else None


def invalid_header_message(head: bytes) -> str:
    """The error line's message for a head llhttp refused (latin-1 text of nginx's bytes)."""
    found = invalid_header_quote(head)
    if found is None:  # nginx's parser would not refuse it: no quote to give
        return "upstream sent invalid header while reading response header from upstream"
    quoted, stop = found
    return (f'upstream sent invalid header: "{quoted.decode("latin-1")}\\x{stop:02x}..." '
            "while reading response header from upstream")
