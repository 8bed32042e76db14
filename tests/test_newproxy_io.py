"""newproxy's IO edges end to end: the real command line, real sockets, loopback only.

Each test starts ``python -m newproxy`` on a hand-written newproxy config in front of a scripted
upstream (tests/io_upstream.py) and stops everything it started, whatever happens.
"""

from __future__ import annotations

import signal
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newproxy.config import (
    HeaderSetting,
    ListenConfig,
    LocationConfig,
    NewproxyConfig,
    ProxyConfig,
    ReturnStep,
    ServerConfig,
    UpstreamConfig,
    UpstreamServerConfig,
)
from tests.io_upstream import BIG, FakeUpstream, free_port
from tests.procstat import rss_kib, worker_pid

PAGE_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n"
)
PAGE_504 = b"<center><h1>504 Gateway Time-out</h1></center>\r\n"


# -- config -------------------------------------------------------------------------------------
def _headers(http_version: str) -> list[HeaderSetting]:
    """What the translator writes out for nginx's defaults (plus Connection "" for keep-alive)."""
    first = [HeaderSetting(name="Connection", value="")] if http_version == "1.1" else []
    rest = [HeaderSetting(name="Host", value="$proxy_host")]
    if http_version == "1.0":
        rest.append(HeaderSetting(name="Connection", value="close"))
    rest += [
        HeaderSetting(name="Content-Length", value="$proxy_internal_body_length"),
        HeaderSetting(name="Transfer-Encoding", value="$proxy_internal_chunked"),
        HeaderSetting(name="TE", value=""),
        HeaderSetting(name="Keep-Alive", value=""),
        HeaderSetting(name="Expect", value=""),
        HeaderSetting(name="Upgrade", value=""),
    ]
    return first + rest


def make_config(
    port: int,
    peers: list[int],
    tmp: Path,
    *,
    keepalive: int = 0,
    read_timeout: float = 60.0,
    connect_timeout: float = 60.0,
    backup: list[int] | None = None,
) -> NewproxyConfig:
    http_version = "1.1" if keepalive else "1.0"
    servers = [UpstreamServerConfig(host="127.0.0.1", port=p) for p in peers]
    servers += [UpstreamServerConfig(host="127.0.0.1", port=p, backup=True) for p in backup or []]
    proxy = ProxyConfig(
        upstream="backend",
        proxy_host="backend",
        http_version=http_version,
        headers=_headers(http_version),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return NewproxyConfig(
        pid=str(tmp / "newproxy.pid"),
        servers=[
            ServerConfig(
                listen=[ListenConfig(address="127.0.0.1", port=port)],
                locations=[
                    LocationConfig(match="prefix", path="/", proxy=proxy),
                    LocationConfig(match="exact", path="/ret", rewrite=[ReturnStep(status=200, text="returned\n")]),
                ],
            )
        ],
        upstreams=[UpstreamConfig(name="backend", servers=servers, keepalive=keepalive)],
    )


# -- processes ----------------------------------------------------------------------------------
class Proxy:
    def __init__(self, process: subprocess.Popen[bytes], port: int, stderr: Path, pid_file: Path) -> None:
        self.process = process
        self.port = port
        self.stderr = stderr
        self.pid_file = pid_file

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"newproxy exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("newproxy did not start listening")


@contextmanager
def newproxy(config: NewproxyConfig, tmp: Path) -> Iterator[Proxy]:
    path = tmp / "proxy.yaml"
    path.write_text(config.dump_yaml())
    stderr = tmp / "stderr.log"
    port = config.servers[0].listen[0].port
    with open(stderr, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "newproxy", "-c", str(path), "-p", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
    try:
        _wait_listening(port, process)
        yield Proxy(process, port, stderr, Path(config.pid or ""))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newproxy", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- a small HTTP/1.1 client reading responses off a raw socket --------------------------------
class Reply:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, raw_body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_body = raw_body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class Client:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, head_request: bool = False) -> Reply:
        status_line = self.file.readline()
        if not status_line:
            raise EOFError("connection closed before a response")
        status = int(status_line.split()[1])
        headers = []
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        reply = Reply(status, headers, b"", b"")
        if head_request or status in (204, 304) or status < 200:
            return reply
        if (reply.header("Transfer-Encoding") or "").lower() == "chunked":
            body, raw = b"", b""
            while True:
                size_line = self.file.readline()
                raw += size_line
                size = int(size_line.strip(), 16)
                chunk = self.file.read(size + 2)
                raw += chunk
                body += chunk[:-2]
                if size == 0:
                    break
            reply.body, reply.raw_body = body, raw
        elif reply.header("Content-Length") is not None:
            reply.body = reply.raw_body = self.file.read(int(reply.header("Content-Length") or 0))
        else:
            reply.body = reply.raw_body = self.file.read()
        return reply

    def at_eof(self, timeout: float = 3.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def get(port: int, path: str, extra: bytes = b"") -> Reply:
    client = Client(port)
    try:
        client.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n")
        return client.read()
    finally:
        client.close()


# -- tests ---------------------------------------------------------------------------------------
@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def test_keepalive_and_pipelining(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=8), tmp_path) as proxy:
        client = Client(proxy.port)
        # Three requests in one write: a proxied one, one the engine answers, a proxied one.
        client.send(
            b"GET /a HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /ret HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /chunked HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        first, second, third = client.read(), client.read(), client.read()
        assert (first.status, first.body) == (200, b"hello from upstream\n")
        assert (second.status, second.body) == (200, b"returned\n")
        assert (third.status, third.body) == (200, b"hello chunked world\n")
        assert first.header("Connection") == "keep-alive"
        # The same connection still serves after the batch.
        client.send(b"HEAD /a HTTP/1.1\r\nHost: test\r\n\r\nGET /a HTTP/1.1\r\nHost: test\r\n\r\n")
        head = client.read(head_request=True)
        assert head.status == 200 and head.header("Content-Length") == "20"
        assert client.read().body == b"hello from upstream\n"
        client.send(b"GET /a HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        last = client.read()
        assert last.header("Connection") == "close"
        assert client.at_eof()
        client.close()
        assert [h.split(b" ")[1] for h in upstream.requests] == [b"/a", b"/chunked", b"/a", b"/a", b"/a"]


def test_garbage_gets_400_and_close(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path), tmp_path) as proxy:
        client = Client(proxy.port)
        client.send(b"this is not http\r\n\r\n")
        reply = client.read()
        assert reply.status == 400
        assert reply.header("Connection") == "close"
        assert reply.body.startswith(b"<html>\r\n<head><title>400 Bad Request</title></head>\r\n")
        assert client.at_eof()
        client.close()
        # A pipelined good request before the garbage is still answered first, in order.
        client = Client(proxy.port)
        client.send(b"GET /ret HTTP/1.1\r\nHost: test\r\n\r\nGARBAGE\x01\r\n\r\n")
        assert client.read().status == 200
        assert client.read().status == 400
        assert client.at_eof()
        client.close()
        assert upstream.requests == []


def test_upstream_refused_gives_502(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    with newproxy(make_config(free_port(), [dead], tmp_path), tmp_path) as proxy:
        reply = get(proxy.port, "/x")
        assert reply.status == 502
        assert reply.body.startswith(PAGE_502)
        assert reply.header("Connection") == "keep-alive"  # nginx keeps the client connection after 502


def test_next_upstream_after_refused_peer(upstream: FakeUpstream, tmp_path: Path) -> None:
    dead = free_port()
    with newproxy(make_config(free_port(), [dead, upstream.port], tmp_path), tmp_path) as proxy:
        for _ in range(4):
            assert get(proxy.port, "/x").status == 200


def test_read_timeout_gives_504(tmp_path: Path) -> None:
    with FakeUpstream(delay=3.0) as up, newproxy(make_config(free_port(), [up.port], tmp_path, read_timeout=0.5), tmp_path) as proxy:
        started = time.monotonic()
        reply = get(proxy.port, "/hang")
        assert reply.status == 504
        assert PAGE_504 in reply.body
        assert time.monotonic() - started < 2.5
        assert "upstream timed out" in proxy.errors()


def test_invalid_upstream_header_gives_502(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path), tmp_path) as proxy:
        assert get(proxy.port, "/bad-header").status == 502


def test_keepalive_pool_reuses_upstream_connections(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=4), tmp_path) as proxy:
        for _ in range(6):  # six client connections, one after the other
            assert get(proxy.port, "/x").body == b"hello from upstream\n"
        assert upstream.connections == 1
        # "Connection: close" from the upstream: that connection is not kept.
        assert get(proxy.port, "/no-keepalive").status == 200
        assert get(proxy.port, "/x").status == 200
        assert upstream.connections == 2
        assert all(b"Connection: close" not in head for head in upstream.requests)


def test_stale_pooled_connection_is_retried_on_a_fresh_one(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=4), tmp_path) as proxy:
        assert get(proxy.port, "/then-drop").status == 200
        # The pooled connection dies under the next request: retried, not a 502, no failure counted.
        for _ in range(3):
            assert get(proxy.port, "/x").body == b"hello from upstream\n"
        assert upstream.connections == 2
        assert "502" not in proxy.errors()


def test_without_keepalive_each_request_opens_a_connection(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=0), tmp_path) as proxy:
        for _ in range(3):
            assert get(proxy.port, "/x").status == 200
        assert upstream.connections == 3
        assert all(b"\r\nConnection: close\r\n" in head for head in upstream.requests)


def test_chunked_upstream_response_relayed_chunked(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=2), tmp_path) as proxy:
        reply = get(proxy.port, "/chunked")
        assert reply.header("Transfer-Encoding") == "chunked"
        assert reply.header("Content-Length") is None
        assert reply.body == b"hello chunked world\n"
        assert reply.raw_body.endswith(b"0\r\n\r\n")
        # An HTTP/1.0 client cannot take chunks: the body runs to the connection's close.
        client = Client(proxy.port)
        client.send(b"GET /chunked HTTP/1.0\r\n\r\n")
        reply = client.read()
        assert reply.header("Transfer-Encoding") is None
        assert reply.header("Connection") == "close"
        assert reply.body == b"hello chunked world\n"
        client.close()
        # A body delimited by the upstream closing reaches an HTTP/1.1 client chunked.
        reply = get(proxy.port, "/close")
        assert reply.header("Transfer-Encoding") == "chunked"
        assert reply.body == b"until close\n"


def test_truncated_upstream_body_closes_client(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path), tmp_path) as proxy:
        client = Client(proxy.port)
        client.send(b"GET /truncated HTTP/1.1\r\nHost: test\r\n\r\n")
        status_line = client.file.readline()
        assert status_line.startswith(b"HTTP/1.1 200")
        rest = client.file.read()  # until the proxy closes
        assert b"Content-Length: 100" in rest and rest.endswith(b"only this")
        client.close()


def test_large_response_streams_with_flow_control(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path, keepalive=2), tmp_path) as proxy:
        worker = worker_pid(proxy.process.pid)  # the process that buffers, if anything does
        before = rss_kib(worker)
        client = Client(proxy.port, timeout=30)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.send(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(1.0)  # the client reads nothing: the proxy must stop reading the upstream
        assert rss_kib(worker) - before < 16 * 1024
        reply = client.read()
        assert reply.status == 200 and len(reply.body) == BIG
        client.send(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n")  # and the connection is still good
        assert client.read().body == b"hello from upstream\n"
        client.close()


def test_body_over_client_max_body_size_gets_413(upstream: FakeUpstream, tmp_path: Path) -> None:
    with newproxy(make_config(free_port(), [upstream.port], tmp_path), tmp_path) as proxy:
        client = Client(proxy.port)
        # Refused on the declared length, before the body is read (and without "100 Continue"); the
        # body is then read and dropped, and the connection closed once it is in (as nginx does:
        # tests/test_differential_discard.py).
        client.send(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
        reply = client.read()
        assert reply.status == 413 and reply.header("Connection") == "close"
        client.send(b"b" * 2000000)
        assert client.at_eof()
        client.close()
        # A chunked body is counted as it arrives.
        client = Client(proxy.port)
        chunk = b"a" * 65536
        client.send(b"POST /x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the proxy may have answered and closed already
        assert client.read().status == 413
        client.close()
        # Within the limit, the body reaches the upstream.
        client = Client(proxy.port)
        client.send(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert client.read().status == 100
        client.send(b"hello")
        assert client.read().status == 200
        client.close()
        assert len(upstream.requests) == 1 and b"Content-Length: 5" in upstream.requests[0]


def test_quit_is_graceful_with_a_slow_response_in_flight(tmp_path: Path) -> None:
    with FakeUpstream(delay=1.5) as up, newproxy(make_config(free_port(), [up.port], tmp_path), tmp_path) as proxy:
        assert proxy.pid_file.read_text().strip() == str(proxy.process.pid)
        idle = Client(proxy.port)  # an idle keep-alive connection: closed at once on QUIT
        idle.send(b"GET /ret HTTP/1.1\r\nHost: test\r\n\r\n")
        assert idle.read().status == 200
        result: dict[str, Reply] = {}
        slow = threading.Thread(target=lambda: result.setdefault("reply", get(proxy.port, "/slow")))
        slow.start()
        time.sleep(0.5)  # the request is with the upstream now
        proxy.process.send_signal(signal.SIGQUIT)
        assert idle.at_eof(timeout=2)
        idle.close()
        time.sleep(0.2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        slow.join(timeout=10)
        assert result["reply"].status == 200 and result["reply"].body == b"slow answer\n"
        assert proxy.process.wait(timeout=10) == 0
        assert not proxy.pid_file.exists()


def test_term_exits_at_once(tmp_path: Path) -> None:
    with FakeUpstream(delay=5.0) as up, newproxy(make_config(free_port(), [up.port], tmp_path), tmp_path) as proxy:
        client = Client(proxy.port)
        client.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(timeout=3) == 0
        assert time.monotonic() - started < 1.5
        assert client.at_eof(timeout=2)
        client.close()
        assert not proxy.pid_file.exists()


def test_pid_file_written_and_removed(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = make_config(free_port(), [upstream.port], tmp_path).model_copy(update={"pid": "run/np.pid"})
    (tmp_path / "run").mkdir()
    with newproxy(config, tmp_path) as proxy:
        pid_file = tmp_path / "run" / "np.pid"  # relative to the -p prefix
        assert pid_file.read_text() == f"{proxy.process.pid}\n"
        proxy.process.send_signal(signal.SIGQUIT)
        assert proxy.process.wait(timeout=10) == 0
        assert not pid_file.exists()


def test_bind_error_is_reported_like_nginx(upstream: FakeUpstream, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "proxy.yaml"
        path.write_text(make_config(port, [upstream.port], tmp_path).dump_yaml())
        result = run_cli("-c", str(path))
    assert result.returncode == 1
    assert f"newproxy: bind() to 127.0.0.1:{port} failed (98: Address already in use)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "newproxy.pid").exists()


def test_config_test_reports_errors_without_traceback(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(make_config(8080, [9000], tmp_path).dump_yaml())
    result = run_cli("-t", "-c", str(good))
    assert result.returncode == 0, result.stderr
    assert f"newproxy: the configuration file {good} syntax is ok" in result.stderr
    assert f"newproxy: configuration file {good} test is successful" in result.stderr

    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("version: 1\nservers:\n  - listen: [\n")
    result = run_cli("-t", "-c", str(syntax))
    assert result.returncode == 1
    assert f"{syntax}:4: invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"configuration file {syntax} test failed" in result.stderr

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("version: 1\nservers:\n  - listen:\n      - port: eighty\n    bogus: 1\n")
    result = run_cli("-t", "-c", str(invalid))
    assert result.returncode == 1
    assert f"{invalid}:4: servers[0].listen[0].port:" in result.stderr
    assert f"{invalid}:5: servers[0].bogus: unknown setting" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_cli("-t", "-c", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    assert "No such file or directory" in result.stderr and "Traceback" not in result.stderr


def test_command_line_basics() -> None:
    result = run_cli("-V")
    assert result.returncode == 0 and "newproxy version: newproxy/" in result.stderr
    result = run_cli("-h")
    assert result.returncode == 0 and "Usage: newproxy" in result.stderr
    result = run_cli("-x")
    assert result.returncode == 1 and 'invalid option: "x"' in result.stderr
    result = run_cli("-c")
    assert result.returncode == 1 and 'option "-c" requires file name' in result.stderr


def test_a_body_file_that_cannot_be_made_is_a_500(upstream: FakeUpstream, tmp_path: Path) -> None:
    """client_body_temp_path unusable at run time (here: under a regular file): nginx logs the
    open() at crit and answers 500 (ngx_http_write_request_body); so does newproxy, and it goes on
    serving. (Not against nginx: nginx makes its temp paths at start and refuses to start on this.)"""
    (tmp_path / "plain-file").write_text("")
    config = make_config(free_port(), [upstream.port], tmp_path)
    proxy_config = config.servers[0].locations[0].proxy
    assert proxy_config is not None
    proxy_config.client_body_temp_path = str(tmp_path / "plain-file" / "bodies")
    config.error_log = str(tmp_path / "error.log")
    with newproxy(config, tmp_path) as proxy:
        client = Client(proxy.port)
        client.send(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100000)
        assert client.read().status == 500
        client.close()
        assert get(proxy.port, "/x").status == 200  # and it goes on serving
    log = (tmp_path / "error.log").read_text()
    assert re.search(r'\[crit\] \d+#\d+: \*\d+ open\(\) "[^"]*/plain-file/bodies/\d{10}" failed \(20: Not a directory\), '
                     r'client: 127\.0\.0\.1, server: , request: "POST /x HTTP/1\.1", host: "test"', log), log


def test_upstream_tls_files_and_ciphers_are_loaded_with_the_config(tmp_path: Path) -> None:
    """As nginx loads proxy_ssl_certificate, proxy_ssl_trusted_certificate and proxy_ssl_ciphers with
    its config (and refuses it), newproxy makes each https:// location's client context at -t and
    at start, and names the proxy_pass's file:line; nginx -t refuses the same configs."""
    cases = {
        "proxy_ssl_ciphers BOGUS;": 'SSL_CTX_set_cipher_list("BOGUS") failed',
        f"proxy_ssl_certificate {tmp_path}/none.crt; proxy_ssl_certificate_key {tmp_path}/none.key;":
            f'cannot load certificate "{tmp_path}/none.crt"',
        f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {tmp_path}/none-ca.crt;":
            f'SSL_CTX_load_verify_locations("{tmp_path}/none-ca.crt") failed',
    }
    for number, (settings, expected) in enumerate(cases.items()):
        path = tmp_path / f"bad{number}.conf"
        path.write_text("events {}\nhttp {\n  server { listen 127.0.0.1:18081;\n"
                        f"    location / {{\n      proxy_pass https://127.0.0.1:9;\n      {settings}\n    }} }}\n}}\n")
        checked = subprocess.run(["nginx", "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 1 and expected in checked.stderr, checked.stderr  # nginx refuses it too
        result = run_cli("-t", "-c", str(path))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"newproxy: {path}:5: {expected}" in result.stderr, result.stderr
    good = tmp_path / "good.conf"
    good.write_text("events {}\nhttp { server { listen 127.0.0.1:18081; location / { proxy_pass https://127.0.0.1:9;"
                    " proxy_ssl_ciphers HIGH; } } }\n")
    assert run_cli("-t", "-c", str(good)).returncode == 0
