"""Memory of idle keep-alive client connections: nginx against newproxy, one worker each.

    .venv/bin/python benchmarks/idle_rss.py [-n 10000] [--no-request] [--keep]

Each proxy in turn (same nginx config: one ``return 200``, keepalive_timeout 300s,
worker_connections and worker_rlimit_nofile above N) gets N client connections that each send one
request, read its answer and then stay open, idle (``--no-request``: just connected). The worker's
RSS (/proc/PID/status VmRSS) is read before the first connection and once all N are idle; the
script prints both, the growth per connection, and newproxy/nginx ratios (issue 6's target: newproxy's
growth at most 3x nginx's). Everything it starts is stopped on exit.
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


async def open_idle(port: int, count: int, request: bool) -> list[socket.socket]:
    """``count`` connections, each after one answered request (or just connected), left open."""
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
    for start in range(0, count, 500):  # in batches: the listen backlog
        socks += await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    return socks


def measure(name: str, command: list[str], port: int, work: Path, count: int, request: bool) -> tuple[int, int]:
    with started(name, command, port, work) as master:
        pid = worker_pid(master.pid)
        time.sleep(0.3)
        before = rss_kib(pid)
        socks = asyncio.run(open_idle(port, count, request))
        try:
            time.sleep(1.0)  # let the worker settle (nginx frees request memory on going idle)
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
            results[name] = measure(name, server_command(name, work, conf), port, work, args.connections,
                                    not args.no_request)
    what = "just connected" if args.no_request else "after one request each"
    print(f"{args.connections} idle keep-alive connections ({what}), one worker each; worker RSS in KiB")
    print(f"{'proxy':<10} {'before':>9} {'after':>9} {'growth':>9} {'per conn':>10}")
    for name, (before, after) in results.items():
        print(f"{name:<10} {before:>9} {after:>9} {after - before:>9} {(after - before) * 1024 / args.connections:>8.0f} B")
    (nb, na), (pb, pa) = results["nginx"], results["newproxy"]
    print(f"newproxy/nginx: growth {(pa - pb) / max(1, na - nb):.2f}x, RSS after {pa / na:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
