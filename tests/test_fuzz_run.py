"""benchmarks/fuzz_run.py at CI size: 5,000 fuzzed connections to one newproxy worker, no crash, no hung
connection, no 500, and the RSS/fd figures printed (open fds back to where they started: no leak)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "fuzz_run.py"


def test_fuzz_run_sample() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "5000", "--every", "1000", "--concurrency", "100"], check=False,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^5000 requests in ", out, re.MULTILINE), out
    assert "worker restarts (crashes): 0; problems: none; log lines with a traceback or a caught exception: 0" in out, out
    rss = re.search(r"RSS KiB: start (\d+) end (\d+) max (\d+) \((\d+) samples\)", out)
    fds = re.search(r"open fds: start (\d+) end (\d+) max (\d+)", out)
    assert rss and fds, out
    assert int(rss.group(4)) >= 5 and 0 < int(rss.group(1)) <= int(rss.group(3))
    # Every client connection was closed by the server before the run ended: the fds are back (give or
    # take the upstream keepalive pool, 4 connections seen from both of its ends).
    assert int(fds.group(2)) <= int(fds.group(1)) + 8, out
