"""TLS sessions to https:// upstreams (proxy_ssl_session_reuse, on by default) against real nginx.

nginx keeps one session per peer of an upstream group (ngx_http_upstream_save_round_robin_peer_session),
saved when the upstream hands out a new one, and offers it on the next connection to that peer, from
any location. (A group made per request for a proxy_pass with variables that names an address,
ngx_http_upstream_create_round_robin_peer, keeps none: the harness cannot rewire such an address, so
that case is in tests/test_upstream_tls_sessions.py.) The recording upstreams echo whether each
connection resumed a session; the sequence of full and resumed handshakes is compared with nginx's:
per peer of a two-server group, shared by two locations, not saved nor offered with
proxy_ssl_session_reuse off, TLSv1.2 (the session is known after the handshake) and TLSv1.3 (the
session arrives in tickets after it), with a client certificate, with variables naming upstream
blocks, with an implicit group, and over kept-alive connections. Every test location's TLS
settings are the same as those of the other locations of its peers: nginx resumes a session across
locations whose settings differ, newproxy does not (Python's ssl refuses a session from another
context; the caveat on proxy_ssl_session_reuse)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from shadow.upstreams import TlsUpstream
from tests.differential import assert_equivalent, get, shadow
from tests.test_differential_proxy_ssl import _certificates

CONFIG = """
events {}
http {
    upstream backend.test { server 127.0.0.1:9443; }
    upstream pair.test { server 127.0.0.1:9443; server 127.0.0.1:9445; }
    upstream modern.test { zone modern 64k; server 127.0.0.1:9446; }
    upstream client.test { server 127.0.0.1:9447; }
    upstream kept.test { server 127.0.0.1:9449; keepalive 2; }
    server {
        listen 8080;
        server_name tls.test;
        location /a/ { proxy_pass https://backend.test; }
        location /b/ { proxy_pass https://backend.test; }
        location /sni/ { proxy_pass https://backend.test; proxy_ssl_server_name on; }
        location /off/ { proxy_pass https://backend.test; proxy_ssl_session_reuse off; }
        location /pair/ { proxy_pass https://pair.test; }
        location /tls13/ { proxy_pass https://modern.test; proxy_ssl_protocols TLSv1.3; }
        location /client/ {
            proxy_pass https://client.test;
            proxy_ssl_certificate %(dir)s/client.crt;
            proxy_ssl_certificate_key %(dir)s/client.key;
        }
        location /var/ { proxy_pass https://$arg_to; }
        location /literal/ { proxy_pass https://127.0.0.1:9443; }
        location /kept/ {
            proxy_pass https://kept.test;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""

# In this order, one at a time: each step depends on the sessions the steps before saved.
STEPS = ("off", "a", "a", "b", "off", "sni", "a", "pair", "pair", "pair", "pair", "pair",
         "tls13", "tls13", "tls13", "client", "client", "var?to=backend.test", "var?to=pair.test",
         "var?to=pair.test", "literal", "literal", "a", "literal",
         "kept", "kept", "kept")


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for number, step in enumerate(STEPS):
        location, _, query = step.partition("?")
        target = f"/{location}/{number}" + (f"?{query}" if query else "")
        out.append(get(listen, target, "tls.test", f"step {number}: {step}"))
    return out


def test_tls_sessions_are_resumed_as_nginx_resumes_them(tmp_path: Path) -> None:
    _certificates(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG % {"dir": tmp_path})
    server = TlsUpstream(str(tmp_path / "server.crt"), str(tmp_path / "server.key"))
    tls = {f"127.0.0.1:{port}": server for port in (9443, 9445, 9446, 9449)}
    tls["127.0.0.1:9447"] = TlsUpstream(str(tmp_path / "server.crt"), str(tmp_path / "server.key"),
                                        client_ca=str(tmp_path / "ca.crt"))
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0, guided=False, shrink=0,
                    tls_upstreams=tls, allow_unsafe=True)
    assert_equivalent(report, minimum=len(STEPS))
    assert set(report.statuses) == {"200"}, report.statuses
    # nginx's side, so that a run where neither proxy resumed cannot pass: the steps above resume
    # 16 sessions under nginx 1.22 with Python's OpenSSL 3 as the upstream.
    assert report.upstream_tls_resumed >= 10, report.upstream_tls_resumed
