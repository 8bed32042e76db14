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


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time the processes have used so far, summed (utime, stime of /proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        # The fields after the command's closing parenthesis (the command may hold spaces): utime and
        # stime are the 14th and 15th of the line, the 12th and 13th after it.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / tick, system / tick


def workers_of(master: int) -> list[int]:
    """The master's children: its workers, nginx's or newproxy's."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def worker_pid(master: int, timeout: float = 10.0) -> int:
    """The (first) worker of a master started with worker_processes 1, nginx's or newproxy's."""
    deadline = time.monotonic() + timeout
    while not (pids := Path(f"/proc/{master}/task/{master}/children").read_text().split()):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no worker process under {master}")
        time.sleep(0.02)  # the port answers once the master has bound it, maybe before the fork
    return int(pids[0])
