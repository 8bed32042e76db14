"""Small-file serving throughput: newproxy against nginx, same config, same files, same run.

    .venv/bin/python benchmarks/static_bench.py [-d 10s] [-c 50] [-t 1] [--warmup 2s] [--size 1024]

Writes a docroot with one file of ``--size`` bytes (``/small.html``), then serves it from nginx
(``worker_processes 1``, ``access_log off``, Debian's defaults otherwise: ``sendfile`` off) and from
newproxy on the very same nginx config (translated on load, one process), and loads each with
``wrk --latency`` (a warm-up first). Prints req/s, p50, p99 and the newproxy/nginx ratio. Not a
test: nothing asserts a threshold; the ratio from one run on one machine is what to compare.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from h1_proxy import NGINX, WRK, Result, add_wrk_options, free_port, run_wrk, started

CONF = """\
worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    types {{ text/html html; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {work}/site;
        location / {{ }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_wrk_options(parser, "server")
    parser.add_argument("--size", type=int, default=1024, help="bytes in the served file (default 1024)")
    args = parser.parse_args(argv)
    for tool in (NGINX, WRK):
        if shutil.which(tool) is None:
            print(f"static_bench: {tool} not found in PATH", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="static_bench_"))
    work.chmod(0o755)
    try:
        site = work / "site"
        site.mkdir(mode=0o755)
        (site / "small.html").write_bytes(b"x" * args.size)
        (site / "index.html").write_bytes(b"index\n")  # what the readiness probe (GET /) gets
        results: list[Result] = []
        for name in ("nginx", "newproxy"):
            port = free_port()
            (work / f"{name}.conf").write_text(CONF.format(work=work, name=name, port=port))
            if name == "nginx":
                command = [NGINX, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"]
            else:
                command = [sys.executable, "-m", "newproxy", "-p", str(work), "-c", str(work / "newproxy.conf")]
            with started(name, command, port, work):
                if args.warmup not in ("0", "0s"):
                    run_wrk(name, port, args.warmup, args.connections, args.threads, "/small.html")
                result = run_wrk(name, port, args.duration, args.connections, args.threads, "/small.html")
                results.append(result)
                if args.verbose:
                    print(f"--- {name}\n{result.raw}")
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency, GET /small.html "
              f"({args.size} B)")
        print(f"{'server':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for r in results:
            print(f"{r.name:<10} {r.requests_per_sec:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}")
        nginx, newproxy = results
        print(f"newproxy/nginx: throughput {newproxy.requests_per_sec / nginx.requests_per_sec:.2f}x, "
              f"p50 {newproxy.p50_ms / nginx.p50_ms:.2f}x, p99 {newproxy.p99_ms / nginx.p99_ms:.2f}x")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
