"""Shadow harness throughput: request pairs compared per second, sequential and concurrent.

    .venv/bin/python benchmarks/shadow_bench.py [--config examples/basic/nginx.conf] [--pairs 3000]
                                                [--concurrency 1 16 64]

Takes the config's generated traffic, repeated up to ``--pairs`` requests, and runs the harness
(real nginx against newproxy, recording upstreams, every pair compared) at each concurrency. The
figure is pairs per second over the sending phase (first to last compared pair, from the progress
callback), so startup and translation are left out. Issue 7's target: >= 500 pairs/s on a 2-core
machine for a simple config. Not a test: nothing asserts it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nginx_parser import parse_config  # noqa: E402
from shadow.rewire import plan  # noqa: E402
from shadow.runner import run_shadow  # noqa: E402
from shadow.traffic import generate  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basic" / "nginx.conf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(EXAMPLE))
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args(argv)
    config = parse_config(args.config)
    base, _ = generate(config, plan(config), seed=0)
    traffic = (base * (args.pairs // max(1, len(base)) + 1))[: args.pairs]
    print(f"{args.config}: {len(traffic)} request pairs per run")
    for concurrency in args.concurrency:
        marks: list[float] = []
        report = run_shadow(args.config, max_requests=0, guided=False, shrink=0, concurrency=concurrency,
                            extra_requests=lambda _plan: traffic,
                            progress=lambda done, total: marks.append(time.monotonic()))
        elapsed = marks[-1] - marks[0] if len(marks) > 1 else float("nan")
        rate = (len(marks) - 1) / elapsed if elapsed else float("nan")
        print(f"  concurrency {concurrency:>3}: {rate:7.0f} pairs/s  ({report.requests} compared, "
              f"{report.different} different, {report.errors} errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
