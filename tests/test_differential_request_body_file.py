"""Request bodies past client_body_buffer_size against real nginx: nginx writes them to a temporary
file in client_body_temp_path, with a warning in the error log, and sends the upstream the same
bytes. Compared: each answer, what each upstream received (the whole body), and the error log's
warnings (the file's name masked). Sizes kept clear of nginx's threshold (a Content-Length body whose
rest after what came with the head is 1.25 buffers or more), which depends on how much of the body
nginx's 1k header buffer read with the head. Also: newproxy does not hold such a body in memory
(its worker's RSS during a 32 MiB upload). (A temporary directory it cannot use, nginx's 500:
tests/test_newproxy_io.py; nginx itself refuses to start on one.)
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import Plan, plan
from shadow.runner import started_targets
from shadow.traffic import Request
from tests.differential import assert_equivalent, shadow
from tests.procstat import rss_kib, worker_pid

CONF = """
events {}
http {
    client_max_body_size 0;
    server {
        listen 8080;
        server_name body.test;
        location /up/ { proxy_pass http://127.0.0.1:9001; }
        location /small/ { client_body_buffer_size 1k; proxy_pass http://127.0.0.1:9001; }
        location /large/ { client_body_buffer_size 1m; proxy_pass http://127.0.0.1:9001; }
        location /temp/ { client_body_temp_path %(dir)s/bodies/new; proxy_pass http://127.0.0.1:9001; }
        location /chunked/ {
            proxy_pass http://127.0.0.1:9001;
            proxy_http_version 1.1;
            proxy_request_buffering off;
        }
    }
}
"""

# (location, body size): under and over each buffer, with a margin on both sides of nginx's threshold.
CASES = (("up", 100), ("up", 4096), ("up", 65536), ("up", 2 << 20), ("small", 200), ("small", 8192),
         ("large", 262144), ("large", 3 << 20), ("temp", 100), ("temp", 100000), ("chunked", 100000))


def _body(size: int, seed: int) -> bytes:
    line = b"%07d-" % seed
    return (line * (size // len(line) + 1))[:size]


def _chunked(body: bytes, piece: int = 30000) -> bytes:
    parts = [b"%x\r\n" % len(body[i:i + piece]) + body[i:i + piece] + b"\r\n" for i in range(0, len(body), piece)]
    return b"".join(parts) + b"0\r\n\r\n"


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for number, (location, size) in enumerate(CASES):
        body = _body(size, number)
        for chunked in (False, True):
            framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size))
            out.append(Request(method="POST", target=f"/{location}/{number}{'c' if chunked else ''}",
                               headers=(("Host", "body.test"), framing), listen=listen, group="hand-picked",
                               label=f"{location} {size} {'chunked' if chunked else 'length'}",
                               body=_chunked(body) if chunked else body))
    return out


def _warnings(log: Path) -> list[str]:
    """nginx's warning lines about body files, the file's name and the time, pid and connection
    number masked."""
    lines = []
    for line in log.read_text().splitlines():
        if "a client request body is buffered to a temporary file" in line:
            line = re.sub(r"^.*?\[warn\] \d+#\d+: \*\d+ ", "", line)
            lines.append(re.sub(r"temporary file \S+/\d{10},", "temporary file DIR/NUMBER,", line))
    return lines


def test_bodies_past_the_buffer_go_to_a_file_as_in_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF % {"dir": tmp_path})
    (tmp_path / "bodies").mkdir(mode=0o777)
    (tmp_path / "bodies").chmod(0o777)  # nginx's workers run as nobody: they make bodies/new
    tmp_path.chmod(0o755)
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0)
    assert_equivalent(report, minimum=len(CASES) * 2)
    nginx_lines, newproxy_lines = (_warnings(tmp_path / "run" / target / "error.log")
                                   for target in ("nginx", "newproxy"))
    assert nginx_lines == newproxy_lines
    # The bodies over their buffer, each once, in both framings: /up/ 64 KiB and 2 MiB, /small/
    # 8 KiB, /large/ 3 MiB, /temp/ 100 KB. Unbuffered (/chunked/), nginx writes no file.
    assert len(nginx_lines) == 10, nginx_lines


UPLOAD = 32 << 20


def test_a_large_body_is_not_held_in_memory(tmp_path: Path) -> None:
    """A 32 MiB upload through newproxy: the worker's RSS, sampled as the body goes in and until the
    answer, grows by far less than the body (by ~30 MiB when the body was kept in memory)."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF % {"dir": tmp_path})
    config = parse_config(str(conf))
    the_plan = plan(config)
    listen = next(iter(the_plan.listens))
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        target = started.targets[1]
        worker = worker_pid(target.process.pid)  # type: ignore[attr-defined]
        before = rss_kib(worker)
        peak = before
        piece = _body(1 << 20, 7)
        with socket.create_connection(("127.0.0.1", target.listen_ports[listen]), timeout=30) as client:
            client.sendall(b"POST /up/big HTTP/1.1\r\nHost: body.test\r\nContent-Length: %d\r\n\r\n" % UPLOAD)
            for _ in range(UPLOAD // len(piece)):
                client.sendall(piece)
                peak = max(peak, rss_kib(worker))
            answer = b""
            deadline = time.monotonic() + 30
            while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                peak = max(peak, rss_kib(worker))
                answer += client.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        started.pool.settle()
        received = [r for r in started.pool.take() if r.uri == "/up/big"]
        assert len(received) == 1 and len(received[0].body) == UPLOAD
    assert peak - before < 12 * 1024, (before, peak)
