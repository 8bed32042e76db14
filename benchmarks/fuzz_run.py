"""A long fuzz run of newproxy's HTTP/1 front end (outside CI; tests/test_fuzz_run.py runs a small one).

    .venv/bin/python benchmarks/fuzz_run.py [REQUESTS] [--every N] [--concurrency C] [--seed S] [--keep]

Starts one newproxy worker on tests/fuzzh1.py's config and sends REQUESTS (default 1,000,000)
connections of mutated raw-corpus request bytes, C at a time (default 200). Counts what no
connection may show (refused: the worker is down; still open fuzzh1.BOUND + GRACE s after the
last byte: hung; a 500 answer; closes after BOUND but within GRACE are counted as late, not as
failures: a worker starved of CPU on a loaded machine), worker restarts (a crash: the master starts a new one) and log lines with a
traceback or a caught exception. Every N requests (default 10,000) it samples the worker's RSS
(/proc/PID/status VmRSS) and open fds (/proc/PID/fd), then prints the start, end and max of each.
Exit status 0 when nothing went wrong, 1 otherwise (the first problems are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzh1 import (
    BOUND,
    CONF,
    Exchange,
    exchange,
    free_port,
    log_problems,
    mutate,
    problems,
    seeds,
    split,
    write_static,
)
from tests.procstat import open_fds, rss_kib
from tests.slowclients import raise_nofile
from tests.test_process_model import Running, newproxy


class Run:
    def __init__(self, running: Running, total: int, every: int, concurrency: int, seed: int) -> None:
        self.running = running
        self.total = total
        self.every = every
        self.concurrency = concurrency
        self.rng = random.Random(seed)
        self.seeds = seeds()
        self.sent = 0
        self.kinds: Counter[str] = Counter()
        self.examples: list[str] = []
        self.worker = running.workers()[0]
        self.restarts = 0
        self.late = 0  # closed after fuzzh1.BOUND but within GRACE more: a stall, not a hang
        self.samples: list[tuple[int, int, int]] = []  # (requests, RSS KiB, fds)

    def sample(self) -> None:
        workers = self.running.workers()
        if workers and workers[0] != self.worker:
            self.restarts += 1
            self.worker = workers[0]
        try:
            self.samples.append((self.sent, rss_kib(self.worker), open_fds(self.worker)))
        except FileNotFoundError:  # the worker died between the two reads: the next sample sees its successor
            self.restarts += 1

    def record(self, result: Exchange) -> None:
        self.late += result.late
        for problem in problems([result]):
            self.kinds[problem.split(" ", 1)[0]] += 1
            if len(self.examples) < 10:
                self.examples.append(problem)

    async def client(self) -> None:
        port = self.running.port
        while self.sent < self.total:
            self.sent += 1
            if self.sent % self.every == 0:
                self.sample()
            data = mutate(self.rng, self.rng.choice(self.seeds))
            self.record(await exchange(port, split(self.rng, data)))

    async def run(self) -> None:
        gc.collect()
        gc.freeze()  # what is loaded stays: later collections skip it (see fuzzh1.steady_client)
        self.sample()
        await asyncio.gather(*(self.client() for _ in range(self.concurrency)))
        self.sample()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000, help="sample RSS and fds every N requests")
    parser.add_argument("--concurrency", type=int, default=200, help="connections in flight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (config, logs)")
    args = parser.parse_args(argv)
    raise_nofile(args.concurrency * 2 + 1024)
    tmp = Path(tempfile.mkdtemp(prefix="fuzz_run_"))
    started = time.monotonic()
    try:
        write_static(tmp)
        port = free_port()
        with newproxy(tmp, CONF.format(tmp=tmp, port=port, back=free_port()), port, workers=1) as running:
            run = Run(running, args.requests, args.every, args.concurrency, args.seed)
            asyncio.run(run.run())
            logs = log_problems(tmp / "error.log", tmp / "stderr.log")
    finally:
        if args.keep:
            print(f"work directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - started
    rss = [s[1] for s in run.samples]
    fds = [s[2] for s in run.samples]
    print(f"{run.sent} requests in {seconds:.0f}s ({run.sent / seconds:.0f}/s), concurrency {args.concurrency}, "
          f"seed {args.seed}")
    print(f"worker restarts (crashes): {run.restarts}; problems: {dict(run.kinds) or 'none'}; "
          f"log lines with a traceback or a caught exception: {len(logs)}; closed late (after {BOUND:g}s, "
          f"not a failure): {run.late}")
    print(f"RSS KiB: start {rss[0]} end {rss[-1]} max {max(rss)} ({len(rss)} samples)")
    print(f"open fds: start {fds[0]} end {fds[-1]} max {max(fds)}")
    print("RSS KiB by requests sent: " + " ".join(f"{n}:{kib}" for n, kib, _ in run.samples))
    for line in run.examples + logs:
        print("  " + line[:300])
    return 0 if not (run.restarts or run.kinds or logs) else 1


if __name__ == "__main__":
    sys.exit(main())
