"""``Expect: 100-continue`` against real nginx, with a client that waits for the interim answer.

Each case sends its request head, waits (up to 0.4 s) for what the server says before the body,
then sends the body and reads until the server closes (or 0.4 s of silence). Compared per case,
after normalising Date, Server and the listen port: what came before the body (nginx's
``HTTP/1.1 100 Continue``, a final answer, or nothing), what came after, and what the recording
upstreams received (nginx never forwards Expect: it is among its proxy_set_header defaults).

nginx's rules (ngx_http_test_expect): the 100 goes to HTTP/1.1 requests whose Expect is
"100-continue" in any case, when a handler reads or discards the body (proxy_pass, return with
text, files) and not when the answer is an error page (the special response handler marks the
expectation tested), nor when a declared length is over client_max_body_size (413 at once).

Only proxied locations are compared here; where nginx discards the body (``return``, files, error
pages: answered at the head, with a 100 first unless the answer is an error page), see
tests/test_differential_discard.py.
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
        server_name e.test;
        location /p/ { proxy_pass http://127.0.0.1:9001; }
        location /p11/ { proxy_http_version 1.1; proxy_pass http://127.0.0.1:9001; }
        location /keep/ { proxy_set_header Expect $http_expect; proxy_pass http://127.0.0.1:9001; }
        location /unbuf/ { proxy_request_buffering off; proxy_http_version 1.1; proxy_pass http://127.0.0.1:9001; }
        location /big/ { client_max_body_size 10; proxy_pass http://127.0.0.1:9001; }
    }
}
"""
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n"),
          (re.compile(rb"127\.0\.0\.1:\d+"), b"127.0.0.1:-")]
HOST = b"Host: e.test\r\nConnection: close\r\n"


def _normal(data: bytes) -> bytes:
    for pattern, replacement in _NOISE:
        data = pattern.sub(replacement, data)
    return data


async def _read_for(reader: asyncio.StreamReader, quiet: float) -> tuple[bytes, bool]:
    """What arrives until ``quiet`` seconds pass without a byte, and whether the server closed."""
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), quiet)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        return data, True


async def _staged(port: int, head: bytes, body: bytes) -> tuple[bytes, bytes, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    before, closed = await _read_for(reader, 0.4)
    after = b""
    if not closed:
        try:
            writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        after, closed = await _read_for(reader, 0.4)
    writer.close()
    return before, after, closed


CASES: dict[str, tuple[bytes, bytes]] = {
    "proxied": (b"POST /p/a HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", b"hello"),
    "proxied, upper case": (b"POST /p/b HTTP/1.1\r\n" + HOST + b"Expect: 100-CONTINUE\r\nContent-Length: 5\r\n\r\n",
                            b"hello"),
    "other expectation": (b"POST /p/c HTTP/1.1\r\n" + HOST + b"Expect: something\r\nContent-Length: 5\r\n\r\n",
                          b"hello"),
    "HTTP/1.0": (b"POST /p/d HTTP/1.0\r\nHost: e.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", b"hello"),
    "chunked": (b"POST /p11/e HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n"),
    "no body": (b"GET /p/f HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n\r\n", b""),
    "empty body": (b"POST /p/g HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n", b""),
    "Expect set upstream": (b"POST /keep/h HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
                            b"abc"),
    "unbuffered": (b"POST /unbuf/i HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                   b"hello"),
    "over client_max_body_size": (b"POST /p/j HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n"
                                  b"Content-Length: 2000\r\n\r\n", b"x" * 2000),
    "over the location's limit": (b"POST /big/k HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n"
                                  b"Content-Length: 20\r\n\r\n", b"y" * 20),
    "chunked over the limit": (b"POST /big/l HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n", b"14\r\n" + b"z" * 20 + b"\r\n0\r\n\r\n"),
}


def test_expect_100_continue_matches_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    seen: dict[str, list[tuple[bytes, bytes, bool, list[bytes]]]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]
        for name, (head, body) in CASES.items():
            for port in ports:  # nginx, then newproxy: one at a time, so the upstream requests are theirs
                before, after, closed = asyncio.run(_staged(port, head, body))
                started.pool.settle()
                time.sleep(0.02)
                forwarded = [_normal(r.raw) for r in started.pool.take()]
                seen.setdefault(name, []).append((_normal(before), _normal(after), closed, forwarded))
    differing = {name: pair for name, pair in seen.items() if pair[0] != pair[1]}
    assert not differing, "\n".join(f"{n}: {p!r}" for n, p in differing.items())
    # What the cases show, so that the comparison cannot pass on two empty answers:
    assert seen["proxied"][0][0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"Expect" not in seen["proxied"][0][3][0] and seen["proxied"][0][3][0].endswith(b"hello")
    assert seen["HTTP/1.0"][0][0] == b"" and seen["other expectation"][0][0] == b""
    assert seen["over client_max_body_size"][0][0].startswith(b"HTTP/1.1 413")
    assert seen["chunked over the limit"][0][0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert seen["chunked over the limit"][0][1].startswith(b"HTTP/1.1 413")
