"""A client slower than the upstream, against real nginx 1.22: does the upstream get to send the whole
answer while the client reads nothing (proxy_buffering), and does the client then get all of it?

With proxy_buffering on, nginx's event pipe reads an answer the client cannot take yet into its
proxy_buffers, then into a temporary file (up to proxy_max_temp_file_size in all), so the upstream
finishes sending and is free while the client is still slow; with it off, or with no temporary file
(proxy_max_temp_file_size 0) or too small a one for the answer, the upstream waits for the client.
An upstream's X-Accel-Buffering yes/no switches it per answer, unless proxy_ignore_headers names it.
newproxy does the same with its spool (newproxy/http/spool.py, newproxy/http/upstream.py).

Over HTTP/1.1 and HTTP/2 (h2c) against nginx; over HTTP/3 against nginx over HTTP/2 (nginx 1.22 has
no HTTP/3). Each case asks for a 32 MiB answer (the recording upstream's ``/__big/`` marker: numbered lines) on a
connection with a small receive buffer, reads nothing until the upstream has written the whole answer
or STALL seconds passed, then reads it all. Compared: whether the upstream had written the whole
answer before the client began to read, and
the answer the client got (status, length, digest of the body). Far more than the kernel's socket
buffers hold between the two, so only a proxy reading on can let the upstream finish. Each answer
comes on a fresh upstream connection: one that carried a fast answer before has had its receive
buffer grown by the kernel (up to tcp_rmem's maximum, 32 MiB here), which could take it all.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

from aioquic.asyncio.client import connect
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded

from nginx_parser import parse_config
from shadow.h3 import H3Client, client_configuration
from shadow.rewire import plan
from shadow.runner import started_targets
from shadow.upstreams import RecordedRequest, UpstreamPool
from tests.test_h3 import _cert

CONF = """
events {}
http {
    access_log off;
    upstream backend { server 127.0.0.1:9301; }
    server {
        listen 127.0.0.1:8080;
        location /on/ { proxy_pass http://backend; }
        location /off/ { proxy_pass http://backend; proxy_buffering off; }
        location /nofile/ { proxy_pass http://backend; proxy_max_temp_file_size 0; }
        location /smallfile/ { proxy_pass http://backend; proxy_max_temp_file_size 1m; }
        location /bigbuffers/ { proxy_pass http://backend; proxy_buffers 64 16k; proxy_max_temp_file_size 0; }
        location /ignored/ { proxy_pass http://backend; proxy_ignore_headers X-Accel-Buffering; }
        location /temp/ { proxy_pass http://backend; proxy_temp_path %(temp)s; }
    }
}
"""

KIB = 32768  # the answer: 32 MiB
# The most seconds the client reads nothing, waiting for the upstream to finish: a spooled 32 MiB
# answer is read in ~0.3 s, but nginx's first temporary file on a loaded machine took over 1 s.
STALL = 2.5
CASES = [
    "/on/__big/%d" % KIB,
    "/off/__big/%d" % KIB,
    "/nofile/__big/%d" % KIB,
    "/smallfile/__big/%d" % KIB,
    "/bigbuffers/__big/%d" % KIB,
    "/temp/__big/%d" % KIB,
    "/on/__header/X-Accel-Buffering=no/__big/%d" % KIB,
    "/off/__header/X-Accel-Buffering=yes/__big/%d" % KIB,
    "/on/__header/X-Accel-Buffering=NO/__big/%d" % KIB,
    "/on/__header/X-Accel-Buffering=maybe/__big/%d" % KIB,
    "/ignored/__header/X-Accel-Buffering=no/__big/%d" % KIB,
]


def _slow_get(port: int, path: str, upstream_done: Callable[[], bool]) -> dict[str, object]:
    """GET ``path`` with a small receive buffer, read nothing while waiting for the upstream to answer
    in full (``upstream_done()``, at most STALL seconds), then read the whole answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connecting: the window stays small
    try:
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: slow.test\r\nConnection: close\r\n\r\n".encode())
        finished = _stalled(upstream_done)
        data = bytearray()
        while chunk := sock.recv(1 << 20):
            data += chunk
    finally:
        sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return {"upstream finished while the client stalled": finished, "status": head.split(b"\r\n")[0],
            "body length": len(body), "body sha256": hashlib.sha256(body).hexdigest()}


def _stalled(upstream_done: Callable[[], bool]) -> bool:
    """Read nothing until the upstream has sent the whole answer (True) or STALL seconds passed."""
    until = time.monotonic() + STALL
    while not upstream_done():
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True


def _answered_once(pool: UpstreamPool) -> Callable[[], bool]:
    """Whether the one request the upstreams received so far has been answered in full."""
    records: list[RecordedRequest] = []

    def answered() -> bool:
        records.extend(pool.take())
        assert len(records) <= 1, records
        return bool(records and records[0].answered)
    return answered


def _on_both(tmp_path: Path, conf: str, cases: list[str],
             get: Callable[[int, str, Callable[[], bool]], dict[str, object]]) -> list[dict[str, dict[str, object]]]:
    """Each case through ``get`` to nginx, then to newproxy, on the config ``conf``: what each saw."""
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    config = parse_config(str(path))
    the_plan = plan(config)
    listen = next(name for name in the_plan.listens if name.endswith(":8080"))
    seen: list[dict[str, dict[str, object]]] = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            per_case = {}
            for case in cases:
                started.pool.take()
                per_case[case] = get(target.listen_ports[listen], case, _answered_once(started.pool))
                started.pool.settle()
            seen.append(per_case)
    return seen


def test_a_slow_client_does_not_hold_the_upstream_like_nginx(tmp_path: Path) -> None:
    nginx, newproxy = _on_both(tmp_path, CONF % {"temp": tmp_path / "proxy-temp"}, CASES, _slow_get)
    for case in CASES:
        assert newproxy[case] == nginx[case], case
    # What makes the comparison mean something: both outcomes occur, and the answers are whole.
    assert nginx["/on/__big/%d" % KIB]["upstream finished while the client stalled"] is True
    assert nginx["/off/__big/%d" % KIB]["upstream finished while the client stalled"] is False
    for answer in nginx.values():
        assert answer["status"] == b"HTTP/1.1 200 OK" and answer["body length"] == KIB * 1024


H2_CASES = ["/on/__big/%d" % KIB, "/off/__big/%d" % KIB, "/nofile/__big/%d" % KIB]


def _slow_h2_get(port: int, path: str, upstream_done: Callable[[], bool]) -> dict[str, object]:
    """The same over HTTP/2 (h2c): the client reads nothing meanwhile (its stream and
    connection windows shut after the first 64 KiB), then reads on, opening the windows as it goes."""
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "slow.test")],
                      end_stream=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    status, body, ended = b"", hashlib.sha256(), False
    length = 0
    try:
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(conn.data_to_send())
        finished = _stalled(upstream_done)
        while not ended:
            data = sock.recv(1 << 20)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, DataReceived) and event.stream_id == 1:
                    body.update(event.data)
                    length += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, StreamEnded) and event.stream_id == 1:
                    ended = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return {"upstream finished while the client stalled": finished, "status": status, "body length": length,
            "body sha256": body.hexdigest()}


def test_a_slow_h2_client_does_not_hold_the_upstream_like_nginx(tmp_path: Path) -> None:
    conf = (CONF % {"temp": tmp_path / "proxy-temp"}).replace("listen 127.0.0.1:8080;", "listen 127.0.0.1:8080 http2;")
    nginx, newproxy = _on_both(tmp_path, conf, H2_CASES, _slow_h2_get)
    for case in H2_CASES:
        assert newproxy[case] == nginx[case], case
    assert [nginx[case]["upstream finished while the client stalled"] for case in H2_CASES] == [True, False, False]
    for answer in nginx.values():
        assert answer["status"] == b"200" and answer["body length"] == KIB * 1024


async def _slow_h3_get(port: int, path: str, upstream_done: Callable[[], bool]) -> dict[str, object]:
    """The same over HTTP/3: the client's loop is blocked meanwhile (no acknowledgement and
    no flow-control credit go out, so newproxy's stream stops after the first window), then it
    takes the whole answer."""
    async with connect("127.0.0.1", port, configuration=client_configuration("slow.test"),
                       create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        _, waiter = client.send(b"GET", path.encode(), b"slow.test")
        finished = _stalled(upstream_done)  # blocks the loop on purpose: a client that reads nothing
        answer = await asyncio.wait_for(waiter, 60)
    return {"upstream finished while the client stalled": finished, "status": str(answer.status).encode(),
            "body length": len(answer.body), "body sha256": hashlib.sha256(answer.body).hexdigest()}


def test_a_slow_h3_client_does_not_hold_the_upstream_like_nginx_over_h2(tmp_path: Path) -> None:
    """nginx 1.22 has no HTTP/3: newproxy over HTTP/3 against nginx over HTTP/2 (h2c, as above)."""
    crt, key = _cert(tmp_path)
    conf = (CONF % {"temp": tmp_path / "proxy-temp"}).replace(
        "listen 127.0.0.1:8080;",
        "listen 127.0.0.1:8080 http2;\n        listen 127.0.0.1:8443 ssl;\n        listen 127.0.0.1:8443 quic;\n"
        f"        http3 on;\n        ssl_certificate {crt};\n        ssl_certificate_key {key};")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    config = parse_config(str(path))
    the_plan = plan(config)
    cases = H2_CASES[:2]
    seen: dict[str, dict[str, object]] = {}
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        nginx, newproxy = started.targets
        for case in cases:
            started.pool.take()
            seen["nginx h2 " + case] = _slow_h2_get(nginx.listen_ports["127.0.0.1:8080"], case,
                                                    _answered_once(started.pool))
            started.pool.settle()
            started.pool.take()
            seen["newproxy h3 " + case] = asyncio.run(_slow_h3_get(newproxy.listen_ports["127.0.0.1:8443 quic"],
                                                                   case, _answered_once(started.pool)))
            started.pool.settle()
    for case in cases:
        assert seen["newproxy h3 " + case] == seen["nginx h2 " + case], case
    assert [seen["nginx h2 " + case]["upstream finished while the client stalled"] for case in cases] == [True, False]
