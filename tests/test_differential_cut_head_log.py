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
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import access_log_name, plan
from shadow.runner import started_targets

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


async def _hold(port: int, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes (at most 4 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 4.0)
            if not chunk:
                break
            received += chunk
    except (asyncio.TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return received


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
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF)
    config = parse_config(str(conf))
    base = tmp_path / "run"
    with started_targets(config, plan(config), str(base)) as started:
        ports = [next(iter(target.listen_ports.values())) for target in started.targets]

        async def run() -> list[bytes]:
            return await asyncio.gather(*(_hold(port, data) for port in ports for data in CASES.values()))

        answers = asyncio.run(run())
        # Both answered the complete requests alike (and nothing else).
        assert [a.count(b" 200 OK") for a in answers[:len(CASES)]] == [a.count(b" 200 OK") for a in answers[len(CASES):]]
        logs = [base / target.label / access_log_name("logs/cut.log") for target in started.targets]
    theirs, ours = _masked(logs[0]), _masked(logs[1])
    assert ours == theirs, "\n".join(["nginx:"] + theirs + ["newproxy:"] + ours)
    # What the comparison covers, so that it cannot pass on two empty logs: a line per case but the
    # silent one and the idle kept-alive connection, plus the two complete requests.
    assert len(theirs) == len(CASES) - 2 + 2, theirs
    assert sum(line.startswith("408|") for line in theirs) == len(CASES) - 2
    assert any(line.startswith("408|GE|0|0|0|-|-|-|a.test|a.test|") for line in theirs), theirs
    assert any("|b.test|b.test|4|3|" in line for line in theirs), theirs  # X_U kept after Host: b.test
