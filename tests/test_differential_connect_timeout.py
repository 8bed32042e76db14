"""proxy_connect_timeout against real nginx: a peer that never completes the TCP handshake.

The "black hole" (tests/blackhole.py) is a loopback listener whose accept queue is full: a
connect to it hangs until the proxy gives up, as a connect to a dead host does. nginx and newproxy
run the same config, with that peer put in place of the recording upstream (by line) in both
rewired configs. Compared for each request: the
status and body the client got, which recording upstream saw the request (proxy_next_upstream
after the timeout, and the peer marked failed for the next one), that the answer took at least the
timeout, and the ``[error]`` and ``[warn]`` lines each wrote (time, pid and connection numbers
masked): a group's black hole reaches max_fails (1) at its first timeout, and nginx warns
``upstream server temporarily disabled`` before its ``upstream timed out`` line (the peer is freed
first, in ngx_http_upstream_next); the lone peer of /alone/ is never marked, so never warned about.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator

import pytest

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import StartedTargets, started_targets
from tests.blackhole import black_hole, into_hole

TIMEOUT = 0.3  # proxy_connect_timeout, seconds

CONFIG = """
events {}
http {
    upstream pair {
        server 127.0.0.1:9401;
        server 127.0.0.1:9402;
    }
    upstream tried_once {
        server 127.0.0.1:9403;
        server 127.0.0.1:9404;
    }
    server {
        listen 127.0.0.1:8080;
        server_name connect.test;
        proxy_connect_timeout 300ms;
        location /alone/ { proxy_pass http://127.0.0.1:9400; }
        location /pair/ { proxy_pass http://pair; }
        location /once/ { proxy_next_upstream off; proxy_pass http://tried_once; }
        location /page/ { proxy_pass http://127.0.0.1:9400; error_page 504 = /fallback; }
        location = /fallback { return 200 "fallback\\n"; }
    }
}
"""
# The lines whose peer is the black hole: proxy_pass to 9400, the first server of each group.
HOLE_LINES = {number for number, line in enumerate(CONFIG.splitlines(), start=1)
              if "9400" in line or "server 127.0.0.1:9401" in line or "server 127.0.0.1:9403" in line}
SERVER = re.compile(rb"\b(?:nginx|newproxy)(?:/[\d.]+)?(?=</center>)")
LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")


@pytest.fixture(scope="module")
def hole() -> Iterator[int]:
    with black_hole() as port:
        yield port


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, hole: int) -> Iterator[tuple[StartedTargets, str]]:
    tmp = tmp_path_factory.mktemp("connect_timeout")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run"), tweak_reference=into_hole(hole, HOLE_LINES),
                         tweak_other=into_hole(hole, HOLE_LINES)) as started:
        yield started, str(tmp / "run")


def fetch(port: int, target: str) -> tuple[int, bytes, float]:
    """(status, body, seconds) of a GET on a connection of its own."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: connect.test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, time.monotonic() - start


def logged(log: str, start: int) -> list[str]:
    time.sleep(0.2)  # both write after answering
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read()
    return [f"[{m.group(1)}] {m.group(2)}" for m in map(LINE.match, text.splitlines())
            if m and m.group(1) in ("error", "warn")]


# In this order: /pair/ and /once/ twice each, the second time after the black hole failed once.
CASES = ["/alone/a?x=1", "/pair/b", "/pair/c", "/once/d", "/once/e", "/page/f"]


def test_connect_timeout_matches_nginx(run: tuple[StartedTargets, str], hole: int) -> None:
    started, base = run
    seen: list[list[tuple[object, ...]]] = []
    for target in started.targets:
        port = target.listen_ports["127.0.0.1:8080"]
        log = os.path.join(base, target.label, "error.log")
        outcomes: list[tuple[object, ...]] = []
        for path in CASES:
            start = os.path.getsize(log)
            status, body, took = fetch(port, path)
            started.pool.settle()
            upstreams = [(r.upstream, r.uri) for r in started.pool.take()]
            lines = logged(log, start)
            assert took < TIMEOUT + 1.5, (target.label, path, took)
            body = SERVER.sub(b"<server>", body)  # "nginx/1.22.1" or "newproxy/0.1.0" on error pages
            outcomes.append((path, status, body, upstreams, lines, took >= TIMEOUT * 0.95))
        seen.append(outcomes)
    assert seen[0] == seen[1]
    # And what nginx did, spelled out: the black hole times out (504, or the next peer once it failed).
    by_path = {outcome[0]: outcome[1:] for outcome in seen[0]}
    timed_out = ("[error] upstream timed out (110: Connection timed out) while connecting to upstream, "
                 "client: 127.0.0.1, server: connect.test, ")
    status, _, upstreams, lines, waited = by_path["/alone/a?x=1"]
    assert (status, upstreams, waited) == (504, [], True)
    assert lines == [timed_out + 'request: "GET /alone/a?x=1 HTTP/1.1", upstream: '
                     f'"http://127.0.0.1:{hole}/alone/a?x=1", host: "connect.test"']
    disabled = ("[warn] upstream server temporarily disabled while connecting to upstream, "
                "client: 127.0.0.1, server: connect.test, ")
    assert by_path["/pair/b"][0::2] == (200, [("127.0.0.1:9402", "/pair/b")], True)
    assert [line.split(", request: ")[0] + ", " for line in by_path["/pair/b"][3]] == [disabled, timed_out]
    assert by_path["/pair/c"][0::3] == (200, [])
    assert by_path["/pair/c"][0::2] == (200, [("127.0.0.1:9402", "/pair/c")], False)  # the hole is marked failed
    assert by_path["/once/d"][0::2] == (504, [], True)  # proxy_next_upstream off: marked all the same
    assert by_path["/once/d"][3] == [
        prefix + 'request: "GET /once/d HTTP/1.1", upstream: '
        f'"http://127.0.0.1:{hole}/once/d", host: "connect.test"' for prefix in (disabled, timed_out)]
    assert by_path["/once/e"][0::2] == (200, [("127.0.0.1:9404", "/once/e")], False)
    assert by_path["/page/f"][:2] == (200, b"fallback\n")  # error_page 504 after the timeout
