"""The error-log lines of failing peers against real nginx: ``[warn] upstream server temporarily
disabled`` and ``[error] no live upstreams``.

nginx's peer free (ngx_http_upstream_free_round_robin_peer, shared by hash, ip_hash, least_conn
and random) warns when a failure brings a peer to max_fails, in the phase the failure happened in
(``while connecting to upstream`` for a refused connect, ``while reading response header from
upstream`` for an answer proxy_next_upstream http_502 rejects or a proxy_read_timeout); a timeout's
``[error] upstream timed out`` comes after that warning (ngx_http_upstream_next writes it after the
free), a connect error's before it. Once every peer of a group is disabled, nginx writes ``no live
upstreams`` naming the *group* and the URI the request would have been sent with (a proxy_pass
with a URI part, or with variables naming the group).

Each request goes to nginx, then the whole list to newproxy (each keeps its own peer state), on a
connection of its own; compared per request: the status, which recording upstream saw it, and the
``[error]``/``[warn]`` lines written meanwhile (time, pid and connection numbers masked). What
nginx wrote is also spelled out, so that a case that stopped writing a line is seen.
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

# 9501, 9503, 9506, 9507 and 9509-9510 refuse connections; 9504 answers 502 and 9508 is slow when
# the URI says so. fail_timeout=30s: a disabled peer stays disabled for the whole test.
CONFIG = """
events {}
http {
    upstream one { server 127.0.0.1:9501 max_fails=1 fail_timeout=30s; server 127.0.0.1:9502 max_fails=0; }
    upstream two { server 127.0.0.1:9503 max_fails=2 fail_timeout=30s; server 127.0.0.1:9502 max_fails=0; }
    upstream bad { server 127.0.0.1:9504 max_fails=1 fail_timeout=30s; server 127.0.0.1:9505 max_fails=0; }
    upstream dead { server 127.0.0.1:9506 fail_timeout=30s; server 127.0.0.1:9507 fail_timeout=30s; }
    upstream slow { server 127.0.0.1:9508 fail_timeout=30s; server 127.0.0.1:9502 max_fails=0; }
    upstream hashed { hash $arg_k; server 127.0.0.1:9509 fail_timeout=30s; server 127.0.0.1:9502 max_fails=0; }
    upstream fewest { least_conn; server 127.0.0.1:9510 fail_timeout=30s; server 127.0.0.1:9502 max_fails=0; }
    server {
        listen 127.0.0.1:8080;
        server_name errlog.test;
        proxy_read_timeout 300ms;
        location /one/ { proxy_pass http://one; }
        location /two/ { proxy_pass http://two; }
        location /bad/ { proxy_pass http://bad; proxy_next_upstream error timeout http_502; }
        location /dead/ { proxy_pass http://dead; }
        location /prefix/ { proxy_pass http://dead/inner/; }
        location /variable/ { set $group dead; proxy_pass http://$group; }
        location /slow/ { proxy_pass http://slow; }
        location /hashed/ { proxy_pass http://hashed; }
        location /fewest/ { proxy_pass http://fewest; }
    }
}
"""
REFUSED = frozenset({"127.0.0.1:9501", "127.0.0.1:9503", "127.0.0.1:9506", "127.0.0.1:9507", "127.0.0.1:9509",
                     "127.0.0.1:9510"})
LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")

# In this order: the state each request leaves (a peer's failure count) is what the next one meets.
CASES = ["/one/a", "/one/b", "/two/a", "/two/b", "/two/c", "/two/d",
         "/bad/__at/9504/__status/502/a", "/bad/__at/9504/__status/502/b",
         "/dead/a", "/dead/b", "/prefix/c?x=1", "/variable/d",
         "/slow/__at/9508/__delay/600/a", "/slow/__at/9508/__delay/600/b",
         "/hashed/a?k=1", "/hashed/b?k=2", "/hashed/c?k=3", "/fewest/a", "/fewest/b"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StartedTargets, str]]:
    tmp = tmp_path_factory.mktemp("upstream_errorlog")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run"), refuse=REFUSED) as started:
        yield started, str(tmp / "run")


def fetch(port: int, target: str) -> int:
    """The status of a GET on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: errlog.test\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def logged(log: str, start: int) -> list[str]:
    time.sleep(0.05)  # both write before answering; a margin for the file
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read()
    return [f"[{m.group(1)}] {m.group(2)}" for m in map(LINE.match, text.splitlines())
            if m and m.group(1) in ("error", "warn")]


def test_failing_peer_log_lines_match_nginx(run: tuple[StartedTargets, str]) -> None:
    started, base = run
    seen: list[list[tuple[object, ...]]] = []
    for target in started.targets:
        port = target.listen_ports["127.0.0.1:8080"]
        log = os.path.join(base, target.label, "error.log")
        outcomes: list[tuple[object, ...]] = []
        for path in CASES:
            start = os.path.getsize(log)
            status = fetch(port, path)
            started.pool.settle()
            upstreams = [r.upstream for r in started.pool.take()]
            outcomes.append((path, status, upstreams, logged(log, start)))
        seen.append(outcomes)
    for theirs, ours in zip(seen[0], seen[1]):
        assert theirs == ours
    assert len(seen[0]) == len(seen[1]) == len(CASES)

    # What nginx wrote, spelled out: each line's request context shortened to its upstream, the
    # recording upstreams' ports named as in CONFIG.
    names = {upstream.hostport: name for name, upstream in started.pool.upstreams.items()}

    def short(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            head, _, rest = line.partition(", client: 127.0.0.1, server: errlog.test, request: ")
            upstream = re.search(r'upstream: "http://([^/"]*)([^"]*)"', rest)
            assert upstream is not None, line
            out.append(f"{head} @ http://{names.get(upstream.group(1), upstream.group(1))}{upstream.group(2)}")
        return out

    by_path = {path: (status, upstreams, short(lines)) for path, status, upstreams, lines in seen[0]}
    refused = "[error] connect() failed (111: Connection refused) while connecting to upstream @ "
    disabled = "[warn] upstream server temporarily disabled while connecting to upstream @ "
    assert by_path["/one/a"] == (200, ["127.0.0.1:9502"], [refused + "http://127.0.0.1:9501/one/a",
                                                           disabled + "http://127.0.0.1:9501/one/a"])
    assert by_path["/one/b"] == (200, ["127.0.0.1:9502"], [])
    # max_fails=2: the first failure is only an error, the second (two requests later) disables.
    assert by_path["/two/a"][2] == [refused + "http://127.0.0.1:9503/two/a"]
    assert by_path["/two/b"][2] == []
    assert by_path["/two/c"][2] == [refused + "http://127.0.0.1:9503/two/c", disabled + "http://127.0.0.1:9503/two/c"]
    assert by_path["/two/d"][2] == []
    # A 502 that proxy_next_upstream http_502 sends on: a failure, in the phase of the header read.
    assert by_path["/bad/__at/9504/__status/502/a"] == (200, ["127.0.0.1:9504", "127.0.0.1:9505"], [
        ("[warn] upstream server temporarily disabled while reading response header from upstream @ "
         "http://127.0.0.1:9504/bad/__at/9504/__status/502/a")])
    assert by_path["/bad/__at/9504/__status/502/b"] == (200, ["127.0.0.1:9505"], [])
    assert by_path["/dead/a"] == (502, [], [refused + "http://127.0.0.1:9506/dead/a",
                                            disabled + "http://127.0.0.1:9506/dead/a",
                                            refused + "http://127.0.0.1:9507/dead/a",
                                            disabled + "http://127.0.0.1:9507/dead/a"])
    # Every peer disabled: the group is named, with the URI as it would have been sent.
    no_live = "[error] no live upstreams while connecting to upstream @ "
    assert by_path["/dead/b"] == (502, [], [no_live + "http://dead/dead/b"])
    assert by_path["/prefix/c?x=1"] == (502, [], [no_live + "http://dead/inner/c?x=1"])
    assert by_path["/variable/d"] == (502, [], [no_live + "http://dead/variable/d"])
    # proxy_read_timeout: the warning comes before the timeout's error.
    slow = "http://127.0.0.1:9508/slow/__at/9508/__delay/600/a"
    assert by_path["/slow/__at/9508/__delay/600/a"] == (200, ["127.0.0.1:9508", "127.0.0.1:9502"], [
        "[warn] upstream server temporarily disabled while reading response header from upstream @ " + slow,
        "[error] upstream timed out (110: Connection timed out) while reading response header from upstream @ "
        + slow])
    assert by_path["/slow/__at/9508/__delay/600/b"] == (200, ["127.0.0.1:9502"], [])
    # hash and least_conn free their peers as round robin does: the same warning, once.
    hashed = [line for path in CASES if path.startswith("/hashed/") for line in by_path[path][2]]
    assert [line.split(" @ ")[0] for line in hashed] == [refused[:-3], disabled[:-3]]
    assert by_path["/fewest/a"][2] == [refused + "http://127.0.0.1:9510/fewest/a",
                                       disabled + "http://127.0.0.1:9510/fewest/a"]
    assert by_path["/fewest/b"][2] == []
