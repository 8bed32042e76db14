"""ngx_http_rewrite_module against real nginx: rewrite, set, break, if, and the location search
that a rewrite restarts. Probes answer with $uri, $args and captures in the body, and the proxied
locations put the rewritten URI on the wire to the recording upstream, so both are compared.
"""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"

PATHS = [
    # server-level rewrites
    "/old/a", "/old/a?x=1", "/old/a%20b?x=1", "/gone/a?x=1", "/moved/a?x=1", "/moved/a", "/temp/a/b?q=2",
    "/ext/a/b", "/ext/a?x=1", "/extq/a?x=1", "/extq/a", "/extnoargs/a?x=1", "/scheme/a?x=1",
    "/ext/a%20b?x=1", "/ext/a;b%20c?x=1", "/extq/a%3B%3F%23?x", "/ext/a%2Fb", "/ext/a%3Fb?y", "/extq/a+b%20c?x=1", "/moved/%41%25?x", "/new/x?srv=stop",
    "/new/x?srv=go",
    # args
    "/args/keep/a", "/args/keep/a?x=1", "/args/replace/a", "/args/replace/a?y=2", "/args/drop/a?y=2",
    "/args/both/a?y=2", "/args/other?z", "/args/replace/a%20b?y=2", "/args/replace/a+b?y=2",
    "/args/replace/a%26b", "/args/keep/a%20b", "/args/replace/a;b%20c", "/args/replace/%7E%21%27%28%2A%3D%3B%2C",
    # chains, break, cycles
    "/chain/a?x=1", "/brk/a?x=1", "/brk/a%20b", "/brk2/x", "/brk3", "/brk3?b=1", "/brk3?c=1", "/brk3?b=1&c=1",
    "/loop/a", "/count/xxxxxxxxxdone", "/count/xxxxxxxxxxdone", "/count/xxxxxxxxxxxdone", "/count/done",
    # captures
    "/cap/one/two/three", "/cap/one/two?q=12-word", "/cap/one/two?q=x", "/cap/a%20b/c", "/cap2/a", "/cap3/a", "/cap3/a?a=x",
    # if conditions
    "/if/var", "/if/eq?a=one%20two", "/if/eq?a=abc", "/if/eq?a=x", "/if/eq",
    "/if/file", "/if/file?f=x", "/if/file?f=/", "/if/notfile", "/if/notfile?f=/hostname", "/if/exec",
    "/if/exec?f=x", "/if/nested", "/if/nested?a=1", "/if/nested?b=1", "/if/nested?a=1&b=1",
    "/set?x=5", "/set",
    # proxy_pass after rewrites
    "/px/last/a?x=1", "/px/brk/a?x=1", "/px/brk/a%20b", "/px/argbrk/a?y=2", "/px/plain%20x?y", "/px/plain?y",
    "/pxu/brk/a?x=1", "/pxu/nochange/a?x", "/pxu/other?x", "/pxl/a%20b?x", "/pxset/a?z=9", "/pxset/a",
    "/ifpx/a", "/ifpx/a?up=1", "/ifpx/a?hdr=1", "/ifpx/a?hdr=1&up=1", "/ifuri/a?s=1", "/ifuri/a",
    "/", "/anything?x=1",
]

HEADERS = [
    ("X-Flag", "1"), ("X-Flag", "0"), ("X-Flag", "yes"), ("X-Server-If", "1"),
    ("User-Agent", "Mozilla/5.0 (Linux; Android 10)"), ("User-Agent", "curl/8.1.2"), ("User-Agent", "somebot"),
    ("User-Agent", "GoodBot"), ("User-Agent", "iMobile"), ("User-Agent", "firefox"),
]


def rewrite_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = [get(listen, path, "rw.test", f"GET {path}") for path in PATHS]
    for name, value in HEADERS:
        for path in ("/if/var", "/if/re", "/old/a"):
            out.append(get(listen, path, "rw.test", f"{name}: {value} {path}", extra=((name, value),)))
    out.append(get(listen, "/old/a", "Other.Host:8080", "odd Host"))
    out.append(get(listen, "/moved/a", None, "HTTP/1.0 no Host redirect", version="1.0"))
    out.append(get(listen, "/temp/a", "rw.test", "HEAD redirect", method="HEAD"))
    return out


def test_rewrite_module_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "rewrite.conf"), str(tmp_path), rewrite_requests, max_requests=300)
    assert_equivalent(report, minimum=300)
