"""The access-log line of a request whose head timed out (client_header_timeout), against real nginx.

nginx 1.22 logs such a request with 408 and what it had read of it: the request line as far as it
arrived ($request "GE"), the URI, the server the request line's host or the Host header chose, the
header lines read whole ($request_length counts them), no body bytes; a connection that sent nothing
(or an idle kept-alive one) is not logged. Both targets get every case on its own connection at the
same moment; the log lines are compared as sorted lists (the cases time out together, so the order
of the lines is the order of two timers), with the timing fields masked by their position.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import access_log_name, plan
from shadow.runner import StartedTargets, started_targets
from tests.staged import assert_same_views, info_log, log_size, request_lines

FORMAT = ("$status|$request|$body_bytes_sent|$bytes_sent|$request_length|$request_uri|$uri|$args|$host|"
          "$server_name|$http_x_y|$http_x_u|$request_method|$server_protocol|$connection_requests|$remote_addr|"
          "$request_time|$msec")
TIMING = (16, 17)  # $request_time, $msec: their positions in FORMAT

CONF = """
events {}
http {
    log_format cut '%s';
    access_log logs/cut.log cut;
    client_header_timeout 1s;
    keepalive_timeout 1s;
    server {
        listen 8080;
        server_name a.test;
        location / { return 200 "a\\n"; }
    }
    server {
        listen 8080;
        server_name b.test;
        underscores_in_headers on;
        location / { return 200 "b\\n"; }
    }
}
""" % FORMAT

FULL = b"GET /done HTTP/1.1\r\nHost: a.test\r\n\r\n"
CASES = {
    "silent": b"",
    "empty lines only": b"\r\n\r\n",
    "method cut": b"GE",
    "target cut": b"GET /abc?x=1",
    "version cut": b"\r\nGET /abc HTTP/1.",
    "line ends with CR": b"GET /abc HTTP/1.1\r",
    "line whole": b"GET /abc?q=1 HTTP/1.1\r\n",
    "header cut": b"GET /abc HTTP/1.1\r\nHost: a.test\r\nX-Y: 1",
    "headers whole, no blank line": b"GET /abc HTTP/1.1\r\nHost: a.test\r\nX-Y: 1\r\nX_U: 2\r\n",
    "host b keeps underscores": b"GET /u HTTP/1.1\r\nHost: b.test\r\nX_U: 3\r\nX-Y: 4\r\n",
    "absolute host b": b"GET http://b.test/z?q HTTP/1.1\r\nX_U: 5\r\nHo",
    "absolute, no path": b"GET http://b.test?k=v HTTP/1.1\r\n",
    "keep-alive idle": FULL,
    "keep-alive then cut": FULL + b"GET /next HT",
    "HTTP/1.0 line": b"HEAD /h HTTP/1.0\r\nX-Y: 6\r\n",
}


async def _read(reader: asyncio.StreamReader, quiet: float) -> bytes:
    """What comes until the server closes, or is quiet for ``quiet`` seconds."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), quiet):
            received += chunk
    except (asyncio.TimeoutError, ConnectionResetError):
        pass
    return received


async def _hold(port: int, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes (at most 4 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    received = await _read(reader, 4.0)
    writer.close()
    return received


@contextmanager
def _both(tmp_path: Path) -> Iterator[tuple[StartedTargets, list[int], list[Path]]]:
    """nginx and newproxy on CONF, each also logging at info into run/<label>/info.log: the started
    targets, their ports and their directories (nginx's first)."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF)
    config = parse_config(str(conf))
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    with started_targets(config, plan(config), str(tmp_path / "run"), tweak_reference=info_log(dirs[0]),
                         tweak_other=info_log(dirs[1])) as started:
        yield started, [next(iter(target.listen_ports.values())) for target in started.targets], dirs


def _masked(path: Path) -> list[str]:
    lines = path.read_bytes().decode("latin-1").split("\n")[:-1] if path.exists() else []
    out = []
    for line in lines:
        fields = line.split("|")
        assert len(fields) == FORMAT.count("|") + 1, line
        for i in TIMING:
            fields[i] = "T"
        if fields[0] != "408":  # an answered request's $bytes_sent counts the Server header's token
            fields[3] = "S"
        out.append("|".join(fields))
    return sorted(out)


def test_timed_out_heads_are_logged_as_nginx_logs_them(tmp_path: Path) -> None:
    """Also compared: the info lines, "client timed out (110: Connection timed out) while reading
    client request line" (or "request headers", "pipelined request line"; "waiting for request" for
    a connection that sent nothing), as sorted lists too."""
    base = tmp_path / "run"
    with _both(tmp_path) as (started, ports, dirs):

        async def run() -> list[bytes]:
            return await asyncio.gather(*(_hold(port, data) for port in ports for data in CASES.values()))

        answers = asyncio.run(run())
        # Both answered the complete requests alike (and nothing else).
        assert [a.count(b" 200 OK") for a in answers[:len(CASES)]] == [a.count(b" 200 OK") for a in answers[len(CASES):]]
        logs = [base / target.label / access_log_name("logs/cut.log") for target in started.targets]
        info = [sorted(line.replace(f"server: 127.0.0.1:{port}", "server: 127.0.0.1:<port>")
                       for line in request_lines(directory, 0, lambda line: "[info]" in line))
                for port, directory in zip(ports, dirs, strict=True)]
    assert info[1] == info[0], "\n".join(["nginx:"] + info[0] + ["newproxy:"] + info[1])
    assert "[info] client timed out (110: Connection timed out) while waiting for request, client: 127.0.0.1, " \
           "server: 127.0.0.1:<port>" in info[0], info[0]
    theirs, ours = _masked(logs[0]), _masked(logs[1])
    assert ours == theirs, "\n".join(["nginx:"] + theirs + ["newproxy:"] + ours)
    # What the comparison covers, so that it cannot pass on two empty logs: a line per case but the
    # silent one and the idle kept-alive connection, plus the two complete requests.
    assert len(theirs) == len(CASES) - 2 + 2, theirs
    assert sum(line.startswith("408|") for line in theirs) == len(CASES) - 2
    assert any(line.startswith("408|GE|0|0|0|-|-|-|a.test|a.test|") for line in theirs), theirs
    assert any("|b.test|b.test|4|3|" in line for line in theirs), theirs  # X_U kept after Host: b.test


async def _leave(port: int, data: bytes, how: str) -> bytes:
    """Send ``data``, read for 0.3 s, then half-close ("fin") or reset ("reset"); what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    received = await _read(reader, 0.3)
    if how == "reset":  # SO_LINGER 0: close() sends RST
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return received
    writer.write_eof()
    received += await _read(reader, 1.0)
    writer.close()
    return received


def test_heads_cut_by_the_client_are_logged_as_nginx_logs_them(tmp_path: Path) -> None:
    """The same heads, the client then half-closing or resetting its connection instead of waiting:
    nginx logs a begun head with 400 (the same fields as the 408 above), and an info line: "client
    closed connection while waiting for request" (nothing sent; its context names the listening
    address), "client prematurely closed connection while reading client request line" (or
    "request headers", or "pipelined request line"), or for a reset "recv() failed (104: Connection
    reset by peer) while ...". Each case runs on its own, one target after the other, so that the
    info lines can be told apart."""
    base = tmp_path / "run"
    seen: dict[str, list[object]] = {}
    with _both(tmp_path) as (started, ports, dirs):
        for how in ("fin", "reset"):
            for name, data in CASES.items():
                for port, directory in zip(ports, dirs, strict=True):
                    start = log_size(directory)
                    answer = asyncio.run(_leave(port, data, how))
                    time.sleep(0.1)
                    lines = [line.replace(f"server: 127.0.0.1:{port}", "server: 127.0.0.1:<port>")
                             for line in request_lines(directory, start, lambda line: "[info]" in line)]
                    seen.setdefault(f"{name}, {how}", []).append((answer.count(b" 200 OK"), lines))
        logs = [base / target.label / access_log_name("logs/cut.log") for target in started.targets]
    assert_same_views(seen)
    theirs, ours = _masked(logs[0]), _masked(logs[1])
    assert ours == theirs, "\n".join(["nginx:"] + theirs + ["newproxy:"] + ours)
    # What nginx did, so that the comparison cannot pass on two proxies that log nothing:
    assert sum(line.startswith("400|") for line in theirs) == 2 * (len(CASES) - 2), theirs
    assert seen["silent, fin"][0] == (0, ["[info] client closed connection while waiting for request, "
                                          "client: 127.0.0.1, server: 127.0.0.1:<port>"]), seen["silent, fin"]


DROPPED = {  # complete requests with header lines ignore_invalid_headers drops (a.test keeps no '_')
    "after Host": b"GET /d HTTP/1.1\r\nHost: a.test\r\nX_U: 1\r\nX-Y: 2\r\n\r\n",
    "before Host, two": b"GET /d?q HTTP/1.1\r\nX_U: 1\r\nX.Z:  spaced  \r\nHost: a.test\r\n\r\n",
    "empty value": b"GET /d HTTP/1.1\r\nX_U:\r\nHost: a.test\r\n\r\n",
    "Host b keeps '_', drops '.'": b"GET /d HTTP/1.1\r\nHost: b.test\r\nX_U: 1\r\nX.Z: 2\r\n\r\n",
    "no Host": b"GET /d HTTP/1.0\r\nX.Z: 2\r\n\r\n",
    "head in two reads": b"GET /d HTTP/1.1\r\nHost: a.test\r\nX_U: 1\r\n",  # then the blank line
}


def test_dropped_header_lines_are_logged_as_nginx_logs_them(tmp_path: Path) -> None:
    """nginx logs each header line it drops (ignore_invalid_headers on) at info: "client sent invalid
    header line: "X_U: 1" while reading client request headers", in the context of the head read up
    to it (the Host before it, the server that Host chose, whose underscores_in_headers decides)."""
    seen: dict[str, list[object]] = {}

    async def ask(port: int, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        if not data.endswith(b"\r\n\r\n"):
            await asyncio.sleep(0.1)
            writer.write(b"\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
        writer.close()
        return answer.split(b"\r\n")[0]

    with _both(tmp_path) as (_, ports, dirs):
        for name, data in DROPPED.items():
            for port, directory in zip(ports, dirs, strict=True):
                start = log_size(directory)
                status = asyncio.run(ask(port, data))
                time.sleep(0.1)
                seen.setdefault(name, []).append(
                    (status, request_lines(directory, start, lambda line: "invalid header" in line)))
    assert_same_views(seen)
    assert seen["before Host, two"][0][1] == [  # type: ignore[index]
        '[info] client sent invalid header line: "X_U: 1" while reading client request headers, client: '
        '127.0.0.1, server: a.test, request: "GET /d?q HTTP/1.1"',
        '[info] client sent invalid header line: "X.Z:  spaced" while reading client request headers, client: '
        '127.0.0.1, server: a.test, request: "GET /d?q HTTP/1.1"'], seen["before Host, two"]
