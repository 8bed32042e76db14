"""Slowloris against nginx and newproxy side by side: 1,000 slow connections each (tests/slowclients.py:
silent, partial request line, a head trickled byte by byte, a kept-alive connection trickling its
second head), while wrk loads both with ordinary keep-alive requests.

What nginx 1.22 does (probed by hand, and ngx_http_request.c: the read timer of the first request
is set once at accept and not re-armed by reads; ngx_http_keepalive_handler deletes the keep-alive
timer at a new request's first byte and ngx_http_read_request_header arms client_header_timeout):
client_header_timeout runs from the accept for the first head and from the first byte for a later
one, however slowly the bytes come; on expiry nginx closes with nothing sent (FIN, or RST with
reset_timedout_connection: tests/test_differential_reset_timedout.py).

Asserted, for both targets: every slow connection is closed between 2 s (less ``EARLY``) after the
connect began (a kept-alive one: its second head) and 2 s + ``LATE`` after the client saw it complete, with no bytes sent (a keep-alive one: its first answer only, the same on
both), idle ones with FIN; the median close times of the two targets differ by at most
``MEDIAN_GAP``; wrk's requests meanwhile all succeed. The throughput ratio under slow load is measured
by benchmarks/slowloris_bench.py (a timed ratio is too noisy for CI on two shared cores).
"""

from __future__ import annotations

import asyncio
import re
import statistics
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.slowclients import Outcome, mix, raise_nofile, slow_crowd

CONF = """
events { worker_connections 4096; }
http {
    client_header_timeout 2s;
    keepalive_timeout 10s;
    server {
        listen 8080;
        server_name t.test;
        location = /first { return 200 "first\\n"; }
        location / { return 200 "ok\\n"; }
    }
}
"""
SLOW = 1000
TIMEOUT = 2.0
LATE = 1.0  # two shared cores, 2,000 slow sockets and two wrk runs: timers and reads run late
EARLY = 0.02  # timer granularity (nginx caches its clock per event loop turn)
MEDIAN_GAP = 0.3
_NOISE = re.compile(rb"(Date|Server): [^\r]*")


async def _wrk(port: int, seconds: int) -> tuple[int, int, str]:
    """wrk for ``seconds`` against the port: (requests, errors, output)."""
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c4", f"-d{seconds}s", f"http://127.0.0.1:{port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out = (await asyncio.wait_for(process.communicate(), seconds + 10))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    total = re.search(r"(\d+) requests in", out)
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return (int(total.group(1)) if total else 0), errors, out


async def _run(ports: list[int]) -> tuple[list[list[Outcome]], list[tuple[int, int, str]]]:
    crowds = [asyncio.create_task(slow_crowd(port, mix(SLOW), limit=TIMEOUT + 3)) for port in ports]
    await asyncio.sleep(0.2)  # the crowd is connecting: load while it is there
    loads = await asyncio.gather(*(_wrk(port, 3) for port in ports))
    return list(await asyncio.gather(*crowds)), list(loads)


def test_slow_clients_are_cut_off_like_nginx_and_load_still_served(tmp_path: Path) -> None:
    raise_nofile(2 * SLOW + 2000)
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]
        crowds, loads = asyncio.run(_run(ports))
        logs = [p.read_text(errors="replace") for p in (tmp_path / "run" / "newproxy").glob("*.log")]
    assert all("Traceback" not in text for text in logs)
    medians = []
    for label, crowd, (requests, errors, out) in zip(("nginx", "newproxy"), crowds, loads):
        assert len(crowd) == SLOW
        assert [o.error for o in crowd if o.error] == [], label
        assert requests > 0 and errors == 0, (label, out)
        times = [o.closed_after for o in crowd]
        assert None not in times, (label, sum(t is None for t in times), "slow connections never closed")
        # Timed from the connect's start (the accept comes after it) and from its completion as
        # seen here (the accept came before it): a close can only be late by LATE, never early.
        early_late = [(o.kind, round(o.connected_after, 2), round(o.closed_after or 0, 2)) for o in crowd
                      if not TIMEOUT - EARLY <= (o.closed_after or 0) <= o.connected_after + TIMEOUT + LATE]
        assert early_late == [], (label, early_late[:10])
        assert {o.received for o in crowd if o.kind != "keepalive"} == {b""}, label  # nothing sent on timeout
        assert {o.how for o in crowd if o.kind in ("silent", "partial")} == {"EOF"}, label
        medians.append(statistics.median(o.closed_after or 0 for o in crowd))
    answers = [{_NOISE.sub(b"", o.received) for o in crowd if o.kind == "keepalive"} for crowd in crowds]
    assert len(answers[0]) == 1 and answers[0] == answers[1], answers
    assert next(iter(answers[0])).startswith(b"HTTP/1.1 200 OK")
    assert abs(medians[0] - medians[1]) <= MEDIAN_GAP, medians
