"""Throughput under a slowloris crowd: nginx and newproxy, one worker each, same config.

    .venv/bin/python benchmarks/slowloris_bench.py [-d 5s] [-c 50] [--slow 1000] [--interval 0.5] [--pin] [--rounds 3]

For each proxy: a wrk run alone (the unloaded figure), then the same wrk run while a separate process
keeps ``--slow`` slow connections open against it (tests/slowclients.py's mix: silent, partial
request line, a head trickled one byte every ``--interval`` s, a kept-alive connection trickling
its second head; each reopened as soon as the proxy's client_header_timeout of 2 s closes it).
Prints req/s alone and under the crowd, and their ratio per proxy (issue 11's target: newproxy
keeps >= 90% of its unloaded throughput). With ``--rounds N`` each proxy runs N rounds of (alone,
under the crowd) back to back and the ratio printed is the median of the rounds' ratios (each round's
too): one pair of runs on a shared machine moves by +-10%. Each run also reads the worker's CPU
share: when the load generators cannot keep the worker busy (the crowd's process takes CPU from
wrk), req/s falls for a reason that is not the proxy's, so the *capacity* ratio (req/s per second of
the worker's CPU, under the crowd over alone) shows what the crowd costs the proxy itself. The crowd's own CPU use weighs on both proxies alike on a
small machine: compare the two ratios. tests/test_slowloris.py checks the close timing against
nginx and that no request fails under the crowd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from common import CONF_HEAD, NGINX, missing_tool, server_command, work_directory
from h1_proxy import WRK, Result, add_wrk_options, free_port, run_wrk, started

from tests.procstat import worker_pid
from tests.slowclients import mix, raise_nofile, slow_connection

CONF = CONF_HEAD + """\
    client_header_timeout 2s;
    server {{
        listen 127.0.0.1:{port};
        location = /first {{ return 200 "first\\n"; }}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


async def crowd(port: int, count: int, seconds: float, interval: float) -> int:
    """Keep ``count`` slow connections open for ``seconds``; returns how many were opened in all."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    opened = 0

    async def keep(kind: str) -> None:
        nonlocal opened
        while loop.time() < end:
            opened += 1
            await slow_connection(port, kind, limit=min(10.0, max(0.1, end - loop.time())), interval=interval)

    await asyncio.gather(*(keep(kind) for kind in mix(count)))
    return opened


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_wrk_options(parser, "run")
    parser.add_argument("--slow", type=int, default=1000, help="slow connections kept open (default 1000)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between trickled bytes")
    parser.add_argument("--pin", action="store_true",
                        help="pin each proxy's worker to the last CPU and the load generators (wrk, the crowd) "
                             "to the others: the ratio then shows what the crowd costs the proxy, not what "
                             "the crowd's own process takes from wrk on a small machine")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (alone, under the crowd) per proxy (default 1)")
    parser.add_argument("--crowd", type=int, help=argparse.SUPPRESS)  # internal: be the crowd for this port
    args = parser.parse_args(argv)
    raise_nofile(args.slow * 2 + 2048)
    seconds = float(args.duration.rstrip("s"))
    if args.crowd:
        print(asyncio.run(crowd(args.crowd, args.slow, seconds + 3, args.interval)))
        return 0
    if missing_tool("slowloris_bench", (NGINX, WRK)):
        return 1
    rows: list[Round] = []
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin:
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        os.sched_setaffinity(0, cpus[:-1])  # wrk and the crowd inherit it
    with work_directory("slowloris_", args.keep) as work:
        for name in ("nginx", "newproxy"):
            port = free_port()
            conf = work / f"{name}.conf"
            conf.write_text(CONF.format(work=work, name=name, port=port, connections=8192))
            with started(name, server_command(name, work, conf), port, work) as master:
                worker = worker_pid(master.pid)
                if args.pin:
                    os.sched_setaffinity(worker, cpus[-1:])
                if args.warmup not in ("0", "0s"):
                    run_wrk(name, port, args.warmup, args.connections, args.threads)
                for _ in range(args.rounds):
                    rows.append(one_round(name, port, worker, seconds, args))
    print(f"{'pinned: workers on CPU ' + str(cpus[-1]) + ', load generators on the others; ' if args.pin else ''}"
          f"wrk -t{args.threads} -c{args.connections} -d{args.duration}; crowd: {args.slow} slow connections, "
          f"one byte every {args.interval}s, client_header_timeout 2s")
    print(f"{'proxy':<10} {'alone req/s':>12} {'crowd req/s':>12} {'ratio':>6} {'worker busy':>12} {'capacity':>9} "
          f"{'errors':>7} {'slow conns':>11} {'CPU for the crowd':>18}")
    for row in rows:
        print(f"{row.name:<10} {row.alone.requests_per_sec:>12.0f} {row.loaded.requests_per_sec:>12.0f} "
              f"{row.ratio:>6.2f} {row.alone_busy:>5.0%} {row.loaded_busy:>5.0%} {row.capacity:>9.2f} "
              f"{row.alone.errors + row.loaded.errors:>7} {row.opened:>11} {row.crowd_cpu:>18.1%}")
    print("capacity: requests per second of the worker's CPU under the crowd over the same alone (the crowd's "
          "own cost to the worker, whether or not the load generators kept it busy)")
    if args.rounds > 1:
        for name in ("nginx", "newproxy"):
            mine = [row for row in rows if row.name == name]
            ratios = [row.ratio for row in mine]
            capacities = [row.capacity for row in mine]
            print(f"{name}: over {len(mine)} rounds, median throughput ratio {statistics.median(ratios):.2f} "
                  f"(min {min(ratios):.2f}, max {max(ratios):.2f}), median capacity ratio "
                  f"{statistics.median(capacities):.2f} (min {min(capacities):.2f}, max {max(capacities):.2f})")
    return 0


@dataclass
class Round:
    name: str
    alone: Result
    loaded: Result
    opened: str  # slow connections the crowd opened in all
    crowd_cpu: float  # the worker's CPU share for the crowd alone
    alone_busy: float  # the worker's CPU share during the wrk run alone
    loaded_busy: float  # ... and during the wrk run under the crowd

    @property
    def ratio(self) -> float:
        return self.loaded.requests_per_sec / self.alone.requests_per_sec

    @property
    def capacity(self) -> float:
        alone = self.alone.requests_per_sec / max(self.alone_busy, 1e-9)
        return self.loaded.requests_per_sec / max(self.loaded_busy, 1e-9) / alone


def busy_during(worker: int, run: Callable[[], Result]) -> tuple[Result, float]:
    """``run``'s result and the worker's CPU share (0..1 of a CPU) while it ran."""
    cpu, at = cpu_seconds(worker), time.monotonic()
    result = run()
    return result, (cpu_seconds(worker) - cpu) / (time.monotonic() - at)


def one_round(name: str, port: int, worker: int, seconds: float, args: argparse.Namespace) -> Round:
    """wrk alone, then wrk again while a crowd process holds the slow connections."""
    def load() -> Result:
        return run_wrk(name, port, args.duration, args.connections, args.threads)

    alone, alone_busy = busy_during(worker, load)
    slow = subprocess.Popen([sys.executable, __file__, "--crowd", str(port), "--slow", str(args.slow),
                             "-d", str(seconds + 2.5), "--interval", str(args.interval)],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        # The worker's CPU for the crowd alone: what slow clients cost it, whatever else
        # the machine runs (the throughput ratio below depends on that too).
        cpu, at = cpu_seconds(worker), time.monotonic()
        time.sleep(2.0)  # the crowd is in place and the first timeouts have come round
        crowd_cpu = (cpu_seconds(worker) - cpu) / (time.monotonic() - at)
        loaded, loaded_busy = busy_during(worker, load)
        opened = slow.communicate(timeout=seconds + 30)[0].strip()
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    if args.verbose:
        print(f"--- {name} alone\n{alone.raw}--- {name} under the crowd\n{loaded.raw}")
    return Round(name, alone, loaded, opened, crowd_cpu, alone_busy, loaded_busy)


if __name__ == "__main__":
    sys.exit(main())
