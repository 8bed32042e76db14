"""Parse time of nginx_parser vs crossplane on a generated config of 10,000 server blocks.

    .venv/bin/python benchmarks/parse_bench.py [--servers N] [--repeat R]

Prints both times (best of R) and the ratio parse_config / crossplane.parse; the target is <= 2x.
crossplane.parse runs with its defaults (context and argument checks on), which is what a user of
crossplane gets; nginx_parser does its own checks, builds the typed IR and compiles the regexes.
Not a timed test: a number to watch, measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import crossplane  # type: ignore[import-untyped]

from nginx_parser import parse_config


def generate(servers: int) -> str:
    lines = ["worker_processes 1;", "events {", "    worker_connections 1024;", "}", "http {",
             "    upstream backend {", "        server 127.0.0.1:9000 weight=2;", "        server 127.0.0.1:9001 backup;", "    }",
             "    map $http_upgrade $connection_upgrade {", "        default upgrade;", "        '' close;", "    }"]
    for index in range(servers):
        lines += [
            "    server {",
            f"        listen {8000 + index % 1000};",
            f"        server_name site{index}.example.com www.site{index}.example.com;",
            "        add_header X-Served-By $hostname always;",
            "        location / {",
            "            proxy_set_header Host $host;",
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "            proxy_pass http://backend;",
            "        }",
            "        location ~* \\.(png|jpg|css|js)$ {",
            "            expires 30d;",
            "            root /srv/static;",
            "        }",
            "        if ($request_method = POST) {",
            "            return 405;",
            "        }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--servers", type=int, default=10_000)
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(generate(args.servers))
        ours = best_of(args.repeat, lambda: parse_config(str(path)))
        theirs = best_of(args.repeat, lambda: crossplane.parse(str(path)))
    print(f"servers: {args.servers}  lines: {generate(args.servers).count(chr(10))}")
    print(f"crossplane.parse:   {theirs:.3f} s")
    print(f"nginx_parser:       {ours:.3f} s")
    print(f"ratio:              {ours / theirs:.2f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
