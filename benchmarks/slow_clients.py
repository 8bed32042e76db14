"""Slow clients of large proxied answers: nginx against newproxy, one worker each, proxy_buffering on.

    .venv/bin/python benchmarks/slow_clients.py [-n 200] [--size-mib 4] [--settle 3] [--keep]

An upstream nginx serves a file of ``--size-mib`` MiB. Each proxy in turn (same nginx config: the
defaults, proxy_buffers 8 4k and a temporary file of up to 1 GiB per answer) gets N clients that
ask for it with an 8 KiB receive buffer and then read nothing. ``--settle`` seconds later the script
reads the worker's RSS and how many connections to the upstream are still established (an
upstream that got its whole answer into the kernel's socket buffers has closed too: read that count
with answers of 32 MiB), then lets every client read its answer to the end and checks each got all
of it.

What it shows: with proxy_buffering on, neither proxy holds the upstream for a slow client (nginx's
event pipe and newproxy's spool read the answer on into memory and a temporary file); the RSS growth
per slow client is what each keeps in memory for it (proxy_buffers, and what waits in the client's
socket or transport). Everything it starts is stopped on exit.
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

UPSTREAM_CONF = CONF_HEAD + """\
    server {{
        listen 127.0.0.1:{port};
        root {work}/files;
        location = / {{ return 200; }}  # what the readiness check asks for
    }}
}}
"""
PROXY_CONF = CONF_HEAD + """\
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{upstream_port}; proxy_temp_path {work}/{name}-temp; {extra} }}
    }}
}}
"""


def open_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:``port`` (from /proc/net/tcp: state 01)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[2] == wanted and fields[3] == "01":
                count += 1
    return count


async def slow_clients(port: int, count: int, settle: float, measure: object) -> tuple[object, list[int]]:
    """``count`` clients that ask for the file and read nothing for ``settle`` seconds; then
    ``measure()``; then each reads its answer to the end. The measure, and the bytes each got."""
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: slow\r\nConnection: close\r\n\r\n")
        socks.append(sock)
    await asyncio.sleep(settle)
    seen = measure()  # type: ignore[operator]

    async def read_all(sock: socket.socket) -> int:
        got = 0
        while chunk := await loop.sock_recv(sock, 1 << 20):
            got += len(chunk)
        sock.close()
        return got

    return seen, list(await asyncio.gather(*(read_all(sock) for sock in socks)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--clients", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=4, help="the answer's size (default 4 MiB)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the clients read nothing (default 3)")
    parser.add_argument("--buffering", choices=("on", "off"), default="on", help="proxy_buffering (default on)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if missing_tool("slow_clients", (NGINX,)):
        return 1
    raise_nofile(4 * args.clients + 1024)
    size = args.size_mib << 20
    results: dict[str, tuple[int, int, int]] = {}
    with work_directory("slow_clients_", args.keep) as work:
        (work / "files").mkdir()
        (work / "files" / "big").write_bytes(bytes(range(256)) * (size // 256))
        (work / "files").chmod(0o755)
        work.chmod(0o755)  # nginx's worker (nobody) reads the file
        upstream_port = free_port()
        (work / "upstream.conf").write_text(UPSTREAM_CONF.format(work=work, name="upstream", port=upstream_port,
                                                                 connections=4 * args.clients + 512))
        with started("upstream", [NGINX, "-p", str(work), "-c", str(work / "upstream.conf"), "-g", "daemon off;"],
                     upstream_port, work):
            for name in ("nginx", "newproxy"):
                port = free_port()
                conf = work / f"{name}.conf"
                conf.write_text(PROXY_CONF.format(work=work, name=name, port=port, upstream_port=upstream_port,
                                                  connections=4 * args.clients + 512,
                                                  extra=f"proxy_buffering {args.buffering};"))
                with started(name, server_command(name, work, conf), port, work) as master:
                    pid = worker_pid(master.pid)
                    time.sleep(0.3)
                    before = rss_kib(pid)
                    (after, still_open), got = asyncio.run(slow_clients(
                        port, args.clients, args.settle, lambda: (rss_kib(pid), open_to(upstream_port))))
                short = sum(1 for n in got if n < size)
                if short:
                    print(f"slow_clients: {short} of {name}'s clients got less than the whole answer", file=sys.stderr)
                    return 1
                results[name] = (before, after, still_open)
    print(f"{args.clients} clients of a {args.size_mib} MiB answer, reading nothing for {args.settle:g} s; "
          f"one worker each, proxy_buffering {args.buffering}; worker RSS in KiB")
    print(f"{'proxy':<10} {'before':>9} {'after':>9} {'per client':>11} {'upstream established':>21}")
    for name, (before, after, still_open) in results.items():
        print(f"{name:<10} {before:>9} {after:>9} {(after - before) / args.clients:>8.0f} KiB {still_open:>21}")
    (nb, na, _), (pb, pa, _) = results["nginx"], results["newproxy"]
    print(f"newproxy/nginx: RSS growth {(pa - pb) / max(1, na - nb):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
