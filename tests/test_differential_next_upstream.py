"""proxy_next_upstream against real nginx, with faults injected by the recording upstreams.

Groups of several servers; each request names its fault in the URI (shadow/upstreams.py markers,
scoped to one peer with ``/__at/PORT/``): a refusing peer, a reset before any answer or in the
middle of the head or body, a close before any answer, a slow head or body (proxy_read_timeout),
an invalid header, an answer without a status line (nginx relays it as HTTP/0.9), and
500/502/503/504/403/404/429 answers. Locations
set proxy_next_upstream to error, timeout, invalid_header, http_NNN, non_idempotent and off, with
proxy_next_upstream_tries and _timeout, and one group keeps max_fails marks and a backup. The
harness compares the client's status and body AND the list of upstream requests in order, i.e.
which recording upstream saw which attempt; $upstream_addr/$upstream_status are compared from the
access logs line by line."""

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
    upstream three {
        server 127.0.0.1:9301 max_fails=0;
        server 127.0.0.1:9302 max_fails=0;
        server 127.0.0.1:9303 max_fails=0;
    }
    upstream withdead {
        server 127.0.0.1:9301 max_fails=0;
        server 127.0.0.1:9309 max_fails=0;
        server 127.0.0.1:9302 max_fails=0 weight=2;
    }
    upstream marked {
        server 127.0.0.1:9301;
        server 127.0.0.1:9302;
        server 127.0.0.1:9303 backup;
    }
    server {
        listen 8080;
        server_name retry.test;
        proxy_read_timeout 200ms;
        location /default/ { proxy_pass http://three; }
        location /dead/ { proxy_pass http://withdead; }
        location /off/ { proxy_pass http://three; proxy_next_upstream off; }
        location /invalid/ { proxy_pass http://three; proxy_next_upstream error invalid_header; }
        location /h5/ {
            proxy_pass http://three;
            proxy_next_upstream error timeout http_500 http_502 http_503 http_504;
        }
        location /h4/ { proxy_pass http://three; proxy_next_upstream http_403 http_404 http_429; }
        location /nonidem/ {
            proxy_pass http://three;
            proxy_next_upstream error timeout http_503 non_idempotent;
        }
        location /tries/ {
            proxy_pass http://withdead;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
        }
        location /ntimeout/ {
            proxy_pass http://three;
            proxy_next_upstream timeout;
            proxy_next_upstream_timeout 300ms;
        }
        location /marked/ { proxy_pass http://marked; proxy_next_upstream error timeout http_503; }
    }
}
"""

# Faults every location gets (quick ones: no timeout involved).
QUICK = ("", "__at/9301/__status/503/", "__status/503/", "__at/9302/__status/500/", "__status/502/",
         "__at/9303/__status/504/", "__at/9301/__status/404/", "__status/403/", "__at/9302/__status/429/",
         "__at/9301/__reset/0/", "__reset/0/", "__at/9302/__close/", "__at/9303/__reset/20/",
         "__at/9301/__reset/250/", "__at/9302/__badheader/", "__badheader/", "__at/9303/__garbage/")
# Faults that wait for proxy_read_timeout: a few locations only (each costs ~0.2 s per attempt).
SLOW = ("__at/9301/__delay/400/", "__delay/400/", "__at/9302/__slowhead/400/", "__at/9303/__slowbody/400/")
SLOW_LOCATIONS = ("default", "off", "h5", "ntimeout")
LOCATIONS = ("default", "dead", "off", "invalid", "h5", "h4", "nonidem", "tries", "ntimeout", "marked")


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for location in LOCATIONS:
        faults = QUICK + (SLOW if location in SLOW_LOCATIONS else ())
        for i, fault in enumerate(faults):
            target = f"/{location}/{fault}r{i}?q={i}"
            out.append(get(listen, target, "retry.test", f"{location} GET {fault or 'ok'}"))
            if i % 3 == 0 or location == "nonidem":
                out.append(Request(method="POST", target=target, headers=(("Host", "retry.test"),
                                                                          ("Content-Length", "4")),
                                   listen=listen, group="hand-picked", label=f"{location} POST {fault}", body=b"body"))
        out.append(get(listen, f"/{location}/__status/503/h", "retry.test", f"{location} HEAD 503", method="HEAD"))
    return out


def test_next_upstream_with_injected_faults_matches_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG)
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0, guided=False,
                    refuse=frozenset({"127.0.0.1:9309"}), shrink=0)
    assert_equivalent(report, minimum=200)
    # "truncated": a reset after the head reached the client; "bad-response": an HTTP/0.9 answer.
    assert {"200", "403", "404", "429", "500", "502", "503", "504", "truncated", "bad-response"} \
        <= set(report.statuses), report.statuses
    log = access_log_name("logs/up.log")
    ours = (tmp_path / "run" / "newproxy" / log).read_text().splitlines()
    theirs = (tmp_path / "run" / "nginx" / log).read_text().splitlines()
    assert len(theirs) == report.requests
    mismatched = [(a, b) for a, b in zip(theirs, ours) if a != b]
    assert not mismatched and len(ours) == len(theirs), mismatched[:10]
    assert sum(", " in line.split("|")[0] for line in theirs) > 40  # requests that went to several peers
    assert any(", marked|" in line for line in theirs), theirs  # no live upstreams after 503s marked them
    # The peers' error-log lines, in order (time, pid and connection masked): "upstream server
    # temporarily disabled" when a 503 brings a peer of `marked` to max_fails, and "no live
    # upstreams" naming the group once none is left. And every [error] line too: refused connects,
    # resets (recv()/readv()), invalid headers quoted, timeouts, premature closes.
    peer_lines = [marked(tmp_path / "run" / label / "error.log") for label in ("nginx", "newproxy")]
    assert peer_lines[0] == peer_lines[1]
    all_lines = [marked(tmp_path / "run" / label / "error.log", every=True) for label in ("nginx", "newproxy")]
    assert all_lines[0] == all_lines[1]
    assert sum('upstream sent invalid header: "X-Bad: a\\x00..."' in line for line in all_lines[0]) >= 10
    assert any("readv() failed (104: Connection reset by peer) while reading upstream" in line for line in all_lines[0])
    assert sum(line.startswith("[warn] upstream server temporarily disabled while reading response header") and
               "/marked/" in line for line in peer_lines[0]) >= 3, peer_lines[0]
    assert sum('upstream: "http://marked/marked/' in line for line in peer_lines[0]) >= 10, peer_lines[0]


LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")


def marked(log: Path, every: bool = False) -> list[str]:
    """The [warn] and "no live upstreams" lines of an error.log (``every``: all [warn] and [error]
    lines), without time, pid and connection."""
    return [f"[{m.group(1)}] {m.group(2)}" for m in map(LINE.match, log.read_text(errors="replace").splitlines())
            if m and (m.group(1) == "warn" or m.group(2).startswith("no live upstreams")
                      or (every and m.group(1) == "error"))]
