"""A proxied HTTP/1.1 request's whole CPU cost in newproxy's Python, in-process (no sockets), in µs.

    .venv/bin/python benchmarks/h1_micro.py [--number 20000] [--repeat 7] [--profile]

``h1_proxy.py`` measures throughput against nginx, with the kernel's share and wrk's noise in it;
this measures only what a change to the front end, the engine or the upstream client costs. It
loads ``engine_micro.py``'s config (``h1_proxy.py``'s: proxy_pass to a keep-alive upstream) and
runs, on uvloop, one client connection (``H1Protocol``) and one pooled upstream connection
(``UpstreamConn``) whose transports are stand-ins: the client's keep-alive GET (six browser
headers) goes through the parser, the engine and the upstream client; the upstream connection's
transport answers each request it is written with a 64-byte 200, in the next turn of the loop,
as a socket would; the client's transport counts the answers and feeds the next request. So each
request costs what it costs in the worker, minus the system calls and the event loop's polling.

``--profile`` prints cProfile's top functions instead. Not a timed test: numbers to compare
before and after a change, on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import uvloop

import engine_micro
from engine_micro import load_engine
from newproxy import native
from newproxy.engine.engine import Engine
from newproxy.engine.proxy import client_response_head
from newproxy.http.h1 import ConnContext, H1Protocol
from newproxy.http.errorlog import ErrorLog
from newproxy.http.upstream import UpstreamClient, UpstreamConn

REQUEST = (b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
           b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
           b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
           b"Connection: keep-alive\r\n\r\n")
BODY = b"0123456789" * 6 + b"0123"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 12:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 64\r\nConnection: keep-alive\r\n\r\n" + BODY)


class _Transport(asyncio.Transport):
    """What the protocols call on a transport; write() is the test's hook."""

    def __init__(self, on_write: object) -> None:
        super().__init__()
        self.on_write = on_write
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.on_write(data)  # type: ignore[operator]

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def run(engine: Engine, number: int, connections: int) -> float:
    """Seconds for ``number`` requests over ``connections`` client connections, each with its own
    pooled upstream connection, a request at a time on each (as wrk -c runs them)."""
    loop = asyncio.get_running_loop()
    log = ErrorLog(None)
    client = UpstreamClient(loop, client_response_head, log)
    ctx = ConnContext(engine, client, loop, log)
    done = loop.create_future()
    left = [number]
    group = engine.upstream_groups["backend"]
    pool = client.pool(group)
    pool.size = connections
    protocols = []
    for _ in range(connections):
        protocol = H1Protocol(ctx, listen=("127.0.0.1", 8080))

        def answered(data: bytes, protocol: H1Protocol = protocol) -> None:
            if not data.endswith(BODY):
                raise AssertionError(f"not the answer expected: {data[:200]!r}")
            left[0] -= 1
            if left[0] >= connections:
                loop.call_soon(protocol.data_received, REQUEST)
            elif left[0] <= 0 and not done.done():
                done.set_result(None)

        upstream = UpstreamConn(pool, group.primary.peers[0].name, loop)
        upstream.connection_made(_Transport(lambda data, upstream=upstream: loop.call_soon(upstream.data_received,
                                                                                           RESPONSE)))
        pool.put(upstream)
        protocol.connection_made(_Transport(answered))
        protocols.append(protocol)
    started = time.perf_counter()
    for protocol in protocols:
        protocol.data_received(REQUEST)
    await done
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--connections", type=int, default=50, help="client connections at once (wrk's -c)")
    parser.add_argument("--profile", action="store_true", help="cProfile one run instead of timing it")
    args = parser.parse_args()
    # One connection each way for the whole run: neither may end at keepalive_requests.
    engine_micro.CONFIG = engine_micro.CONFIG.replace("keepalive 32;", "keepalive 32;\n        keepalive_requests 100000000;") \
        .replace("access_log off;", "access_log off;\n    keepalive_requests 100000000;")
    with tempfile.TemporaryDirectory(prefix="h1-micro-") as work:
        engine = load_engine(Path(work))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: uvloop.run(run(engine, args.number, args.connections)))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    runs = [uvloop.run(run(engine, args.number, args.connections)) for _ in range(args.repeat)]
    print(f"hot path: {native.STATUS}")
    print(f"proxied request, whole Python path: {min(runs) / args.number * 1e6:.2f} us/request "
          f"(best of {args.repeat} runs of {args.number})")


if __name__ == "__main__":
    main()
