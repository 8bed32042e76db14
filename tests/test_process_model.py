"""newproxy's process model (newproxy/process.py, newproxy/worker.py): master and workers, nginx's signals.

Every test runs newproxy from an nginx.conf (through the translator's adapter, as an operator would),
loopback only, and stops every process it started (the master's process group is killed at the end).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.io_upstream import FakeUpstream, free_port
from tests.processes import stop_group

NGINX = "/usr/sbin/nginx"


def conf(tmp: Path, port: int, body: str, *, workers: int = 2, extra_main: str = "", locations: str = "") -> str:
    return f"""\
pid {tmp}/np.pid;
error_log {tmp}/error.log;
worker_processes {workers};
{extra_main}
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{body}\\n"; }}
{locations}
    }}
}}
"""


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    tmp: Path
    conf: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        return sorted(int(pid) for pid in text.split())

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "newproxy", "-c", str(self.conf), *args],
                              check=False, capture_output=True, text=True, timeout=30)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def newproxy(tmp: Path, text: str, port: int, workers: int = 2) -> Iterator[Running]:
    path = tmp / "nginx.conf"
    path.write_text(text)
    with open(tmp / "stderr.log", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "newproxy", "-c", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    running = Running(process, port, tmp, path)
    try:
        _wait(lambda: process.poll() is not None or len(running.workers()) == workers, 15, "the workers")
        assert process.poll() is None, (tmp / "stderr.log").read_text()
        assert get(port) is not None
        yield running
    finally:
        stop_group(process)
        if process.poll() is None:
            process.wait(timeout=5)


def get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, bytes] | None:
    """One request on a new connection: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return None  # closed without an answer
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- (1) reload under load -----------------------------------------------------------------------
@dataclass
class Load:
    """A closed-loop keep-alive load: each connection sends its next request when the answer is in."""

    port: int
    connections: int = 8
    done: int = 0
    failures: list[str] = field(default_factory=list)
    last: dict[int, bytes] = field(default_factory=dict)  # the body each connection saw last
    reconnects: int = 0
    stop: bool = False

    async def one(self, slot: int) -> None:
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        while not self.stop:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                while not self.stop:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.split(b"\r\n")
                    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:] if h)}
                    body = await reader.readexactly(int(headers[b"content-length"]))
                    if not lines[0].startswith(b"HTTP/1.1 200 "):
                        self.failures.append(lines[0].decode())
                    self.done += 1
                    self.last[slot] = body
                    if headers.get(b"connection") == b"close":
                        self.reconnects += 1
                        break  # the worker is draining: go on on a new connection, as clients do
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                writer.close()


async def _reload_under_load(running: Running, texts: list[str], reloads: int) -> tuple[Load, float]:
    load = Load(running.port)
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(load.one(slot)) for slot in range(load.connections)]
    started = loop.time()
    await asyncio.sleep(0.3)
    for n in range(reloads):
        text = texts[(n + 1) % 2]
        expected = text.split('return 200 "', 1)[1].split("\\n", 1)[0].encode() + b"\n"
        running.conf.write_text(text)
        os.kill(running.pid, signal.SIGHUP)
        deadline = loop.time() + 10
        # New connections and every keep-alive connection of the load see the new config.
        while not (all(load.last.get(slot) == expected for slot in range(load.connections))
                   and (await loop.run_in_executor(None, get, running.port))[1] == expected):
            assert loop.time() < deadline, f"reload {n}: the new config does not show ({load.last})"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    elapsed = loop.time() - started
    load.stop = True
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    return load, elapsed


def test_reload_under_load_drops_nothing(tmp_path: Path) -> None:
    port = free_port()
    texts = [conf(tmp_path, port, "one"), conf(tmp_path, port, "two")]
    with newproxy(tmp_path, texts[0], port) as running:
        load, elapsed = asyncio.run(_reload_under_load(running, texts, 20))
        print(f"20 reloads under load: {load.done} requests in {elapsed:.1f}s ({load.done / elapsed:.0f}/s), "
              f"{load.reconnects} drained keep-alive connections reopened, {len(load.failures)} failed")
        assert load.failures == []
        assert load.done / elapsed >= 500, f"{load.done} requests in {elapsed:.1f}s"
        assert load.reconnects >= 20  # the drained keep-alive connections moved to the new workers
        _wait(lambda: len(running.workers()) == 2, 10, "the old workers to exit")
        assert "reconfiguring" not in running.error_log()  # notice level: not at the default "error"
        assert "[alert]" not in running.error_log() and "[emerg]" not in running.error_log()


# -- (2) a bad config on reload -------------------------------------------------------------------
def test_bad_config_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    good = conf(tmp_path, port, "good")
    with newproxy(tmp_path, good, port) as running:
        before = running.workers()
        bad = good.replace("    access_log", "    server_tokens;\n    access_log")  # line 7
        running.conf.write_text(bad)
        os.kill(running.pid, signal.SIGHUP)
        _wait(lambda: "reload failed" in running.error_log(), 10, "the reload error")
        log = running.error_log()
        message = 'invalid number of arguments in "server_tokens" directive'
        assert f"[emerg] {running.pid}#{running.pid}: reload failed, keeping the old configuration: " \
               f"{running.conf}:7: {message}" in log, log
        nginx = subprocess.run([NGINX, "-t", "-c", str(running.conf)], check=False, capture_output=True, text=True, timeout=30)
        assert f": {message} in {running.conf}:7" in nginx.stderr  # the same error, the same line
        assert get(port) == (200, b"good\n")
        assert running.workers() == before  # no worker was started or stopped
        # A config whose new listen address cannot be bound is refused too; the old one serves on.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", other))
            taken.listen()
            running.conf.write_text(good.replace(f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{port};\n"
                                                 f"        listen 127.0.0.1:{other};").replace('"good', '"new'))
            os.kill(running.pid, signal.SIGHUP)
            _wait(lambda: f"bind() to 127.0.0.1:{other} failed (98" in running.error_log(), 10, "the bind error")
        assert get(port) == (200, b"good\n")
        # An access log that cannot be opened: checked by the master before any new worker starts.
        running.conf.write_text(good.replace(f"access_log {tmp_path}/access.log", f"access_log {tmp_path}/no/a.log")
                                .replace('"good', '"new'))
        os.kill(running.pid, signal.SIGHUP)
        _wait(lambda: f'open() "{tmp_path}/no/a.log" failed (2: No such file or directory)' in running.error_log(),
              10, "the access log error")
        assert get(port) == (200, b"good\n")
        assert running.workers() == before
        # Then a good config with a new listen address: bound, served; a removed one is closed.
        third = free_port()
        running.conf.write_text(good.replace(f"listen 127.0.0.1:{port};", f"listen 127.0.0.1:{third};")
                                .replace('"good', '"moved'))
        os.kill(running.pid, signal.SIGHUP)
        _wait(lambda: _answers(third) == (200, b"moved\n"), 10, "the new listen address")
        _wait(lambda: _refused(port), 10, "the removed listen address to close")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _answers(port: int) -> tuple[int, bytes] | None:
    try:
        return get(port, timeout=2)
    except OSError:
        return None


# -- (3) graceful quit and worker_shutdown_timeout -------------------------------------------------
def test_quit_finishes_in_flight_requests_within_worker_shutdown_timeout(tmp_path: Path) -> None:
    port = free_port()
    with FakeUpstream(delay=1.0) as short, FakeUpstream(delay=20.0) as long:
        locations = (f"        location /short/ {{ proxy_pass http://127.0.0.1:{short.port}/slow; }}\n"
                     f"        location /long/ {{ proxy_pass http://127.0.0.1:{long.port}/slow; }}\n")
        text = conf(tmp_path, port, "x", workers=1, extra_main="worker_shutdown_timeout 3s;", locations=locations)
        with newproxy(tmp_path, text, port, workers=1) as running:
            results: dict[str, object] = {}

            def fetch(path: str) -> None:
                try:
                    results[path] = get(port, path, timeout=30)
                except OSError as exc:
                    results[path] = exc

            threads = [threading.Thread(target=fetch, args=(path,)) for path in ("/short/", "/long/")]
            for thread in threads:
                thread.start()
            _wait(lambda: len(short.requests) == 1 and len(long.requests) == 1, 10, "the upstream requests")
            quit_at = time.monotonic()
            os.kill(running.pid, signal.SIGQUIT)
            assert running.process.wait(timeout=10) == 0
            stopped = time.monotonic() - quit_at
            for thread in threads:
                thread.join(timeout=10)
            assert results["/short/"] == (200, b"slow answer\n")  # in flight at QUIT, completed
            assert results["/long/"] is None  # closed, unanswered, at worker_shutdown_timeout
            assert 2.5 < stopped < 6, stopped
            assert not (tmp_path / "np.pid").exists()


def test_reload_lets_a_slow_proxied_response_finish_on_the_old_worker(tmp_path: Path) -> None:
    port = free_port()
    with FakeUpstream(delay=1.5) as slow:
        locations = f"        location /short/ {{ proxy_pass http://127.0.0.1:{slow.port}/slow; }}\n"
        text = conf(tmp_path, port, "old", workers=1, locations=locations)
        with newproxy(tmp_path, text, port, workers=1) as running:
            (old,) = running.workers()
            result: dict[str, object] = {}
            thread = threading.Thread(target=lambda: result.setdefault("reply", get(port, "/short/", timeout=30)))
            thread.start()
            _wait(lambda: len(slow.requests) == 1, 10, "the upstream request")
            running.conf.write_text(text.replace('"old', '"new'))
            os.kill(running.pid, signal.SIGHUP)
            _wait(lambda: get(port) == (200, b"new\n"), 10, "the new config")
            assert old in running.workers()  # still draining: its response is in flight
            thread.join(timeout=10)
            assert result["reply"] == (200, b"slow answer\n")
            _wait(lambda: old not in running.workers(), 10, "the old worker to exit")


# -- (4) a killed worker is restarted; USR1 reopens the logs ---------------------------------------
def test_killed_worker_is_restarted_and_usr1_reopens_logs(tmp_path: Path) -> None:
    port = free_port()
    with newproxy(tmp_path, conf(tmp_path, port, "alive"), port) as running:
        before = running.workers()
        os.kill(before[0], signal.SIGKILL)
        _wait(lambda: len(running.workers()) == 2 and before[0] not in running.workers(), 10, "a new worker")
        assert before[1] in running.workers()
        assert f"[alert] {running.pid}#{running.pid}: worker process {before[0]} exited on signal 9" in running.error_log()
        for _ in range(10):  # whichever worker accepts, it answers
            assert get(port) == (200, b"alive\n")
        # USR1: after the logs were moved away, new lines go to new files.
        (tmp_path / "error.log").rename(tmp_path / "error.log.1")
        (tmp_path / "access.log").rename(tmp_path / "access.log.1")
        os.kill(running.pid, signal.SIGUSR1)
        time.sleep(0.5)
        assert get(port) == (200, b"alive\n")
        _wait(lambda: (tmp_path / "access.log").exists() and "GET / HTTP/1.1" in (tmp_path / "access.log").read_text(),
              10, "the reopened access log")
        victim = running.workers()[0]
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: f"worker process {victim} exited on signal 9" in running.error_log(), 10, "the reopened error log")
        assert f"worker process {victim}" not in (tmp_path / "error.log.1").read_text()


# -- (5) -s with the pid file ----------------------------------------------------------------------
def test_signal_option_uses_the_pid_file(tmp_path: Path) -> None:
    port = free_port()
    with newproxy(tmp_path, conf(tmp_path, port, "one"), port) as running:
        assert (tmp_path / "np.pid").read_text() == f"{running.pid}\n"
        running.conf.write_text(conf(tmp_path, port, "two"))
        result = running.cli("-s", "reload")
        assert result.returncode == 0 and result.stderr == ""
        _wait(lambda: get(port) == (200, b"two\n"), 10, "the reloaded config")
        result = running.cli("-s", "quit")
        assert result.returncode == 0 and result.stderr == ""
        assert running.process.wait(timeout=10) == 0
        assert not (tmp_path / "np.pid").exists()


def _nginx_signal_error(tmp: Path, signal_name: str) -> str:
    """What nginx says for ``-s`` with the same pid file, without its time, level and pid prefix."""
    result = subprocess.run([NGINX, "-c", str(tmp / "nginx.conf"), "-s", signal_name],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    found = re.search(r"\[(?:error|alert)\] \d+#\d+: (.*)$", result.stderr.strip())
    assert found is not None, result.stderr
    return found.group(1)


def test_signal_option_with_a_missing_or_stale_pid_file_fails_like_nginx(tmp_path: Path) -> None:
    text = conf(tmp_path, free_port(), "x").replace(f"access_log {tmp_path}/access.log;", "access_log off;")
    (tmp_path / "nginx.conf").write_text(text)
    running = Running(subprocess.Popen(["true"]), 0, tmp_path, tmp_path / "nginx.conf")
    running.process.wait()
    for case in ("missing", "stale"):
        if case == "stale":
            (tmp_path / "np.pid").write_text(f"{running.process.pid}\n")  # a process that is gone
        for name in ("reload", "quit"):
            ours = running.cli("-s", name)
            assert ours.returncode == 1, (case, name, ours.stderr)
            assert ours.stderr == f"newproxy: {_nginx_signal_error(tmp_path, name)}\n", (case, ours.stderr)


# -- worker_connections, worker_rlimit_nofile ------------------------------------------------------
def test_worker_connections_caps_a_worker_and_rlimit_nofile_is_set(tmp_path: Path) -> None:
    port = free_port()
    text = conf(tmp_path, port, "capped", workers=1, extra_main="worker_rlimit_nofile 1000;")
    text = text.replace("worker_connections 256;", "worker_connections 3;")
    with newproxy(tmp_path, text, port, workers=1) as running:
        (worker,) = running.workers()
        limits = Path(f"/proc/{worker}/limits").read_text()
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["1000", "1000"]
                   for line in limits.splitlines()), limits
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as over:
                assert over.recv(100) == b""  # closed at accept
            _wait(lambda: "[alert]" in running.error_log(), 10, "the alert")
            assert f"[alert] {worker}#{worker}: 3 worker_connections are not enough" in running.error_log()
            held[0].sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the ones within the cap are served
            assert held[0].recv(1000).startswith(b"HTTP/1.1 200 OK")
        finally:
            for sock in held:
                sock.close()
        _wait(lambda: _answers(port) == (200, b"capped\n"), 10, "a free connection slot")
