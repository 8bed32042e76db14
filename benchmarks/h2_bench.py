"""HTTP/2 throughput: newproxy against nginx with h2load, same config, same run.

    .venv/bin/python benchmarks/h2_bench.py [-n 20000] [-c 10] [-m 10] [--tls] [--path /ret] [--rounds 3]

Serves one nginx config from nginx (``worker_processes 1``, ``access_log off``) and from newproxy
(translated on load, one process): ``/ret`` is a ``return 200`` of a short text, ``/small.html`` a
1 KiB static file. h2c with prior knowledge by default, TLS with ALPN h2 with ``--tls``. Both servers
run at once; after a warm-up each, ``h2load -n N -c C -m M`` alternates between them for
``--rounds`` rounds (so a busy moment of a shared machine hits both alike), and the median req/s of
each and their ratio are printed. Not a test: nothing asserts a threshold (the issue's target is
>= 0.3x nginx).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import CONF_HEAD, NGINX, missing_tool, server_command, work_directory
from h1_proxy import free_port, started

H2LOAD = "h2load"

CONF = CONF_HEAD + """\
    types {{ text/html html; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{tls} ssl http2;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        root {work}/site;
        location / {{ }}
        location = /ret {{ default_type text/plain; return 200 "hello over h2\\n"; }}
    }}
}}
"""


def run_h2load(url: str, requests: int, clients: int, streams: int) -> tuple[float, int, str]:
    """req/s, failed requests, and h2load's output."""
    out = subprocess.run([H2LOAD, "-n", str(requests), "-c", str(clients), "-m", str(streams), url],
                         capture_output=True, text=True, timeout=600, check=False).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    failed = re.search(r"(\d+) failed", out)
    if rate is None or failed is None:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    return float(rate.group(1)), int(failed.group(1)), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="requests per run (default 20000)")
    parser.add_argument("-c", type=int, default=10, help="connections (default 10)")
    parser.add_argument("-m", type=int, default=10, help="concurrent streams per connection (default 10)")
    parser.add_argument("--tls", action="store_true", help="TLS with ALPN h2 instead of h2c")
    parser.add_argument("--path", default="/ret", help="what to request: /ret (return) or /small.html")
    parser.add_argument("--rounds", type=int, default=3, help="alternating h2load runs per server (default 3)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print h2load's output")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if missing_tool("h2_bench", (NGINX, H2LOAD, "openssl"), " (h2load: apt-get install nghttp2-client)"):
        return 1
    with work_directory("h2_bench_", args.keep) as work:
        work.chmod(0o755)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(work / "key.pem"),
                        "-out", str(work / "cert.pem"), "-subj", "/CN=bench", "-days", "2"], check=True,
                       capture_output=True, timeout=60)
        site = work / "site"
        site.mkdir(mode=0o755)
        (site / "small.html").write_bytes(b"x" * 1024)
        (site / "index.html").write_bytes(b"index\n")  # what the readiness probe (GET /) gets
        urls: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            for name in ("nginx", "newproxy"):
                port, h2c, tls = free_port(), free_port(), free_port()
                conf = work / f"{name}.conf"
                conf.write_text(CONF.format(work=work, name=name, port=port, h2c=h2c, tls=tls, connections=4096))
                stack.enter_context(started(name, server_command(name, work, conf), port, work))
                urls[name] = f"https://127.0.0.1:{tls}{args.path}" if args.tls else \
                    f"http://127.0.0.1:{h2c}{args.path}"
                run_h2load(urls[name], max(args.n // 10, 100), args.c, args.m)  # warm-up
            rates: dict[str, list[float]] = {"nginx": [], "newproxy": []}
            failures = {"nginx": 0, "newproxy": 0}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    rate, failed, raw = run_h2load(url, args.n, args.c, args.m)
                    rates[name].append(rate)
                    failures[name] += failed
                    if args.verbose:
                        print(f"--- {name}\n{raw}")
        results = [(name, statistics.median(values), failures[name]) for name, values in rates.items()]
        how = "TLS (ALPN h2)" if args.tls else "h2c"
        print(f"h2load -n {args.n} -c {args.c} -m {args.m}, {how}, GET {args.path}, median of {args.rounds}")
        print(f"{'server':<10} {'req/s':>10} {'failed':>7}  rounds")
        for name, rate, failed in results:
            print(f"{name:<10} {rate:>10.0f} {failed:>7}  {' '.join(f'{r:.0f}' for r in rates[name])}")
        (_, nginx, _), (_, newproxy, _) = results
        print(f"newproxy/nginx: throughput {newproxy / nginx:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
