"""The core variables against real nginx: a probe echoes them for requests with odd arguments,
cookies, repeated headers, absolute-form targets and HTTP/1.0."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def variable_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = []
    targets = ["/", "/a%20b/c?x=1", "/p?a=1&a=2", "/p?A=up&a=low", "/p?a", "/p?a=", "/p?=v&a=3", "/p?b_c=1&b-c=2",
               "/p?a=%20x+y", "/p?", "/p?&&a=4&", "/%7Euser/./x/../y?z", "http://Alias.Test/abs?a=1",
               "http://other.test:9999/abs2"]
    for target in targets:
        out.append(get(listen, target, "vars.test", f"GET {target}"))
    cookies = [(("Cookie", "sid=1; x=2"),), (("Cookie", "SID=up"), ("Cookie", "sid=low")), (("Cookie", "a=1;sid=2 ;x"),),
               (("Cookie", "x=1, sid=3"),), (("Cookie", ""),)]
    for i, extra in enumerate(cookies):
        out.append(get(listen, "/c", "vars.test", f"cookies {i}", extra=extra))
    repeated = [(("X-One", "a"), ("X-One", "b")), (("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")),
                (("x-one", "lower"),), (("X-One", ""),), (("Content-Type", "text/x; a=b"),)]
    for i, extra in enumerate(repeated):
        out.append(get(listen, "/h", "vars.test", f"headers {i}", extra=extra))
    out.append(get(listen, "/v10", None, "HTTP/1.0 without Host", version="1.0"))
    out.append(get(listen, "/host", "VARS.test:8080", "Host with case and port"))
    out.append(get(listen, "/host", "[::1]:8080", "IPv6 Host"))
    out.append(Request(method="POST", target="/post?q", headers=(("Host", "vars.test"), ("Content-Length", "3"),
                       ("Content-Type", "application/json")), listen=listen, group="hand-picked", label="POST",
                       body=b"abc"))
    chunked = b"4\r\nab=c\r\n5\r\n&d=ef\r\n0\r\n\r\n"
    for where in ("/px/chunked?a=1", "/chunked"):
        out.append(Request(method="POST", target=where, headers=(("Host", "vars.test"), ("Transfer-Encoding", "chunked"),
                           ("Cookie", "SID=9")), listen=listen, group="hand-picked", label=f"chunked {where}",
                           body=chunked))
        out.append(Request(method="POST", target=where, headers=(("Host", "vars.test"), ("Content-Length", "3")),
                           listen=listen, group="hand-picked", label=f"length {where}", body=b"abc"))
    return out


def test_core_variables_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "variables.conf"), str(tmp_path), variable_requests, max_requests=60)
    assert_equivalent(report, minimum=80)
