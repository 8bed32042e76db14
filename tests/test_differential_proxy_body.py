"""The request sent upstream, against real nginx: proxy_method and proxy_set_body (with variables),
proxy_pass_request_body/_headers off, proxy_pass_header/proxy_hide_header edge cases,
proxy_ignore_headers and proxy_buffering/proxy_request_buffering off.

The recording upstreams echo what they received and the harness compares their recordings, so a
different method, a lost Content-Length or a client body sent where nginx sends proxy_set_body's
value is a difference.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nginx_parser import ConfigError, parse_config
from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow
from translator import translate

DATA = Path(__file__).parent / "data" / "differential"
HOST = "body.test"


def _with_body(listen: str, method: str, target: str, body: bytes, label: str, chunked: bool = False,
               version: str = "1.1", extra: tuple[tuple[str, str], ...] = ()) -> Request:
    if chunked:
        framed = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        headers = (("Host", HOST), ("Transfer-Encoding", "chunked")) + extra
    else:
        framed = body
        headers = (("Host", HOST), ("Content-Length", str(len(body)))) + extra
    return Request(method=method, target=target, headers=headers, listen=listen, group="hand-picked",
                   label=label, body=framed, version=version)


def body_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    # proxy_method: constant, with a variable (also the empty argument), after a URI part.
    for method in ("GET", "HEAD", "POST", "DELETE", "OPTIONS"):
        for where in ("/method/a?x=1", "/method-put/b/c", "/method-var/a?m=YZ", "/method-var/a"):
            out.append(get(listen, where, HOST, f"{method} {where}", method=method))
    out.append(_with_body(listen, "POST", "/method/post", b"client body", "proxy_method with a body"))
    out.append(_with_body(listen, "PUT", "/method-var/p?m=Q", b"abc", "proxy_method variable, chunked body",
                          chunked=True))
    # proxy_set_body: any method, with and without a client body (length and chunked), HTTP/1.0.
    for where in ("/body/x?n=1", "/body/a%20b?n=%41", "/body-const/c", "/body-empty/e", "/body-method/m",
                  "/body-v11/v?n=2", "/body-cl/cl"):
        for method in ("GET", "HEAD", "DELETE"):
            out.append(get(listen, where, HOST, f"{method} {where}", method=method))
        out.append(get(listen, where, HOST, f"GET {where} HTTP/1.0", version="1.0"))
        out.append(_with_body(listen, "POST", where, b"the client's own body", f"POST {where}"))
        out.append(_with_body(listen, "PUT", where, b"chunked one", f"chunked PUT {where}", chunked=True))
        out.append(_with_body(listen, "POST", where, b"", f"empty POST {where}"))
    # proxy_pass_request_body off with Content-Length removed (the auth_request pattern), and with
    # the client's headers off too.
    for where in ("/nobody/x?q=1", "/nothing/y"):
        out.append(get(listen, where, HOST, f"GET {where}", extra=(("X-A", "1"),)))
        out.append(_with_body(listen, "POST", where, b"dropped body", f"POST {where}", extra=(("X-A", "2"),)))
        out.append(_with_body(listen, "POST", where, b"dropped too", f"chunked POST {where}", chunked=True))
        out.append(_with_body(listen, "PATCH", where, b"", f"empty PATCH {where}"))
    out.append(get(listen, "/nobody-cl/g", HOST, "GET, request body off"))
    out.append(_with_body(listen, "POST", "/nobody-cl/p", b"never sent", "POST, request body off, length kept"))
    out.append(_with_body(listen, "POST", "/nobody-cl/p", b"", "empty POST, request body off"))
    for method in ("GET", "POST", "PUT"):
        out.append(get(listen, "/method-only-var/a?m=" + method, HOST, f"proxy_method $arg_m={method}"))
        out.append(_with_body(listen, method, "/ep/x?y=1", b"b", f"{method} through error_page to proxy_method"))
    for where in ("/noheaders/z", "/noheaders/z?a=b"):
        out.append(get(listen, where, HOST, f"GET {where}", extra=(("X-A", "kept"), ("Cookie", "c=1"))))
        out.append(_with_body(listen, "POST", where, b"body kept", f"POST {where}", extra=(("X-A", "k"),)))
        out.append(_with_body(listen, "POST", where, b"chunked kept", f"chunked POST {where}", chunked=True))
    # proxy_hide_header / proxy_pass_header: default-hidden names passed, caseless names, repeats.
    markers = ("/__header/X-Secret=s1/__header/X-SECRET=s2/__header/X-Other=o/__header/X-Accel-Expires=10"
               "/__header/X-Pad=p/__header/X-Accel-Buffering=no/__header/X-Kept=k/__header/x-pad=q")
    for base in ("/hide", "/hide-date", "/ignore", "/unbuffered", "/unbuffered-v11"):
        out.append(get(listen, f"{base}{markers}/x", HOST, f"header markers {base}"))
        out.append(get(listen, f"{base}/__chunked{markers}", HOST, f"chunked answer {base}"))
        out.append(get(listen, f"{base}/__cache/c", HOST, f"cache headers {base}"))
        out.append(get(listen, f"{base}/h", HOST, f"HEAD {base}", method="HEAD"))
        out.append(get(listen, f"{base}/v10", HOST, f"HTTP/1.0 {base}", version="1.0"))
        out.append(get(listen, f"{base}/__chunked/v10", HOST, f"chunked answer to HTTP/1.0 {base}", version="1.0"))
        out.append(get(listen, f"{base}/__status/404", HOST, f"404 {base}"))
    # proxy_pass_header Server/Date: the upstream's, or none at all (never nginx's own).
    for base in ("/hide", "/hide-date", "/ignore"):
        out.append(get(listen, f"{base}/__header/Server=backend%2F1/__header/Date=Thu%2C%2001%20Jan%202026%2000"
                               "%3A00%3A00%20GMT/s", HOST, f"upstream Server and Date {base}"))
    # proxy_ignore_headers: headers nginx would act on, ignored on both sides.
    acts = "/__header/X-Accel-Redirect=%2Fnowhere/__header/X-Accel-Charset=utf-8/__header/X-Accel-Limit-Rate=10"
    out.append(get(listen, f"/ignore{acts}/__header/Set-Cookie=a%3D1/__header/Vary=X-A/a", HOST, "ignored X-Accel-*"))
    # proxy_request_buffering off: bodies by length and chunked (sent with the head, as nginx reads
    # them whole before it connects), to HTTP/1.0 and HTTP/1.1 upstreams.
    for where in ("/unbuffered/u", "/unbuffered-v11/u"):
        out.append(_with_body(listen, "POST", where, b"x" * 700, f"POST {where}"))
        out.append(_with_body(listen, "POST", where, b"y" * 300, f"chunked POST {where}", chunked=True))
        out.append(_with_body(listen, "POST", where, b"", f"empty chunked POST {where}", chunked=True))
        out.append(_with_body(listen, "POST", where, b"z" * 1100, f"too big POST {where}"))
    return out


def test_upstream_request_directives_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "proxy_body.conf"), str(tmp_path), body_requests, max_requests=40)
    assert_equivalent(report, minimum=150)


def test_invalid_proxy_ignore_headers_value_is_refused_as_nginx_does(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n server {\n  listen 127.0.0.1:18090;\n  location / {\n"
                    "   proxy_ignore_headers Expires x-accel-redirect Bogus;\n"
                    "   proxy_pass http://127.0.0.1:9;\n  }\n }\n}\n")
    checked = subprocess.run(["/usr/sbin/nginx", "-t", "-p", f"{tmp_path}/", "-c", str(path), "-e", str(tmp_path / "e.log")],
                             check=False, capture_output=True, text=True, timeout=10)
    assert checked.returncode != 0 and f'invalid value "Bogus" in {path}:6' in checked.stderr, checked.stderr
    with pytest.raises(ConfigError) as info:
        translate(parse_config(str(path)))
    assert info.value.line == 6 and 'invalid value "Bogus"' in str(info.value)
