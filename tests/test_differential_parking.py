"""Parked idle connections (newproxy/http/parking.py) behave as nginx's idle keep-alive connections.

newproxy runs with ``keepalive_park_after 0.1`` (the default is 1 s), so every pause of PAUSE in the
conversations below parks its connection; its /metrics endpoint shows that parking happened (a test
that cannot tell parked from not parked would prove nothing). nginx runs the same config. Both get
the same conversations over plain sockets at the same moment: requests after a pause (connection
request counts through keepalive_requests, pipelining, a body, a FIN after the request),
timeouts of parked connections (keep-alive, and the first request's header timeout from the
accept), a client closing a parked connection, and stub_status's counts with parked connections.
Compared: every byte each sent back (Date and Server normalised) and when each closed (within
0.5 s of each other, each at least 0.8x the timeout).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from newproxy.config import MetricsConfig, NewproxyConfig
from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import StartedTargets, free_ports, started_targets
from tests.staged import info_log, request_lines
from tests.test_differential_client_timeouts import _normal, read_until_close

T = TypeVar("T")
PAUSE = 0.45  # > keepalive_park_after 0.1 + a sweep period: the connection is parked by then
CONF = """
events {}
http {
    keepalive_timeout 2s;
    keepalive_requests 4;
    client_header_timeout 2s;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name t.test;
        location / { proxy_pass http://app; }
        location = /r { return 200 "r\\n"; }
        location = /status { stub_status; }
    }
}
"""
R = b"GET /r HTTP/1.1\r\nHost: t.test\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: t.test\r\nContent-Length: 5\r\n\r\nhello"
HALF_CLOSE = b"half-close"  # a step: shut our writing side (FIN)


def _parking(port: int) -> Callable[[NewproxyConfig], NewproxyConfig]:
    def mutate(config: NewproxyConfig) -> NewproxyConfig:
        return config.model_copy(update={"keepalive_park_after": 0.1, "metrics": MetricsConfig(port=port)})
    return mutate


@contextmanager
def _both_parking(tmp_path: Path, conf: str, info: bool = False) -> Iterator[tuple[StartedTargets, list[int], int]]:
    """nginx and newproxy (parking after 0.1 s, /metrics on a port of its own) on ``conf``: the
    started targets, their listen ports (nginx's first) and the metrics port. ``info``: each also
    logs at info into run/<label>/info.log (tests/staged.py)."""
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    config = parse_config(str(path))
    metrics_port = _free_port()
    tweaks = [info_log(tmp_path / "run" / label) if info else None for label in ("nginx", "newproxy")]
    with started_targets(config, plan(config), str(tmp_path / "run"), mutate_translation=_parking(metrics_port),
                         tweak_reference=tweaks[0], tweak_other=tweaks[1]) as started:
        yield started, [next(iter(t.listen_ports.values())) for t in started.targets], metrics_port


def _free_port() -> int:
    return free_ports(1)[0]  # (below the ephemeral range: shadow/runner.py)


async def _converse(port: int, steps: list[bytes | float], limit: float = 4.0) -> tuple[bytes, float | None]:
    """Send each bytes step (a float: pause that long, reading what comes meanwhile), then read until
    the server closes: (every byte received, seconds from the last step to the close, None if still
    open at ``limit``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    for step in steps:
        if isinstance(step, float):
            end = time.monotonic() + step
            while (left := end - time.monotonic()) > 0:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), left)
                except TimeoutError:
                    break
                if not chunk:
                    writer.close()
                    return received, 0.0  # closed during a pause
                received += chunk
        elif step == HALF_CLOSE:
            writer.write_eof()
        else:
            writer.write(step)
            await writer.drain()
    received_after, closed_after, reset = await read_until_close(reader, limit)
    writer.close()
    return received + received_after, -1.0 if reset else closed_after  # -1: neither proxy should reset


def _metric(port: int, name: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    match = re.search(rb"^" + name.encode() + rb" (\d+)$", data, re.MULTILINE)
    assert match, data[-800:]
    return int(match.group(1))


CASES: dict[str, tuple[list[bytes | float], float | None]] = {
    # name: (steps, the least time the close may take, None: no timed close expected)
    "requests after pauses, keepalive_requests": ([R, PAUSE, R, PAUSE, R, PAUSE, R], None),
    "keep-alive timeout while parked": ([R, PAUSE], 1.2),  # 2 s from the answer, PAUSE of it spent
    "header timeout of a silent connection": ([PAUSE], 1.2),  # 2 s from the accept
    "first request after a silent pause": ([PAUSE, R], 1.6),
    "pipelined after a pause": ([R, PAUSE, R + R], 1.6),
    "a body after a pause": ([R, PAUSE, POST], 1.6),
    "request then FIN after a pause": ([R, PAUSE, R, HALF_CLOSE], None),
    "split head after a pause": ([R, PAUSE, R[:10], 0.2, R[10:]], 1.6),
}


def test_parked_connections_answer_and_time_out_as_nginx(tmp_path: Path) -> None:
    with _both_parking(tmp_path, CONF) as (_, ports, metrics_port):

        async def run() -> dict[str, list[tuple[bytes, float | None]]]:
            names = list(CASES)
            outcomes = await asyncio.gather(*(_converse(port, CASES[name][0]) for name in names for port in ports),
                                            _parked_meanwhile(metrics_port))
            parked_peak = outcomes.pop()
            assert parked_peak >= len(CASES) - 1, parked_peak  # every conversation's pause parked it
            return {name: [outcomes[2 * i], outcomes[2 * i + 1]] for i, name in enumerate(names)}

        results = asyncio.run(run())
        assert _metric(metrics_port, "newproxy_connections_parked") == 0  # all closed: none left behind
    for name, (steps, at_least) in CASES.items():
        (nginx_bytes, nginx_closed), (ours, our_closed) = results[name]
        assert _normal(nginx_bytes) == _normal(ours), (name, nginx_bytes[:800], ours[:800])
        if nginx_closed is None or our_closed is None:
            assert nginx_closed is None and our_closed is None, (name, nginx_closed, our_closed)
            continue
        assert nginx_closed >= 0 and our_closed >= 0, (name, nginx_closed, our_closed)  # FIN, not reset
        assert abs(nginx_closed - our_closed) <= 0.5, (name, nginx_closed, our_closed)
        if at_least is not None:
            assert min(nginx_closed, our_closed) >= at_least * 0.8, (name, nginx_closed, our_closed)
    # keepalive_requests 4 counted the requests before each parking: the 4th answer closes
    assert results["requests after pauses, keepalive_requests"][1][0].count(b"Connection: close") == 1


LEAVING: dict[str, tuple[bytes, str]] = {  # name: (sent before the pause, how the client then leaves)
    "silent, FIN": (b"", "fin"),
    "silent, reset": (b"", "reset"),
    "kept alive, FIN": (R, "fin"),
    "kept alive, reset": (R, "reset"),
    "silent until the header timeout": (b"", "wait"),
    "kept alive until the keep-alive timeout": (R, "wait"),
}


async def _leave_parked(port: int, data: bytes, how: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await reader.readuntil(b"r\n")
    await asyncio.sleep(PAUSE)
    if how == "fin":
        writer.write_eof()
    elif how == "reset":  # SO_LINGER 0: close() sends RST
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    await read_until_close(reader, 3.0)
    writer.close()


def test_parked_connections_that_end_log_as_nginx_idle_ones(tmp_path: Path) -> None:
    """nginx's info lines for idle connections: "client closed connection while waiting for request"
    (or "recv() failed (104: ...)", or "client timed out (110: ...)") with the listening address for
    one that sent nothing; "client A closed keepalive connection[ (104: ...)]" for a kept-alive one;
    nothing when keepalive_timeout passes. newproxy has them parked meanwhile. All conversations run
    at once; the lines are compared as sorted lists."""
    with _both_parking(tmp_path, CONF, info=True) as (_, ports, metrics_port):

        async def run() -> int:
            *_, peak = await asyncio.gather(*(_leave_parked(port, data, how) for data, how in LEAVING.values()
                                              for port in ports), _parked_meanwhile(metrics_port))
            return peak

        assert asyncio.run(run()) >= len(LEAVING) - 1  # they were parked
        time.sleep(0.2)
        lines = [sorted(line.replace(f"server: 127.0.0.1:{port}", "server: 127.0.0.1:<port>")
                        for line in request_lines(tmp_path / "run" / label, 0,
                                                  lambda line: "[info]" in line and "/metrics" not in line
                                                  and " 127.0.0.1:" not in line.split("server:")[0]))
                 for port, label in zip(ports, ("nginx", "newproxy"), strict=True)]
    assert lines[1] == lines[0], "\n".join(["nginx:"] + lines[0] + ["newproxy:"] + lines[1])
    # One distinct line per way of leaving but the keep-alive timeout (the harness's readiness probe,
    # a connection that sends nothing, adds one more "client closed connection").
    assert len(set(lines[0])) == len(LEAVING) - 1, lines[0]


async def _parked_meanwhile(metrics_port: int) -> int:
    """The most connections newproxy held parked while the conversations paused."""
    peak = 0
    for _ in range(6):
        await asyncio.sleep(0.1)
        peak = max(peak, await asyncio.to_thread(_metric, metrics_port, "newproxy_connections_parked"))
    return peak


def _status(port: int) -> bytes:
    """stub_status's connection gauges: its first and last lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.split(b"\r\n\r\n", 1)[1].splitlines()
    return lines[0] + b"\n" + lines[-1]


def test_stub_status_counts_parked_connections_as_nginx_counts_idle_ones(tmp_path: Path) -> None:
    """Five idle connections (parked in newproxy), then three of them closed by the client: the same
    active, reading, writing and waiting counts from both. (Not accepts/handled/requests: newproxy's
    count its /metrics scrapes too, which nginx does not get.)"""
    with _both_parking(tmp_path, CONF.replace("keepalive_timeout 2s", "keepalive_timeout 30s")) as (_, ports, metrics_port):
        held: dict[int, list[socket.socket]] = {}
        try:
            for port in ports:
                held[port] = []
                for _ in range(5):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(R)
                    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
                    held[port].append(sock)
            time.sleep(PAUSE)
            assert _metric(metrics_port, "newproxy_connections_parked") == 5
            first = [_status(port) for port in ports]
            for port in ports:
                for sock in held[port][:3]:
                    sock.close()
            time.sleep(0.3)
            assert _metric(metrics_port, "newproxy_connections_parked") == 2
            second = [_status(port) for port in ports]
            for port in ports:  # a parked connection still answers
                sock = held[port][3]
                sock.sendall(R)
                assert sock.recv(4096).endswith(b"\r\n\r\nr\n")
        finally:
            for socks in held.values():
                for sock in socks:
                    sock.close()
    assert first[0] == first[1], first
    assert second[0] == second[1], second
    assert b"Active connections: 6" in first[0] and b"Active connections: 3" in second[0], (first, second)


def _idle_after_one_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    sock.sendall(R)
    assert sock.recv(4096).endswith(b"\r\n\r\nr\n")
    return sock


def _closed_within(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` with a FIN (a reset or ``limit`` fails)."""
    began = time.monotonic()
    sock.settimeout(limit)
    assert sock.recv(4096) == b""
    return time.monotonic() - began


def test_quit_closes_parked_connections_at_once_as_nginx_closes_idle_ones(tmp_path: Path) -> None:
    """QUIT (graceful stop): nginx closes idle keep-alive connections at once and exits; newproxy does
    the same with parked ones."""
    with _both_parking(tmp_path, CONF.replace("keepalive_timeout 2s", "keepalive_timeout 30s")) as (started, ports, metrics_port):
        idle = [_idle_after_one_request(port) for port in ports]
        try:
            time.sleep(PAUSE)
            assert _metric(metrics_port, "newproxy_connections_parked") == 1
            for target in started.targets:
                assert target.process is not None  # type: ignore[attr-defined]
                target.process.send_signal(signal.SIGQUIT)  # type: ignore[attr-defined]
            closes = [_closed_within(sock, 2.0) for sock in idle]
            for target in started.targets:
                target.process.wait(timeout=5)  # type: ignore[attr-defined]
        finally:
            for sock in idle:
                sock.close()
    assert all(close < 0.5 for close in closes), closes


def test_reload_serves_a_parked_connection_with_the_old_config_then_closes_it(tmp_path: Path) -> None:
    """HUP: the old worker drains; a connection parked under it that sends a request during the drain
    grace gets its answer from the old config with ``Connection: close`` (newproxy/worker.py), new
    connections get the new config. (nginx closes idle connections at a reload at once, which can
    reset a request sent just then: the grace is newproxy's, see DRAIN_IDLE_GRACE.)"""
    port = _free_port()
    conf_path = tmp_path / "nginx.conf"
    text = f"""pid {tmp_path}/np.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    server {{ listen 127.0.0.1:{port}; location = /r {{ return 200 "r\\n"; }} location / {{ return 200 "old\\n"; }} }}
}}
"""
    conf_path.write_text(text)
    with _parking_newproxy(conf_path) as process:
        idle = _wait_for(lambda: _try_idle(port), 15)
        time.sleep(PAUSE)
        conf_path.write_text(text.replace('"old\\n"', '"new\\n"'))
        process.send_signal(signal.SIGHUP)
        _wait_for(lambda: _body(port) == b"new\n" or None, 10)
        idle.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = idle.recv(4096)
        assert answer.endswith(b"\r\n\r\nold\n") and b"Connection: close" in answer, answer
        assert _closed_within(idle, 2.0) < 2.0
        idle.close()


def test_parked_connections_count_toward_worker_connections(tmp_path: Path) -> None:
    """worker_connections 3: three parked connections fill the worker (the fourth is closed at the
    accept, as nginx closes connections over the cap) and are still served."""
    port = _free_port()
    conf_path = tmp_path / "nginx.conf"
    conf_path.write_text(f"""pid {tmp_path}/np.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 3; }}
http {{ access_log off; keepalive_timeout 30s; server {{ listen 127.0.0.1:{port}; location / {{ return 200 "r\\n"; }} }} }}
""")
    held: list[socket.socket] = []
    try:
        with _parking_newproxy(conf_path) as process:
            held.append(_wait_for(lambda: _try_idle(port), 15))
            held += [_idle_after_one_request(port) for _ in range(2)]
            time.sleep(PAUSE)
            (worker,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            epolls = [fd for fd in os.listdir(f"/proc/{worker}/fd")
                      if "eventpoll" in os.readlink(f"/proc/{worker}/fd/{fd}")]
            assert len(epolls) == 2, epolls  # the loop's and the parking lot's: the three are parked
            with socket.create_connection(("127.0.0.1", port), timeout=3) as over:
                assert over.recv(100) == b""  # closed at accept
            for sock in held:
                sock.sendall(R)
                assert sock.recv(4096).endswith(b"\r\n\r\nr\n")
            assert "3 worker_connections are not enough" in (tmp_path / "error.log").read_text()
    finally:
        for sock in held:
            sock.close()


@contextmanager
def _parking_newproxy(conf_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """newproxy on ``conf_path`` parking connections idle for 0.1 s; QUIT (then KILL) on the way out."""
    process = subprocess.Popen([sys.executable, "-m", "newproxy", "-c", str(conf_path), "-g", "keepalive_park_after 0.1;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=5)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _try_idle(port: int) -> socket.socket | None:
    try:
        return _idle_after_one_request(port)
    except OSError:
        return None


def _body(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1]
    except (OSError, IndexError):
        return None


def _wait_for(probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _random_conversations(seed: int, count: int) -> dict[str, list[bytes | float]]:
    """Conversations mixing requests (kept alive, closing, HTTP/1.0, HEAD, with bodies, pipelined,
    cut anywhere) with pauses long enough to park the connection."""
    import random

    rng = random.Random(seed)
    kinds = [R, b"HEAD /r HTTP/1.1\r\nHost: t.test\r\n\r\n", POST, b"GET /x?y=1 HTTP/1.1\r\nHost: t.test\r\n\r\n",
             b"GET /r HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"\r\n" + R,
             b"POST /p HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]
    out: dict[str, list[bytes | float]] = {}
    for number in range(count):
        steps: list[bytes | float] = []
        for _ in range(rng.randint(1, 4)):
            data = b"".join(rng.choice(kinds) for _ in range(rng.choice((1, 1, 2))))
            if rng.random() < 0.3:  # cut: the rest after a short pause (not parked: a head is begun)
                at = rng.randint(1, len(data) - 1)
                steps += [data[:at], 0.15, data[at:]]
            else:
                steps.append(data)
            steps.append(PAUSE if rng.random() < 0.7 else 0.05)
        if rng.random() < 0.3:
            steps.append(b"GET /r HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        out[f"random {number}"] = steps
    return out


def test_random_conversations_with_parking_match_nginx(tmp_path: Path) -> None:
    """24 seeded conversations over both proxies at once: the same bytes back and the same closes."""
    conversations = _random_conversations(20261127, 24)
    with _both_parking(tmp_path, CONF) as (_, ports, metrics_port):

        async def run() -> list[tuple[bytes, float | None]]:
            return await asyncio.gather(*(_converse(port, steps) for steps in conversations.values()
                                          for port in ports), _parked_meanwhile(metrics_port))

        outcomes = asyncio.run(run())
        assert outcomes.pop() > 0  # type: ignore[operator]
    for index, name in enumerate(conversations):
        (nginx_bytes, nginx_closed), (ours, our_closed) = outcomes[2 * index], outcomes[2 * index + 1]
        assert _normal(nginx_bytes) == _normal(ours), (name, conversations[name], nginx_bytes[-600:], ours[-600:])
        assert (nginx_closed is None) == (our_closed is None), (name, nginx_closed, our_closed)
        if nginx_closed is not None and our_closed is not None:
            assert nginx_closed >= 0 and our_closed >= 0 and abs(nginx_closed - our_closed) <= 0.5, \
                (name, nginx_closed, our_closed)
