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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import CONF_HEAD, NGINX, missing_tool, server_command, work_directory
from h1_proxy import WRK, Result, add_wrk_options, free_port, run_wrk, started

CONF = CONF_HEAD + """\
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
    if missing_tool("static_bench", (NGINX, WRK)):
        return 1
    with work_directory("static_bench_", args.keep) as work:
        work.chmod(0o755)
        site = work / "site"
        site.mkdir(mode=0o755)
        (site / "small.html").write_bytes(b"x" * args.size)
        (site / "index.html").write_bytes(b"index\n")  # what the readiness probe (GET /) gets
        results: list[Result] = []
        for name in ("nginx", "newproxy"):
            port = free_port()
            conf = work / f"{name}.conf"
            conf.write_text(CONF.format(work=work, name=name, port=port, connections=4096))
            with started(name, server_command(name, work, conf), port, work):
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
