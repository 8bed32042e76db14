"""proxy_redirect, proxy_cookie_domain and proxy_cookie_path against real nginx.

The recording upstream answers with Location, Refresh and Set-Cookie headers chosen per request
(``/__header/NAME=VALUE`` markers in the query string, where nginx passes them through untouched
even to a proxy_pass with a URI part; ``__self__`` is the upstream's own address, as a backend
writes its redirects). The harness compares the client's headers exactly: a rewritten relative
Location is made absolute and moved after Content-Length by nginx's header filter, a Refresh keeps
its place, a rewritten Set-Cookie is written again from its parsed attributes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow
from tests.nginx_check import assert_same_verdict_as_nginx_t

DATA = Path(__file__).parent / "data" / "differential"


def marked(path: str, *headers: tuple[str, str]) -> str:
    return path + "?" + "".join(f"/__header/{name}={quote(value, safe='')}" for name, value in headers)


LOCATIONS = [
    "http://__self__/backend/x", "http://__self__/backend/", "http://__self__/backend", "http://__self__/other/y",
    "http://__self__/", "http://__self__/a/b?c=d", "http://backend/", "http://backend/in/deep/x?y",
    "http://backend/in/", "http://backend/exact-target", "http://backend/exact-target/z", "http://backend/o/p",
    "http://backend/i/q", "http://legacy.test/", "http://legacy.test/page?x=1", "HTTP://LEGACY.TEST/Caps",
    "http://legacy.test", "http://elsewhere.test/api/v1/users", "http://b/", "http://b/x/y", "/", "/rel/path",
    "relative", "", "http://backend/a/1", "http://backend/b/2", "http://backend/c/3", "https://backend/in/x",
    "http://x/deep/one/two/three", "http://backend/x/1?q",
]
REFRESHES = [
    "5; url=http://__self__/backend/x", "0;URL=http://backend/in/y", "3; Url=http://legacy.test/r", "10",
    "1; url=/rel", "2;url=http://elsewhere.test/api/z",
]
PREFIXES = ["/app/", "/plain/", "/pool/", "/pooluri/", "/exact", "/re/", "/off/", "/explicit/", "/regex/", "/both/",
            "/outer/", "/outer/inner/", "/cond/"]

COOKIES = [
    "a=1; Domain=backend.internal; Path=/",
    "b=2; domain=.BACKEND.Internal; path=/backend/x; HttpOnly",
    "c=3;Domain=other.internal;Path=/backend/",
    "d=4; Domain=.other.internal",
    "e=5; Domain=shop.regex.internal; Path=/api/Items",
    "f=6; Domain=SHOP.REGEX.INTERNAL; Path=/API/Items",
    "g=7; Domain=host.internal; Path=/Case/x",
    "h=8; Domain = backend.internal ; Path = /backend/y ; Secure",
    "i=9; Path=/uri/x; Domain=nomatch.internal",
    "j=10; Path=/case/x",
    "k; Domain=backend.internal",
    "=empty; Domain=backend.internal",
    "l=11; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Domain=backend.internal;; Max-Age=5",
    "m=12; Domain=notbackend.internal; Path=/backendx",
    "n=13; Domain; Path",
    "o=14",
]


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for prefix in PREFIXES:
        for i, location in enumerate(LOCATIONS):
            path = marked(f"{prefix}{'' if prefix.endswith('/') else '/'}l{i}", ("Location", location))
            extra = "&x=1" if prefix == "/cond/" and i % 2 else ""
            out.append(get(listen, path + extra, "redirect.test", f"{prefix} Location {location!r}"))
        for i, refresh in enumerate(REFRESHES):
            path = marked(f"{prefix}{'' if prefix.endswith('/') else '/'}r{i}", ("Refresh", refresh))
            out.append(get(listen, path, "redirect.test", f"{prefix} Refresh {refresh!r}"))
        # Two Location headers and a Refresh in one answer.
        both = marked(f"{prefix}{'' if prefix.endswith('/') else '/'}two", ("Location", "http://backend/in/1"),
                      ("Refresh", "1; url=http://backend/x"), ("Location", "http://legacy.test/2"))
        out.append(get(listen, both, "redirect.test", f"{prefix} two Locations"))
    # No Host header (HTTP/1.0): the absolute Location names the local address.
    out.append(get(listen, marked("/app/nohost", ("Location", "http://__self__/backend/z")), None, "no Host",
                   version="1.0"))
    out.append(get(listen, marked("/app/host-port", ("Location", "http://__self__/backend/z")), "Redirect.Test:8080",
                   "Host with a port"))
    for host in ("inherit.test", "off.test"):
        for prefix in ("/a/", "/b/", "/c/"):
            for location in ("http://legacy.test/x", "http://backend/a/y", "http://backend/b/z", "http://backend/c/w"):
                out.append(get(listen, marked(f"{prefix}x", ("Location", location)), host,
                               f"{host}{prefix} Location {location}"))
            cookie = marked(f"{prefix}ck", ("Set-Cookie", "s=1; Domain=backend.internal; Path=/"))
            out.append(get(listen, cookie, host, f"{host}{prefix} cookie"))
    for prefix in ("/", "/paths-only/", "/no-rules/", "/uri/"):
        for i, cookie in enumerate(COOKIES):
            out.append(get(listen, marked(f"{prefix}c{i}", ("Set-Cookie", cookie)), "cookie.test",
                           f"{prefix} Set-Cookie {cookie!r}"))
        several = marked(f"{prefix}several", *(("Set-Cookie", c) for c in COOKIES[:5]))
        out.append(get(listen, several, "cookie.test", f"{prefix} several Set-Cookie"))
    return out


def test_redirects_and_cookies_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "redirect_cookies.conf"), str(tmp_path), requests, max_requests=0, probe=0.002)
    expected = len(PREFIXES) * (len(LOCATIONS) + len(REFRESHES) + 1) + 2 + 2 * 3 * 5 + 4 * (len(COOKIES) + 1)
    assert_equivalent(report, minimum=expected)
    assert report.noted == 0, report.note_kinds  # header order too: where a rewritten Location goes


CONFIG_CASES = [
    "location /a/ { proxy_redirect default; proxy_pass http://127.0.0.1:1/b/; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/b/; proxy_redirect default; }",
    "location /a/ { set $u http://127.0.0.1:1; proxy_pass $u; proxy_redirect default; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_redirect off; proxy_redirect / /x/; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_redirect / /x/; proxy_redirect off; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_redirect foo; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_redirect ~^/(.*) /x/$1; proxy_redirect default; }",
    "proxy_redirect default; location /a/ { proxy_pass http://127.0.0.1:1/; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_cookie_domain foo; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_cookie_domain off; proxy_cookie_domain a b; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_cookie_path / /x/; proxy_cookie_path off; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_cookie_path off; }",
    "location /a/ { proxy_pass http://127.0.0.1:1/; proxy_cookie_domain ~^a b; proxy_cookie_path ~*^/A /b; }",
]


@pytest.mark.parametrize("body", CONFIG_CASES)
def test_config_errors_like_nginx_t(body: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    access_log off;\n    server {\n        listen 127.0.0.1:18098;\n"
                    f"        {body}\n    }}\n}}\n")
    assert_same_verdict_as_nginx_t(conf, tmp_path)
