"""The engine's CPU cost per proxied request, in-process (no sockets), in µs.

    .venv/bin/python benchmarks/engine_micro.py [--number 10000] [--repeat 30] [--profile]

The nginx config of ``h1_proxy.py`` (``location / { proxy_pass http://backend; proxy_http_version
1.1; proxy_set_header Connection ""; }`` with a keep-alive upstream) is written to a temporary file
and loaded the way ``newproxy -c nginx.conf`` loads it (newproxy/cli.py ``load_config`` through the
``nginx`` adapter entry point, then ``build_engine``). Then, for a GET with six typical browser
headers, it times (best of ``--repeat`` runs of ``--number`` calls):

- ``handle``: ``Engine.handle(request)``, which builds the upstream request head (``upstream_head``);
- ``upstream_head``: that head alone, for the context ``handle`` made;
- ``client_response_head``: the client's head for a typical upstream answer (5 headers, length-framed);
- ``total``: ``handle`` + ``client_response_head``, the engine's whole share of a proxied request.

``--profile`` prints cProfile's top functions for the total instead. Not a timed test: numbers to
compare before and after a change, on one machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from newproxy.cli import Options, build_engine, load_config
from newproxy.engine.engine import Engine
from newproxy.engine.proxy import client_response_head, upstream_head
from newproxy.engine.types import ProxyPass, Request

CONFIG = """\
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    upstream backend {
        server 127.0.0.1:9;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:8080;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""

BROWSER_HEADERS = [
    (b"Host", b"127.0.0.1:8080"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Connection", b"keep-alive"),
]

UPSTREAM_HEADERS = [
    (b"Server", b"nginx/1.22.1"),
    (b"Date", b"Fri, 27 Nov 2026 12:00:00 GMT"),
    (b"Content-Type", b"text/plain"),
    (b"Content-Length", b"64"),
    (b"Connection", b"keep-alive"),
]


def load_engine(directory: Path) -> Engine:
    path = directory / "nginx.conf"
    path.write_text(CONFIG)
    opts = Options(config=str(path), prefix=str(directory))
    config_path, config = load_config(opts)
    return build_engine(config, config_path)


def request() -> Request:
    # A fresh header list each time: the front end makes one per request, and the engine may keep it.
    return Request(b"GET", b"/index.html?q=1", b"1.1", list(BROWSER_HEADERS), b"",
                   ("127.0.0.1", 40000), ("127.0.0.1", 8080))


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """µs per call, best of ``repeat`` runs."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="cProfile the total instead of timing it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engine-micro-") as work:
        engine = load_engine(Path(work))
    pp = engine.handle(request())
    if not isinstance(pp, ProxyPass):
        raise SystemExit(f"expected a ProxyPass, got {type(pp).__name__}")
    ctx = pp.context
    location = ctx.location  # type: ignore[attr-defined]
    proxy = location.proxy

    def total() -> None:
        answer = engine.handle(request())
        client_response_head(answer, 200, b"OK", UPSTREAM_HEADERS, "length")  # type: ignore[arg-type]

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [total() for _ in range(args.number)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    base = best(request, args.number, args.repeat)  # building the Request is the front end's share
    cases = {
        "handle": best(lambda: engine.handle(request()), args.number, args.repeat) - base,
        "upstream_head": best(lambda: upstream_head(ctx, proxy), args.number, args.repeat),
        "client_response_head": best(lambda: client_response_head(pp, 200, b"OK", UPSTREAM_HEADERS, "length"),
                                     args.number, args.repeat),
        "total": best(total, args.number, args.repeat) - base,
    }
    for name, micros in cases.items():
        print(f"{name:22s} {micros:6.2f} us/request")
    print(f"{'(Request construction':22s} {base:6.2f} us, subtracted from handle and total)")


if __name__ == "__main__":
    main()
