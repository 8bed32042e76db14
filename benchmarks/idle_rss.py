"""Memory of idle keep-alive client connections: nginx against newproxy, one worker each.

    .venv/bin/python benchmarks/idle_rss.py [-n 10000] [--no-request] [--rate N] [--settle 8] [--park-after S] [--keep]

Each proxy in turn (same nginx config: one ``return 200``, keepalive_timeout 300s,
worker_connections and worker_rlimit_nofile above N) gets N client connections that each send one
request, read its answer and then stay open, idle (``--no-request``: just connected); opened in a
burst (batches of 500, as fast as the proxy answers) or ``--rate`` per second. The worker's RSS
(/proc/PID/status VmRSS) is read before the first connection and ``--settle`` seconds after all N
are idle; the script prints both, the growth per connection, and newproxy/nginx ratios (issue 6's
target: newproxy's growth at most 3x nginx's).

What it shows for newproxy: idle connections are parked (newproxy/http/parking.py) at ~50 bytes of
live state each, and the memory the live connections used goes back to the system after a big
sweep, except CPython's arenas that a few objects made during a burst still pin: a burst shows that
remainder, connections accumulating at a modest rate show the parked cost. Everything it starts is
stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from common import CONF_HEAD, NGINX, missing_tool, server_command, work_directory
from h1_proxy import free_port, started

from tests.procstat import rss_kib, worker_pid
from tests.slowclients import raise_nofile

CONF = CONF_HEAD + """\
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
worker_rlimit_nofile {nofile};
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"


async def open_idle(port: int, count: int, request: bool, rate: float) -> list[socket.socket]:
    """``count`` connections, each after one answered request (or just connected), left open; as
    fast as the listen backlog allows, or ``rate`` new connections per second."""
    loop = asyncio.get_running_loop()

    async def one() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if request:
            await loop.sock_sendall(sock, REQUEST)
            data = b""
            while not data.endswith(b"ok\n"):
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise RuntimeError("the server closed an idle connection")
                data += chunk
        return sock

    socks: list[socket.socket] = []
    batch = 500 if rate <= 0 else max(1, int(rate / 10))  # a burst: batches of the listen backlog
    began = time.monotonic()
    for start in range(0, count, batch):
        socks += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
        if rate > 0:  # paced: the next batch when its time comes
            await asyncio.sleep(max(0.0, began + len(socks) / rate - time.monotonic()))
    return socks


def measure(name: str, command: list[str], port: int, work: Path, count: int, request: bool,
            settle: float, rate: float) -> tuple[int, int]:
    with started(name, command, port, work) as master:
        pid = worker_pid(master.pid)
        time.sleep(0.3)
        before = rss_kib(pid)
        socks = asyncio.run(open_idle(port, count, request, rate))
        try:
            # Let the worker settle: nginx frees request memory on going idle; newproxy parks a plain
            # connection idle for keepalive_park_after (5 s; newproxy/http/parking.py), checked every
            # 2.5 s, then gives the freed pages back to the system.
            time.sleep(settle)
            after = rss_kib(pid)
        finally:
            for sock in socks:
                sock.close()
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=10_000)
    parser.add_argument("--no-request", action="store_true", help="connect only, send nothing")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="new connections per second (idle ones accumulating, as in production); "
                             "default 0: a burst, as fast as the listen backlog allows")
    parser.add_argument("--park-after", type=float, default=None,
                        help="newproxy's keepalive_park_after (default: its config's, 1 s; 0: never park)")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds between the last connection going idle and the RSS reading (default 8: "
                             "newproxy parks connections idle for 5 s, checked every 2.5 s)")
    args = parser.parse_args(argv)
    if missing_tool("idle_rss", (NGINX,)):
        return 1
    limit = raise_nofile(args.connections + 1024)
    if limit < args.connections + 100:
        print(f"idle_rss: RLIMIT_NOFILE is {limit}, too low for {args.connections} connections", file=sys.stderr)
        return 1
    results: dict[str, tuple[int, int]] = {}
    with work_directory("idle_rss_", args.keep) as work:
        for name in ("nginx", "newproxy"):
            port = free_port()
            conf = work / f"{name}.conf"
            conf.write_text(CONF.format(work=work, name=name, port=port, connections=args.connections + 512,
                                        nofile=args.connections + 1024))
            command = server_command(name, work, conf)
            if name == "newproxy" and args.park_after is not None:
                command += ["-g", f"keepalive_park_after {args.park_after};"]
            results[name] = measure(name, command, port, work, args.connections,
                                    not args.no_request, args.settle, args.rate)
    what = "just connected" if args.no_request else "after one request each"
    what += f", {args.rate:g} new per second" if args.rate > 0 else ", opened in a burst"
    print(f"{args.connections} idle keep-alive connections ({what}), idle {args.settle:g} s, one worker each; "
          "worker RSS in KiB")
    print(f"{'proxy':<10} {'before':>9} {'after':>9} {'growth':>9} {'per conn':>10}")
    for name, (before, after) in results.items():
        print(f"{name:<10} {before:>9} {after:>9} {after - before:>9} {(after - before) * 1024 / args.connections:>8.0f} B")
    (nb, na), (pb, pa) = results["nginx"], results["newproxy"]
    print(f"newproxy/nginx: growth {(pa - pb) / max(1, na - nb):.2f}x, RSS after {pa / na:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
