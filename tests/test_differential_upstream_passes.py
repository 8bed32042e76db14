"""$upstream_* variables across several proxied passes of one request, against real nginx 1.22.

An error_page that proxies again (after proxy_intercept_errors, or after a 502) is a second pass:
ngx_http_upstream_init_request pushes a zeroed state between the passes' attempts, *after* the
second upstream request was made (so that request's proxy_set_header still sees the first pass
alone), and the variables print " : " for it. A first pass that never tried a peer (its name did
not resolve: no resolver) leaves the states empty: the separator then comes first and prints as
a zeroed state ("-" status, no address, 0 bytes, "0.000"), followed by ", " (``"-, 200"``); a
second pass that tries no peer leaves the separator last (``"503 : "``).

Compared per request, on a connection of its own: the status, the values an add_header shows
(the last pass's view), the X-U header the second upstream received (echoed in its answer), and
the access-log line (without $upstream_bytes_received, which newproxy's log formats lack); times are masked as to shape ("-" and digits kept apart), upstream ports
named.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import access_log_name, plan
from shadow.runner import StartedTargets, started_targets
from tests.test_differential_request_facts import _talk

VARS = "[$upstream_status][$upstream_addr][$upstream_bytes_received][$upstream_response_time][$upstream_connect_time]"
CONF = f"""
events {{}}
http {{
    log_format passes '$uri|[$upstream_status][$upstream_addr][$upstream_response_time][$upstream_connect_time]|$status';
    access_log logs/passes.log passes;
    upstream app {{ server 127.0.0.1:9701; }}
    server {{
        listen 8080;
        server_name passes.test;
        add_header X-S "{VARS}" always;
        proxy_set_header X-U "{VARS}";
        proxy_intercept_errors on;
        location /named/ {{ proxy_pass http://app; error_page 503 = @other; }}
        location /uri/ {{ proxy_pass http://app; error_page 503 = /p/again; }}
        location /refused/ {{ proxy_pass http://127.0.0.1:9709; error_page 502 = @other; }}
        location /unresolved/ {{ set $h nowhere.invalid; proxy_pass http://$h; error_page 502 = @other; }}
        location /then-unresolved/ {{ proxy_pass http://app; error_page 503 = @unresolved; }}
        location /both-unresolved/ {{ set $h nowhere.invalid; proxy_pass http://$h; error_page 502 = @unresolved; }}
        location /p/ {{ proxy_pass http://app; }}
        location @other {{ rewrite ^ /ok break; proxy_pass http://app; }}
        location @unresolved {{ set $h2 nowhere.invalid; proxy_pass http://$h2; }}
    }}
}}
"""
PATHS = ["/named/__status/503/x", "/uri/__status/503/x", "/refused/x", "/unresolved/x",
         "/then-unresolved/__status/503/x", "/both-unresolved/x"]
_TIME = re.compile(rb"(?<![\d.])\d+\.\d{3}(?![\d.])")
_ADDR = re.compile(rb"127\.0\.0\.1:(\d+)")


def _named(data: bytes, names: dict[bytes, bytes]) -> bytes:
    return _TIME.sub(b"T", _ADDR.sub(lambda m: names.get(m.group(0), b"?"), data))


def test_upstream_variables_across_passes_match_nginx(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(CONF)
    config = parse_config(str(tmp_path / "nginx.conf"))
    base = tmp_path / "run"
    with started_targets(config, plan(config), str(base), refuse=frozenset({"127.0.0.1:9709"})) as started:
        names = {u.hostport.encode(): name.encode() for name, u in started.pool.upstreams.items()}
        seen = _exchange(started, names)
    assert seen[0] == seen[1]
    # Read once both stopped (newproxy's access log is written out by then).
    logs = [_named((base / label / access_log_name("logs/passes.log")).read_bytes(), names).splitlines()
            for label in ("nginx", "newproxy")]
    assert logs[0] == logs[1] and len(logs[0]) == len(PATHS)
    _spelled_out(dict(zip(PATHS, seen[0])))


def _exchange(started: StartedTargets, names: dict[bytes, bytes]) -> list[list[tuple[bytes, bytes, list[bytes]]]]:
    """Each path, on a connection of its own, to nginx then newproxy: the status line, X-S and the
    X-U values the upstreams received."""
    seen: list[list[tuple[bytes, bytes, list[bytes]]]] = []
    for target in started.targets:
        port = target.listen_ports[next(iter(target.listen_ports))]
        outcomes = []
        for path in PATHS:
            answer = asyncio.run(_talk(port, f"GET {path} HTTP/1.1\r\nHost: passes.test\r\nConnection: close\r\n\r\n"
                                       .encode()))
            answer = _named(answer, names)
            head = answer.split(b"\r\n\r\n")[0]
            status = head.split(b"\r\n")[0]
            shown = re.search(rb"\r\nX-S: ([^\r]*)", head)
            upstream_saw = re.findall(rb'"X-U", "([^"]*)"', answer)
            outcomes.append((status, shown.group(1) if shown else b"", upstream_saw))
            started.pool.settle()
            started.pool.take()
        seen.append(outcomes)
    return seen


def _spelled_out(by_path: dict[str, tuple[bytes, bytes, list[bytes]]]) -> None:
    """What nginx showed ("T" a time, "N" a byte count; the last pass's response time is "-" while
    its headers are made)."""
    def shape(value: bytes) -> bytes:  # byte counts (the third field) of three digits as N
        fields = value.split(b"][")
        if len(fields) == 5:
            fields[2] = re.sub(rb"\d{3}", b"N", fields[2])
        return b"][".join(fields)

    app = "127.0.0.1:9701"
    expected = {
        # The second upstream request was made before the separator: it sees the first pass only.
        "/named/__status/503/x": ("200 OK", f"[503 : 200][{app} : {app}][N : N][T : -][T : T]", [f"[503][{app}][N][T][T]"]),
        "/uri/__status/503/x": ("200 OK", f"[503 : 200][{app} : {app}][N : N][T : -][T : T]", [f"[503][{app}][N][T][T]"]),
        "/refused/x": ("200 OK", f"[502 : 200][127.0.0.1:9709 : {app}][0 : N][T : -][- : T]",
                       ["[502][127.0.0.1:9709][0][T][-]"]),
        # No attempt in the first pass: the separator leads, as a zeroed state.
        "/unresolved/x": ("200 OK", f"[-, 200][, {app}][0, N][T, -][T, T]", ["[][][][][]"]),
        # No attempt in the second pass: the separator ends the list.
        "/then-unresolved/__status/503/x": ("502 Bad Gateway", f"[503 : ][{app} : ][N : ][T : ][T : ]", []),
        "/both-unresolved/x": ("502 Bad Gateway", "[-][][0][T][T]", []),
    }
    for path, (status, shown, upstream_saw) in expected.items():
        got = by_path[path]
        assert (got[0], shape(got[1]), [shape(v) for v in got[2]]) == \
            (b"HTTP/1.1 " + status.encode(), shown.encode(), [v.encode() for v in upstream_saw]), path
