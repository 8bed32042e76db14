"""What the side-by-side benchmarks (nginx against newproxy, same config) share.

The work directory both servers run from, the check for the tools a benchmark needs, the
main-context lines of their configs and the command line that starts either server on a config.
The process and wrk helpers live in h1_proxy.py, the first benchmark, which the others import.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

NGINX = os.environ.get("BENCH_NGINX", "nginx")

# How every side-by-side config begins: one worker, its pid file and error log named after the
# server (nginx and newproxy run from the same work directory at once), no access log (it would
# weigh on both), keep-alive for the whole run. A str.format template (fields work, name,
# connections) that opens the http block: each benchmark adds its lines and the closing brace.
CONF_HEAD = """\
worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_requests 100000;
"""


def missing_tool(program: str, tools: Iterable[str], hint: str = "") -> bool:
    """True (after saying which on stderr) when one of ``tools`` is not in PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{program}: {tool} not found in PATH{hint}", file=sys.stderr)
            return True
    return False


@contextmanager
def work_directory(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary directory, removed on exit unless ``keep`` (then its path is printed)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def server_command(name: str, work: Path, conf: Path) -> list[str]:
    """How to start ``name`` ("nginx" or "newproxy") in the foreground on the nginx config ``conf``."""
    if name == "nginx":
        return [NGINX, "-p", str(work), "-c", str(conf), "-g", "daemon off;"]
    return [sys.executable, "-m", "newproxy", "-p", str(work), "-c", str(conf)]
