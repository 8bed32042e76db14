"""File answers on the wire, against real nginx: one pipelined batch on one keep-alive connection
(a 3 MiB file sent with sendfile, small files read inline, a multipart range, a HEAD, a 404, a
directory redirect, then Connection: close), read slowly so that flow control pauses the sender.
Both servers run the same nginx.conf; the byte streams must be identical once the Date and Server
values (and the server token in the error page) are normalised."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.io_upstream import free_port

CONF = """
{user}
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{}}
http {{
    access_log off;
    types {{ text/plain txt; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""

BATCH = (
    b"GET /big.bin HTTP/1.1\r\nHost: io.test\r\n\r\n"
    b"GET /small.txt HTTP/1.1\r\nHost: io.test\r\n\r\n"
    b"GET /big.bin HTTP/1.1\r\nHost: io.test\r\nRange: bytes=0-1,1000000-1000099,-3\r\n\r\n"
    b"HEAD /big.bin HTTP/1.1\r\nHost: io.test\r\n\r\n"
    b"GET /missing HTTP/1.1\r\nHost: io.test\r\n\r\n"
    b"GET /dir HTTP/1.1\r\nHost: io.test\r\n\r\n"
    b"GET /big.bin HTTP/1.1\r\nHost: io.test\r\nRange: bytes=100-\r\n\r\n"
    b"GET /small.txt HTTP/1.1\r\nHost: io.test\r\nConnection: close\r\n\r\n"
)


def _normalise(data: bytes) -> bytes:
    data = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: <date>", data)
    data = re.sub(rb"\r\nServer: [^\r]*", b"\r\nServer: <server>", data)
    data = re.sub(rb"<hr><center>[^<]*</center>", b"<hr><center><server></center>", data)
    # Built-in pages embed the server token, so their length differs by its length; ports differ.
    data = re.sub(rb"(Content-Type: text/html\r\nContent-Length: )[0-9]+", rb"\1<n>", data)
    return re.sub(rb"io\.test:[0-9]+", b"io.test:<port>", data)


def _exchange(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(BATCH)
        chunks = []
        slow = 0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if slow < 20:  # a slow reader at first: the sender must wait for the socket
                slow += 1
                time.sleep(0.01)
    return b"".join(chunks)


def _start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - the process owns it; closed with the test's tmp dir
    process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.05)
    raise RuntimeError(f"not listening: {log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def test_pipelined_file_answers_match_nginx_byte_for_byte(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "big.bin").write_bytes(bytes(range(251)) * 12533)  # ~3 MiB, not a multiple of a page
    (root / "small.txt").write_bytes(b"small\n")
    outputs = {}
    for name in ("nginx", "newproxy"):
        port = free_port()
        conf = tmp_path / f"{name}.conf"
        # As root, nginx's workers would drop to nobody and could not read the test's directory.
        user = "user root;" if name == "nginx" and os.geteuid() == 0 else ""
        conf.write_text(CONF.format(user=user, work=tmp_path, name=name, port=port, root=root))
        if name == "nginx":
            command = ["nginx", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "nginx-error.log")]
        else:
            command = [sys.executable, "-m", "newproxy", "-p", str(tmp_path), "-c", str(conf)]
        process = _start(command, port, tmp_path / f"{name}.log")
        try:
            outputs[name] = _exchange(port)
        finally:
            _stop(process)
    nginx, newproxy = (_normalise(outputs[n]) for n in ("nginx", "newproxy"))
    assert len(outputs["nginx"]) > 6_000_000
    if nginx != newproxy:
        at = next(i for i, (a, b) in enumerate(zip(nginx, newproxy)) if a != b) if len(nginx) == len(newproxy) \
            else min(len(nginx), len(newproxy))
        raise AssertionError(f"first difference at byte {at} (lengths {len(nginx)}, {len(newproxy)}):\n"
                             f"nginx:    {nginx[max(0, at - 200):at + 200]!r}\nnewproxy: {newproxy[max(0, at - 200):at + 200]!r}")
