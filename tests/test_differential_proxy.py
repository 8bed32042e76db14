"""proxy_pass against real nginx: the upstream request (URI, headers, body, which peer) and the response.

The recording upstreams echo what they received, and the harness compares their recordings too, so
a wrong URI, a lost or extra header or a different peer choice is a difference.
"""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def proxy_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    paths = ["/plain/a?b=1", "/plain/a%20b/%2e%2e/c", "/plain//double", "/with-uri/x/y?q", "/with-uri/a%3Fb",
             "/with-uri", "/no-slash", "/no-slashy/z", "/exact", "/exact?x", "/re/a/b?c=d", "/headers/h?x=1"]
    for path in paths:
        out.append(get(listen, path, "proxy.test", f"GET {path}"))
    # Round robin over a weighted pool with a down peer: the sequence of peers must match.
    for i in range(12):
        out.append(get(listen, f"/pool/{i}", "proxy.test", f"pool #{i}"))
        out.append(get(listen, f"/v11/{i}", "proxy.test", f"keep-alive pool #{i}"))
    # One refusing peer in a group: retries and failure marking must match.
    for i in range(8):
        out.append(get(listen, f"/flaky/{i}", "proxy.test", f"flaky #{i}"))
    hop = (("Connection", "keep-alive, X-Drop"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
           ("Upgrade", "h2c"), ("Expect", "100-continue"), ("X-Forwarded-For", "10.0.0.1"),
           ("Proxy-Connection", "keep-alive"), ("X-Drop", "1"), ("Cookie", "a=1"), ("Cookie", "b=2"))
    out.append(get(listen, "/headers/hop", "proxy.test", "hop-by-hop and repeated headers", extra=hop))
    out.append(get(listen, "/plain/hop", "proxy.test", "hop-by-hop headers, defaults", extra=hop))
    out.append(Request(method="POST", target="/nobody/x",
                       headers=(("Host", "proxy.test"), ("Content-Length", "3"), ("X-A", "1")),
                       listen=listen, group="hand-picked", label="client headers not passed", body=b"abc"))
    for size, where in ((60, "/plain/post"), (65, "/plain/post"), (900, "/big/post"), (1100, "/big/post")):
        out.append(Request(method="POST", target=where, headers=(("Host", "proxy.test"), ("Content-Length", str(size))),
                           listen=listen, group="hand-picked", label=f"POST {size} bytes to {where}", body=b"x" * size))
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    out.append(Request(method="POST", target="/plain/chunked",
                       headers=(("Host", "proxy.test"), ("Transfer-Encoding", "chunked")), listen=listen,
                       group="hand-picked", label="chunked POST", body=chunked))
    for version in ("1.0", "1.1"):
        out.append(get(listen, "/plain/v", "proxy.test", f"HTTP/{version}", version=version))
        out.append(get(listen, "/plain/v", "proxy.test", f"HTTP/{version} keep-alive", version=version,
                       extra=(("Connection", "keep-alive"),)))
        out.append(get(listen, "/plain/v", "proxy.test", f"HTTP/{version} close", version=version,
                       extra=(("Connection", "close"),)))
    return out


def test_proxy_pass_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "proxy.conf"), str(tmp_path), proxy_requests, max_requests=250,
                    refuse=frozenset({"127.0.0.1:9202"}))
    assert_equivalent(report, minimum=250)
