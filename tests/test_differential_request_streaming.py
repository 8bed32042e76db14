"""proxy_request_buffering off against real nginx, with a client that sends its body late.

nginx (ngx_http_proxy_handler, ngx_http_read_client_request_body) reads a request body unbuffered
when proxy_request_buffering is off, unless proxy_set_body is used or the body is chunked and the
upstream speaks HTTP/1.0. It connects as soon as it has what arrived with the head: a body by
length goes up with its Content-Length, but a chunked one that is still arriving goes up chunked
(``Transfer-Encoding: chunked``, $proxy_internal_chunked); one that came whole with the head goes
with the Content-Length of what was read. Each case here sends the head (and maybe part of the
body), pauses 0.2 s, then sends the rest, and compares what the client got and what the recording
upstream received (method, URI, headers in order, decoded body).

Here only the upstream request's framing is compared; when each part of the body reaches the
upstream, and what happens when the client or the peer fails mid-body, is
tests/test_differential_unbuffered_body.py. Not compared: an error_page or X-Accel-Redirect to
another proxied location after a body nginx streamed (nginx cannot send it again).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

CONF = """
events {}
http {
    client_max_body_size 1k;
    proxy_read_timeout 2s;
    server {
        listen 8080;
        server_name s.test;
        location /unbuf11/ { proxy_request_buffering off; proxy_http_version 1.1; proxy_pass http://127.0.0.1:9001; }
        location /unbuf10/ { proxy_request_buffering off; proxy_pass http://127.0.0.1:9001; }
        location /buf11/ { proxy_http_version 1.1; proxy_pass http://127.0.0.1:9001; }
        location /setbody/ {
            proxy_request_buffering off; proxy_http_version 1.1; proxy_set_body "set $request_method";
            proxy_pass http://127.0.0.1:9001;
        }
        location /keepte/ {
            proxy_request_buffering off; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_pass http://127.0.0.1:9001;
        }
    }
}
"""
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n"),
          (re.compile(rb"127\.0\.0\.1:\d+"), b"127.0.0.1:-")]
HEAD = b"Host: s.test\r\nConnection: close\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def _normal(data: bytes) -> bytes:
    for pattern, replacement in _NOISE:
        data = pattern.sub(replacement, data)
    return data


async def _staged(port: int, first: bytes, later: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    await writer.drain()
    await asyncio.sleep(0.2)
    if later:
        writer.write(later)
        await writer.drain()
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 3.0)
            if not chunk:
                break
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return received


CASES: dict[str, tuple[bytes, bytes]] = {
    "chunked, all late": (b"POST /unbuf11/a HTTP/1.1\r\n" + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
    "chunked, first chunk with the head": (b"POST /unbuf11/b HTTP/1.1\r\n" + CHUNKED + b"3\r\nabc\r\n",
                                           b"4\r\ndefg\r\n0\r\n\r\n"),
    "chunked, only the last chunk late": (b"POST /unbuf11/c HTTP/1.1\r\n" + CHUNKED + b"3\r\nabc\r\n", b"0\r\n\r\n"),
    "chunked, empty, late": (b"PUT /unbuf11/d HTTP/1.1\r\n" + CHUNKED, b"0\r\n\r\n"),
    "chunked with the head": (b"POST /unbuf11/e HTTP/1.1\r\n" + CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", b""),
    "length, late": (b"POST /unbuf11/f HTTP/1.1\r\n" + HEAD + b"Content-Length: 5\r\n\r\n", b"hello"),
    "length, part late": (b"POST /unbuf11/g HTTP/1.1\r\n" + HEAD + b"Content-Length: 5\r\n\r\nhe", b"llo"),
    "HTTP/1.0 upstream, chunked late": (b"POST /unbuf10/h HTTP/1.1\r\n" + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
    "buffered, chunked late": (b"POST /buf11/i HTTP/1.1\r\n" + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
    "proxy_set_body, chunked late": (b"POST /setbody/j HTTP/1.1\r\n" + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
    "over client_max_body_size, late": (b"POST /unbuf11/m HTTP/1.1\r\n" + CHUNKED + b"3\r\nabc\r\n",
                                        b"800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"),
    "keep-alive upstream, chunked late": (b"POST /keepte/k HTTP/1.1\r\n" + CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
}


def test_unbuffered_request_bodies_match_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    seen: dict[str, list[tuple[bytes, list[tuple[str, str, str, list[tuple[str, str]], bytes]]]]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]
        for name, (first, later) in CASES.items():
            for port in ports:  # nginx, then newproxy: one at a time, so the upstream requests are theirs
                answer = asyncio.run(_staged(port, first, later))
                started.pool.settle()
                time.sleep(0.02)
                forwarded = [(r.method, r.uri, r.version, [(n, _normal(v.encode()).decode()) for n, v in r.headers],
                              r.body) for r in started.pool.take()]
                seen.setdefault(name, []).append((_normal(answer), forwarded))
    differing = {name: pair for name, pair in seen.items() if pair[0] != pair[1]}
    assert not differing, "\n".join(f"{n}: {p!r}" for n, p in differing.items())
    # What the cases show, so that the comparison cannot pass on two empty answers:
    chunked = seen["chunked, all late"][0][1][0]
    assert ("Transfer-Encoding", "chunked") in chunked[3] and chunked[4] == b"hello", chunked
    whole = seen["chunked with the head"][0][1][0]
    assert ("Content-Length", "5") in whole[3], whole
    assert ("Content-Length", "5") in seen["HTTP/1.0 upstream, chunked late"][0][1][0][3]
    assert seen["over client_max_body_size, late"][0][0].startswith(b"HTTP/1.1 413")
