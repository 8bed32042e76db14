"""/proc readings of a running server that the process tests and the benchmarks share (Linux only)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    """The resident set size (VmRSS) in KiB; 0 for a process that has none (it has exited)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def worker_pid(master: int, timeout: float = 10.0) -> int:
    """The (first) worker of a master started with worker_processes 1, nginx's or newproxy's."""
    deadline = time.monotonic() + timeout
    while not (pids := Path(f"/proc/{master}/task/{master}/children").read_text().split()):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no worker process under {master}")
        time.sleep(0.02)  # the port answers once the master has bound it, maybe before the fork
    return int(pids[0])
