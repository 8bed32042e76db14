"""WebSocket / Upgrade tunnels: nginx and newproxy driven with the same raw byte script.

Both targets start from one config through the shadow harness (``shadow.runner.started_targets``).
The recording upstreams switch protocols on a URI with ``/__upgrade/`` (shadow/upstreams.py): they
answer ``101 Switching Protocols`` and then echo every read as ``ECHO(`` bytes ``)``, closing after
a read containing ``__bye__``. Each script runs against nginx, then newproxy (one after the other, so
the recordings taken after each belong to it), and the test compares:
- the 101 head (status line, headers with Date/Server masked by the harness's Normaliser),
- every byte received after the head,
- the request each upstream recorded (raw, head and body),
- how the connection ended (EOF or reset) and when, within ``CLOSE_TOLERANCE`` for timeouts.

Scripts wait for each echo before the next send, so the upstream's reads (hence its ECHO framing)
do not depend on how the kernel coalesced segments.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nginx_parser import parse_config
from shadow.compare import Normaliser
from shadow.rewire import plan
from shadow.runner import StartedTargets, started_targets

CONFIG = """
events {}
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:8080;
        location /ws/ {
            proxy_pass http://127.0.0.1:9000;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1s;
        }
        location /fixed/ {
            proxy_pass http://127.0.0.1:9000;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /plain/ { proxy_pass http://127.0.0.1:9000; proxy_read_timeout 1s; }
    }
}
"""

CLOSE_TOLERANCE = 0.35  # seconds: timers (nginx's ms ones, newproxy's deadline ticks) and load
UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\n"


@dataclass
class Outcome:
    head: list[object]  # [status line, normalised headers]
    data: bytes  # everything after the head
    end: str  # "eof", "reset" or "open" (still open when the script stopped waiting)
    at: float  # seconds from the last byte sent to the end
    head_at: float  # seconds from the request to the head's arrival
    records: list[bytes]  # what the upstreams recorded (raw requests)


Step = bytes | float | str  # bytes: send, then wait for its echo; float: sleep; "shut"/"expect:..."


def _recv_until(sock: socket.socket, buf: bytearray, want: bytes, limit: float) -> str:
    """Read into ``buf`` until it contains ``want``: "" when found, else how the stream ended."""
    deadline = time.monotonic() + limit
    while want not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return "open"
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "eof"
        buf += chunk
    return ""


def run_script(started: StartedTargets, index: int, path: str, extra: str, steps: list[Step],
               wait_end: float = 3.0) -> Outcome:
    """One connection to target ``index``: the request head, then ``steps``, then wait (bounded)
    for the connection to end."""
    target = started.targets[index]
    port = target.listen_ports["127.0.0.1:8080"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    buf = bytearray()
    first = b""
    if steps and isinstance(steps[0], bytes) and steps[0].startswith(b"EARLY:"):
        first = steps.pop(0)[6:]  # type: ignore[union-attr]  # sent with the request, before the 101
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: ws\r\n{extra}\r\n".encode() + first)
        last = time.monotonic()
        head_end = _recv_until(sock, buf, b"\r\n\r\n", 3)
        assert head_end in ("", "eof"), bytes(buf)
        head_at = time.monotonic() - last
        if first:
            assert _recv_until(sock, buf, b"ECHO(" + first + b")", 3) == "", bytes(buf)
        end = ""
        for step in steps:
            if isinstance(step, float):
                time.sleep(step)
            elif step == "shut":
                sock.shutdown(socket.SHUT_WR)
                last = time.monotonic()
            elif isinstance(step, str) and step.startswith("expect:"):
                end = _recv_until(sock, buf, step[7:].encode(), 3)
                assert end == "", (step, bytes(buf))
            else:
                assert isinstance(step, bytes)
                sock.sendall(step)
                last = time.monotonic()
                if b"NOECHO" not in step:
                    end = _recv_until(sock, buf, b"ECHO(" + step + b")", 3)
                    assert end == "", (step, bytes(buf))
        end = _recv_until(sock, buf, b"\x00never\x00", wait_end)
        at = time.monotonic() - last
    finally:
        sock.close()
    started.pool.settle()
    time.sleep(0.05)  # the upstream's recording of a tunnel ends with its connection
    records = [r.raw for r in started.pool.take()]
    head, _, data = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    norm = Normaliser(listen_ports={port: "127.0.0.1:8080"}, upstreams=started.pool.by_address())
    return Outcome([lines[0], norm.headers(headers)], data, end, at, head_at, records)  # type: ignore[arg-type]


def both(started: StartedTargets, path: str, extra: str, steps: list[Step], wait_end: float = 3.0) -> tuple[Outcome, Outcome]:
    """The script against nginx, then against newproxy; asserts they are equivalent."""
    nginx = run_script(started, 0, path, extra, list(steps), wait_end)
    newproxy = run_script(started, 1, path, extra, list(steps), wait_end)
    assert newproxy.head == nginx.head
    assert newproxy.data == nginx.data
    assert newproxy.records == nginx.records
    assert newproxy.end == nginx.end
    assert abs(newproxy.at - nginx.at) <= CLOSE_TOLERANCE, (nginx.at, newproxy.at)
    assert abs(newproxy.head_at - nginx.head_at) <= CLOSE_TOLERANCE, (nginx.head_at, newproxy.head_at)
    return nginx, newproxy


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartedTargets]:
    tmp: Path = tmp_path_factory.mktemp("websocket")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run")) as targets:
        yield targets


SWITCHED = ["HTTP/1.1 101 Switching Protocols",
            [["Server", "<server>"], ["Date", "<date>"], ["Connection", "upgrade"], ["Upgrade", "websocket"]]]


def test_frames_both_ways_then_client_half_close(started: StartedTargets) -> None:
    """Frames each way (text, binary with every byte value), then the client shuts its write side:
    nginx ends the tunnel at once (no half-close), both sides closed with an EOF."""
    binary = bytes(b for b in range(256) if b not in b"()")
    nginx, _ = both(started, "/ws/__upgrade/chat", UPGRADE, [b"hello", binary, b"\x81\x05world", "shut"])
    assert nginx.head == SWITCHED
    assert nginx.data == b"ECHO(hello)ECHO(" + binary + b")ECHO(\x81\x05world)"
    assert nginx.end == "eof" and nginx.at < CLOSE_TOLERANCE
    assert len(nginx.records) == 1
    assert b"\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" in nginx.records[0]


def test_bytes_sent_with_the_handshake_and_upstream_closing_first(started: StartedTargets) -> None:
    """Bytes sent right behind the request (before the 101) reach the upstream once it switched;
    the upstream then closes first: the client gets what was echoed, then EOF."""
    nginx, _ = both(started, "/ws/__upgrade/early", UPGRADE, [b"EARLY:first", b"more", b"x__bye__"])
    assert nginx.data == b"ECHO(first)ECHO(more)ECHO(x__bye__)"
    assert nginx.end == "eof" and nginx.at < CLOSE_TOLERANCE


def test_idle_timeout_is_proxy_read_timeout_since_last_traffic(started: StartedTargets) -> None:
    """proxy_read_timeout 1s: traffic either way re-arms it (a frame at 0.6 s moves the close to
    ~1 s after it); then both sides close, the client with an EOF."""
    nginx, _ = both(started, "/ws/__upgrade/idle", UPGRADE, [b"a", 0.6, b"b"])
    assert nginx.end == "eof" and 0.8 <= nginx.at <= 1.4, nginx.at


def test_large_transfer_through_the_tunnel(started: StartedTargets) -> None:
    """512 KiB one way and its echo back: nothing lost or reordered (the echo's read boundaries
    differ, so the bytes are compared without the ECHO framing)."""
    payload = bytes(range(48, 48 + 40)) * (512 * 1024 // 40)
    nginx = run_script(started, 0, "/ws/__upgrade/big", UPGRADE, [payload + b"NOECHO", "expect:NOECHO)", "shut"])
    newproxy = run_script(started, 1, "/ws/__upgrade/big", UPGRADE, [payload + b"NOECHO", "expect:NOECHO)", "shut"])
    for side in (nginx, newproxy):
        assert side.head == SWITCHED
        assert re.sub(rb"ECHO\(|\)", b"", side.data) == payload + b"NOECHO"
        assert side.end == "eof"
    assert newproxy.records == nginx.records


def test_fixed_connection_upgrade_header(started: StartedTargets) -> None:
    """``proxy_set_header Connection "upgrade"`` (no map): the same switch."""
    nginx, _ = both(started, "/fixed/__upgrade/f", UPGRADE, [b"ping", "shut"])
    assert nginx.head == SWITCHED and nginx.data == b"ECHO(ping)"
    assert b"\r\nConnection: upgrade\r\n" in nginx.records[0]


def test_normal_request_on_an_upgrade_location(started: StartedTargets) -> None:
    """No Upgrade from the client: an ordinary proxied answer on a kept-alive connection
    ($connection_upgrade is "close" upstream), then a second request on the same connection."""
    outcomes = []
    for index in (0, 1):
        port = started.targets[index].listen_ports["127.0.0.1:8080"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            buf = bytearray()
            sock.sendall(b"GET /ws/one HTTP/1.1\r\nHost: ws\r\n\r\n")
            assert _recv_until(sock, buf, b"}", 3) == ""
            sock.sendall(b"GET /ws/two HTTP/1.1\r\nHost: ws\r\nConnection: close\r\n\r\n")
            end = _recv_until(sock, buf, b"\x00never\x00", 3)
        started.pool.settle()
        records = [r.raw for r in started.pool.take()]
        norm = Normaliser(listen_ports={port: "127.0.0.1:8080"}, upstreams=started.pool.by_address())
        text = re.sub(r"Date: [^\r]*", "Date: <date>", re.sub(r"Server: [^\r]*", "Server: <server>", bytes(buf).decode("latin-1")))
        outcomes.append((norm.text(text), end, records))
    assert outcomes[1] == outcomes[0]
    text, end, records = outcomes[0]
    assert text.count("HTTP/1.1 200 OK") == 2 and end == "eof"
    assert all(b"\r\nConnection: close\r\n" in r and b"Upgrade" not in r for r in records)


def test_upgrade_request_to_a_location_without_the_headers(started: StartedTargets) -> None:
    """No proxy_set_header Upgrade/Connection: the upstream gets "Connection: close" and no
    Upgrade (HTTP/1.0); if it answers 101 anyway, nginx still switches, as the client asked."""
    nginx, _ = both(started, "/plain/__upgrade/p", UPGRADE, [b"hello", "shut"])
    assert nginx.head == SWITCHED and nginx.data == b"ECHO(hello)"
    assert nginx.records[0].startswith(b"GET /plain/__upgrade/p HTTP/1.0\r\n")
    assert b"Upgrade" not in nginx.records[0]


def test_101_without_a_client_upgrade_is_not_a_tunnel(started: StartedTargets) -> None:
    """The upstream answers 101 to a request without Upgrade: nginx does not switch; the 101 is an
    answer whose body runs to the upstream's close, its head (Connection: upgrade) held by the write
    filter until then: here proxy_read_timeout (1s) ends it, head and EOF arriving together."""
    nginx, _ = both(started, "/ws/__upgrade/noclient", "", [])
    assert nginx.head == SWITCHED and nginx.data == b""
    assert nginx.end == "eof" and 0.8 <= nginx.at <= 1.4, nginx.at
    assert 0.8 <= nginx.head_at <= 1.4, nginx.head_at
    assert b"Connection: close\r\n" in nginx.records[0]
