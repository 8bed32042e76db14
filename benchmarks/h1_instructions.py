"""Instructions a proxied HTTP/1.1 request costs in newproxy's Python path, counted by callgrind.

    .venv/bin/python benchmarks/h1_instructions.py [--low 1000] [--high 3000]

Runs ``h1_micro.py`` (the whole Python path of a proxied keep-alive request, in-process) under
``valgrind --tool=callgrind`` for ``--low`` and ``--high`` requests and prints the difference over
``high - low``: the start-up cancels out. Unlike a timing, the count does not move with the
machine's load or its clock (two runs agree within 0.3%, with PYTHONHASHSEED fixed), so a change of a
few percent shows, and it can run beside other work. Fewer instructions is not always less time
(cache misses and branches count too): confirm a change with ``h1_micro.py`` and ``h1_proxy.py``.
Needs valgrind (Debian's ``valgrind`` package); about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MICRO = Path(__file__).resolve().with_name("h1_micro.py")


def instructions(requests: int) -> int:
    """callgrind's total for one run of ``h1_micro.py`` with ``requests`` requests."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(MICRO),
         "--repeat", "1", "--number", str(requests)],
        capture_output=True, text=True, env=env, check=True,
    )
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"callgrind printed no total:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--low", type=int, default=1000, help="requests of the first run (default 1000)")
    parser.add_argument("--high", type=int, default=3000, help="requests of the second run (default 3000)")
    args = parser.parse_args(argv)
    if args.high <= args.low:
        parser.error("--high must be more than --low")
    if shutil.which("valgrind") is None:
        print("h1_instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    low, high = instructions(args.low), instructions(args.high)
    print(f"instructions per proxied request: {(high - low) / (args.high - args.low):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
