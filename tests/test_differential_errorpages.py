"""error_page and internal locations against real nginx: every target kind, =code and =, internal
redirects (server rewrites again, GET, $request_uri kept), named locations, proxying targets, the
500 of a rewrite cycle, and no second error_page (recursive_error_pages off)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def error_page_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = []
    for path in ("/a", "/a?q=1", "/b", "/c", "/d", "/e", "/f", "/g", "/h?x=1", "/i", "/j", "/k?y=2", "/l", "/m",
                 "/errors/direct", "/proxied/direct", "/nowhere-internal", "/unknown/path", "/srv-rewritten",
                 "/a%20b"):
        for method in ("GET", "HEAD", "DELETE"):
            out.append(get(listen, path, "err.test", f"{method} {path}", method=method))
    out.append(Request(method="POST", target="/h", headers=(("Host", "err.test"), ("Content-Length", "3")),
                       listen=listen, group="hand-picked", label="POST to a proxied error page", body=b"abc"))
    out.append(Request(method="POST", target="/k", headers=(("Host", "err.test"), ("Content-Length", "3")),
                       listen=listen, group="hand-picked", label="POST to a proxied named location", body=b"abc"))
    for path in ("/intproxy", "/intproxy/", "/intproxy?x=1"):
        out.append(get(listen, path, "err.test", f"internal proxied location {path}"))
    for size in (5, 50):
        out.append(Request(method="POST", target="/small/x", headers=(("Host", "err.test"), ("Content-Length", str(size))),
                           listen=listen, group="hand-picked", label=f"POST {size} bytes, error_page 413",
                           body=b"x" * size))
    return out


def test_error_page_and_internal_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "errorpages.conf"), str(tmp_path), error_page_requests, max_requests=120)
    assert_equivalent(report, minimum=150)
