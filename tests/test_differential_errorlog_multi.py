"""Several error_log in one block, at main, server and location level: nginx 1.22 and newproxy.

nginx chains the logs of one block and writes a message to every one whose level admits it. Both
targets run the same config (one worker; each error_log file put in the target's own directory, by
the line of CONFIG that names it; the main-level ones are added to the rewired tree, since the
rewiring owns the main error_log). A request that logs goes to each target; for every log file the
lines written meanwhile (time, pid#tid and connection number masked) must be equal, and land in the
files whose level admits them:

- server level, logs at warn, crit and info: an open() failure (error) reaches warn and info; a
  limit_req rejection logged at notice reaches info only;
- location level, logs at error and notice: "access forbidden by rule" reaches both, and none of
  the server's;
- main level (a server without error_log, none at http), logs at error, notice and crit next to
  the rewiring's own (notice): the open() failure reaches all but crit.
"""

from __future__ import annotations

import re
import socket
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
    limit_req_zone $http_x_key zone=req:1m rate=1r/m;
    server {
        listen 127.0.0.1:8080;
        server_name multi.test;
        root %(root)s;
        error_log @DIR@/server-warn.log warn;
        error_log @DIR@/server-crit.log crit;
        error_log @DIR@/server-info.log info;
        location /files/ { }
        location /limited/ { limit_req zone=req nodelay; limit_req_log_level notice; proxy_pass http://127.0.0.1:9000; }
        location /own/ {
            error_log @DIR@/location-error.log error;
            error_log @DIR@/location-notice.log notice;
            deny all;
        }
    }
    server {
        listen 127.0.0.1:8081;
        server_name main.test;
        root %(root)s;
        location /files/ { }
    }
}
"""

NAMED = {number: re.search(r"@DIR@/([\w.-]+)", line).group(1)  # type: ignore[union-attr]
         for number, line in enumerate(CONFIG.splitlines(), start=1) if "@DIR@" in line}
MAIN = {"main-error.log": "error", "main-notice.log": "notice", "main-crit.log": "crit"}
FILES = sorted(NAMED.values()) + sorted(MAIN) + ["error.log"]  # error.log: the rewiring's main log (notice)
LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")
EXCESS = re.compile(r"excess: \d+\.\d{3}")


def in_dir(directory: Path) -> Callable[[list[Directive]], list[Directive]]:
    """A tweak: each error_log of CONFIG into ``directory`` (the file its line names), and the main
    level's error_log lines added."""
    def tweak(tree: list[Directive], top: bool = True) -> list[Directive]:
        out = []
        for d in tree:
            if d.name == "error_log" and d.line in NAMED:
                d = d.model_copy(update={"args": [str(directory / NAMED[d.line]), *d.args[1:]]})
            if d.block is not None:
                d = d.model_copy(update={"block": tweak(d.block, False)})
            out.append(d)
        if top:
            anchor = tree[0]
            out = [anchor.model_copy(update={"name": "error_log", "args": [str(directory / name), level], "block": None})
                   for name, level in MAIN.items()] + out
        return out
    return tweak


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Path], dict[str, list[int]]]]:
    tmp = tmp_path_factory.mktemp("errorlog-multi")
    (tmp / "files").mkdir()
    path = tmp / "nginx.conf"
    path.write_text(CONFIG % {"root": tmp})
    config = parse_config(str(path))
    dirs = [tmp / "run" / label for label in ("nginx", "newproxy")]
    with started_targets(config, plan(config), str(tmp / "run"),
                         tweak_reference=in_dir(dirs[0]), tweak_other=in_dir(dirs[1])) as run:
        ports = {name: [t.listen_ports[f"127.0.0.1:{name}"] for t in run.targets] for name in ("8080", "8081")}
        yield dirs, ports


def request(port: int, path: str, host: str, headers: str = "") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def logged(directory: Path, starts: dict[str, int]) -> dict[str, list[str]]:
    """Per log file, the request lines written since ``starts``: "[level] message, context", masked."""
    out = {}
    for name in FILES:
        path = directory / name
        text = ""
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(starts[name])
                text = f.read()
        out[name] = [EXCESS.sub("excess: N", f"[{m.group(1)}] {m.group(2)}")
                     for m in map(LINE.match, text.splitlines()) if m]
    return out


def send(started: tuple[list[Path], dict[str, list[int]]], server: str, path: str, host: str, times: int = 1,
         headers: str = "") -> dict[str, list[str]]:
    """The request(s) to nginx then newproxy; what each log file got, which must be the same."""
    dirs, ports = started
    got = []
    for side, directory in enumerate(dirs):
        starts = {name: size(directory / name) for name in FILES}
        statuses = [request(ports[server][side], path, host, headers) for _ in range(times)]
        time.sleep(0.2)  # the log lines are written after the answer
        got.append((statuses, logged(directory, starts)))
    assert got[0] == got[1]
    return got[0][1]


def receivers(got: dict[str, list[str]]) -> dict[str, int]:
    return {name: len(lines) for name, lines in got.items() if lines}


def test_every_log_file_exists_on_both(started: tuple[list[Path], dict[str, list[int]]]) -> None:
    """nginx opens each error_log file with its config, even one nothing is written to yet."""
    dirs, _ = started
    assert [sorted(name for name in FILES if (d / name).exists()) for d in dirs] == [sorted(FILES)] * 2


def test_server_logs_by_level(started: tuple[list[Path], dict[str, list[int]]]) -> None:
    got = send(started, "8080", "/files/missing.txt", "multi.test")
    assert receivers(got) == {"server-warn.log": 1, "server-info.log": 1}, got
    line = got["server-warn.log"][0]
    assert line.startswith('[error] open() "'), line
    assert 'missing.txt" failed (2: No such file or directory), client: ' in line, line
    assert got["server-info.log"] == [line]


def test_limit_req_notice_reaches_the_info_log_only(started: tuple[list[Path], dict[str, list[int]]]) -> None:
    """limit_req_log_level notice: the rejection (the second request of a key) is a notice line."""
    got = send(started, "8080", "/limited/x", "multi.test", times=2, headers="X-Key: k\r\n")
    assert receivers(got) == {"server-info.log": 1}, got
    assert got["server-info.log"][0].startswith('[notice] limiting requests, excess: N by zone "req", client: ')


def test_location_logs(started: tuple[list[Path], dict[str, list[int]]]) -> None:
    got = send(started, "8080", "/own/x", "multi.test")
    assert receivers(got) == {"location-error.log": 1, "location-notice.log": 1}, got
    assert got["location-error.log"] == got["location-notice.log"]
    assert got["location-error.log"][0].startswith("[error] access forbidden by rule, client: 127.0.0.1, "
                                                   'server: multi.test, request: "GET /own/x HTTP/1.1"')


def test_main_logs(started: tuple[list[Path], dict[str, list[int]]]) -> None:
    got = send(started, "8081", "/files/missing.txt", "main.test")
    assert receivers(got) == {"main-error.log": 1, "main-notice.log": 1, "error.log": 1}, got
    assert got["main-error.log"] == got["main-notice.log"] == got["error.log"]
    assert ", server: main.test, " in got["error.log"][0]
