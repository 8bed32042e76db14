"""auth_request before the request body, against real nginx 1.22.

nginx runs a request's phases as soon as its head is read: the auth_request subrequest goes out
before anything of the body is read. A refusal (401, 403, another status: 500) is answered at once
and the body then read and dropped (ngx_http_discard_request_body: the connection is kept if it
comes in time); an acceptance hands over to proxy_pass, which reads the body (sending "100 Continue"
only then) and proxies it. newproxy/http/h1.py does the same for HTTP/1 (discard.AUTH_FIRST).

Each case is a timed script of writes on one raw connection (test_differential_discard's harness),
run against both targets at once: what came back in bursts, when, and how the connection ended are
compared; then the requests each recording upstream received (auth subrequests and proxied
requests, with their bodies) and the access log lines.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.test_differential_discard import Script, _compare, _run

CONF = """
events {}
http {
    lingering_timeout 1s;
    lingering_time 2s;
    client_body_timeout 1s;
    log_format m '$status $request_length "$request"';
    access_log %(root)s/a.log m;
    upstream backend { server 127.0.0.1:9101; }
    upstream authsvc { server 127.0.0.1:9102; }
    server {
        listen 8080;
        server_name a.test;
        location /up/ { auth_request /auth-ok; proxy_pass http://backend; }
        location /deny/ { auth_request /auth-401; proxy_pass http://backend; }
        location /forbid/ { auth_request /auth-403; proxy_pass http://backend; }
        location /broken/ { auth_request /auth-500; proxy_pass http://backend; }
        location /local/ { auth_request /auth-return401; proxy_pass http://backend; }
        location /localok/ { auth_request /auth-return204; proxy_pass http://backend; }
        location /file/ { auth_request /auth-ok; root %(root)s; }
        location /keeps/ { auth_request /auth-keeps-length; proxy_pass http://backend; }
        location = /auth-ok {
            internal;
            proxy_pass http://authsvc/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location = /auth-401 { internal; proxy_pass http://authsvc/check/__status/401; %(off)s }
        location = /auth-403 { internal; proxy_pass http://authsvc/check/__status/403; %(off)s }
        location = /auth-500 { internal; proxy_pass http://authsvc/check/__status/500; %(off)s }
        location = /auth-keeps-length {
            # Without proxy_set_header Content-Length "": the client's length goes with no body, and
            # the upstream waits for it (the subrequest times out: 500).
            internal;
            proxy_pass http://authsvc/check;
            proxy_pass_request_body off;
            proxy_read_timeout 1s;
        }
        location = /auth-return401 { internal; return 401; }
        location = /auth-return204 { internal; return 204; }
    }
}
"""

H = b"Host: a.test\r\n"
GET_CLOSE = b"GET /localok/next HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"


def _post(path: bytes, length: int, extra: bytes = b"", first: bytes = b"abc") -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\n" + H + extra + b"Content-Length: " + str(length).encode() + b"\r\n\r\n" + first


CASES: dict[str, Script] = {
    "refused by the upstream, body later, kept alive": [(0, _post(b"/deny/a", 10)), (0.4, b"defghij"),
                                                         (0.2, GET_CLOSE)],
    "refused, Expect: no 100 Continue": [(0, _post(b"/deny/b", 5, b"Expect: 100-continue\r\n", b"")),
                                         (0.4, b"hello"), (0.2, GET_CLOSE)],
    "forbidden, body never sent": [(0, _post(b"/forbid/c", 100, first=b""))],
    "other status: 500": [(0, _post(b"/broken/d", 10)), (0.4, b"defghij"), (0.2, GET_CLOSE)],
    "refused by a local return": [(0, _post(b"/local/e", 10)), (0.4, b"defghij"), (0.2, GET_CLOSE)],
    "accepted, body later": [(0, _post(b"/up/f", 10)), (0.4, b"defghij"), (0.2, GET_CLOSE)],
    "accepted, Expect: 100 Continue after the subrequest": [
        (0, _post(b"/up/g", 5, b"Expect: 100-continue\r\n", b"")), (0.4, b"hello"), (0.2, GET_CLOSE)],
    "accepted locally, chunked body later": [
        (0, b"POST /localok/h HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
        (0.4, b"4\r\ndefg\r\n0\r\n\r\n"), (0.2, GET_CLOSE)],
    "accepted, body never finished: client_body_timeout": [(0, _post(b"/up/i", 10))],
    "accepted, a file: body discarded": [(0, _post(b"/file/x.txt", 10).replace(b"POST", b"GET", 1)),
                                         (0.4, b"defghij"), (0.2, GET_CLOSE)],
    "body with the head: as any request": [(0, _post(b"/deny/j", 3)), (0.3, GET_CLOSE)],
    "subrequest with the client's Content-Length": [(0, _post(b"/keeps/k", 10)), (0.4, b"defghij")],
}

OFF = 'proxy_pass_request_body off; proxy_set_header Content-Length "";'  # the documented way


def test_auth_request_runs_before_the_body_as_in_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "file").mkdir(parents=True)
    (root / "file" / "x.txt").write_text("file\n")
    root.chmod(0o755)
    path = tmp_path / "nginx.conf"
    path.write_text(CONF % {"root": root, "off": OFF})
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [t.listen_ports["*:8080"] for t in started.targets]

        async def every_case(port: int) -> list[list[tuple[float, str, bytes]]]:
            return await asyncio.gather(*(_run(port, script, 4.0) for script in CASES.values()))

        runs, seen = [], []
        for port in ports:  # one target after the other: each one's upstream requests apart
            runs.append(asyncio.run(every_case(port)))
            time.sleep(0.3)
            seen.append(sorted((r.method, r.uri, r.body) for r in started.pool.take()))
        time.sleep(0.2)  # the last log lines
        logs = [sorted(next(Path(t.workdir).glob("access-*a.log")).read_text().splitlines())
                for t in started.targets]
    outcomes = {name: (runs[0][i], runs[1][i]) for i, name in enumerate(CASES)}
    for name, (nginx, newproxy) in outcomes.items():
        _compare(nginx, newproxy, name, 0.3)
    assert logs[0] == logs[1] and len(logs[0]) >= len(CASES), "\n".join(a + " | " + b for a, b in zip(*logs))

    # The upstream side: the same requests (subrequests and proxied ones, bodies included).
    nginx_seen, newproxy_seen = seen
    assert nginx_seen == newproxy_seen, (nginx_seen, newproxy_seen)

    # What the cases show, so that the comparison cannot pass on two empty or late answers:
    refused = outcomes["refused by the upstream, body later, kept alive"][0]
    assert refused[0][0] < 0.3 and refused[0][2].startswith(b"HTTP/1.1 401"), refused  # before the body
    assert refused[1][2].startswith(b"HTTP/1.1 200") and refused[2][1] == "FIN", refused  # the connection was kept
    no_continue = outcomes["refused, Expect: no 100 Continue"][0]
    assert no_continue[0][2].startswith(b"HTTP/1.1 401"), no_continue
    assert outcomes["forbidden, body never sent"][0][0][2].startswith(b"HTTP/1.1 403")
    assert outcomes["other status: 500"][0][0][2].startswith(b"HTTP/1.1 500")
    assert outcomes["refused by a local return"][0][0][0] < 0.3
    accepted = outcomes["accepted, body later"][0]
    assert accepted[0][0] > 0.35 and accepted[0][2].startswith(b"HTTP/1.1 200"), accepted  # once the body is in
    go_on = outcomes["accepted, Expect: 100 Continue after the subrequest"][0]
    assert go_on[0][0] < 0.3 and go_on[0][2] == b"HTTP/1.1 100 Continue\r\n\r\n", go_on
    assert go_on[1][2].startswith(b"HTTP/1.1 200"), go_on
    timed_out = outcomes["accepted, body never finished: client_body_timeout"][0]
    assert timed_out[0][2].startswith(b"HTTP/1.1 408") or timed_out[0][1] in ("FIN", "RST"), timed_out
    assert 0.8 < timed_out[0][0] < 1.6, timed_out
    assert outcomes["accepted, a file: body discarded"][0][0][2].startswith(b"HTTP/1.1 200")
    keeps = outcomes["subrequest with the client's Content-Length"][0]
    assert keeps[0][2].startswith(b"HTTP/1.1 500") and 0.9 < keeps[0][0] < 1.6, keeps
    proxied_bodies = sorted(body for _, uri, body in nginx_seen if not uri.startswith("/check"))
    assert b"abcdefghij" in proxied_bodies and b"hello" in proxied_bodies, nginx_seen
