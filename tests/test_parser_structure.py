"""nginx_parser: directive table, contexts, includes, snippets, templates, data blocks and inheritance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nginx_parser import ConfigError, parse_config
from nginx_parser.directives import classify, lookup
from nginx_parser.expr import Compare, FileCheck
from nginx_parser.inherit import effective
from nginx_parser.inventory import occurrences
from nginx_parser.loader import context_of
from nginx_parser.templates import detect_template, envsubst


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(str(path), **kwargs)  # type: ignore[arg-type]
    return info.value


# ---- the directive table --------------------------------------------------------------------------


def test_lookup_gives_contexts_arity_inheritance_and_origin() -> None:
    add_header = lookup("add_header")
    assert add_header is not None
    assert {"http", "server", "location", "if_in_location"} <= add_header.contexts
    assert (add_header.arity, add_header.inherit, add_header.origin) == ("2-3", "array", "core")
    root = lookup("root")
    assert root is not None and root.inherit == "scalar"
    proxy_pass = lookup("proxy_pass")
    assert proxy_pass is not None and proxy_pass.inherit == "none"
    assert lookup("no_such_directive") is None


@pytest.mark.parametrize(
    "name",
    ["http2", "http3", "quic_retry", "keepalive_time", "ssl_reject_handshake", "ssl_conf_command", "proxy_cookie_flags"],
)
def test_directives_crossplane_lacks_are_known_core(name: str) -> None:
    assert classify(name) == "core"


@pytest.mark.parametrize(
    "name", ["content_by_lua_block", "more_set_headers", "brotli", "geoip2", "modsecurity", "set_escape_uri"]
)
def test_common_third_party_directives_are_flagged(name: str) -> None:
    assert classify(name) == "third-party"


def test_unknown_directives_are_kept_and_reported(tmp_path: Path) -> None:
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  frobnicate 1 2;\n  server {\n    set_escape_uri $a $b;\n  }\n}\n")
    config = parse_config(str(conf))
    found = {(o.name, o.line, o.kind) for o in occurrences(config)}
    assert ("frobnicate", 3, "unknown") in found
    assert ("set_escape_uri", 5, "third-party") in found


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("events {}\nserver {\n}\n", 2, '"server" directive is not allowed here'),
        ("events {}\nhttp {\n  location / {}\n}\n", 3, '"location" directive is not allowed here'),
        ("events {}\nhttp {\n server {\n  location / {\n   listen 80;\n  }\n }\n}\n", 5, '"listen" directive is not allowed here'),
        ("events {}\nhttp {\n  gzip maybe;\n}\n", 3, 'invalid value "maybe" in "gzip" directive, it must be "on" or "off"'),
        ("events {}\nhttp {\n  keepalive_timeout 1 2 3;\n}\n", 3, 'invalid number of arguments in "keepalive_timeout" directive'),
        ("events {}\nhttp {\n  server;\n}\n", 3, 'directive "server" has no opening "{"'),
        ("events {}\nhttp {\n  root /x {\n  }\n}\n", 3, 'directive "root" is not terminated by ";"'),
        ("events {}\nhttp {\n server {\n  if ($a ~ \"(\") { return 404; }\n }\n}\n", 4, "pcre2_compile() failed"),
        ("events {}\nhttp {\n server {\n  if (a b) { return 404; }\n }\n}\n", 4, 'invalid condition "a b"'),
    ],
)
def test_context_and_arity_errors_come_from_the_table(tmp_path: Path, text: str, line: int, message: str) -> None:
    conf = write(tmp_path, "nginx.conf", text)
    error = error_of(conf)
    assert (error.file, error.line) == (str(conf), line)
    assert error.message.startswith(message)


# ---- loader -------------------------------------------------------------------------------------


def test_include_inside_if_and_limit_except_is_resolved(tmp_path: Path) -> None:
    write(tmp_path, "deny.conf", "deny all;\n")
    write(tmp_path, "ret.conf", "\nreturn 403;\n")
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n server {\n  location / {\n"
                 "   limit_except GET { include deny.conf; }\n   if ($x) { include ret.conf; }\n  }\n }\n}\n")
    config = parse_config(str(conf))
    assert config.http is not None
    location = config.http.servers[0].locations[0]
    limit, cond = [d for d in location.directive.children() if d.name in ("limit_except", "if")]
    (deny,) = list(limit.children())
    (ret,) = list(cond.children())
    assert (deny.name, os.path.basename(deny.file), deny.line) == ("deny", "deny.conf", 1)
    assert (ret.name, os.path.basename(ret.file), ret.line) == ("return", "ret.conf", 2)


def test_glob_includes_are_sorted_bytewise_like_glob3(tmp_path: Path) -> None:
    for name in ("b.conf", "B.conf", "a.conf", "_.conf", "10.conf", "9.conf"):
        write(tmp_path, f"d/{name}", f"add_header X-{name.split('.')[0]} 1;\n")
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  include d/*.conf;\n}\n")
    config = parse_config(str(conf))
    assert config.http is not None
    order = [os.path.basename(d.file) for d in config.http.directives()]
    assert order == ["10.conf", "9.conf", "B.conf", "_.conf", "a.conf", "b.conf"]


def test_include_cycle_is_an_error_at_the_include(tmp_path: Path) -> None:
    write(tmp_path, "a.conf", "\ninclude b.conf;\n")
    write(tmp_path, "b.conf", "include a.conf;\n")
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  include a.conf;\n}\n")
    error = error_of(conf)
    assert error.message.startswith("include cycle: ")
    assert (os.path.basename(error.file or ""), error.line) == ("b.conf", 1)


def test_relative_includes_follow_the_prefix_and_absolute_ones_the_sysroot(tmp_path: Path) -> None:
    write(tmp_path, "conf/extra.conf", "add_header A 1;\n")
    write(tmp_path, "root/etc/nginx/abs.conf", "add_header B 2;\n")
    conf = write(tmp_path, "elsewhere/nginx.conf", "events {}\nhttp {\n include extra.conf;\n include /etc/nginx/abs.conf;\n}\n")
    config = parse_config(str(conf), prefix=str(tmp_path / "conf"), sysroot=str(tmp_path / "root"))
    assert config.http is not None
    assert [d.args[0] for d in config.http.directives()] == ["A", "B"]


def test_comment_inside_a_multiline_directive_is_dropped(tmp_path: Path) -> None:
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  log_format main '$a'\n     # a comment\n     '$b';\n  gzip on;\n}\n")
    config = parse_config(str(conf))
    assert config.http is not None
    assert [(d.name, d.args, d.line) for d in config.http.directives()] == [
        ("log_format", ["main", "$a", "$b"], 3), ("gzip", ["on"], 6)
    ]
    assert len(occurrences(config)) == 4


# ---- snippets and contexts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("worker_processes 1;\nevents {}\n", "main"),
        ("server { listen 80; }\nmap $a $b { default 1; }\n", "http"),
        ("location / { return 204; }\n", "server"),
        ("proxy_set_header Host $host;\n", "http"),
        ("frobnicate;\nlisten 80;\n", "server"),
    ],
)
def test_context_is_detected_from_top_level_directives(tmp_path: Path, text: str, expected: str) -> None:
    conf = write(tmp_path, "snippet.conf", text)
    assert context_of(parse_config(str(conf), context=None).tree) == expected


def test_location_snippet_is_wrapped_and_keeps_its_own_lines(tmp_path: Path) -> None:
    conf = write(tmp_path, "proxy.conf", "\n\nproxy_set_header Host $host;\nproxy_read_timeout 5s;\n")
    config = parse_config(str(conf), context="location")
    assert config.http is not None
    (server,) = config.http.servers
    (location,) = server.locations
    assert location.directive.synthetic and server.directive.synthetic
    assert [(d.name, d.file, d.line) for d in location.directives()] == [
        ("proxy_set_header", str(conf), 3), ("proxy_read_timeout", str(conf), 4)
    ]


def test_snippet_in_the_wrong_context_is_an_error_at_its_line(tmp_path: Path) -> None:
    conf = write(tmp_path, "s.conf", "gzip on;\nlisten 80;\n")
    error = error_of(conf, context="location")
    assert (error.line, error.message) == (2, '"listen" directive is not allowed here')


# ---- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("server {\n  listen {{ .Port }};\n}\n", ("Go template", 2)),
        ("# {{ comment }}\n{{- range $s := .Servers }}\n", ("Go template", 2)),
        ("server {\n{% if tls %}\n  listen 443;\n{% endif %}\n}\n", ("Jinja template", 2)),
        ("server {\n  root {{ root }};\n}\n", ("Go or Jinja template", 2)),
        ("server {\n  alias M4_ROOT/x;\n}\n", ("m4 template", 2)),
        ("# mentions {{ in a comment }}\nserver { listen 80; }\n", None),
    ],
)
def test_templates_are_detected_with_kind_and_line(text: str, found: tuple[str, int] | None) -> None:
    assert detect_template(text) == found


def test_template_file_error_names_kind_and_line(tmp_path: Path) -> None:
    conf = write(tmp_path, "t.conf", "server {\n{% for x in y %}\n}\n")
    error = error_of(conf, context="http")
    assert (error.line, error.message.split(",")[0]) == (2, "this is a Jinja template")


def test_envsubst_replaces_only_defined_variables() -> None:
    text = "proxy_pass http://$BACKEND${PATH_PREFIX}$request_uri; set $a ${undefined}$1;"
    assert envsubst(text, {"BACKEND": "app:8000", "PATH_PREFIX": "/api"}) == (
        "proxy_pass http://app:8000/api$request_uri; set $a ${undefined}$1;"
    )


def test_envsubst_keeps_lines_and_feeds_the_parser(tmp_path: Path) -> None:
    conf = write(tmp_path, "d.conf", "server {\n  listen ${PORT};\n  server_name $HOST_NAME $host;\n}\n")
    config = parse_config(str(conf), context="http", env={"PORT": "8081", "HOST_NAME": "example.org"})
    assert config.http is not None
    (server,) = config.http.servers
    assert server.listens[0].port == 8081 and server.listens[0].directive is not None
    assert server.listens[0].directive.line == 2 and server.listens[0].directive.file == str(conf)
    assert server.server_names == ["example.org", "$host"]


# ---- data blocks --------------------------------------------------------------------------------


def test_map_geo_and_split_clients_are_typed(tmp_path: Path) -> None:
    write(tmp_path, "more.map", "extra.example 7;\n")
    conf = write(tmp_path, "nginx.conf", """events {}
http {
  map $http_host $backend {
    hostnames;
    volatile;
    default b0;
    example.com b1;
    *.example.org b2;
    ~^api\\. b3;
    ~*^WWW b4;
    \\default b5;
    include more.map;
  }
  geo $remote_addr $internal {
    ranges;
    default 0;
    proxy 10.0.0.1;
    10.0.0.0-10.255.255.255 1;
    delete 10.1.0.0-10.1.0.255;
  }
  split_clients "${remote_addr}x" $variant {
    50% a;
    25.5% b;
    * c;
  }
}
""")
    config = parse_config(str(conf))
    assert config.http is not None
    (mapping,) = config.http.maps
    assert (mapping.source, mapping.variable, mapping.default, mapping.hostnames, mapping.volatile) == (
        "$http_host", "backend", "b0", True, True
    )
    assert [(e.key, e.value, e.kind) for e in mapping.entries] == [
        ("example.com", "b1", "exact"), ("*.example.org", "b2", "hostname"), ("^api\\.", "b3", "regex"),
        ("^WWW", "b4", "regex_caseless"), ("default", "b5", "exact"), ("extra.example", "7", "exact"),
    ]
    assert os.path.basename(mapping.entries[-1].directive.file) == "more.map"
    (geo,) = config.http.geos
    assert (geo.variable, geo.ranges, geo.default, geo.proxy) == ("internal", True, "0", ["10.0.0.1"])
    assert [(e.network, e.value, e.delete) for e in geo.entries] == [
        ("10.0.0.0-10.255.255.255", "1", False), ("10.1.0.0-10.1.0.255", "", True)
    ]
    (split,) = config.http.split_clients
    assert split.source == "${remote_addr}x"
    assert [(b.percent, b.value) for b in split.buckets] == [(50.0, "a"), (25.5, "b"), (None, "c")]


def test_split_clients_over_100_percent_is_an_error(tmp_path: Path) -> None:
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n split_clients $a $b {\n  60% a;\n  50% b;\n }\n}\n")
    error = error_of(conf)
    assert (error.line, error.message) == (3, "percent total is greater than 100%")


# ---- inheritance --------------------------------------------------------------------------------


def test_effective_applies_scalar_and_array_inheritance(tmp_path: Path) -> None:
    conf = write(tmp_path, "nginx.conf", """events {}
http {
  root /srv/http;
  add_header X-Http 1;
  proxy_set_header X-A a;
  server {
    root /srv/server;
    add_header X-Server 1;
    add_header X-Server2 1;
    proxy_pass_header X-P;
    location / {
      proxy_set_header X-B b;
      return 204;
      location /inner {
        gzip on;
      }
    }
  }
}
""")
    config = parse_config(str(conf))
    assert config.http is not None
    outer = config.http.servers[0].locations[0]
    resolved = effective(outer)
    assert [d.args for d in resolved["root"]] == [["/srv/server"]]
    assert [d.args[0] for d in resolved["add_header"]] == ["X-Server", "X-Server2"]
    assert [d.args[0] for d in resolved["proxy_set_header"]] == ["X-B"]  # not X-A: the location has its own
    assert "return" in resolved
    inner = effective(outer.locations[0])
    assert "return" not in inner  # rewrite-module directives are not inherited
    assert [d.args[0] for d in inner["proxy_set_header"]] == ["X-B"]
    assert [d.args for d in inner["gzip"]] == [["on"]]
    assert [d.line for d in inner["root"]] == [7]


# ---- nginx's reading order for errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # a misplaced directive before a syntax error is what nginx reports
        ("events {}\nhttp {\n  listen 80;\n  server {\n", 3, '"listen" directive is not allowed here'),
        # ... and before a missing include
        ("events {}\nhttp {\n  return 204;\n  include nothere.conf;\n}\n", 3, '"return" directive is not allowed here'),
        # the syntax error when nothing before it is wrong: the line nginx reaches at the end of the file
        ("events {}\nhttp {\n  server {\n", 4, 'unexpected end of file, expecting "}"'),
        ("events {}\nhttp {\n  server {\n    listen 80\n  }\n}\n", 5, 'unexpected "}"'),
        ("events {}\nhttp {\n  ;\n}\n", 3, 'unexpected ";"'),
        # a multi-line directive is reported at the line of its ";", like nginx does
        ("events {}\nhttp {\n  listen\n    80\n    ;\n}\n", 5, '"listen" directive is not allowed here'),
    ],
)
def test_first_error_in_reading_order(tmp_path: Path, text: str, line: int, message: str) -> None:
    conf = write(tmp_path, "nginx.conf", text)
    error = error_of(conf)
    assert (error.line, error.message) == (line, message)


def test_locations_and_servers_expose_their_regexes_and_conditions(tmp_path: Path) -> None:
    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n server {\n  if ($http_x = 1) { return 403; }\n"
                 "  location ~* \\.(?<ext>png|jpg)$ {\n   if (!-f $request_filename) { return 404; }\n  }\n"
                 "  location / {}\n }\n}\n")
    config = parse_config(str(conf))
    assert config.http is not None
    server = config.http.servers[0]
    ((site, condition),) = server.conditions()
    assert site.line == 4 and isinstance(condition, Compare) and condition.variable == "http_x"
    regex_location, prefix_location = server.locations
    regex = regex_location.regex()
    assert regex is not None and regex.caseless and regex.names == {"ext": 1}
    assert regex.search(b"/A.PNG") is not None and prefix_location.regex() is None
    ((_, file_check),) = regex_location.conditions()
    assert isinstance(file_check, FileCheck) and file_check.op == "!-f"


def test_lua_blocks_are_kept_verbatim_and_round_trip(tmp_path: Path) -> None:
    from nginx_parser import format_tree

    conf = write(tmp_path, "nginx.conf", "events {}\nhttp {\n server {\n  location / {\n"
                 "   content_by_lua_block {\n     ngx.say(\"a\\nb; {x}\")\n   }\n"
                 "   set_by_lua_block $a { return 1 }\n  }\n }\n}\n")
    config = parse_config(str(conf))
    assert config.http is not None
    body, setter = config.http.servers[0].locations[0].directives()
    assert (body.name, body.line, classify(body.name)) == ("content_by_lua_block", 5, "third-party")
    assert 'ngx.say("a\\nb; {x}")' in body.args[0]  # no nginx unescaping inside Lua
    assert setter.args == ["$a", " return 1 "]
    again = write(tmp_path, "again.conf", format_tree(config.tree))
    assert [d.args for d in parse_config(str(again)).http.servers[0].locations[0].directives()] == [  # type: ignore[union-attr]
        body.args, setter.args
    ]
