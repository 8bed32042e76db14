"""proxy_buffers, proxy_busy_buffers_size, proxy_temp_file_write_size and proxy_max_temp_file_size
against `nginx -t`: the translator refuses the combinations nginx refuses, with nginx's words, and
accepts the others. nginx checks most of them when it merges the location and names the http
block's end; the translator names the directive at fault (the location's line here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nginx_check import assert_same_verdict_as_nginx_t

TEMPLATE = """events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
    uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
    server {{
        listen 127.0.0.1:18099;
        location / {{ {body} proxy_pass http://127.0.0.1:1; }}
    }}
}}
"""
LOCATION_LINE = 8
CASES = [
    "proxy_buffers 8 8k;",
    "proxy_buffers 2 4k;",  # the default busy size (2 x 4k) is not below one buffer less than all
    "proxy_buffers 3 4k;",
    "proxy_buffers 1 4k;",
    "proxy_buffers 0 4k;",
    "proxy_buffers 4 0;",
    "proxy_buffers 4 4x;",
    "proxy_buffers 4;",
    "proxy_busy_buffers_size 2k;",
    "proxy_buffers 4 4k; proxy_busy_buffers_size 12k;",
    "proxy_buffers 4 4k; proxy_busy_buffers_size 13k;",
    "proxy_buffer_size 64k;",
    "proxy_buffer_size 16k; proxy_buffers 8 16k;",
    "proxy_temp_file_write_size 1k;",
    "proxy_temp_file_write_size 64k;",
    "proxy_max_temp_file_size 1k;",
    "proxy_max_temp_file_size 0;",
    "proxy_max_temp_file_size 4k;",
    "proxy_max_temp_file_size 2g;",  # a size, not an offset: no g
    "proxy_max_temp_file_size 2048m;",
]


@pytest.mark.parametrize("body", CASES)
def test_proxy_buffer_settings_like_nginx_t(body: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(TEMPLATE.format(tmp=tmp_path, body=body))
    assert_same_verdict_as_nginx_t(conf, tmp_path, our_line=LOCATION_LINE)
