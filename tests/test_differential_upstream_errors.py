"""error_page applied to the statuses newproxy's upstream client makes (502 when the peer refuses,
504 when it does not answer within proxy_read_timeout),
against real nginx: a URI (with args), =code, =, a named location, a URL, a second proxied upstream
behind the page, a page that fails again, a page for another status, 444 behind the page, and a
server-level error_page. And proxy_intercept_errors: upstream error statuses (the recording
upstream answers NNN for a URI with /__status/NNN) replaced by the location's error_page, inherited
or not, =code, a URL, a named location, and a page that meets an intercepted error again; an
intercepted 401 carries the upstream's first WWW-Authenticate over to each kind of page."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = []
    for prefix in ("plain", "uri", "uri-args", "code", "equals", "named", "named-code", "url", "url-code", "again",
                   "other-code", "close"):
        for target in (f"/{prefix}/x", f"/{prefix}/y?q=1"):
            for method in ("GET", "HEAD", "DELETE"):
                out.append(get(listen, target, "up.test", f"{method} {target}", method=method))
        out.append(Request(method="POST", target=f"/{prefix}/p", headers=(("Host", "up.test"), ("Content-Length", "3")),
                           listen=listen, group="hand-picked", label=f"POST /{prefix}/p", body=b"abc"))
        out.append(get(listen, f"/{prefix}/v", "up.test", f"HTTP/1.0 /{prefix}/v", version="1.0"))
    for target in ("/", "/x?y=1"):
        out.append(get(listen, target, "srv.test", f"server-level page {target}"))
    for target in ("/slow/__delay/500/x", "/slow-plain/__delay/500/x", "/slow/__delay/0/x?q=1"):
        out.append(get(listen, target, "up.test", f"read timeout {target}"))
    for prefix in ("i", "noint", "inherit", "code", "again", "i2"):
        for status in ("503", "500", "502", "404", "403"):
            for method in ("GET", "HEAD"):
                target = f"/{prefix}/__status/{status}/x?a=1"
                out.append(get(listen, target, "icpt.test", f"intercept {method} {target}", method=method))
        out.append(Request(method="POST", target=f"/{prefix}/__status/503/p",
                           headers=(("Host", "icpt.test"), ("Content-Length", "3")), listen=listen,
                           group="hand-picked", label=f"intercept POST /{prefix}", body=b"abc"))
        out.append(get(listen, f"/{prefix}/ok", "icpt.test", f"intercept, upstream 200 /{prefix}"))
    two = "/__header/WWW-Authenticate=Basic%20realm%3D%22one%22/__header/WWW-Authenticate=Bearer"
    for prefix in ("a401", "a401code", "a401named", "a401url", "a401proxy", "i"):
        for challenges in (two, ""):
            for method in ("GET", "HEAD"):
                target = f"/{prefix}/__status/401{challenges}/x"
                out.append(get(listen, target, "icpt.test", f"intercepted 401 {method} {target}", method=method))
    return out


def test_error_page_after_upstream_failure_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "upstream_errorpages.conf"), str(tmp_path), requests, max_requests=0,
                    refuse=frozenset({"127.0.0.1:9301"}))
    assert_equivalent(report, minimum=12 * 8 + 2 + 3 + 6 * 12 + 6 * 4)
    assert {"200", "301", "302", "404", "502", "503", "504"} <= set(report.statuses), report.statuses
