"""$request_uri, $uri, $args and proxy_pass of an absolute-form request target, against real nginx 1.22.

nginx's unparsed URI of ``GET http://h?a`` starts at the "?" ($request_uri "?a") while $uri is "/"
(empty_path_in_uri), and such a URI is not a valid unparsed URI: proxy_pass without a URI part
sends "/?a", not "?a". ``http://h`` (no path, no query) is "/" for both. The cases vary the path,
query, port, scheme case, an IP literal, a trailing dot, userinfo (a 400) and an empty query, on
a server that returns the variables and one that proxies (with and without a URI part).
"""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONFIG = """
events {}
http {
    access_log off;
    upstream backend { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name vars.test;
        location / { return 200 "$request_uri|$uri|$args|$is_args|$host|$server_name\\n"; }
    }
    server {
        listen 8080;
        server_name proxy.test;
        location / { proxy_pass http://backend; }
        location /u/ { proxy_pass http://backend/with/uri/; }
    }
}
"""

TARGETS = ("http://{h}?a", "http://{h}", "http://{h}:8080?a=1&b", "http://{h}:8080", "http://{h}/x?y",
           "HTTP://{H}?Q=1", "Http://{h}/u/z?k", "http://{h}?a#frag", "http://{h}?", "https://{h}?s",
           "http://{h}./?dot", "http://{h}.?dot", "http://user@{h}/?a", "http://[::1]?v6", "http://{h}:8080/u/?p")


def _requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = []
    for name in ("vars.test", "proxy.test"):
        for template in TARGETS:
            target = template.format(h=name, H=name.upper())
            out.append(get(listen, target, "elsewhere.test", f"{target} HTTP/1.1"))
            out.append(get(listen, target, None, f"{target} HTTP/1.0", version="1.0"))
    return out


def test_absolute_form_targets_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG)
    report = shadow(str(conf), str(tmp_path / "run"), _requests, max_requests=0, guided=False)
    assert_equivalent(report, 4 * len(TARGETS))
    assert {"200", "400"} <= set(report.statuses), report.statuses
