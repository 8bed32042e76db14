"""An upstream keep-alive connection is reused after an HTTP/1.1 answer and closed after an HTTP/1.0
one, even one saying ``Connection: keep-alive`` (nginx's ngx_http_proxy_process_status marks any
answer below 1.1 connection_close), against real nginx: the recording upstream's connection
numbers show which requests went on a reused connection, and they must match nginx's (newproxy
reads the version off the status line it received, without asking llhttp)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    upstream kept { server 127.0.0.1:9001; keepalive 4; }
    server {
        listen 8080;
        server_name version.test;
        location /kept/ { proxy_pass http://kept; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
"""

TARGETS = (
    ("/kept/a", "a first answer, HTTP/1.1: a new connection"),
    ("/kept/b", "HTTP/1.1 again: the connection is reused"),
    ("/kept/__http10/c", "an HTTP/1.0 keep-alive answer on it"),
    ("/kept/d", "after it: a new connection"),
    ("/kept/e", "HTTP/1.1: reused"),
    ("/kept/__http10/__chunked/f", "HTTP/1.0, chunked, on a reused connection"),
    ("/kept/g", "a new connection again"),
)


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    return [get(listen, target, "version.test", label) for target, label in TARGETS]


def test_upstream_connection_kept_after_http11_and_closed_after_http10_like_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF)
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0)
    assert_equivalent(report, minimum=len(TARGETS))
    # Reuse is a note in the comparison, not a difference (a pool's behaviour): here it is the point.
    assert "upstream.reused_connection" not in report.note_kinds, report.note_kinds
    # nginx's own pattern (what the comparison above holds newproxy to): b, c, e and f went on a
    # reused connection; d and g on new ones, each after an HTTP/1.0 answer.
    assert (report.upstream_requests, report.upstream_reused) == (len(TARGETS), 4), \
        (report.upstream_requests, report.upstream_reused)
