"""Zones shared between workers (newproxy/zones.py): nginx and newproxy both run 2 workers.

With ``worker_processes 2`` on both sides, the same schedule goes to each; every response carries
the worker's ``$pid``, and a test first checks that both newproxy workers served some of its
requests (otherwise it proves nothing about sharing). What must then match nginx:

- limit_req: the number of requests passed for one key is the zone's, summed over both workers
  (per-worker zones would let up to twice as many through). A burst sent at once is compared
  exactly (the decisions are 200 ms or more from a bucket boundary); a 2 s stream of one request
  every 50 ms lands on boundaries by construction and is compared within 2.
- limit_conn: 8 slow requests (the upstream waits 600 ms) of one key at once, limit 2: exactly 2
  pass, on both.
- upstream ``zone`` with max_fails: the first of two peers refuses connections; once one worker has
  marked it failed, neither worker tries it again within fail_timeout, so each server logs exactly
  one "connect() failed" line for it however many requests its two workers serve.
- upstream ``zone`` round robin: one smooth weighted sequence over both workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator

import pytest

from nginx_parser import parse_config
from nginx_parser.ir import Directive
from shadow.rewire import plan
from shadow.runner import started_targets

CONFIG = """
events {}
http {
    limit_req_zone $http_x_key zone=burst:1m rate=5r/s;
    limit_req_zone $http_x_key zone=stream:1m rate=10r/s;
    limit_conn_zone $http_x_key zone=conns:1m;
    upstream zoned {
        zone backends 64k;
        server 127.0.0.1:9001 max_fails=1 fail_timeout=60s;
        server 127.0.0.1:9002;
    }
    upstream rr {
        zone rr 64k;
        server 127.0.0.1:9003;
        server 127.0.0.1:9004 weight=2;
    }
    server {
        listen 127.0.0.1:8080;
        add_header X-Pid $pid always;
        location /burst/ { limit_req zone=burst burst=5 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /stream/ { limit_req zone=stream burst=2 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /conn/ { limit_conn conns 2; proxy_pass http://127.0.0.1:9000; }
        location /zoned/ { proxy_pass http://zoned; }
        location /rr/ { add_header X-Pid $pid; proxy_pass http://rr; }
    }
}
"""


def two_workers(tree: list[Directive]) -> list[Directive]:
    return [d.model_copy(update={"args": ["2"]}) if d.name == "worker_processes" else d for d in tree]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tuple[int, int], tuple[str, str]]]:
    tmp = tmp_path_factory.mktemp("zones")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run"), refuse={"127.0.0.1:9001"},
                         tweak_reference=two_workers, tweak_other=two_workers) as run:
        nginx, newproxy = run.targets
        ports = (nginx.listen_ports["127.0.0.1:8080"], newproxy.listen_ports["127.0.0.1:8080"])
        logs = (os.path.join(str(tmp / "run"), "nginx", "error.log"), os.path.join(str(tmp / "run"), "newproxy", "error.log"))
        yield ports, logs


async def fetch(port: int, path: str, key: str, at: float) -> tuple[int, str, str]:
    """GET on a new connection at loop time ``at``: (status, the answering worker's pid, the peer)."""
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: zones\r\nX-Key: {key}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    pid = re.search(rb"\r\nX-Pid: (\d+)\r\n", head + b"\r\n")
    status = int(data.split(b" ", 2)[1])
    peer = json.loads(body)["upstream"] if status == 200 else ""  # the recording upstream names itself
    return status, pid.group(1).decode() if pid else "", peer


def run(ports: tuple[int, int], schedule: list[tuple[float, str]], key: str) -> list[list[tuple[int, str, str]]]:
    """The same schedule, (seconds from now, path), to nginx and newproxy at the same time."""
    async def both() -> list[list[tuple[int, str, str]]]:
        t0 = asyncio.get_running_loop().time() + 0.05
        tasks = [[asyncio.create_task(fetch(port, path, key, t0 + at)) for at, path in schedule] for port in ports]
        return [list(await asyncio.gather(*side)) for side in tasks]
    return asyncio.run(both())


def passed(replies: list[tuple[int, str, str]]) -> int:
    return sum(1 for status, _, _ in replies if status == 200)


def both_workers_served(replies: list[tuple[int, str, str]]) -> bool:
    return len({pid for _, pid, _ in replies if pid}) == 2


def spread(ports: tuple[int, int], schedule: list[tuple[float, str]], key: str) -> list[list[tuple[int, str, str]]]:
    """``run``, again with fresh keys while newproxy's answers all came from one worker (the kernel
    decides which worker accepts; a few tries always spread 20 connections)."""
    for attempt in range(5):
        got = run(ports, schedule, f"{key}-{attempt}")
        if both_workers_served(got[1]):
            return got
    raise AssertionError(f"every try went to one newproxy worker: {got[1]}")


def test_limit_req_burst_is_summed_over_workers(started: tuple[tuple[int, int], tuple[str, str]]) -> None:
    """rate=5r/s burst=5 nodelay, 20 requests of one key at once: 6 pass on nginx's 2 workers and on
    newproxy's 2 workers (separate zones per worker would pass up to 12)."""
    ports, _ = started
    got_nginx, got_newproxy = spread(ports, [(0.0, "/burst/x")] * 20, "burst")
    assert {s for s, _, _ in got_nginx + got_newproxy} <= {200, 503}
    assert passed(got_nginx) == passed(got_newproxy) == 6, (got_nginx, got_newproxy)


def test_limit_req_stream_is_summed_over_workers(started: tuple[tuple[int, int], tuple[str, str]]) -> None:
    """One request every 50 ms for 2 s (40), rate=10r/s burst=2 nodelay: about 1 + 2 + 20 pass
    overall; the counts agree within 2 (boundaries are hit by construction)."""
    ports, _ = started
    got_nginx, got_newproxy = spread(ports, [(i * 0.05, "/stream/y") for i in range(40)], "stream")
    a, b = passed(got_nginx), passed(got_newproxy)
    assert abs(a - b) <= 2, (a, b)
    assert 20 <= a <= 25, a


def test_limit_conn_is_summed_over_workers(started: tuple[tuple[int, int], tuple[str, str]]) -> None:
    """limit_conn 2, 8 requests of one key at once that the upstream holds 600 ms: 2 pass, 6 get 503."""
    ports, _ = started
    got_nginx, got_newproxy = spread(ports, [(0.0, "/conn/__delay/600")] * 8 + [(0.0, "/burst/other")] * 12, "conn")
    for side in (got_nginx, got_newproxy):
        assert sorted(status for status, _, _ in side[:8]) == [200, 200] + [503] * 6, side


def test_upstream_zone_failure_is_seen_by_both_workers(started: tuple[tuple[int, int], tuple[str, str]]) -> None:
    """max_fails=1 under `zone`: the refused peer is tried once in all, whichever worker tried it;
    every request is answered by the other peer."""
    ports, logs = started
    got_nginx, got_newproxy = spread(ports, [(i * 0.01, "/zoned/z") for i in range(20)], "zoned")
    assert [s for s, _, _ in got_nginx] == [s for s, _, _ in got_newproxy] == [200] * 20
    for log in logs:
        with open(log, encoding="utf-8", errors="replace") as f:
            refused = [line for line in f if "connect() failed" in line]
        assert len(refused) == 1, (log, refused)


def test_upstream_zone_round_robin_is_one_sequence(started: tuple[tuple[int, int], tuple[str, str]]) -> None:
    """Under `zone`, the smooth weighted round robin is one sequence for both workers: 15 requests
    one after another (weights 1 and 2) go A B B A B B... on nginx and on newproxy, whichever worker
    takes each (per-worker state would interleave two sequences)."""
    ports, _ = started
    got_nginx, got_newproxy = spread(ports, [(i * 0.04, "/rr/x") for i in range(15)], "rr")
    sequences = [[peer for _, _, peer in side] for side in (got_nginx, got_newproxy)]
    assert len(set(sequences[0])) == 2
    for sequence in sequences:  # one peer every 3 requests, the other twice
        light = min(set(sequence), key=sequence.count)
        assert [i % 3 for i, peer in enumerate(sequence) if peer == light] in ([0] * 5, [1] * 5, [2] * 5), sequences
    assert sequences[0] == sequences[1] or sorted(sequences[0]) == sorted(sequences[1]), sequences
