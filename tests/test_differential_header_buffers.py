"""client_header_buffer_size and large_client_header_buffers set small, against nginx: where a
request line or header line moves to a large buffer, when one is too long (414, 494), when no
large buffer is left, and a pipelined request continuing in the buffer it was read into
(newproxy/http/h1parse.py follows ngx_http_alloc_large_header_buffer). Raw bytes through the
shadow harness's raw mode: statuses, connection fate and forwarded bytes compared.
"""

from __future__ import annotations

from pathlib import Path

from shadow.raw import RawCase, run_raw

CONFIG = """
events {}
http {
    client_header_buffer_size 64;
    large_client_header_buffers 2 512;  # at least connection_pool_size (512)
    upstream backend { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name raw.test;
        location / { proxy_pass http://backend; }
    }
}
"""

HOST = b"Host: raw.test\r\n"


def _get(path: bytes, *lines: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\n" + HOST + b"".join(lines) + b"\r\n"


def _x(name: bytes, size: int) -> bytes:
    """A header line of ``size`` bytes, CRLF included."""
    return name + b": " + b"v" * (size - len(name) - 4) + b"\r\n"


CASES = [
    # Request lines around 64 (the first buffer) and 512 (a large one): "GET /... HTTP/1.1\r\n".
    RawCase("line-64", _get(b"/" + b"a" * 47)),
    RawCase("line-65", _get(b"/" + b"a" * 48)),
    RawCase("line-512", _get(b"/" + b"a" * 496)),
    RawCase("line-513", _get(b"/" + b"a" * 497)),
    # Header lines around 512.
    RawCase("header-512", _get(b"/h", _x(b"X-A", 512))),
    RawCase("header-513", _get(b"/h", _x(b"X-A", 513))),
    # Two large buffers: two long lines fit, a third long one finds none left.
    RawCase("two-large", _get(b"/h", _x(b"X-A", 500), _x(b"X-B", 500))),
    RawCase("three-large", _get(b"/h", _x(b"X-A", 500), _x(b"X-B", 500), _x(b"X-C", 500))),
    RawCase("many-short", _get(b"/h", *[_x(b"X-%d" % i, 40) for i in range(24)])),
    RawCase("many-short-over", _get(b"/h", *[_x(b"X-%d" % i, 40) for i in range(30)])),
    # Pipelined: the second request starts in the first buffer and continues in large ones.
    RawCase("pipelined-small", _get(b"/1") + _get(b"/2", _x(b"X-A", 400))),
    RawCase("pipelined-large", _get(b"/1", _x(b"X-A", 400)) + _get(b"/2", _x(b"X-B", 400), _x(b"X-C", 400))),
    RawCase("leading-crlf", b"\r\n" * 50 + _get(b"/c")),
]


def test_header_buffers_match_nginx(tmp_path: Path) -> None:
    config = tmp_path / "nginx.conf"
    config.write_text(CONFIG)
    results = run_raw(str(config), CASES, workdir=str(tmp_path / "work"))
    differing = {r.case.name: r.diffs for r in results if r.diffs}
    assert not differing, differing
    # The edges were reached: refusals among the answers, not only 200s.
    statuses = {r.case.name: [resp["status"] for resp in r.nginx["responses"]] for r in results}
    assert statuses["line-513"] == [414] and statuses["header-513"] == [400]  # 494 is sent as 400
    assert statuses["line-512"] == [200] and statuses["header-512"] == [200]
    assert statuses["three-large"] == [400] and statuses["pipelined-large"] == [200, 400]
