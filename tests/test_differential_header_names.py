"""underscores_in_headers and ignore_invalid_headers against real nginx 1.22, over HTTP/1.x and HTTP/2.

nginx reads a header name with the setting of the server the request is in *while* it parses the
head: the default server of the address:port first, then, from the line after the Host header (or
from the request line's host, or HTTP/2's :authority), the server that host names. The config
mixes servers with each setting on one address (both ways round: a default server that drops names
with another that keeps them, and the reverse) and an address with one server, and every case sends
names with '_', '@', '.', a byte over 0x7f and names that look like headers nginx reads itself
("Content_Length", "User_Agent") before and after Host. Compared: the status, the answer (a
location returns $http_x_u, $http_x_a, $http_user_agent), and the request forwarded upstream, byte
for byte (shadow/raw.py for HTTP/1.x: fast path, bare-LF slow path, a head past
client_header_buffer_size, absolute-form; the shadow harness's HTTP/2 client for h2c).
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from shadow.client import TlsClient
from shadow.raw import RawCase, run_raw
from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

_LOCATIONS = """
        location / { proxy_pass http://backend; }
        location = /vars { return 200 "$http_x_u|$http_x_a|$http_user_agent|$http_x_y\\n"; }"""
CONFIG = """
events {}
http {
    access_log off;
    upstream backend { server 127.0.0.1:9001; }
    # 8080 (and h2c 8090): nginx's defaults on the default server; the other servers change them.
    server { listen 8080; listen 8090 http2; server_name plain.test; %(loc)s }
    server { listen 8080; listen 8090 http2; server_name under.test; underscores_in_headers on; %(loc)s }
    server { listen 8080; listen 8090 http2; server_name keep.test; ignore_invalid_headers off; %(loc)s }
    # 8081 (h2c 8091): the default server keeps every name, another drops them.
    server { listen 8081; listen 8091 http2; server_name keepall.test; ignore_invalid_headers off; %(loc)s }
    server { listen 8081; listen 8091 http2; server_name strict.test; %(loc)s }
    # 8082: one server, names with '_' kept whatever the host.
    server { listen 8082; server_name only.test; underscores_in_headers on; %(loc)s }
}
""" % {"loc": _LOCATIONS}

ODD = (b"X_U: 1\r\nX@A: 2\r\nX.A: 3\r\nX\x80A: 4\r\n_X: 5\r\nX-Y: 6\r\nUser_Agent: 7\r\nContent_Length: 8\r\n"
       b"X_A: 9\r\n")
HOSTS = {"*:8080": ("plain.test", "under.test", "keep.test", "unknown.test"),
         "*:8081": ("keepall.test", "strict.test"), "*:8082": ("only.test", "other.test")}
CLOSE = b"Connection: close\r\n\r\n"


def _cases() -> list[RawCase]:
    cases = []
    for listen, hosts in HOSTS.items():
        for name in hosts:
            host = b"Host: " + name.encode() + b"\r\n"
            variants = {
                "after Host": b"GET /p HTTP/1.1\r\n" + host + ODD + CLOSE,
                "before Host": b"GET /p HTTP/1.1\r\n" + ODD + host + CLOSE,
                "bare LF": (b"GET /p HTTP/1.1\r\n" + host + ODD + CLOSE).replace(b"\r\n", b"\n"),
                "past the 1k buffer": b"GET /p HTTP/1.1\r\n" + host + b"X-Pad: " + b"p" * 1500 + b"\r\n" + ODD + CLOSE,
                "absolute-form": b"GET http://" + name.encode() + b"/p HTTP/1.1\r\nHost: plain.test\r\n" + ODD + CLOSE,
                "variables": b"GET /vars HTTP/1.1\r\n" + host + ODD + CLOSE,
            }
            for label, data in variants.items():
                cases.append(RawCase(f"{listen} {name} {label}", data, listen=listen))
        cases.append(RawCase(f"{listen} HTTP/1.0 without Host", b"GET /p HTTP/1.0\r\n" + ODD + b"\r\n", listen=listen))
    return cases


def test_header_names_over_http1_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG)
    cases = _cases()
    results = run_raw(str(conf), cases, workdir=str(tmp_path / "run"))
    differing = {r.case.name: r.diffs for r in results if r.diffs}
    assert not differing, "\n".join(f"{name}: {'; '.join(diffs)[:600]}" for name, diffs in differing.items())
    # The settings really differ between the cases (nginx's side): which odd names went upstream.
    forwarded = {r.case.name: "".join(r.nginx["forwarded"]) for r in results}
    assert len(forwarded) == len(cases) >= 50
    assert "X_U" not in forwarded["*:8080 plain.test after Host"]
    assert "X_U" in forwarded["*:8080 under.test after Host"] and "X@A" not in forwarded["*:8080 under.test after Host"]
    assert "X_U" not in forwarded["*:8080 under.test before Host"]
    assert "X\x80A" in forwarded["*:8080 keep.test after Host"] and "X.A" in forwarded["*:8080 keep.test after Host"]
    assert "X_U" in forwarded["*:8081 keepall.test after Host"] and "X_U" in forwarded["*:8081 strict.test before Host"]
    assert "X_U" not in forwarded["*:8081 strict.test after Host"]
    assert "X_U" in forwarded["*:8080 under.test absolute-form"]
    variables = next(r for r in results if r.case.name == "*:8080 under.test variables").nginx["responses"][0]["body"]
    assert variables == "1|9||6\n", variables  # X_A matches $http_x_a; User_Agent is not $http_user_agent


def _h2_requests(plan: Plan) -> list[Request]:
    odd = (("x_u", "1"), ("x@a", "2"), ("x.a", "3"), ("_x", "5"), ("x-y", "6"), ("user_agent", "7"),
           ("content_length", "8"), ("x_a", "9"))
    out = []
    for port, hosts in ((8090, ("plain.test", "under.test", "keep.test", "unknown.test")),
                        (8091, ("keepall.test", "strict.test"))):
        listen = next(name for name in plan.listens if name.endswith(f":{port}"))
        for host in hosts:
            for target in ("/p", "/vars"):
                out.append(get(listen, target, host, f"h2 {host} {target}", version="2", extra=odd))
            # No :authority: a host field after the odd ones chooses the server for what follows it only.
            out.append(get(listen, "/p", None, f"h2 {host} host field last", version="2",
                           extra=odd + (("host", host),)))
            out.append(get(listen, "/p", None, f"h2 {host} host field first", version="2",
                           extra=(("host", host),) + odd))
    return out


def test_header_names_over_http2_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG)
    report = shadow(str(conf), str(tmp_path / "run"), _h2_requests, max_requests=0, guided=False)
    assert_equivalent(report, 24)


TLS_CONFIG = """
events {}
http {
    access_log off;
    upstream backend { server 127.0.0.1:9001; }
    ssl_certificate %(crt)s;
    ssl_certificate_key %(key)s;
    server { listen 8443 ssl; listen 8444 ssl http2; server_name plain.test; %(loc)s }
    server { listen 8443 ssl; listen 8444 ssl http2; server_name under.test; underscores_in_headers on; %(loc)s }
}
"""


def _tls_requests(plan: Plan) -> list[Request]:
    """Under TLS the SNI name's server reads the head until Host (or :authority) names one."""
    out = []
    h1 = next(name for name in plan.listens if name.endswith(":8443"))
    h2 = next(name for name in plan.listens if name.endswith(":8444"))
    for sni in ("plain.test", "under.test", None):
        tls = TlsClient(server_name=sni)
        for host in ("plain.test", "under.test"):
            for order, extra in (("odd names first", (("X_U", "1"), ("Host", host), ("X_A", "2"))),
                                 ("Host first", (("Host", host), ("X_U", "1"), ("X_A", "2")))):
                label = f"sni {sni} host {host} {order}"
                out.append(dataclasses.replace(get(h1, "/p", None, "h1 " + label, extra=extra), tls=tls))
                h2_extra = tuple((name.lower(), value) for name, value in extra)
                out.append(dataclasses.replace(get(h2, "/p", None, "h2 " + label, version="2", extra=h2_extra),
                                               tls=tls))
    return out


def test_header_names_under_tls_follow_the_sni_server_like_nginx(tmp_path: Path) -> None:
    crt, key = tmp_path / "t.crt", tmp_path / "t.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-subj", "/CN=plain.test", "-days", "2"], check=True, capture_output=True, timeout=30)
    conf = tmp_path / "nginx.conf"
    conf.write_text(TLS_CONFIG % {"crt": crt, "key": key, "loc": _LOCATIONS})
    report = shadow(str(conf), str(tmp_path / "run"), _tls_requests, max_requests=0, guided=False)
    assert_equivalent(report, 24)
