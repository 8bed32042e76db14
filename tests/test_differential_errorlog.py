"""error_log: the lines nginx 1.22 writes for common request events, and newproxy's for the same.

nginx and newproxy run the same config (one worker each; error_log paths are put in each target's
own directory); the same requests go to both, one connection each, one after
another; the lines each wrote for them (``[level]`` lines with a connection number) must be equal
once the time, pid#tid and connection number are masked. Events: upstream connect() refused,
upstream timed out, access forbidden by rule, open() failed (missing file), directory index
forbidden, limiting requests (503), delaying request (warn), limiting connections. The excess
in the limit_req lines depends on the milliseconds between requests: it is masked.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nginx_parser import parse_config
from nginx_parser.ir import Directive
from shadow.rewire import plan
from shadow.runner import started_targets

CONFIG = """
events {}
http {
    limit_req_zone $http_x_key zone=req:1m rate=1r/s;
    limit_req_zone $http_x_key zone=slow:1m rate=5r/s;
    limit_conn_zone $http_x_key zone=conns:1m;
    limit_req_zone $http_x_key zone=tiny:32k rate=1r/s;
    server {
        listen 127.0.0.1:8080;
        large_client_header_buffers 4 64k;
        server_name errors.test www.errors.test;
        error_log @DIR@/first-error.log notice;
        root %(root)s;
        location /refused/ { proxy_pass http://127.0.0.1:9001; }
        location /slow/ { proxy_read_timeout 300ms; proxy_pass http://127.0.0.1:9000; }
        location /denied/ { deny all; }
        location /files/ { }
        location /small/ { client_max_body_size 8; proxy_pass http://127.0.0.1:9000; }
        location /smallret/ { client_max_body_size 8; return 200 ok; }
        location /limited/ { limit_req zone=req nodelay; proxy_pass http://127.0.0.1:9000; }
        location /delayed/ { limit_req zone=slow burst=5; proxy_pass http://127.0.0.1:9000; }
        location /conn/ { limit_conn conns 1; proxy_pass http://127.0.0.1:9000; }
        location /tiny/ { limit_req zone=tiny; proxy_pass http://127.0.0.1:9000; }
        location /levels/ {
            limit_req zone=slow burst=1;
            limit_req_log_level notice;
            limit_conn conns 1;
            limit_conn_log_level info;
            proxy_pass http://127.0.0.1:9000;
        }
    }
    error_log @DIR@/http-error.log error;
    server {
        listen 127.0.0.1:8081;
        server_name scoped.test;
        error_log @DIR@/server-error.log warn;
        location /quiet/ { error_log @DIR@/quiet-error.log crit; deny all; }
        location /loud/ { deny all; }
        location /warned/ { limit_req zone=slow burst=5; proxy_pass http://127.0.0.1:9000; }
    }
    server {
        listen 127.0.0.1:8082;
        location /inherited/ { deny all; }
        location /refused/ { proxy_pass http://127.0.0.1:9001; }
    }
}
"""

EXCESS = re.compile(r"excess: \d+\.\d{3}")
LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[int], list[str]]]:
    tmp = tmp_path_factory.mktemp("errorlog")
    (tmp / "files" / "dir").mkdir(parents=True)
    (tmp / "files" / "here.txt").write_text("here\n")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG % {"root": tmp})
    config = parse_config(str(path))
    SCOPED.clear()
    with started_targets(config, plan(config), str(tmp / "run"), refuse={"127.0.0.1:9001"},
                         tweak_reference=in_dir(tmp / "run" / "nginx"),
                         tweak_other=in_dir(tmp / "run" / "newproxy")) as run:
        ports = [target.listen_ports["127.0.0.1:8080"] for target in run.targets]
        logs = [os.path.join(str(tmp / "run"), label, "first-error.log") for label in ("nginx", "newproxy")]
        SCOPED.update(dirs=[str(tmp / "run" / label) for label in ("nginx", "newproxy")],
                      scoped=[t.listen_ports["127.0.0.1:8081"] for t in run.targets],
                      inherited=[t.listen_ports["127.0.0.1:8082"] for t in run.targets])
        yield ports, logs


SCOPED: dict[str, list] = {}  # type: ignore[type-arg]  # the second and third servers' ports, the run dirs


# The rewiring points every error_log at the target's error.log; the tweaks put back the file each
# line of CONFIG names ("@DIR@/NAME"), by its line number, in the target's own directory.
NAMED = {number: re.search(r"@DIR@/([\w.-]+)", line).group(1)  # type: ignore[union-attr]
         for number, line in enumerate(CONFIG.splitlines(), start=1) if "@DIR@" in line}


def in_dir(directory: Path) -> Callable[[list[Directive]], list[Directive]]:
    """A tweak: each error_log of CONFIG into ``directory``, in the file its line names."""
    def tweak(tree: list[Directive]) -> list[Directive]:
        out = []
        for d in tree:
            if d.name == "error_log" and d.line in NAMED:
                d = d.model_copy(update={"args": [str(directory / NAMED[d.line]), *d.args[1:]]})
            if d.block is not None:
                d = d.model_copy(update={"block": tweak(d.block)})
            out.append(d)
        return out
    return tweak


def request(port: int, path: str, headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: errors.test\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def lines(log: str, start: int) -> list[str]:
    """The request lines written after byte ``start``: "[level] message, context", masked."""
    time.sleep(0.2)  # nginx writes after answering; give both a moment
    if not os.path.exists(log):
        return []
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read()
    out = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:  # the excess depends on the ms between requests: a timing field, masked
            out.append(EXCESS.sub("excess: N", f"[{match.group(1)}] {match.group(2)}"))
    return out


def same_lines(started: tuple[list[int], list[str]], send: object) -> list[str]:
    """Run ``send(port)`` on each target; the lines each logged meanwhile, which must be equal."""
    ports, logs = started
    got = []
    for port, log in zip(ports, logs, strict=True):
        start = os.path.getsize(log)
        send(port)  # type: ignore[operator]
        got.append(lines(log, start))
    assert got[0] == got[1]
    return got[0]


@pytest.mark.parametrize("path,expected", [
    ("/refused/r?a=1", '[error] connect() failed (111: Connection refused) while connecting to upstream'),
    ("/slow/__delay/1500", ('[error] upstream timed out (110: Connection timed out) while reading response '
                            'header from upstream')),
    ("/denied/x", "[error] access forbidden by rule"),
    ("/files/missing.txt", '[error] open() "%(root)s/files/missing.txt" failed (2: No such file or directory)'),
    ("/files/here.txt/x", '[error] open() "%(root)s/files/here.txt/x" failed (20: Not a directory)'),
    ("/files/dir/", '[error] directory index of "%(root)s/files/dir/" is forbidden'),
    ("/files/nodir/", '[error] "%(root)s/files/nodir/index.html" is not found (2: No such file or directory)'),
])
def test_same_line_for_the_event(started: tuple[list[int], list[str]], path: str, expected: str) -> None:
    logs = started[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(logs[0])))
    got = same_lines(started, lambda port: request(port, path, "Referer: http://ref.test/\r\n"))
    assert len(got) == 1, got
    assert got[0].startswith((expected % {"root": root}) + ", client: 127.0.0.1, server: errors.test, request: "
                             f'"GET {path} HTTP/1.1"'), got
    assert got[0].endswith(', host: "errors.test", referrer: "http://ref.test/"'), got


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass


@pytest.mark.parametrize("location", ["small", "smallret"])
@pytest.mark.parametrize("body,expected", [
    (b"Content-Length: 20\r\n\r\n" + b"x" * 20, "[error] client intended to send too large body: 20 bytes"),
    (b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n8\r\n12345678\r\n0\r\n\r\n",
     "[error] client intended to send too large chunked body: 3+8 bytes"),
    (b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n", "[error] client sent invalid chunked body"),
])
def test_refused_bodies(started: tuple[list[int], list[str]], location: str, body: bytes, expected: str) -> None:
    """A body past client_max_body_size (declared, or found chunk by chunk) and a bad chunk: nginx's
    line, whether the body is read (proxied) or discarded (return). (Streamed to an upstream:
    tests/test_differential_unbuffered_body.py.)"""
    head = f"POST /{location}/b HTTP/1.1\r\nHost: errors.test\r\nConnection: close\r\n".encode()
    got = same_lines(started, lambda port: _send_raw(port, head + body))
    if location == "smallret" and "chunked body: 3+8" in expected:
        assert got == [], got  # a discarded body: no client_max_body_size (nor its line)
        return
    assert len(got) == 1 and got[0].startswith(expected + ", client: 127.0.0.1, server: errors.test, request: "
                                               f'"POST /{location}/b HTTP/1.1", host: "errors.test"'), got


def test_limiting_requests(started: tuple[list[int], list[str]]) -> None:
    def send(port: int) -> None:
        for _ in range(3):
            request(port, "/limited/l", f"X-Key: lim{port}\r\n")
    got = same_lines(started, send)
    assert len(got) == 2, got
    assert all(line.startswith('[error] limiting requests, excess: N by zone "req", client: ') for line in got), got


def test_delaying_request(started: tuple[list[int], list[str]]) -> None:
    """Two at once at rate=5r/s burst=5: the second waits about 200 ms, logged at warn."""
    def send(port: int) -> None:
        threads = [threading.Thread(target=request, args=(port, "/delayed/d", f"X-Key: d{port}\r\n")) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    got = same_lines(started, send)
    assert len(got) == 1 and got[0].startswith('[warn] delaying request, excess: N, by zone "slow", client: '), got


def test_limiting_connections(started: tuple[list[int], list[str]]) -> None:
    def send(port: int) -> None:
        slow = threading.Thread(target=request, args=(port, "/conn/__delay/500", f"X-Key: c{port}\r\n"))
        slow.start()
        time.sleep(0.15)
        request(port, "/conn/c", f"X-Key: c{port}\r\n")
        slow.join()
    got = same_lines(started, send)
    assert len(got) == 1 and got[0].startswith('[error] limiting connections by zone "conns", client: '), got


def test_limit_log_levels(started: tuple[list[int], list[str]]) -> None:
    """limit_req_log_level notice: a rejection is logged at notice, a delay at info (one level less),
    which the notice log drops; limit_conn_log_level info: dropped too. Three at once (burst=1) to
    a path the upstream holds 400 ms: one passes and holds its limit_conn count, one is rejected by
    limit_req, one waits 200 ms and is then refused by limit_conn (the first is still in flight)."""
    statuses: list[list[int]] = []

    def send(port: int) -> None:
        replies: list[int] = []

        def one() -> None:
            replies.append(int(request(port, "/levels/__delay/400", f"X-Key: v{port}\r\n").split(b" ", 2)[1]))
        threads = [threading.Thread(target=one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses.append(sorted(replies))
    got = same_lines(started, send)
    assert statuses == [[200, 503, 503]] * 2, statuses
    assert got == [('[notice] limiting requests, excess: N by zone "slow", client: 127.0.0.1, server: errors.test, '
                    'request: "GET /levels/__delay/400 HTTP/1.1", host: "errors.test"')], got


def test_zone_full(started: tuple[list[int], list[str]]) -> None:
    """A key too big for a 32k limit_req zone: 503, and nginx's alert in the main log (no request
    context there; the slab allocator's own "no memory" line is off for limit_req zones). A small
    key then passes."""
    got = []
    for side, port in enumerate(started[0]):
        main = os.path.join(SCOPED["dirs"][side], "error.log")
        start = size(main)
        status = request(port, "/tiny/t", f"X-Key: {'k' * 30000}\r\n").split(b" ", 2)[1]
        small = request(port, "/tiny/t", f"X-Key: small{side}\r\n").split(b" ", 2)[1]
        time.sleep(0.2)
        with open(main, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            found = [m.group(1) + m.group(2) for m in CYCLE_LINE.finditer(f.read())]
        got.append((status, small, [line for line in found if "zone" in line]))
    assert got[0] == got[1]
    assert got[0] == (b"503", b"200", ['[alert] could not allocate node in limit_req zone "tiny"']), got


CYCLE_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\] )\d+#\d+: ([^*].*)$", re.MULTILINE)


def size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


@pytest.mark.parametrize("port_of,path,where", [
    ("scoped", "/quiet/q", None),  # the location's log is at crit: an error goes nowhere
    ("scoped", "/loud/l", "server-error.log"),  # the server's log
    ("inherited", "/inherited/i", "http-error.log"),  # the http-level log, inherited by the server
    ("inherited", "/refused/r", "http-error.log"),  # an upstream error goes there too
])
def test_scoped_error_logs(started: tuple[list[int], list[str]], port_of: str, path: str, where: str | None) -> None:
    """error_log at http, server and location level: a request's messages go to its location's log
    (inherited from the server, then http), filtered by that log's level; nothing to the main log."""
    names = ("http-error.log", "server-error.log", "quiet-error.log")
    got = []
    for side in range(2):
        directory = SCOPED["dirs"][side]
        main = os.path.join(directory, "error.log")
        files = [os.path.join(directory, name) for name in names] + [main]
        starts = [size(f) for f in files]
        request(SCOPED[port_of][side], path)
        got.append([lines(f, at) for f, at in zip(files, starts, strict=True)])
    assert got[0] == got[1]
    for name, found in zip(names + ("main",), got[0], strict=True):
        assert len(found) == (1 if name == where else 0), (name, got[0])


def test_scoped_warn_level(started: tuple[list[int], list[str]]) -> None:
    """A server log at warn takes the "delaying request" warning."""
    got = []
    for side in range(2):
        log = os.path.join(SCOPED["dirs"][side], "server-error.log")
        start = size(log)
        port = SCOPED["scoped"][side]
        threads = [threading.Thread(target=request, args=(port, "/warned/w", "X-Key: w\r\n")) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got.append(lines(log, start))
    assert got[0] == got[1] and len(got[0]) == 1 and got[0][0].startswith("[warn] delaying request"), got
