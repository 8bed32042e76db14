"""newproxy/http/lenienthead.py: nginx's header-line parser, ported for the heads llhttp refuses.

What the differential test (test_differential_upstream_faultlines.py) cannot reach by itself: a head
cut anywhere (arriving in pieces) is "more to come" until its last line; a refused head stops where
nginx's parser stops (what its error line quotes, invalidheader.py)."""

from __future__ import annotations

import pytest

from newproxy.http.invalidheader import invalid_header_quote
from newproxy.http.lenienthead import HEAD_DONE, HEAD_MORE, HEAD_REFUSED, llhttp_head, nginx_head

ACCEPTED = [
    (b"HTTP/1.1 200 OK\r\nX@Odd: a\r\nContent-Length: 2\r\n\r\n", [(b"X@Odd", b"a"), (b"Content-Length", b"2")]),
    (b"HTTP/1.1 200 OK\r\nX-Bare\r\nX-After:  d  \r\n\r\n", [(b"X-Bare", b""), (b"X-After", b"d")]),
    (b"HTTP/1.1 200 OK\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", [(b"X-A", b"1")]),
    (b"HTTP/1.1 200 OK\nX-A: 1\nX\xff: \t2 3\n\n", [(b"X-A", b"1"), (b"X\xff", b"\t2 3")]),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\r\n\r\n", [(b"X-A", b"1")]),
]
# A refused head, and what nginx's error line quotes: the line up to where the parser stopped, and
# that byte (test_differential_upstream_faultlines.py checks these against nginx's own lines).
REFUSED = [
    (b"HTTP/1.1 200 OK\r\nX Bad: a\r\n\r\n", (b"X", 0x20)),
    (b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\n\r\n", (b"X-Bad: a", 0)),
    (b"HTTP/1.1 200 OK\r\n: a\r\n\r\n", (b"", 0x3A)),
    (b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\n\r\n", (b"X-Bad: a", 0x0D)),
    (b"HTTP/1.1 200 OK\r\nX-Bad: a  \rb\r\n\r\n", (b"X-Bad: a", 0x20)),
    (b"HTTP/1.1 200 OK\r\n\rX\r\n\r\n", (b"", 0x0D)),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n X-Folded: 2\r\n\r\n", (b"", 0x20)),
]


@pytest.mark.parametrize(("head", "lines"), ACCEPTED)
def test_accepted_heads_give_nginx_lines_and_more_until_complete(head: bytes, lines: list[tuple[bytes, bytes]]) -> None:
    body = b"ok"
    verdict, got, end, _ = nginx_head(head + body)
    assert (verdict, got, end) == (HEAD_DONE, lines, len(head))
    assert invalid_header_quote(head) is None
    for cut in range(len(head)):
        assert nginx_head(head[:cut])[0] == HEAD_MORE, cut
    # What a fresh llhttp parser is given: token names, CRLF lines, the same number of them.
    rewritten = llhttp_head(head, got)
    assert rewritten.count(b"\r\n") == len(lines) + 2 and rewritten.endswith(b"\r\n\r\n")
    assert b"@" not in rewritten and b"\xff" not in rewritten


@pytest.mark.parametrize(("head", "quote"), REFUSED)
def test_refused_heads_stop_where_nginx_stops(head: bytes, quote: tuple[bytes, int]) -> None:
    assert nginx_head(head)[0] == HEAD_REFUSED
    assert invalid_header_quote(head) == quote


def test_an_odd_name_never_reads_as_a_framing_header() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent@Length: 5\r\nTransfer\xffEncoding: chunked\r\n\r\n"
    _, lines, _, _ = nginx_head(head)
    rewritten = llhttp_head(head, lines)
    assert b"\r\nContent~Length: 5\r\n" in rewritten and b"\r\nTransfer~Encoding: chunked\r\n" in rewritten
