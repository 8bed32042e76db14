"""HTTP/3 throughput and latency: newproxy over h3 against newproxy's own HTTP/2, same config, same run.

    .venv/bin/python benchmarks/h3_bench.py [-c 4] [-m 8] [-n 6000] [--warmup 300]

Starts, on free 127.0.0.1 ports:
- an upstream nginx answering every request with a fixed 200 body (1 worker, access_log off);
- newproxy (1 worker, access_log off) on one nginx config with ``listen PORT ssl http2`` and
  ``listen PORT quic`` (a self-signed ECDSA certificate made for the run) and three locations: a
  ``return 200``, a 4 KiB static file, and a ``proxy_pass`` to the upstream (keep-alive);
then sends the same request mix (the three paths in turn) over each protocol with the same shape:
``-c`` connections, each with ``-m`` requests in flight, ``-n`` requests in all (after ``--warmup``
requests that are not counted). The h3 client is aioquic's (shadow/h3.py's H3Client), the h2 one a
client of the same shape on the ``h2`` library, both in one Python process on uvloop: the two
protocols pay the same client-side costs. Prints req/s, p50 and p99 of each, the h3/h2 ratio and,
when ``h2load`` is installed, h2load's req/s on the same mix for reference (a C client: the server's
ceiling rather than the Python clients'). Everything it starts is stopped on exit, even on errors.

Absolute numbers depend on the machine (2 cores here: the client, newproxy and the upstream share
them); the ratio measured in one run is what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import h2.config
import h2.connection
import h2.events
import uvloop
from aioquic.asyncio.client import connect
from h1_proxy import NGINX, UPSTREAM_CONF, free_port, started

from shadow.h3 import H3Client, client_configuration

PROXY_CONF = """\
worker_processes 1;
pid {work}/newproxy.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;  # nginx's 1000 would end each connection (GOAWAY) mid-run
    upstream backend {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{port} ssl http2;
        listen 127.0.0.1:{port} quic;
        server_name bench;
        ssl_certificate {work}/bench.crt;
        ssl_certificate_key {work}/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {work}/html;
        location = / {{ return 200 "ready\\n"; }}
        location = /return {{ return 200 "hello from newproxy\\n"; }}
        location /static/ {{ }}
        location /proxy/ {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
PATHS = (b"/return", b"/static/4k.txt", b"/proxy/x")


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]  # seconds, one per counted request
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0


class _H2Client(asyncio.Protocol):
    """A minimal HTTP/2 client on the h2 library: ``request`` waits for one whole answer."""

    def __init__(self) -> None:
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.waiters: dict[int, tuple[asyncio.Future[int], list[int]]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())  # type: ignore[union-attr]
        self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                entry = self.waiters.get(event.stream_id)
                if entry is not None:
                    entry[1].append(int(dict(event.headers)[b":status"]))
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                entry = self.waiters.pop(event.stream_id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(entry[1][0] if entry[1] else 0)
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        for future, _ in self.waiters.values():
            if not future.done():
                future.set_result(0)

    async def request(self, path: bytes) -> int:
        sid = self.conn.get_next_available_stream_id()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiters[sid] = (future, [])
        self.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"bench"),
                                     (b":path", path)], end_stream=True)
        self.transport.write(self.conn.data_to_send())  # type: ignore[union-attr]
        return await future


async def _load(name: str, clients: list, inflight: int, total: int, warmup: int) -> Result:  # type: ignore[type-arg]
    """``inflight`` workers per client, each sending the mix one request at a time until ``total``
    requests (after ``warmup``) are done."""
    issued = 0
    counted: list[float] = []
    errors = 0
    start = 0.0

    async def worker(client: object) -> None:
        nonlocal issued, errors, start
        while issued < warmup + total:
            index = issued
            issued += 1
            if index == warmup:
                start = time.perf_counter()
            t0 = time.perf_counter()
            try:
                if name == "h3":
                    answer = await client.request(b"GET", PATHS[index % 3], b"bench")  # type: ignore[attr-defined]
                    status = answer.status
                else:
                    status = await client.request(PATHS[index % 3])  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a protocol error or closed connection: one failed request
                status = 0
            if status != 200:
                errors += 1
            if index >= warmup:
                counted.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(client) for client in clients for _ in range(inflight)))
    return Result(name, len(counted), time.perf_counter() - start, counted, errors)


async def bench_h3(port: int, connections: int, inflight: int, total: int, warmup: int) -> Result:
    async with _connections_h3(port, connections) as clients:
        return await _load("h3", clients, inflight, total, warmup)


class _connections_h3:
    """``n`` aioquic connections, opened together, closed on exit."""

    def __init__(self, port: int, n: int) -> None:
        self.managers = [connect("127.0.0.1", port, configuration=client_configuration("bench"),
                                 create_protocol=H3Client) for _ in range(n)]

    async def __aenter__(self) -> list[H3Client]:
        return [await manager.__aenter__() for manager in self.managers]

    async def __aexit__(self, *exc: object) -> None:
        for manager in self.managers:
            await manager.__aexit__(None, None, None)


async def bench_h2(port: int, connections: int, inflight: int, total: int, warmup: int) -> Result:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(_H2Client, "127.0.0.1", port, ssl=context, server_hostname="bench")
        await client.ready
        clients.append(client)
    try:
        return await _load("h2", clients, inflight, total, warmup)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()


def h2load(port: int, connections: int, inflight: int, total: int, work: Path) -> str | None:
    """h2load's req/s on the same mix (its -i file: the three paths), or None without h2load."""
    if shutil.which("h2load") is None:
        return None
    uris = work / "uris.txt"
    uris.write_text("".join(f"https://127.0.0.1:{port}{p.decode()}\n" for p in PATHS))
    out = subprocess.run(["h2load", "-c", str(connections), "-m", str(inflight), "-n", str(total), "-i", str(uris),
                          "-H", ":authority: bench"], capture_output=True, text=True, timeout=300, check=False).stdout
    for line in out.splitlines():
        if line.startswith("finished in"):
            return line.strip()
    return out[-500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--connections", type=int, default=4)
    parser.add_argument("-m", "--inflight", type=int, default=8, help="requests in flight per connection")
    parser.add_argument("-n", "--requests", type=int, default=6000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    # A TERM (a timeout wrapper) unwinds like Ctrl-C, so the context managers stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="h3-bench-") as tmp:
        work = Path(tmp)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(work / "bench.key"), "-out", str(work / "bench.crt"), "-subj",
                        "/CN=bench", "-days", "2"], check=True, capture_output=True, timeout=30)
        (work / "html" / "static").mkdir(parents=True)
        (work / "html" / "static" / "4k.txt").write_bytes(b"x" * 4096)
        upstream, status, plain, port = free_port(), free_port(), free_port(), free_port()
        (work / "upstream.conf").write_text(UPSTREAM_CONF.format(work=work, port=upstream, status_port=status,
                                                                 body="x" * 64))
        (work / "proxy.conf").write_text(PROXY_CONF.format(work=work, upstream=upstream, plain=plain, port=port))
        with started("upstream", [NGINX, "-c", str(work / "upstream.conf"), "-e", str(work / "upstream-error.log")],
                     upstream, work), \
                started("newproxy", [sys.executable, "-m", "newproxy", "-c", str(work / "proxy.conf"), "-e",
                                     str(work / "newproxy-error.log")], plain, work):
            shape = (args.connections, args.inflight, args.requests, args.warmup)
            results = [uvloop.run(bench_h3(port, *shape)), uvloop.run(bench_h2(port, *shape))]
            reference = h2load(port, args.connections, args.inflight, args.requests, work)
    print(f"{args.connections} connections x {args.inflight} in flight, {args.requests} requests "
          f"(mix: {', '.join(p.decode() for p in PATHS)})")
    for result in results:
        print(f"{result.name}: {result.rps:8.0f} req/s  p50 {result.percentile(0.5):6.2f} ms  "
              f"p99 {result.percentile(0.99):6.2f} ms  errors {result.errors}")
    h3, h2r = results
    print(f"h3/h2 req/s ratio: {h3.rps / h2r.rps:.2f}" if h2r.rps else "h2: no requests")
    if reference is not None:
        print(f"h2load (h2, C client) on the same mix: {reference}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
