"""proxy_send_timeout against real nginx: a peer that stops reading.

The recording upstreams stall on request: ``/__noread/`` reads the request head and nothing more
(the body backs up in the socket buffers), and in a tunnel a read containing ``__stall__`` is the
last one. Compared for each case: what the client got (normalised: Date, Server, the built-in
page's server token), how the connection ended, the upstream's record, and when: the seconds from
the client's last progress to the answer or the close, within ``TOLERANCE`` of nginx's.

nginx (ngx_http_upstream_send_request, ngx_http_upstream_process_upgraded): while a write to the
peer is blocked, proxy_send_timeout runs from the last progress; when it passes, 504 before the
answer's head (or the next peer), a close in a tunnel. A tunnel not blocked only has
proxy_read_timeout, from the last traffic either way.
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
    client_max_body_size 64m;
    client_body_buffer_size 64m;
    server {
        listen 8080;
        server_name t.test;
        location /send/ { proxy_send_timeout 1s; proxy_read_timeout 4s; proxy_pass http://127.0.0.1:9001; }
        location /read/ { proxy_send_timeout 4s; proxy_read_timeout 1s; proxy_pass http://127.0.0.1:9001; }
        location /ws/ {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_send_timeout 1s;
            proxy_read_timeout 2500ms;
            proxy_pass http://127.0.0.1:9001;
        }
    }
}
"""
TOLERANCE = 0.4
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n")]
BIG = 24 * 1024 * 1024  # more than the loopback socket buffers hold on both hops


def _normal(data: bytes) -> bytes:
    for pattern, replacement in _NOISE:
        data = pattern.sub(replacement, data)
    return data


async def _until_close(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float | None]:
    """Bytes until the server closes, and when it did (None: still open after ``limit`` s)."""
    data = b""
    start = time.monotonic()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit - (time.monotonic() - start))
            if not chunk:
                return data, time.monotonic()
            data += chunk
    except (TimeoutError, ValueError):
        return data, None
    except ConnectionResetError:
        return data, time.monotonic()


async def _body_case(port: int, path: str, size: int) -> tuple[bytes, float | None]:
    """POST ``size`` bytes; the seconds from the last byte the server took to the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST %s HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                 % (path.encode(), size))
    writer.write(b"b" * size)
    await writer.drain()  # nginx and newproxy both read the whole body before they connect
    sent = time.monotonic()
    data, closed = await _until_close(reader, 8.0)
    writer.close()
    return data, None if closed is None else closed - sent


async def _tunnel_case(port: int, stall: bool) -> tuple[bytes, float | None]:
    """A tunnel: one echoed frame, then (stall) ``__stall__`` and a flood the peer never reads,
    or silence; the seconds from the last echo to the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws/__upgrade/x HTTP/1.1\r\nHost: t.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3.0)
    writer.write(b"hello")
    echo = await asyncio.wait_for(reader.readexactly(len(b"ECHO(hello)")), 3.0)
    last = time.monotonic()
    if stall:
        writer.write(b"__stall__")
        echo += await asyncio.wait_for(reader.readexactly(len(b"ECHO(__stall__)")), 3.0)
        last = time.monotonic()
        writer.transport.write(b"f" * BIG)  # never drained: the peer reads no more
    data, closed = await _until_close(reader, 6.0)
    writer.transport.abort()
    return head + echo + data, None if closed is None else closed - last


def test_send_timeout_with_a_stalled_peer_matches_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    cases = {
        "request body to a peer that stopped reading": lambda port: _body_case(port, "/send/__noread/a", BIG),
        "small body, peer silent: read timeout": lambda port: _body_case(port, "/read/__noread/b", 1000),
        "tunnel, peer stopped reading": lambda port: _tunnel_case(port, True),
        "tunnel, idle: read timeout only": lambda port: _tunnel_case(port, False),
    }
    seen: dict[str, list[tuple[bytes, float | None, list[bytes]]]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]
        for name, case in cases.items():
            for port in ports:  # nginx, then newproxy: one at a time, so the upstream records are theirs
                data, after = asyncio.run(case(port))
                time.sleep(0.05)
                heads = [r.raw.split(b"\r\n\r\n")[0] for r in started.pool.take()]
                seen.setdefault(name, []).append((_normal(data), after, [re.sub(rb":\d+", b":-", h) for h in heads]))
    problems = []
    for name, (nginx, other) in seen.items():
        if nginx[0] != other[0] or nginx[2] != other[2]:
            problems.append(f"{name}: {nginx!r} != {other!r}")
        elif nginx[1] is None or other[1] is None or abs(nginx[1] - other[1]) > TOLERANCE:
            problems.append(f"{name}: closed after {nginx[1]} (nginx), {other[1]} (newproxy)")
    assert not problems, "\n".join(problems)
    # What the cases show, so that the comparison cannot pass on two empty answers:
    assert seen["request body to a peer that stopped reading"][0][0].startswith(b"HTTP/1.1 504")
    assert 0.8 < seen["request body to a peer that stopped reading"][0][1] < 2.5  # type: ignore[operator]
    assert 0.8 < seen["tunnel, peer stopped reading"][0][1] < 1.8  # type: ignore[operator]
    assert 2.2 < seen["tunnel, idle: read timeout only"][0][1] < 3.2  # type: ignore[operator]
