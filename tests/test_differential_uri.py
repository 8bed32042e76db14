"""Odd request targets against real nginx 1.22 (asked over a raw socket by the harness): '#', %00,
bad escapes, dot segments, merge_slashes off, absolute-form targets, bytes outside ASCII. The probes
echo $uri, $args and $request_uri; the proxied locations show what goes upstream.

Raw bytes >= 0x80 in the target ("/\xe9", served by nginx) are compared byte for byte by the raw
corpus (shadow/data/h1_corpus.yaml, tests/test_h1_raw_corpus.py)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"

TARGETS = [
    "/a#b", "/a#b?c=d", "/a?b#c", "/#", "/a%23b", "/a%00b", "/a%2", "/a%", "/a%zz", "/a%2g", "/a%2F%2e%2E/b",
    "/a/../../b", "/..", "/a/..", "/a/.", "/a/./", "/a//b///c", "//", "/%2e%2e/", "/a/%2e%2e", "/a/%2E/b",
    "/a%2fb", "/a+b", "/a%20b", "/a%7e%7E", "/%C3%A9", "/a\x7fb", "/a;b=c", "/a?", "/a??b", "/a?b?c",
    "http://uri.test/abs?x=1", "http://UrI.TeSt:8080/abs", "https://uri.test/tls", "http://uri.test",
    "HTTP://uri.test/upper-scheme", "http://user@uri.test/userinfo", "http://uri.test/a/../b", "ftp://uri.test/x",
    "http://[::1]/v6", "http:///nohost", "*", "a/relative", "/a\\b", "/a/b/..%2F..%2Fc",
]


def uri_requests(plan: Plan) -> list[Request]:
    out = []
    for listen in plan.listens:
        host = "uri.test" if listen.endswith("8080") else "noms.test"
        for target in TARGETS:
            out.append(get(listen, target, host, f"{target!r} on {listen}"))
            if target.startswith("/"):
                for prefix in ("/px", "/pxu"):
                    out.append(get(listen, prefix + target, host, f"{prefix}{target!r} on {listen}"))
        for target in ("/w/abc", "/w/%E9", "/w/a%C3%A9", "/w/%B2", "/w/%AA", "/ci/X%E9", "/ci/x%C9", "/ci/x%E9"):
            out.append(get(listen, target, host, f"{target!r} on {listen}"))
        for target in ("//double/x", "/double//x", "//px//a", "/px//a/../b", "/pxu//a"):
            out.append(get(listen, target, host, f"{target!r} on {listen}"))
    return out


def test_odd_targets_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "uri.conf"), str(tmp_path), uri_requests, max_requests=100)
    assert_equivalent(report, minimum=300)
