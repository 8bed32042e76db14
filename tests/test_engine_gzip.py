"""The gzip filter's pure parts, as nginx's C code reads them (the differential test compares the
whole against nginx; these pin the corners and that no input makes them raise)."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from newproxy.config import GzipConfig
from newproxy.engine.gzip import (
    accepts_gzip,
    compile_gzip,
    dechunk,
    is_msie6,
    proxy_type,
    rewrite_head,
    weak_etag,
)
from newproxy.engine.types import Request


def test_accept_encoding_as_ngx_http_gzip_accept_encoding() -> None:
    accepted = [b"gzip", b"gzip,", b"GZIP", b"br, gzip", b"gzip;q=0.5", b"gzip; q=1", b"gzip;q=0.001",
                b"x-gzip, gzip", b"gzip ;q=0.1", b"gzip;q=1.000"]
    # Any parameter but q, a q without a value, more than 3 decimals: refused, as the C code reads them.
    refused = [b"", b"gzi", b"deflate", b"x-gzip", b"gzip;q=0", b"gzip;q=0.000", b"gzipx", b"gzip;q=2",
               b"gzip;Q=0", b"identity", b"*", b"gzip;level=1", b"gzip;q=", b"gzip;q=1.0001"]
    assert [v for v in accepted if not accepts_gzip(v)] == []
    assert [v for v in refused if accepts_gzip(v)] == []


@given(st.binary(max_size=40))
def test_accept_encoding_never_raises(value: bytes) -> None:
    accepts_gzip(value)
    accepts_gzip(b"gzip;" + value)
    accepts_gzip(b"gzip;q=" + value)


def test_msie6_as_ngx_http_process_user_agent() -> None:
    assert is_msie6(b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)")
    assert is_msie6(b"Mozilla/4.0 (compatible; MSIE 5.5; Win)")
    assert not is_msie6(b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)")
    assert not is_msie6(b"Mozilla/4.0 (compatible; MSIE 7.0)")
    assert not is_msie6(b"Opera/9 (MSIE 6.0; x)")
    assert is_msie6(b"MSIE 6.0") and not is_msie6(b"MSIE 6.")  # nginx wants a byte after "MSIE N."


def test_upstream_type_and_etag() -> None:
    assert proxy_type(b"text/plain; charset=utf-8") == b"text/plain"
    assert proxy_type(b"text/plain; foo=bar") == b"text/plain; foo=bar"
    assert proxy_type(b"text/plain;  charset=x; a=b") == b"text/plain"
    assert weak_etag(b'"x"') == b'W/"x"' and weak_etag(b'W/"x"') == b'W/"x"' and weak_etag(b"x") is None
    assert dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == b"abcde"


def test_rewrite_head_vary_only_and_compress() -> None:
    gz = compile_gzip(GzipConfig(vary=True, types=["text/html", "text/css"]))
    assert gz is not None
    head = (b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Type: text/css\r\nContent-Length: 500\r\n"
            b"Connection: keep-alive\r\nETag: \"a\"\r\nAccept-Ranges: bytes\r\n\r\n")

    def request(*headers: tuple[bytes, bytes], version: bytes = b"1.1") -> Request:
        return Request(b"GET", b"/", version, list(headers), b"", ("127.0.0.1", 1), ("127.0.0.1", 80))

    vary_only, decision, _ = rewrite_head(gz, request(), b"GET", head, False)
    assert decision == 1 and vary_only == head.replace(b"keep-alive\r\n", b"keep-alive\r\nVary: Accept-Encoding\r\n")
    out, decision, keepalive = rewrite_head(gz, request((b"Accept-Encoding", b"gzip")), b"GET", head, False)
    assert decision == 2 and keepalive
    assert out == (b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Type: text/css\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: keep-alive\r\nVary: Accept-Encoding\r\nETag: W/\"a\"\r\nContent-Encoding: gzip\r\n\r\n")
    out, decision, keepalive = rewrite_head(gz, request((b"Accept-Encoding", b"gzip"), version=b"1.0"), b"GET",
                                            head, False)
    assert decision == 1 and b"Content-Encoding" not in out  # gzip_http_version 1.1: looked at, Vary only
    small = head.replace(b"500", b"19")
    assert rewrite_head(gz, request((b"Accept-Encoding", b"gzip")), b"GET", small, False)[1] == 0
    assert zlib.decompress(gz.compress(b"abc" * 100), 31) == b"abc" * 100
