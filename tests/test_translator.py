"""translator: defaults written out, inheritance as nginx merges it, every occurrence reported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginx_parser import ConfigError, parse_config
from translator import translate
from translator.registry import RULES, classify

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basic" / "nginx.conf"


def conf(tmp_path: Path, http_body: str) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def test_default_proxy_headers_are_explicit(tmp_path: Path) -> None:
    path = conf(tmp_path, "server { listen 80; location / { proxy_pass http://127.0.0.1:9000; } }")
    proxy = translate(parse_config(str(path))).config.servers[0].locations[0].proxy
    assert proxy is not None
    assert [(h.name, h.value) for h in proxy.headers][:2] == [("Host", "$proxy_host"), ("Connection", "close")]
    assert proxy.http_version == "1.0" and proxy.uri is None and proxy.proxy_host == "127.0.0.1:9000"


def test_array_directives_inherit_only_when_the_child_has_none(tmp_path: Path) -> None:
    path = conf(tmp_path, """
        proxy_set_header X-From http;
        server { listen 80;
          location /a { proxy_pass http://127.0.0.1:9000; }
          location /b { proxy_set_header X-Only b; proxy_pass http://127.0.0.1:9000; }
        }""")
    locations = translate(parse_config(str(path))).config.servers[0].locations
    names_a = [h.name for h in locations[0].proxy.headers]  # type: ignore[union-attr]
    names_b = [h.name for h in locations[1].proxy.headers]  # type: ignore[union-attr]
    assert "X-From" in names_a and "X-Only" not in names_a
    assert "X-Only" in names_b and "X-From" not in names_b


def test_user_headers_come_before_the_defaults_they_do_not_override(tmp_path: Path) -> None:
    path = conf(tmp_path, "server { location / { proxy_set_header X-A 1; proxy_set_header Host $host;"
                          " proxy_pass http://u; } } upstream u { server 127.0.0.1:1; }")
    proxy = translate(parse_config(str(path))).config.servers[0].locations[0].proxy
    assert [h.name for h in proxy.headers][:3] == ["X-A", "Host", "Connection"]  # type: ignore[union-attr]


def test_every_occurrence_is_reported_once_with_its_line(tmp_path: Path) -> None:
    path = conf(tmp_path, "ssi on;\n  server { listen 80; foo_unknown 1; location / { return 200; } }")
    translation = translate(parse_config(str(path)))
    by_name = {o.directive: o for o in translation.occurrences}
    assert by_name["ssi"].level == "unsupported" and by_name["ssi"].line == 3
    assert by_name["foo_unknown"].level == "unknown" and by_name["foo_unknown"].line == 4
    assert by_name["return"].level == "exact"
    total = sum(1 for _ in parse_config(str(path)).all_directives())
    assert len(translation.occurrences) == total


def test_untranslatable_forms_are_gaps_not_silent(tmp_path: Path) -> None:
    # (listen ... ssl is translated since TLS landed: tests/test_differential_tls.py; http2 since the
    # HTTP/2 front end: tests/test_differential_h2.py; unix sockets are not yet.)
    # (proxy_pass with variables is translated since the resolver landed; one newproxy lacks is a gap.)
    path = conf(tmp_path, "server { listen unix:/tmp/x.sock; listen 80; location / { proxy_pass http://$geoip_country_code; } }")
    translation = translate(parse_config(str(path)))
    levels = [(o.directive, o.args[0], o.level) for o in translation.occurrences if o.args]
    assert ("listen", "unix:/tmp/x.sock", "unsupported") in levels and ("listen", "80", "exact") in levels
    assert ("proxy_pass", "http://$geoip_country_code", "unsupported") in levels
    assert [l.port for l in translation.config.servers[0].listen] == [80]


def test_proxy_pass_uri_in_regex_location_is_a_config_error(tmp_path: Path) -> None:
    path = conf(tmp_path, "server {\n location ~ /x { proxy_pass http://127.0.0.1:9/y; } }")
    with pytest.raises(ConfigError) as info:
        translate(parse_config(str(path)))
    assert info.value.line == 4


def test_exact_rules_are_only_claimed_for_directives_the_translator_reads() -> None:
    root = Path(__file__).resolve().parent.parent
    translator_source = "".join(path.read_text() for path in sorted((root / "translator").glob("*.py"))
                                if path.name != "registry.py")
    # Blocks, listen and server_name are typed by the parser's IR builder, then read by the translator.
    source = translator_source + (root / "nginx_parser" / "build.py").read_text()
    for name, rule in RULES.items():
        if rule.level == "exact":
            assert f'"{name}"' in source, f"registry claims {name} exact but nothing reads it"
    assert classify("ssi").level == "unsupported"
    assert classify("more_set_headers").level == "unsupported"
    assert "third-party" in classify("more_set_headers").reason
    assert classify("no_such_directive_anywhere").level == "unknown"


def test_example_translates_without_unsupported_directives() -> None:
    translation = translate(parse_config(str(EXAMPLE)))
    assert translation.count("unsupported", "unknown") == 0


def test_http2_listens_and_settings_are_translated(tmp_path: Path) -> None:
    """listen ... http2 (with and without ssl) is carried with nginx 1.22's http_v2 settings; the
    directives nginx 1.22 itself ignores as obsolete are reported as ignored, server push as a gap."""
    path = conf(tmp_path, "http2_max_concurrent_streams 64; http2_idle_timeout 10s; http2_push_preload on;\n"
                          "server { listen 127.0.0.1:8080 http2; listen 8081; http2_chunk_size 16k;\n"
                          "  http2_body_preread_size 128k; http2_max_field_size 8k; location / { return 200; } }")
    translation = translate(parse_config(str(path)))
    server = translation.config.servers[0]
    assert [(l.port, l.http2) for l in server.listen] == [(8080, True), (8081, False)]
    assert (server.http2.max_concurrent_streams, server.http2.chunk_size, server.http2.body_preread_size) == \
        (64, 16384, 131072)
    levels = {o.directive: o.level for o in translation.occurrences}
    assert levels["http2_max_concurrent_streams"] == "exact" and levels["http2_chunk_size"] == "exact"
    assert levels["http2_idle_timeout"] == "ignored" and levels["http2_max_field_size"] == "ignored"
    assert levels["http2_push_preload"] == "unsupported" and levels["http2_body_preread_size"] == "caveat"


def test_proxy_ssl_session_reuse_and_where_sessions_are_not_shared(tmp_path: Path) -> None:
    """proxy_ssl_session_reuse is carried (on by default; grpc_pass never resumes). A location whose
    proxy_ssl_* context settings differ from the first one's for the same group is reported: nginx
    offers the group's sessions there too, newproxy does not; so is a zone when several workers
    would share its sessions in nginx."""
    path = tmp_path / "nginx.conf"
    path.write_text("""worker_processes 2;
events {}
http {
    upstream app { zone app 64k; server 127.0.0.1:9443; }
    upstream other { server 127.0.0.1:9444; }
    server {
        listen 80;
        location /a { proxy_pass https://app; }
        location /b { proxy_pass https://app; }
        location /c { proxy_pass https://app; proxy_ssl_ciphers HIGH; }
        location /d { proxy_pass https://other; proxy_ssl_session_reuse off; }
        location /e { proxy_pass https://other; proxy_ssl_ciphers HIGH; proxy_ssl_session_reuse off; }
        location /g { grpc_pass grpcs://127.0.0.1:9445; }
    }
}
""")
    translation = translate(parse_config(str(path)))
    locations = translation.config.servers[0].locations
    reuse = [loc.proxy.tls.session_reuse for loc in locations[:5]]  # type: ignore[union-attr]
    assert reuse == [True, True, True, False, False]
    grpc = locations[5].proxy
    assert grpc is not None and grpc.protocol == "grpc" and grpc.tls is not None and not grpc.tls.session_reuse
    caveats = {(o.directive, o.line) for o in translation.occurrences if o.level == "caveat"
               and ("session" in o.reason)}
    assert caveats == {("proxy_pass", 10), ("zone", 4)}, caveats
    path.write_text(path.read_text().replace("worker_processes 2;", "worker_processes 1;"))
    translation = translate(parse_config(str(path)))
    assert not any(o.directive == "zone" and o.level == "caveat" for o in translation.occurrences)


def test_proxy_ssl_verify_depth_must_be_a_number(tmp_path: Path) -> None:
    path = conf(tmp_path, "server { listen 80; location / { proxy_pass https://127.0.0.1:9443;\n"
                          "    proxy_ssl_verify_depth 2x; } }")
    with pytest.raises(ConfigError, match='"proxy_ssl_verify_depth" directive invalid number') as caught:
        translate(parse_config(str(path)))
    assert caught.value.line == 4  # the directive's line, as `nginx -t` names it
    path.write_text(path.read_text().replace("2x", "3"))
    proxy = translate(parse_config(str(path))).config.servers[0].locations[0].proxy
    assert proxy is not None and proxy.tls is not None and proxy.tls.verify_depth == 3


def test_client_body_buffer_settings_reach_the_proxied_locations(tmp_path: Path) -> None:
    path = conf(tmp_path, "client_body_buffer_size 64k; client_body_temp_path body_temp 1 2;\n"
                          "server { listen 80;\n"
                          "  location /a { proxy_pass http://127.0.0.1:9000; }\n"
                          "  location /b { client_body_buffer_size 1m; client_body_temp_path /var/tmp/b;\n"
                          "    proxy_pass http://127.0.0.1:9000; } }")
    translation = translate(parse_config(str(path)), prefix="/srv/nginx")
    a, b = (loc.proxy for loc in translation.config.servers[0].locations)
    assert a is not None and (a.client_body_buffer_size, a.client_body_temp_path) == (65536, "/srv/nginx/body_temp")
    assert b is not None and (b.client_body_buffer_size, b.client_body_temp_path) == (1048576, "/var/tmp/b")
    levels = {(o.directive, o.line): o.level for o in translation.occurrences}
    assert levels[("client_body_buffer_size", 3)] == "exact" and levels[("client_body_temp_path", 3)] == "caveat"
