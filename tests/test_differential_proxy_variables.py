"""proxy_pass with variables against real nginx: the URL evaluated per request.

Its host names an upstream block (``$scheme://backend``, ``http://$arg_to``), a group made for a
literal proxy_pass (same host and port: its round-robin state is shared), an IP address (tried
alone), or a name: without ``resolver`` a 502, with one (a tiny DNS responder on loopback UDP,
tests/dns_responder.py) the name's address, NXDOMAIN and a silent server (resolver_timeout) being
502s; answers are cached (``valid=``: one question per target). A URL with its own URI part sends
it exactly as evaluated; bad URLs (no scheme, no host, bad port) are 500s. The recording upstreams
listen on the very ports the config names (``upstream_binds``), so a URL built from request data
reaches them unrewired (the run is allowed with allow_unsafe: every address is on loopback)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan, access_log_name
from shadow.traffic import Request
from shadow.runner import free_ports
from tests.differential import assert_equivalent, get, shadow
from tests.dns_responder import A, DnsResponder

CONFIG = """
events {}
http {
    log_format up '$upstream_addr|$upstream_status|$status|$request';
    access_log logs/up.log up;
    upstream backend {
        server 127.0.0.1:%(p1)d;
        server 127.0.0.1:%(p2)d;
    }
    server {
        listen 8080;
        server_name var.test;
        location /static/ { proxy_pass http://127.0.0.1:%(p2)d; }
        location /scheme/ { proxy_pass $scheme://backend; }
        location /arg/ { proxy_pass http://$arg_to; }
        location /arguri/ { proxy_pass http://$arg_to/fixed$uri?x=$arg_x; }
        location /qonly/ { proxy_pass http://$arg_to?only=$arg_x; }
        location /header/ { proxy_pass http://$http_x_backend; proxy_set_header X-Proxy-Host $proxy_host; }
        location /url/ { proxy_pass $arg_url; }
        location ~ ^/re/(?<rest>.*)$ { proxy_pass http://127.0.0.1:%(p1)d/r/$rest; }
        location /dns/ {
            resolver 127.0.0.1:%(dns)d valid=30s;
            resolver_timeout 400ms;
            proxy_pass http://$arg_to;
        }
    }
}
"""


def _free_ports(n: int) -> list[int]:
    return free_ports(n)  # (below the ephemeral range: shadow/runner.py)


def requests_for(p1: int, p2: int):  # type: ignore[no-untyped-def]
    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        targets = [
            "/static/s1", "/scheme/a", "/scheme/b?q=1", "/scheme/c",
            "/arg/x?to=backend", "/arg/y?to=BACKEND", "/arg/x?to=backend:80", f"/arg/lit?to=127.0.0.1:{p1}",
            f"/arg/implicit?to=127.0.0.1:{p2}", "/static/s2", f"/arg/implicit2?to=127.0.0.1:{p2}",
            f"/arg/name?to=localhost:{p1}", "/arg/empty?to=", f"/arg/badport?to=127.0.0.1:{p1}99",
            "/arg/colon?to=127.0.0.1:", f"/arg/v6?to=[::1]:{p1}", "/arg/none",
            f"/arguri/a%20b/c?to=127.0.0.1:{p1}&x=1", "/arguri/d?to=backend&x=%41",
            f"/qonly/q?to=127.0.0.1:{p1}&x=2",
            f"/url/1?url=http://127.0.0.1:{p1}/u/v", f"/url/2?url=HTTP://127.0.0.1:{p1}",
            "/url/3?url=ftp://backend/", "/url/4?url=backend", "/url/5?url=http://backend/w?z=1",
            "/url/6?url=http://", "/url/7?url=http://unix:/nonexistent.sock:/x",
            "/re/one/two?k=v", "/re/%7Euser",
            f"/dns/a?to=app.test:{p1}", f"/dns/b?to=APP.test:{p1}", f"/dns/c?to=app.test:{p1}",
            f"/dns/d?to=missing.test:{p1}", f"/dns/e?to=slow.test:{p1}", "/dns/f?to=backend",
            f"/dns/g?to=127.0.0.1:{p2}", f"/dns/h?to=two.test:{p1}",
            # no default proxy_redirect with variables: the upstream's absolute Location stays
            f"/arg/__header/Location=http%3A%2F%2F__self__%2Floc/r?to=127.0.0.1:{p1}",
        ]
        out: list[Request] = []
        for target in targets:
            out.append(get(listen, target, "var.test", f"GET {target.split('?')[0]}"))
        out.append(get(listen, "/header/h", "var.test", "header names the backend", extra=(("X-Backend", "backend"),)))
        out.append(get(listen, "/header/i", "var.test", "header names an address",
                       extra=(("X-Backend", f"127.0.0.1:{p2}"),)))
        out.append(get(listen, "/header/j", "var.test", "HEAD, default port", method="HEAD",
                       extra=(("X-Backend", "backend:80"),)))
        out.append(Request(method="POST", target=f"/arg/post?to=127.0.0.1:{p1}",
                           headers=(("Host", "var.test"), ("Content-Length", "3")), listen=listen,
                           group="hand-picked", label="POST to an address", body=b"abc"))
        return out
    return requests


def test_proxy_pass_with_variables_matches_nginx(tmp_path: Path) -> None:
    p1, p2 = _free_ports(2)
    with DnsResponder({"app.test": ["127.0.0.1"], "two.test": ["127.0.0.1", "127.0.0.2"]},
                      silent=frozenset({"slow.test"})) as dns:
        conf = tmp_path / "nginx.conf"
        conf.write_text(CONFIG % {"p1": p1, "p2": p2, "dns": dns.port})
        binds = {f"127.0.0.1:{p}": ("127.0.0.1", p) for p in (p1, p2)}
        report = shadow(str(conf), str(tmp_path / "run"), requests_for(p1, p2), max_requests=0, guided=False,
                        allow_unsafe=True, upstream_binds=binds, shrink=0)
        questions = list(dns.questions)
    assert_equivalent(report, minimum=40)
    assert {"200", "500", "502"} <= set(report.statuses), report.statuses
    log = access_log_name("logs/up.log")
    ours = (tmp_path / "run" / "newproxy" / log).read_text().splitlines()
    theirs = (tmp_path / "run" / "nginx" / log).read_text().splitlines()
    mismatched = [(a, b) for a, b in zip(theirs, ours) if a != b]
    assert not mismatched and len(ours) == len(theirs), mismatched[:10]
    # valid=30s: each target asked once for app.test (three requests each), whatever the case.
    assert questions.count(("app.test", A)) == 2, questions
