"""Unix socket upstreams against real nginx: ``proxy_pass http://unix:/path:/uri`` (with and without a
URI part) and ``server unix:/path;`` in upstream groups (weighted, mixed with TCP peers, a refusing
one with a backup). The recording upstreams of ``unix:`` addresses listen on unix sockets, so both
proxies really connect over AF_UNIX; what the upstream received (Host "localhost", $proxy_host, URI)
and what the client got are compared, ``$upstream_addr``/``$upstream_status`` as both log them
(``unix:PATH``, with the failed attempts) line by line, and the ``[error]``/``[warn]`` lines of the
refusing peer (``connect() to unix:PATH failed``, ``upstream: "http://unix:PATH:/URI"`` with nginx's
``:`` separator, the peer disabled in its group)."""

from __future__ import annotations

import re
from pathlib import Path

from shadow.rewire import Plan, access_log_name
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONFIG = """
events {}
http {
    log_format up '$upstream_addr|$upstream_status|$status|$request';
    access_log logs/up.log up;
    upstream sockets {
        server unix:/run/app-a.sock;
        server unix:/run/app-b.sock weight=2;
    }
    upstream mixed {
        server unix:/run/app-a.sock;
        server 127.0.0.1:9301;
    }
    upstream dead {
        server unix:/run/dead.sock;
        server unix:/run/app-b.sock backup;
    }
    server {
        listen 8080;
        server_name unix.test;
        location /direct/ { proxy_pass http://unix:/run/app-a.sock:/inner/; }
        location /raw/ { proxy_pass http://unix:/run/app-b.sock; }
        location /group/ { proxy_pass http://sockets; }
        location /mixed/ { proxy_pass http://mixed/m/; }
        location /dead/ { proxy_pass http://dead; }
        location /refused/ { proxy_pass http://unix:/run/dead.sock:/x/; }
        location /hdr/ {
            proxy_pass http://sockets;
            proxy_set_header X-Proxy-Host $proxy_host;
        }
    }
}
"""

PREFIXES = ("direct", "raw", "group", "mixed", "dead", "refused", "hdr")


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for prefix in PREFIXES:
        for i in range(4):
            out.append(get(listen, f"/{prefix}/a{i}?q={i}", "unix.test", f"{prefix} GET"))
        out.append(get(listen, f"/{prefix}/h", "unix.test", f"{prefix} HEAD", method="HEAD"))
        out.append(get(listen, f"/{prefix}/v", "unix.test", f"{prefix} HTTP/1.0", version="1.0"))
        out.append(get(listen, f"/{prefix}/__status/503/s", "unix.test", f"{prefix} 503"))
        out.append(Request(method="POST", target=f"/{prefix}/p", headers=(("Host", "unix.test"), ("Content-Length", "3")),
                           listen=listen, group="hand-picked", label=f"{prefix} POST", body=b"abc"))
    return out


def test_unix_socket_upstreams_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG)
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0, guided=False,
                    refuse=frozenset({"unix:/run/dead.sock"}))
    assert_equivalent(report, minimum=len(PREFIXES) * 8)
    assert {"200", "503", "502"} <= set(report.statuses), report.statuses
    assert any(addr.startswith("unix:") for addr in report.upstreams.values()), report.upstreams
    log = access_log_name("logs/up.log")
    ours = (tmp_path / "run" / "newproxy" / log).read_text().splitlines()
    theirs = (tmp_path / "run" / "nginx" / log).read_text().splitlines()
    assert len(theirs) == len(PREFIXES) * 8
    assert ours == theirs
    assert any(line.startswith("unix:") and ", unix:" in line for line in theirs), theirs  # failed, then backup
    logs = [logged(tmp_path / "run" / label / "error.log") for label in ("nginx", "newproxy")]
    assert logs[0] == logs[1]
    assert sum(line.startswith("[error] connect() to unix:") and '.sock:/x/' in line for line in logs[0]) >= 4, logs[0]
    assert sum(line.startswith("[warn] upstream server temporarily disabled") for line in logs[0]) == 1, logs[0]


LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")


def logged(log: Path) -> list[str]:
    """The [error] and [warn] lines of an error.log, without time, pid and connection."""
    return [f"[{m.group(1)}] {m.group(2)}" for m in map(LINE.match, log.read_text(errors="replace").splitlines())
            if m and m.group(1) in ("error", "warn")]
