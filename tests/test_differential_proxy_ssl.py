"""https:// upstreams and the proxy_ssl_* basics against real nginx.

The recording upstreams speak TLS here (``tls_upstreams``: certificates made by the test with
``openssl``: a test CA, a server certificate for backend.test and *.wild.test, a self-signed one,
a client certificate) and echo how the proxy spoke: the SNI sent (or none), the protocol, the
cipher, the client certificate's CN. Compared with nginx: no SNI by default, proxy_ssl_server_name
(never for an IP address), proxy_ssl_name, proxy_ssl_verify with proxy_ssl_trusted_certificate
(a trusted chain and a matching or wildcard name: 200; an untrusted certificate or a wrong name:
502), a client certificate, proxy_ssl_protocols/ciphers, https with variables, and proxy_ssl_name
with variables (SNI and the name checked per request, a port stripped)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from shadow.upstreams import TlsUpstream
from tests.differential import assert_equivalent, get, shadow

CONFIG = """
events {}
http {
    upstream backend.test { server 127.0.0.1:9443; }
    upstream untrusted.test { server 127.0.0.1:9444; }
    upstream kept.test { server 127.0.0.1:9443; keepalive 2; }
    server {
        listen 8080;
        server_name tls.test;
        proxy_ssl_trusted_certificate %(dir)s/ca.crt;
        # nginx resumes the session a peer saved, whatever the location's settings (SNI, client
        # certificate, verification, ciphers: the first handshake's stand); newproxy only from
        # locations with the same settings (tests/test_differential_proxy_ssl_sessions.py).
        proxy_ssl_session_reuse off;
        location /plain/ { proxy_pass https://backend.test; }
        location /sni/ { proxy_pass https://backend.test; proxy_ssl_server_name on; }
        location /name/ { proxy_pass https://backend.test; proxy_ssl_server_name on; proxy_ssl_name alt.wild.test; }
        location /verify/ { proxy_pass https://backend.test; proxy_ssl_verify on; }
        location /verify-sni/ { proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_server_name on; }
        location /wild/ { proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_name x.wild.test; }
        location /badname/ { proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_name wrong.test; }
        location /deepwild/ { proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_name a.b.wild.test; }
        location /untrusted/ { proxy_pass https://untrusted.test; proxy_ssl_verify on; }
        location /untrusted-off/ { proxy_pass https://untrusted.test; proxy_ssl_server_name on; }
        location /addr/ { proxy_pass https://127.0.0.1:9443/x/; proxy_ssl_server_name on; }
        location /client/ {
            proxy_pass https://backend.test;
            proxy_ssl_certificate %(dir)s/client.crt;
            proxy_ssl_certificate_key %(dir)s/client.key;
        }
        location /tls12/ {
            proxy_pass https://backend.test;
            proxy_ssl_protocols TLSv1.2;
            proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
        }
        location /tls13/ { proxy_pass https://backend.test; proxy_ssl_protocols TLSv1.2 TLSv1.3; }
        location /var/ { proxy_pass https://$arg_to; proxy_ssl_server_name on; }
        location /kept/ {
            proxy_pass https://kept.test;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_server_name on;
        }
        location /varname/ { proxy_pass https://backend.test; proxy_ssl_server_name on; proxy_ssl_name $http_x_name; }
        location /varverify/ { proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_name $arg_n:8443; }
    }
}
"""

LOCATIONS = ("plain", "sni", "name", "verify", "verify-sni", "wild", "badname", "deepwild", "untrusted",
             "untrusted-off", "addr", "client", "tls12", "tls13", "kept")


def _certificates(directory: Path) -> None:
    """A test CA; backend.test (+ *.wild.test) and a client certificate signed by it; a self-signed one."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Test CA")
    for name, san in (("server", "DNS:backend.test,DNS:*.wild.test"), ("client", "")):
        subject = "/CN=backend.test" if name == "server" else "/CN=proxy-client"
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    run("req", "-x509", *ec, "-keyout", "self.key", "-out", "self.crt", "-days", "2", "-subj", "/CN=backend.test",
        "-addext", "subjectAltName=DNS:backend.test")


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for location in LOCATIONS:
        out.append(get(listen, f"/{location}/a?q=1", "tls.test", f"{location} GET"))
        out.append(get(listen, f"/{location}/b", "tls.test", f"{location} GET again"))
        out.append(get(listen, f"/{location}/h", "tls.test", f"{location} HEAD", method="HEAD"))
        out.append(Request(method="POST", target=f"/{location}/p", headers=(("Host", "tls.test"), ("Content-Length", "3")),
                           listen=listen, group="hand-picked", label=f"{location} POST", body=b"abc"))
    out.append(get(listen, "/var/x?to=backend.test", "tls.test", "https with variables, an upstream block"))
    out.append(get(listen, "/var/y?to=untrusted.test", "tls.test", "https with variables, the other block"))
    for name in ("alt.wild.test", "", "127.0.0.1", "x.test:99"):
        out.append(get(listen, "/varname/a", "tls.test", f"proxy_ssl_name from a header: {name!r}",
                       extra=(("X-Name", name),)))
    for name in ("x.wild.test", "backend.test", "nope.test", ""):
        out.append(get(listen, f"/varverify/a?n={name}", "tls.test", f"proxy_ssl_name from an argument: {name!r}"))
    return out


def test_https_upstreams_match_nginx(tmp_path: Path) -> None:
    _certificates(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG % {"dir": tmp_path})
    tls = {"127.0.0.1:9443": TlsUpstream(str(tmp_path / "server.crt"), str(tmp_path / "server.key"),
                                         client_ca=str(tmp_path / "ca.crt")),
           "127.0.0.1:9444": TlsUpstream(str(tmp_path / "self.crt"), str(tmp_path / "self.key"))}
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0, guided=False, shrink=0,
                    tls_upstreams=tls, allow_unsafe=True)
    assert_equivalent(report, minimum=len(LOCATIONS) * 4)
    assert {"200", "502"} <= set(report.statuses), report.statuses
    assert report.upstream_reused >= 2, report.upstream_reused  # /kept/: TLS connections kept and reused
