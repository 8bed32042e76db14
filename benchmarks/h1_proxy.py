"""HTTP/1.1 reverse-proxy throughput: newproxy against nginx, same config, same upstream, same run.

    .venv/bin/python benchmarks/h1_proxy.py [-d 10s] [-c 50] [-t 1] [--warmup 2s] [--body-size 64] [--workers 1,2]
                                            [--rounds N]

Starts, on free 127.0.0.1 ports:
- an upstream nginx answering every request with a fixed 200 body (1 worker, access_log off);
- nginx as the reverse proxy (1 worker, access_log off, ``keepalive 32`` to the upstream with
  ``proxy_http_version 1.1`` and ``Connection ""``; ``--upstream-keepalive 0``: nginx's default, a new
  upstream connection per request, as most configs run);
- newproxy on the very same nginx config, translated on load by its nginx adapter;
then loads each proxy with ``wrk --latency`` (a short warm-up first) and prints req/s, p50 and p99
for each and the newproxy/nginx ratio, and the CPU time its workers spent per request in the
measured run, in user space and in the kernel (/proc/PID/stat over wrk's request count): the
DESIGN's budget is single-digit µs of Python a request, and the kernel's share is the same work
for both. ``--workers 1,2`` runs both proxies with each
``worker_processes`` value in turn (default 1) and prints how each scales against the first value
(issue 10's target: newproxy at 2 workers >= 1.8x its 1-worker throughput; it needs a free core per
worker besides wrk's and the upstream's). Everything it starts is stopped on exit, even on errors.

Absolute numbers depend on the machine; the ratio measured in one run is what to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import NGINX, missing_tool, server_command, work_directory

from newproxy import native
from tests.procstat import cpu_seconds, workers_of

WRK = os.environ.get("BENCH_WRK", "wrk")

UPSTREAM_CONF = """\
worker_processes 1;
daemon off;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location / {{ stub_status; }}
    }}
}}
"""

PROXY_CONF = """\
worker_processes {workers};
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream backend {{
        server 127.0.0.1:{upstream_port};
{keepalive}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
{keepalive_headers}        }}
    }}
}}
"""
# ``--upstream-keepalive N``: the cache nginx needs HTTP/1.1 and an empty Connection for.
KEEPALIVE = "        keepalive {size};\n"
KEEPALIVE_HEADERS = "            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n"


def proxy_conf(work: Path, name: str, port: int, upstream_port: int, workers: int, keepalive: int) -> str:
    """The proxies' config; ``keepalive`` 0 leaves nginx's default, a new upstream connection a request."""
    return PROXY_CONF.format(work=work, name=name, port=port, upstream_port=upstream_port, workers=workers,
                             keepalive=KEEPALIVE.format(size=keepalive) if keepalive else "",
                             keepalive_headers=KEEPALIVE_HEADERS if keepalive else "")


@dataclass
class Result:
    name: str
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    errors: int
    raw: str
    requests: int = 0
    upstream_connections: int = 0  # accepted by the upstream during the measured run
    workers: int = 1
    round: int = 1
    # The workers' CPU time per request in the measured run, in µs: user space and kernel.
    user_us: float = 0.0
    system_us: float = 0.0


def upstream_accepts(status_port: int) -> int:
    """The upstream's accepted-connections counter (stub_status), to show keep-alive reuse."""
    with socket.create_connection(("127.0.0.1", status_port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    match = re.search(rb"server accepts handled requests\s+(\d+)", data)
    return int(match.group(1)) if match else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer 200 on 127.0.0.1:{port} within {timeout:.0f}s")


@contextmanager
def started(name: str, command: list[str], port: int, work: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = open(work / f"{name}.stderr", "wb")  # noqa: SIM115 - closed in the finally below
    # A session of its own, so stopping it also reaps nginx's worker if the master dies first.
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_ready(port, process, name)
        yield process
    except RuntimeError as exc:
        log.flush()
        tail = (work / f"{name}.stderr").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{exc}\n{tail}") from None
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever is left in its session
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(name: str, port: int, duration: str, connections: int, threads: int, path: str = "/") -> Result:
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(m.group(1)) for m in re.finditer(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    total = re.search(r"(\d+) requests in", out)
    return Result(name, rps, p50, p99, errors, out, requests=int(total.group(1)) if total else 0)


def add_wrk_options(parser: argparse.ArgumentParser, each: str) -> None:
    """The load options every side-by-side benchmark shares (``each``: what one wrk run measures)."""
    parser.add_argument("-d", "--duration", default="10s", help=f"wrk duration per {each} (default 10s)")
    parser.add_argument("-c", "--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--warmup", default="2s", help="wrk warm-up run before measuring, 0 to skip (default 2s)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs and logs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print wrk's full output")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_wrk_options(parser, "proxy")
    parser.add_argument("--body-size", type=int, default=64, help="bytes in the upstream's response body")
    parser.add_argument("--upstream-keepalive", type=int, default=32, metavar="N",
                        help="keepalive N in the upstream block (default 32); 0: none, nginx's default, which "
                             "30 of the 31 proxying configs of the shared corpus keep: a connection a request")
    parser.add_argument("--workers", default="1", help="worker_processes of both proxies; a comma list (1,2) "
                                                       "runs each value and compares (default 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each proxy this many times, in turns (nginx, newproxy, nginx...), and "
                             "report the median ratio of the rounds: one run's ratio moves by ~10%% on a 2-core "
                             "machine (default 1)")
    args = parser.parse_args(argv)
    try:
        worker_counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: a comma list of numbers, not {args.workers!r}")

    if missing_tool("h1_proxy", (NGINX, WRK)):
        return 1
    with work_directory("h1_proxy_", args.keep) as work:
        upstream_port, status_port, nginx_port, newproxy_port = free_port(), free_port(), free_port(), free_port()
        (work / "upstream.conf").write_text(
            UPSTREAM_CONF.format(work=work, port=upstream_port, status_port=status_port, body="x" * args.body_size)
        )
        results: list[Result] = []
        upstream_cmd = [NGINX, "-p", str(work), "-c", str(work / "upstream.conf")]
        with started("upstream", upstream_cmd, upstream_port, work):
            for workers in worker_counts:
                for name, port in (("nginx", nginx_port), ("newproxy", newproxy_port)):
                    (work / f"{name}.conf").write_text(
                        proxy_conf(work, name, port, upstream_port, workers, args.upstream_keepalive)
                    )
                for round_number in range(1, args.rounds + 1):
                    for name, port in (("nginx", nginx_port), ("newproxy", newproxy_port)):
                        with started(name, server_command(name, work, work / f"{name}.conf"), port, work) as process:
                            if args.warmup not in ("0", "0s"):
                                run_wrk(name, port, args.warmup, args.connections, args.threads)
                            accepts = upstream_accepts(status_port)
                            pids = workers_of(process.pid)
                            cpu_before = cpu_seconds(pids)
                            result = run_wrk(name, port, args.duration, args.connections, args.threads)
                            cpu_after = cpu_seconds(pids)
                            result.upstream_connections = upstream_accepts(status_port) - accepts
                            if result.requests:
                                result.user_us = (cpu_after[0] - cpu_before[0]) / result.requests * 1e6
                                result.system_us = (cpu_after[1] - cpu_before[1]) / result.requests * 1e6
                            result.workers = workers
                            result.round = round_number
                            results.append(result)
                            if args.verbose:
                                print(f"--- {name} ({workers} workers, round {round_number})\n{result.raw}")
        if args.rounds > 1:
            report_rounds(results, args)
        else:
            report(results, args)
    return 0


def _upstream_cache(args: argparse.Namespace) -> str:
    keepalive: int = args.upstream_keepalive
    return f"keepalive {keepalive} to the upstream" if keepalive else "no keepalive to the upstream"


def report_rounds(results: list[Result], args: argparse.Namespace) -> None:
    """Each round's pair and ratios, then the median ratios (min-max) over the rounds."""
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency, upstream body {args.body_size} B, "
        f"{_upstream_cache(args)}, {args.rounds} rounds"
    )
    print(f"newproxy's hot path: {native.STATUS}")  # the workers import the same files with the same environment
    print(f"{'workers':>7} {'round':>5} {'nginx req/s':>12} {'newproxy req/s':>15} {'throughput':>11} {'p99':>6}"
          f" {'nginx cpu us/req':>17} {'newproxy cpu us/req':>20}")
    for workers in sorted({r.workers for r in results}):
        ratios: list[float] = []
        p99s: list[float] = []
        for round_number in range(1, args.rounds + 1):
            pair = {r.name: r for r in results if r.workers == workers and r.round == round_number}
            nginx, newproxy = pair["nginx"], pair["newproxy"]
            ratios.append(newproxy.requests_per_sec / nginx.requests_per_sec)
            p99s.append(newproxy.p99_ms / nginx.p99_ms)
            print(f"{workers:>7} {round_number:>5} {nginx.requests_per_sec:>12.0f} {newproxy.requests_per_sec:>15.0f} "
                  f"{ratios[-1]:>10.2f}x {p99s[-1]:>5.2f}x {_cpu(nginx):>17} {_cpu(newproxy):>20}")
        print(f"newproxy/nginx ({workers} workers), median of {args.rounds} rounds: throughput "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), "
              f"p99 {statistics.median(p99s):.2f}x ({min(p99s):.2f}-{max(p99s):.2f})")
        for name in ("nginx", "newproxy"):
            runs = [r for r in results if r.workers == workers and r.name == name]
            print(f"{name} workers' CPU per request, median: {statistics.median(r.user_us for r in runs):.1f} us "
                  f"user + {statistics.median(r.system_us for r in runs):.1f} us system")


def _cpu(result: Result) -> str:
    """The workers' CPU per request: user + system µs."""
    return f"{result.user_us:.1f}+{result.system_us:.1f}"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency, "
        f"upstream body {args.body_size} B, {_upstream_cache(args)}"
    )
    print(f"{'proxy':<10} {'workers':>7} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'upstream conns':>15}"
          f" {'cpu us/req (user+sys)':>22}")
    for r in results:
        print(
            f"{r.name:<10} {r.workers:>7} {r.requests_per_sec:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7} "
            f"{r.upstream_connections:>15} {_cpu(r):>22}"
        )
    by_key = {(r.name, r.workers): r for r in results}
    counts = sorted({r.workers for r in results})
    for workers in counts:
        nginx, newproxy = by_key.get(("nginx", workers)), by_key.get(("newproxy", workers))
        if nginx is not None and newproxy is not None:
            print(
                f"newproxy/nginx ({workers} workers): throughput {newproxy.requests_per_sec / nginx.requests_per_sec:.2f}x, "
                f"p50 {newproxy.p50_ms / nginx.p50_ms:.2f}x, p99 {newproxy.p99_ms / nginx.p99_ms:.2f}x"
            )
    for workers in counts[1:]:
        for name in ("nginx", "newproxy"):
            base, more = by_key.get((name, counts[0])), by_key.get((name, workers))
            if base is not None and more is not None:
                print(f"{name}: {workers} workers / {counts[0]}: {more.requests_per_sec / base.requests_per_sec:.2f}x throughput")


if __name__ == "__main__":
    sys.exit(main())
