"""TLS against real nginx 1.22: the handshake outcome (which certificate SNI selects, protocol,
cipher, session resumption, refused handshakes and their alert) and the answers over it
($scheme, $https, $ssl_*; http->https redirects; plain HTTP sent to an ssl port).

The certificates are made here, self-signed: an RSA and an ECDSA one per name where a server has
both. The harness's client records, per exchange, the SHA-256 and subject CN of the certificate it
was shown, the protocol and cipher, and whether the session was resumed, and compares them.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from newproxy.config import NewproxyConfig
from nginx_parser import parse_config
from shadow.client import TlsClient
from shadow.rewire import Plan, access_log_name, plan
from shadow.runner import started_targets
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

VARS = '"$ssl_protocol|$ssl_server_name|$scheme|$https|$ssl_cipher|$ssl_session_reused|$host\\n"'


def _cert(directory: Path, name: str, kind: str) -> tuple[str, str]:
    crt, key = directory / f"{name}-{kind}.crt", directory / f"{name}-{kind}.key"
    new_key = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt",
                                                              "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", *new_key, "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-subj", f"/CN={name}-{kind}", "-days", "2"], check=True, capture_output=True, timeout=30)
    return str(crt), str(key)


def _pair(cert: tuple[str, str]) -> str:
    return f"ssl_certificate {cert[0]}; ssl_certificate_key {cert[1]};"


CONFIG = """
events {{}}
http {{
    access_log off;
    # The default server of :8443 (first): its certificate for no SNI and unknown names.
    server {{
        listen 127.0.0.1:8443 ssl;
        server_name a.test;
        {a}
        location / {{ return 200 {vars}; }}
        location /proxy/ {{
            proxy_pass http://127.0.0.1:9401;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header X-Https $https;
            proxy_set_header X-Sni $ssl_server_name;
            proxy_set_header X-Proto $ssl_protocol;
            proxy_set_header X-Cipher $ssl_cipher;
            proxy_set_header X-Reused $ssl_session_reused;
        }}
        location /redirect {{ return 302 /elsewhere; }}
        location /dir/ {{ return 200 "dir"; }}
    }}
    # RSA and ECDSA: OpenSSL picks by the client's signature algorithms / cipher suites.
    server {{
        listen 127.0.0.1:8443 ssl;
        server_name b.test *.wild.test;
        {b_rsa}
        {b_ec}
        location / {{ return 200 {vars}; }}
    }}
    server {{
        listen 127.0.0.1:8443 ssl;
        server_name refused.test;
        ssl_reject_handshake on;
        location / {{ return 200 "never"; }}
    }}
    # Plain HTTP next to it: the redirect patterns.
    server {{
        listen 127.0.0.1:8080;
        server_name a.test b.test;
        return 301 https://$host$request_uri;
    }}
    server {{
        listen 127.0.0.1:8080;
        server_name other.test;
        location / {{ return 301 https://$server_name$request_uri; }}
        location /scheme {{ return 200 "$scheme|$https|$ssl_protocol|"; }}
    }}
    # TLSv1.3 only.
    server {{
        listen 127.0.0.1:8444 ssl;
        server_name only13.test;
        ssl_protocols TLSv1.3;
        {a}
        location / {{ return 200 {vars}; }}
    }}
    # A default server that refuses every handshake; one named server behind it.
    server {{
        listen 127.0.0.1:8445 ssl default_server;
        ssl_reject_handshake on;
    }}
    server {{
        listen 127.0.0.1:8445 ssl;
        server_name ok.test;
        {b_rsa}
        location / {{ return 200 {vars}; }}
    }}
    # TLSv1.2 only, a cipher list, the server's order, RSA + ECDSA.
    server {{
        listen 127.0.0.1:8446 ssl;
        server_name ciphers.test;
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        ssl_session_cache shared:SSL:1m;
        {b_rsa}
        {b_ec}
        location / {{ return 200 {vars}; }}
    }}
    # TLSv1.2 and TLSv1.3, RSA + ECDSA: the certificate by the client's signature algorithms.
    server {{
        listen 127.0.0.1:8448 ssl;
        server_name both.test;
        ssl_protocols TLSv1.2 TLSv1.3;
        {b_rsa}
        {b_ec}
        location / {{ return 200 {vars}; }}
    }}
    # error_page 497: plain HTTP to the ssl port redirected; and the obsolete "ssl on".
    server {{
        listen 127.0.0.1:8449 ssl;
        server_name ep.test;
        {a}
        error_page 497 =301 https://$host:$server_port$request_uri;
        location / {{ return 200 {vars}; }}
    }}
    server {{
        listen 127.0.0.1:8450;
        ssl on;
        server_name old.test;
        {a}
        location / {{ return 200 {vars}; }}
    }}
    # The client's order.
    server {{
        listen 127.0.0.1:8447 ssl;
        server_name clientorder.test;
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;
        {a}
        location / {{ return 200 {vars}; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:  # the Makefile's system deps install it with nginx
        raise RuntimeError("openssl is needed to make test certificates")
    directory = tmp_path_factory.mktemp("tls")
    a = _cert(directory, "a", "rsa")
    b_rsa, b_ec = _cert(directory, "b", "rsa"), _cert(directory, "b", "ec")
    path = directory / "nginx.conf"
    path.write_text(CONFIG.format(a=_pair(a), b_rsa=_pair(b_rsa), b_ec=_pair(b_ec), vars=VARS))
    return path


def _tls(request: Request, **kwargs: object) -> Request:
    return dataclasses.replace(request, tls=TlsClient(**kwargs))  # type: ignore[arg-type]


def _listen(plan: Plan, port: int) -> str:
    return next(name for name in plan.listens if name.endswith(f":{port}"))


def tls_requests(plan: Plan) -> list[Request]:
    main, plain, only13, reject, ciphers, order = (_listen(plan, p) for p in (8443, 8080, 8444, 8445, 8446, 8447))
    out: list[Request] = []
    # Which certificate SNI selects; the Host then picks the server for the request.
    for sni in ("a.test", "b.test", "B.TEST", "x.wild.test", "unknown.test", None, "127.0.0.1.nip", "refused.test",
                "REFUSED.test"):
        for host in ("a.test", "b.test", "unknown.test", "refused.test"):
            out.append(_tls(get(main, "/", host, f"sni {sni} host {host}"), server_name=sni))
    # Proxied: the $ssl_* and $scheme/$https variables as request headers upstream.
    for sni in ("a.test", "b.test", None):
        out.append(_tls(get(main, "/proxy/x?y=1", "a.test", f"proxied sni {sni}"), server_name=sni))
        out.append(_tls(get(main, "/proxy/x", "a.test", f"proxied TLSv1.2 sni {sni}"), server_name=sni,
                        maximum="TLSv1.2"))
    # Relative redirects and the auto-redirect are made absolute with https://.
    out.append(_tls(get(main, "/redirect", "a.test", "relative redirect over TLS"), server_name="a.test"))
    out.append(_tls(get(main, "/dir", "a.test", "directory auto-redirect over TLS"), server_name="a.test"))
    # Plain HTTP to the ssl port: nginx's 497 page (status 400), whatever the Host.
    for host in ("a.test", "b.test", None):
        for version in ("1.1", "1.0"):
            out.append(_tls(get(main, "/x?y", host, f"plain HTTP/{version} to the ssl port, host {host}",
                                version=version), plain=True))
    out.append(_tls(Request(method="POST", target="/p", headers=(("Host", "a.test"), ("Content-Length", "3")),
                            listen=main, group="hand-picked", label="plain POST to the ssl port", body=b"abc"),
                    plain=True))
    ep, old = _listen(plan, 8449), _listen(plan, 8450)
    for host in ("ep.test", "other.test", None):
        out.append(_tls(get(ep, "/a?b=c", host, f"plain HTTP with error_page 497, host {host}"), plain=True))
        out.append(_tls(get(ep, "/a?b=c", host, f"TLS with error_page 497, host {host}"), server_name="ep.test"))
    for tls in (TlsClient(server_name="old.test"), TlsClient(), TlsClient(plain=True)):
        out.append(_tls(get(old, "/", "old.test", f"ssl on, {tls}"), **vars(tls)))
    # The http->https redirect patterns on the plain port.
    for host in ("a.test", "b.test", "other.test", "unknown.test"):
        out.append(get(plain, "/path?q=1", host, f"redirect to https, host {host}"))
    out.append(get(plain, "/scheme", "other.test", "$scheme and $https on plain HTTP"))
    # Protocols: TLSv1.3 only against a TLSv1.2 client, and what each side negotiates.
    for maximum in ("TLSv1.2", "TLSv1.3", None):
        out.append(_tls(get(only13, "/", "only13.test", f"TLSv1.3-only server, client max {maximum}"),
                        server_name="only13.test", maximum=maximum))
    for version in ("TLSv1", "TLSv1.1", "TLSv1.2"):  # nginx 1.22's default protocols (OpenSSL's level refuses 1.0/1.1)
        out.append(_tls(get(main, "/", "a.test", f"default protocols, client exactly {version}"),
                        server_name="a.test", minimum=version, maximum=version))
    for minimum in ("TLSv1", "TLSv1.1"):
        out.append(_tls(get(only13, "/", "only13.test", f"TLSv1.3-only server, client exactly {minimum}"),
                        server_name="only13.test", minimum=minimum, maximum=minimum))
    out.append(_tls(get(ciphers, "/", "ciphers.test", "TLSv1.2-only server, TLSv1.3-only client"),
                    server_name="ciphers.test", minimum="TLSv1.3"))
    # ssl_reject_handshake in the default server: no SNI and unknown names are refused.
    for sni in (None, "ok.test", "nope.test", "OK.TEST"):
        out.append(_tls(get(reject, "/", "ok.test", f"rejecting default server, sni {sni}"), server_name=sni))
    # RSA or ECDSA by the cipher suites offered (TLSv1.2), and the server's cipher preference.
    for offer in ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305",
                  "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA",
                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"):
        out.append(_tls(get(ciphers, "/", "ciphers.test", f"ciphers offered {offer}"), server_name="ciphers.test",
                        ciphers=offer))
    for offer in ("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
                  "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"):
        out.append(_tls(get(order, "/", "clientorder.test", f"client's order {offer}"),
                        server_name="clientorder.test", ciphers=offer))
    # Session resumption: the second connection offers the first one's session ($ssl_session_reused).
    for key, listen, sni, maximum in (("main13", main, "a.test", None), ("main12", main, "a.test", "TLSv1.2"),
                                      ("cache12", ciphers, "ciphers.test", None)):
        for i in range(3):
            out.append(_tls(get(listen, "/", sni, f"resumption {key} #{i}"), server_name=sni, maximum=maximum,
                            resume=key))
    return out


def test_tls_matches_nginx(conf: Path, tmp_path: Path) -> None:
    report = shadow(str(conf), str(tmp_path), tls_requests, max_requests=150, refuse=frozenset())
    assert_equivalent(report, minimum=200)


def test_translation_of_tls(conf: Path) -> None:
    from translator.translate import translate

    translation = translate(parse_config(str(conf)))
    config: NewproxyConfig = translation.config
    by_name = {server.server_names[0]: server for server in config.servers if server.tls is not None}
    assert by_name["a.test"].listen[0].ssl and by_name["a.test"].listen[0].port == 8443
    assert not any(server.listen[0].ssl for server in config.servers if server.listen[0].port == 8080)
    assert len(by_name["b.test"].tls.certificates) == 2  # type: ignore[union-attr]
    assert by_name["only13.test"].tls.protocols == ["TLSv1.3"]  # type: ignore[union-attr]
    assert by_name["refused.test"].tls.reject_handshake  # type: ignore[union-attr]
    assert by_name["ciphers.test"].tls.prefer_server_ciphers  # type: ignore[union-attr]
    assert not by_name["ciphers.test"].tls.session_tickets  # type: ignore[union-attr]
    assert by_name["old.test"].listen[0].ssl  # the obsolete "ssl on": a caveat, translated
    levels = {(o.directive, o.args[0] if o.args else "", o.level) for o in translation.occurrences}
    assert ("ssl", "on", "caveat") in levels and ("ssl_reject_handshake", "on", "exact") in levels
    assert ("listen", "127.0.0.1:8443", "exact") in levels, sorted(levels)


def _s_client(port: int, *args: str) -> tuple[str, ...]:
    """What openssl s_client saw: the certificate's subject, the protocol and cipher, the peer's
    signature type; or the handshake's error."""
    run = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input=b"",
                         capture_output=True, timeout=20)
    out = run.stdout.decode("latin-1")
    keep = [line.strip() for line in out.splitlines()
            if line.startswith(("subject=", "New, ", "Peer signature type", "Server Temp Key"))]
    if not keep:
        keep = [line.split(":")[-2] for line in run.stderr.decode("latin-1").splitlines() if "SSL routines" in line]
    return tuple(keep)


def _curl(port: int, name: str, path: str, *args: str) -> tuple[str, str]:
    run = subprocess.run(["curl", "-sS", "-k", "--http1.1", "-i", "--connect-to", f"{name}:{port}:127.0.0.1:{port}",
                          *args, f"https://{name}:{port}{path}"], capture_output=True, timeout=20)
    head, _, body = run.stdout.decode("latin-1").partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0]
    return status, body


def test_openssl_and_curl_match_nginx(conf: Path, tmp_path: Path) -> None:
    """RSA or ECDSA by the client's signature algorithms (Python's ssl cannot restrict them, openssl
    s_client can), in TLSv1.2 and TLSv1.3; and curl -k --http1.1 against both (interop)."""
    config = parse_config(str(conf))
    the_plan = plan(config)
    both, main = _listen(the_plan, 8448), _listen(the_plan, 8443)
    cases = [(sigalgs, version) for sigalgs in ("ECDSA+SHA256", "RSA-PSS+SHA256", "rsa_pss_rsae_sha256:ECDSA+SHA256",
                                                "ECDSA+SHA256:rsa_pss_rsae_sha256", "RSA+SHA256")
             for version in ("-tls1_2", "-tls1_3")]
    seen: list[dict[str, object]] = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            port, main_port = target.listen_ports[both], target.listen_ports[main]
            answers: dict[str, object] = {}
            for sigalgs, version in cases:
                answers[f"{sigalgs} {version}"] = _s_client(port, "-servername", "both.test", "-sigalgs", sigalgs,
                                                           version)
            for name in ("a.test", "b.test", "x.wild.test"):
                status, body = _curl(main_port, name, "/curl")
                answers[f"curl {name}"] = (status, body.replace(str(main_port), "PORT"))
            answers["curl proxied"] = _curl(main_port, "a.test", "/proxy/c")[0]
            seen.append(answers)
    nginx, newproxy = seen
    assert nginx == newproxy
    # The cases tell the certificates apart, and curl got answers.
    subjects = {answer[0] for key, answer in nginx.items() if key.startswith(("ECDSA", "RSA", "rsa"))}  # type: ignore[index]
    # RSA+SHA256 (PKCS#1) in TLSv1.3 has no certificate to sign with: both refuse it alike.
    assert subjects == {"subject=CN = b-ec", "subject=CN = b-rsa", "New, (NONE), Cipher is (NONE)"}, nginx
    assert nginx["curl b.test"][0] == "HTTP/1.1 200 OK" and nginx["curl proxied"] == "HTTP/1.1 200 OK", nginx


def _weakened(config: NewproxyConfig) -> NewproxyConfig:
    """newproxy with three TLS mistakes: b.test loses its ECDSA certificate, ciphers.test follows
    the client's order, and the TLSv1.3-only server accepts TLSv1.2."""
    for server in config.servers:
        tls = server.tls
        if tls is None:
            continue
        if "b.test" in server.server_names:
            tls.certificates = tls.certificates[:1]
        if "ciphers.test" in server.server_names:
            tls.prefer_server_ciphers = False
        if "only13.test" in server.server_names:
            tls.protocols = ["TLSv1.2", "TLSv1.3"]
    return config


def test_harness_sees_tls_differences(conf: Path, tmp_path: Path) -> None:
    """The comparison includes the handshake: each mistake shows as a difference."""
    report = shadow(str(conf), str(tmp_path), tls_requests, max_requests=0, refuse=frozenset(),
                    mutate_translation=_weakened)
    fields = {diff["field"] for entry in report.diffs if entry.get("verdict") == "different"
              for diff in entry.get("diffs", [])}
    assert {"tls.certificate", "tls.subject", "tls.cipher", "outcome", "tls.protocol"} <= fields, fields


def test_bad_certificate_is_a_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """newproxy -t loads the certificates as nginx -t does: a missing file is `file:line: ...`, exit 1."""
    from newproxy.cli import main

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 127.0.0.1:8443 ssl;\n"
                    "    ssl_certificate missing.crt;\n    ssl_certificate_key missing.key;\n  }\n}\n")
    assert main(["-t", "-c", str(conf), "-p", str(tmp_path) + "/", "-e", "stderr"]) == 1
    err = capsys.readouterr().err
    assert f'{conf}:5: cannot load certificate "{tmp_path}/missing.crt"' in err, err
    assert "Traceback" not in err


LOG_FORMAT = "$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused|$https|$scheme|$status|$request"


def test_access_log_tls_variables_match_nginx(conf: Path, tmp_path: Path) -> None:
    """$ssl_* and $https in log_format: values over TLS, "-" (not found) or "" on plain connections
    and for plain HTTP sent to the ssl port; the lines equal nginx's."""
    text = conf.read_text().replace("access_log off;", f"log_format tls '{LOG_FORMAT}';\n    access_log logs/tls.log tls;")
    logged = tmp_path / "nginx.conf"
    logged.write_text(text)
    report = shadow(str(logged), str(tmp_path / "run"), tls_requests, max_requests=40, refuse=frozenset())
    assert_equivalent(report, minimum=120)
    name = access_log_name("logs/tls.log")
    theirs = (tmp_path / "run" / "nginx" / name).read_text().splitlines()
    ours = (tmp_path / "run" / "newproxy" / name).read_text().splitlines()
    assert len(theirs) >= 100
    assert ours == theirs
    assert any(line.startswith("TLSv1.3|TLS_") for line in theirs) and any(line.startswith("-|-|-|-||http|")
                                                                           for line in theirs)
