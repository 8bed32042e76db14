"""grpc_pass and grpc_* in the translator: nginx's defaults written out, inheritance, the gap levels,
and config errors compared with ``nginx -t``."""

from __future__ import annotations

from pathlib import Path

import pytest

from newproxy.config import LocationConfig, NewproxyConfig
from nginx_parser import parse_config
from tests.nginx_check import assert_same_verdict_as_nginx_t
from translator import translate
from translator.registry import classify

TEMPLATE = """events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
    uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
    upstream backend {{ server 127.0.0.1:50052; server 127.0.0.1:50053; }}
{http}
    server {{
        listen 127.0.0.1:18098 http2;
{server}
    }}
}}
"""


def _translate(tmp_path: Path, server: str, http: str = "") -> tuple[NewproxyConfig, dict[str, str]]:
    conf = tmp_path / "nginx.conf"
    conf.write_text(TEMPLATE.format(tmp=tmp_path, http=http, server=server))
    translation = translate(parse_config(str(conf)))
    levels = {f"{o.directive} {' '.join(o.args)}": o.level for o in translation.occurrences}
    return translation.config, levels


def _location(config: NewproxyConfig, path: str) -> LocationConfig:
    return next(loc for loc in config.servers[0].locations if loc.path == path)


def test_defaults_written_out(tmp_path: Path) -> None:
    config, levels = _translate(tmp_path, "location / { grpc_pass grpc://127.0.0.1:50051; }")
    proxy = _location(config, "/").proxy
    assert proxy is not None and proxy.protocol == "grpc" and proxy.tls is None
    assert proxy.proxy_host == "127.0.0.1:50051" and proxy.uri is None
    assert [(h.name, h.value) for h in proxy.headers] == [
        ("Content-Length", "$content_length"), ("TE", "$grpc_internal_trailers"), ("Host", ""), ("Connection", ""),
        ("Proxy-Connection", ""), ("Transfer-Encoding", ""), ("Keep-Alive", ""), ("Expect", ""), ("Upgrade", "")]
    assert "X-Pad" not in proxy.hide_headers and "Server" in proxy.hide_headers
    assert (proxy.read_timeout, proxy.next_upstream) == (60.0, ["error", "timeout"])
    assert config.upstream("127.0.0.1:50051").implicit
    assert levels["grpc_pass grpc://127.0.0.1:50051"] == "caveat"


def test_inherited_settings_tls_and_groups(tmp_path: Path) -> None:
    http = """    grpc_read_timeout 5s;
    grpc_set_header X-From http;"""
    server = """
        grpc_set_header Host api.example;
        grpc_hide_header X-Secret;
        grpc_pass_header Server;
        location /a/ { grpc_pass grpcs://127.0.0.1:50051; grpc_ssl_server_name on; grpc_ssl_name api.example;
                       grpc_ssl_protocols TLSv1.2 TLSv1.3; grpc_next_upstream error timeout invalid_header;
                       grpc_next_upstream_tries 3; grpc_intercept_errors on; grpc_connect_timeout 2s; }
        location /b/ { grpc_pass backend; grpc_send_timeout 7; }
    """
    config, levels = _translate(tmp_path, server, http)
    a = _location(config, "/a/").proxy
    assert a is not None and a.tls is not None
    assert (a.tls.server_name, a.tls.name, a.tls.protocols, a.tls.verify) == (
        True, "api.example", ["TLSv1.2", "TLSv1.3"], False)
    # grpc_set_header at server level replaces the http level's whole; Host takes :authority's place.
    assert a.proxy_host == "" and [h.name for h in a.headers][:2] == ["Host", "Content-Length"]
    assert "X-Secret" in a.hide_headers and "Server" not in a.hide_headers
    assert (a.read_timeout, a.connect_timeout, a.next_upstream, a.next_upstream_tries, a.intercept_errors) == (
        5.0, 2.0, ["error", "timeout", "invalid_header"], 3, True)
    b = _location(config, "/b/").proxy
    assert b is not None and b.upstream == "backend" and b.proxy_host == "" and b.send_timeout == 7.0
    assert levels["grpc_ssl_server_name on"] == "exact" and levels["grpc_ssl_protocols TLSv1.2 TLSv1.3"] == "caveat"


def test_gaps_are_reported(tmp_path: Path) -> None:
    config, levels = _translate(tmp_path, """
        location /v/ { grpc_pass grpc://$host:50051; }
        location /u/ { grpc_pass unix:/run/grpc.sock; }
        location /if/ { if ($http_x_grpc) { grpc_pass grpc://127.0.0.1:50051; } }
    """)
    assert levels["grpc_pass grpc://$host:50051"] == "unsupported" and _location(config, "/v/").proxy is None
    assert levels["grpc_pass unix:/run/grpc.sock"] == "unsupported"
    if_step = _location(config, "/if/").rewrite[0]
    assert if_step.kind == "if" and if_step.location is not None and if_step.location.proxy is not None
    assert if_step.location.proxy.protocol == "grpc"
    assert classify("grpc_ssl_crl").level == "unsupported"


@pytest.mark.parametrize("body", [
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_next_upstream error bogus; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_next_upstream_tries x; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_set_header X; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_ssl_protocols TLSv9; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_read_timeout 1q; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_next_upstream off; grpc_next_upstream_tries 2; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_ignore_headers X-Accel-Redirect Bogus; }",
    "location / { grpc_pass grpc://127.0.0.1:50051; grpc_ignore_headers X-Accel-Redirect Vary; }",
])
def test_config_errors_match_nginx(tmp_path: Path, body: str) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(TEMPLATE.format(tmp=tmp_path, http="", server=body))
    assert_same_verdict_as_nginx_t(conf, tmp_path)


def test_upstream_bytes_received_in_add_header_is_a_caveat_under_grpc_pass(tmp_path: Path) -> None:
    """newproxy's gRPC client does not count the frames read with the head: reported, not silent."""
    _, levels = _translate(tmp_path, """
        location /g { add_header X-B $upstream_bytes_received; grpc_pass grpc://backend; }
        location /h { add_header X-H $upstream_bytes_received; proxy_pass http://backend; }
        location /i { add_header X-A $upstream_addr; grpc_pass grpc://backend; }
""")
    assert levels["add_header X-B $upstream_bytes_received"] == "caveat"
    assert levels["add_header X-H $upstream_bytes_received"] != "caveat"
    assert levels["add_header X-A $upstream_addr"] != "caveat"


def test_upstream_byte_counts_in_a_log_format_are_a_caveat_on_grpc_pass(tmp_path: Path) -> None:
    """The access log's $upstream_bytes_* and $upstream_response_length are 0 for gRPC answers in
    newproxy (nginx counts the frames): each grpc_pass says so; proxy_pass does not."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(TEMPLATE.format(tmp=tmp_path, server="""
        location /g { grpc_pass grpc://backend; }
        location /h { proxy_pass http://backend; }
""", http='log_format counts "$request $upstream_bytes_sent ${upstream_response_length}"; access_log x.log counts;'))
    reasons = {o.directive: (o.level, o.reason) for o in translate(parse_config(str(conf))).occurrences}
    assert reasons["grpc_pass"] == ("caveat", "$upstream_bytes_sent, $upstream_response_length in the access log: 0 "
                                              "for a grpc_pass answer in newproxy (nginx counts the HTTP/2 frames "
                                              "read and sent)")
    assert "access log" not in reasons["proxy_pass"][1]
