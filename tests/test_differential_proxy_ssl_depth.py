"""proxy_ssl_verify_depth against real nginx: how long a certificate chain may be.

OpenSSL counts the levels of a chain from the upstream's certificate (0) up to the trust anchor;
``proxy_ssl_verify_depth N`` (1 by default) lets at most N intermediate certificates between them;
with more, OpenSSL stops building the chain before it reaches the anchor (error 20). The test makes a root CA, two intermediate CAs and three server
certificates: one signed by the root, one by the first intermediate, one by the second; each
upstream sends its certificate with the intermediates above it. Each proxies to each with depths
0 to 3 (and the default), both 200s and 502s compared with nginx, with the error log lines; and
the lines of two chains that fail in the handshake itself (a self-signed certificate; a trusted
file holding an intermediate only), which Python's ssl refuses there and nginx after it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from shadow.upstreams import TlsUpstream
from tests.differential import assert_equivalent, get, shadow

DEPTHS = ("default", "0", "1", "2", "3")
CHAINS = {"direct": 9443, "one": 9444, "two": 9445}  # intermediates between the server and the root


def config(directory: Path) -> str:
    blocks = "\n".join(f"    upstream {name}.test {{ server 127.0.0.1:{port}; }}"
                       for name, port in {**CHAINS, "self": 9446}.items())
    locations = []
    for name in CHAINS:
        for depth in DEPTHS:
            setting = "" if depth == "default" else f"proxy_ssl_verify_depth {depth};"
            locations.append(f"        location /{name}/{depth}/ {{ proxy_pass https://{name}.test; {setting} }}")
    return f"""
events {{}}
http {{
{blocks}
    server {{
        listen 8080;
        server_name depth.test;
        proxy_ssl_verify on;
        proxy_ssl_name backend.test;
        proxy_ssl_trusted_certificate {directory}/root.crt;
        proxy_ssl_session_reuse off;
{chr(10).join(locations)}
        location /self/ {{ proxy_pass https://self.test; }}
        location /untrusted/ {{ proxy_pass https://direct.test; proxy_ssl_trusted_certificate {directory}/int1.crt; }}
    }}
}}
"""


def _certificates(directory: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
    run("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.crt", "-days", "2", "-subj", "/CN=Depth Root",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (directory / "ca.ext").write_text(ca_ext)
    (directory / "server.ext").write_text("subjectAltName=DNS:backend.test\nbasicConstraints=CA:FALSE\n")

    def sign(name: str, issuer: str, subject: str, ext: str) -> None:
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext)

    sign("int1", "root", "/CN=Depth Intermediate 1", "ca.ext")
    sign("int2", "int1", "/CN=Depth Intermediate 2", "ca.ext")
    for name, issuer, above in (("direct", "root", ()), ("one", "int1", ("int1",)), ("two", "int2", ("int2", "int1"))):
        sign(name, issuer, "/CN=backend.test", "server.ext")
        chain = (directory / f"{name}.crt").read_text() + "".join((directory / f"{c}.crt").read_text() for c in above)
        (directory / f"{name}-chain.crt").write_text(chain)
    run("req", "-x509", *ec, "-keyout", "self.key", "-out", "self-chain.crt", "-days", "2", "-subj", "/CN=backend.test",
        "-addext", "subjectAltName=DNS:backend.test")


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    return [get(listen, f"/{name}/{depth}/a", "depth.test", f"{name} chain, depth {depth}")
            for name in CHAINS for depth in DEPTHS] + [
        get(listen, "/self/a", "depth.test", "a self-signed certificate"),
        get(listen, "/untrusted/a", "depth.test", "an intermediate as the only trusted certificate")]


def test_verify_depth_matches_nginx(tmp_path: Path) -> None:
    _certificates(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(config(tmp_path))
    tls = {f"127.0.0.1:{port}": TlsUpstream(str(tmp_path / f"{name}-chain.crt"), str(tmp_path / f"{name}.key"))
           for name, port in {**CHAINS, "self": 9446}.items()}
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0, guided=False, shrink=0,
                    tls_upstreams=tls, allow_unsafe=True)
    assert_equivalent(report, minimum=len(CHAINS) * len(DEPTHS))
    assert {"200", "502"} <= set(report.statuses), report.statuses
    nginx_lines, newproxy_lines = (_certificate_errors(tmp_path / "run" / target / "error.log")
                                   for target in ("nginx", "newproxy"))
    assert len(nginx_lines) == 6 and "(18:self-signed certificate)" in nginx_lines[-2], nginx_lines
    # The one known difference: a certificate that came alone and whose issuer is not trusted.
    # nginx's verify callback lets OpenSSL go on past the first error, and its last check of the
    # one-certificate chain sets 21; Python's ssl stops the handshake at the first, 20. The same 502.
    assert "(21:unable to verify the first certificate)" in nginx_lines[-1]
    assert newproxy_lines[-1] == nginx_lines[-1].replace("(21:unable to verify the first certificate)",
                                                         "(20:unable to get local issuer certificate)")
    assert nginx_lines[:-1] == newproxy_lines[:-1]


def _certificate_errors(log: Path) -> list[str]:
    """The [error] lines about upstream certificates, without the time, pid and connection numbers."""
    return [re.sub(r"^.*?\[error\] \d+#\d+: \*\d+ ", "", line) for line in log.read_text().splitlines()
            if "[error]" in line and "certificate" in line]
