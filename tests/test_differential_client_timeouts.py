"""client_header_timeout, client_body_timeout, keepalive_timeout, keepalive_requests and
large_client_header_buffers against real nginx (translator/client.py -> newproxy's ClientConfig).

Both targets start from one config (shadow.runner.started_targets) and get the same bytes over
plain sockets at the same moment. Compared: everything each sent back (normalised: Date, Server,
the listen port) and when each closed the connection. Tolerance: the two close times within 0.5 s
of each other, and each at least 0.8 s for a 1 s timeout (nginx's timers are coarse too).
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
    client_header_timeout 1s;
    client_body_timeout 1s;
    keepalive_timeout 1s;
    keepalive_requests 3;
    large_client_header_buffers 2 1k;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name t.test;
        location / { proxy_pass http://app; }
        location = /r { return 200 "r\\n"; }
    }
}
"""
NO_KEEPALIVE = CONF.replace("keepalive_timeout 1s;", "keepalive_timeout 0;")
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n")]


async def _talk(port: int, data: bytes, limit: float = 4.0) -> tuple[bytes, float | None]:
    """Send ``data`` and read until the server closes: (bytes received, seconds from the last byte
    sent to the close, None if still open at ``limit``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received, closed_after, _ = await read_until_close(reader, limit)
    writer.close()
    return received, closed_after


async def read_until_close(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float | None, bool]:
    """What the server sends until it closes: (bytes, seconds until the close or None if still open
    at ``limit``, whether the close was a reset)."""
    sent = time.monotonic()
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit - (time.monotonic() - sent))
            if not chunk:
                return received, time.monotonic() - sent, False
            received += chunk
    except (TimeoutError, ValueError):
        return received, None, False
    except ConnectionResetError:
        return received, time.monotonic() - sent, True


def _normal(data: bytes) -> bytes:
    for pattern, replacement in _NOISE:
        data = pattern.sub(replacement, data)
    return data


def _both(tmp_path: Path, conf: str, cases: dict[str, bytes]) -> dict[str, tuple[tuple[bytes, float | None], ...]]:
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]

        async def run() -> dict[str, tuple[tuple[bytes, float | None], ...]]:
            names = list(cases)
            outcomes = await asyncio.gather(*(_talk(port, cases[name]) for name in names for port in ports))
            return {name: (outcomes[2 * i], outcomes[2 * i + 1]) for i, name in enumerate(names)}

        return asyncio.run(run())


def _assert_same(name: str, nginx: tuple[bytes, float | None], other: tuple[bytes, float | None],
                 at_least: float | None = None) -> None:
    assert _normal(nginx[0]) == _normal(other[0]), (name, nginx[0][:600], other[0][:600])
    if nginx[1] is None or other[1] is None:
        assert nginx[1] is None and other[1] is None, (name, nginx[1], other[1])
        return
    assert abs(nginx[1] - other[1]) <= 0.5, (name, nginx[1], other[1])
    if at_least is not None:
        assert nginx[1] >= at_least and other[1] >= at_least, (name, nginx[1], other[1])


HOST = b"Host: t.test\r\n"


def test_timeouts_and_header_limits_match_nginx(tmp_path: Path) -> None:
    cases = {
        "header timeout": b"GET /r HTTP/1.1\r\n" + HOST,
        "request line timeout": b"GET /r HTT",
        "keepalive timeout": b"GET /r HTTP/1.1\r\n" + HOST + b"\r\n",
        "keepalive_requests": (b"GET /r HTTP/1.1\r\n" + HOST + b"\r\n") * 4,
        "body timeout": b"POST /p HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc",
        "line over 1k": b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        "line under 1k": b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
        "header over 1k": b"GET /r HTTP/1.1\r\n" + HOST + b"X-Long: " + b"b" * 1100 + b"\r\n\r\n",
        "headers over 2k": b"GET /r HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 700)
                                                                 for i in range(4)) + b"\r\n",
    }
    outcomes = _both(tmp_path, CONF, cases)
    for name, at_least in [("header timeout", 0.8), ("request line timeout", 0.8), ("keepalive timeout", 0.8),
                           ("body timeout", 0.8), ("keepalive_requests", None), ("line over 1k", None),
                           ("line under 1k", None), ("header over 1k", None), ("headers over 2k", None)]:
        nginx, other = outcomes[name]
        _assert_same(name, nginx, other, at_least)
    # What the cases show, so that the comparison cannot pass on two empty answers:
    assert outcomes["keepalive_requests"][0][0].count(b"HTTP/1.1 200") == 3
    assert b"Connection: close" in outcomes["keepalive_requests"][0][0].split(b"HTTP/1.1 200")[3]
    assert outcomes["line over 1k"][0][0].startswith(b"HTTP/1.1 414")
    assert outcomes["header over 1k"][0][0].startswith(b"HTTP/1.1 400")
    assert outcomes["line under 1k"][0][0].startswith(b"HTTP/1.1 200")


def test_keepalive_timeout_zero_closes_after_each_response(tmp_path: Path) -> None:
    outcomes = _both(tmp_path, NO_KEEPALIVE, {"one": b"GET /r HTTP/1.1\r\n" + HOST + b"\r\n"})
    nginx, other = outcomes["one"]
    _assert_same("one", nginx, other)
    assert b"Connection: close" in nginx[0] and nginx[1] is not None and nginx[1] < 0.5
