"""grpc_pass throughput: unary calls through newproxy and through nginx, same config, same upstream.

    .venv/bin/python benchmarks/grpc_bench.py [-n 4000] [-c 4] [-m 8]

Starts, on free 127.0.0.1 ports: the gRPC-like h2 test upstream (tests/grpc_upstream.py) in a
process of its own, nginx (1 worker, ``listen ... http2``, ``grpc_pass``) and newproxy on the very
same config; then sends each ``-n`` unary calls with h2load (``-c`` connections, ``-m`` streams
each, a 2-message body, gRPC's headers) and prints calls/s and the newproxy/nginx ratio. Both
proxies open one upstream connection per call (no ``keepalive`` in the config). The Python test
upstream is slow itself: the ratio, measured in one run, is what to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.grpc_upstream import frame  # noqa: E402

CONF = """user root; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/pt; fastcgi_temp_path {dir}/ft;
    uwsgi_temp_path {dir}/ut; scgi_temp_path {dir}/st;
    server {{ listen 127.0.0.1:{port} http2; location / {{ grpc_pass grpc://127.0.0.1:{up}; }} }}
}}
"""
UPSTREAM = """import sys, time
sys.path.insert(0, {root!r})
from tests.grpc_upstream import GrpcUpstream
up = GrpcUpstream()
print(up.start(), flush=True)
while True:
    time.sleep(60)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def h2load(port: int, body: Path, n: int, c: int, m: int) -> float:
    out = subprocess.run(["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-d", str(body),
                          "-H", "content-type: application/grpc", "-H", "te: trailers",
                          f"http://127.0.0.1:{port}/bench.Echo/Unary"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    done = re.search(r"requests: .* (\d+) succeeded", out)
    rate = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    if done is None or rate is None or int(done.group(1)) != n:
        raise RuntimeError(out)
    return float(rate.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-c", type=int, default=4)
    parser.add_argument("-m", type=int, default=8)
    args = parser.parse_args()
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM.format(root=str(ROOT))], stdout=subprocess.PIPE,
                                        text=True, start_new_session=True)
            processes.append(upstream)
            assert upstream.stdout is not None
            up = int(upstream.stdout.readline())
            body = Path(tmp) / "body"
            body.write_bytes(frame(b"hello") + frame(b"world"))
            rates = {}
            for name in ("nginx", "newproxy"):
                directory = Path(tmp) / name
                directory.mkdir()
                port = free_port()
                (directory / "nginx.conf").write_text(CONF.format(dir=directory, port=port, up=up))
                command = (["nginx", "-p", f"{directory}/", "-c", str(directory / "nginx.conf"), "-g", "daemon off;"]
                           if name == "nginx" else
                           [sys.executable, "-m", "newproxy", "-p", str(directory), "-c", str(directory / "nginx.conf")])
                process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, text=True)
                processes.append(process)
                wait_port(port)
                h2load(port, body, max(200, args.n // 10), args.c, args.m)  # warm-up
                rates[name] = h2load(port, body, args.n, args.c, args.m)
                print(f"{name:9} {rates[name]:9.0f} calls/s")
            print(f"newproxy/nginx: {rates['newproxy'] / rates['nginx']:.2f}x")
        finally:
            for process in processes:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


if __name__ == "__main__":
    main()
