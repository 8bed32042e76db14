"""Upstream blocks nginx rejects (balancing methods, server parameters), against `nginx -t`: the
parser must reject the same configs with nginx's message at nginx's line, and accept the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nginx_check import assert_same_verdict_as_nginx_t

TEMPLATE = """events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
    uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
    upstream u {{
{body}
    }}
    server {{ listen 127.0.0.1:18099; location / {{ proxy_pass http://u; }} }}
}}
"""
CASES = [
    "hash $uri; server 127.0.0.1:1 backup;",
    "server 127.0.0.1:2; server 127.0.0.1:1 backup; hash $uri;",  # backup before the method: accepted
    "server 127.0.0.1:1 backup; hash $uri;",  # only backups: no servers
    "least_conn; server 127.0.0.1:1 backup;",
    "least_conn; server 127.0.0.1:2; server 127.0.0.1:1 backup;",
    "ip_hash; server 127.0.0.1:1 backup;",
    "random; server 127.0.0.1:1 backup;",
    "random two; server 127.0.0.1:1 backup;",
    "hash $uri consistent; server 127.0.0.1:1 backup; server 127.0.0.1:2;",
    "hash $uri foo; server 127.0.0.1:1;",
    "hash $uri consistent; server 127.0.0.1:1;",
    "random two foo; server 127.0.0.1:1;",
    "random foo; server 127.0.0.1:1;",
    "random two least_conn; server 127.0.0.1:1;",
    "random two least_conn x; server 127.0.0.1:1;",
    "ip_hash x; server 127.0.0.1:1;",
    "hash; server 127.0.0.1:1;",
    "server 127.0.0.1:1 weight=0;",
    "server 127.0.0.1:1 weight=x;",
    "server 127.0.0.1:1 max_conns=x;",
    "server 127.0.0.1:1 max_conns=0; server 127.0.0.1:2 max_conns=3 down;",
    "ip_hash; server 127.0.0.1:1 down; server 127.0.0.1:2 weight=2 max_conns=1;",
    "zone z 64k; least_conn; server 127.0.0.1:1;",
]


@pytest.mark.parametrize("body", CASES)
def test_upstream_errors_like_nginx_t(body: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(TEMPLATE.format(tmp=tmp_path, body="        " + body))
    assert_same_verdict_as_nginx_t(conf, tmp_path)
