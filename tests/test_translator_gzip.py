"""translator: the gzip settings written out with nginx's defaults and merge rules, errors as
file:line, and the gzip directives newproxy does not build reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginx_parser import ConfigError, parse_config
from translator.translate import translate


def conf(tmp_path: Path, http_body: str) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def test_gzip_settings_are_explicit_and_merged_as_nginx_does(tmp_path: Path) -> None:
    path = conf(tmp_path, """gzip_types text/css; gzip_types application/json; gzip_disable msie6;
    gzip_proxied expired; gzip_proxied no-cache;
    server { listen 80;
        location /off/ { }
        location /on/ { gzip on; gzip_comp_level 5; gzip_min_length 1k; gzip_vary on; gzip_http_version 1.0;
            location /on/inner/ { gzip_types text/plain; gzip_disable "bot"; gzip_proxied any; }
            location /on/star/ { gzip_types *; }
            if ($arg_x) { gzip off; }
        }
        location /only/ { gzip on; gzip_disable "curl"; }
    }""")
    translation = translate(parse_config(str(path)))
    server = translation.config.servers[0]
    assert server.gzip is None
    off, on, only = server.locations
    assert off.gzip is None
    gz = on.gzip
    assert gz is not None
    assert gz.types == ["text/html", "text/css", "application/json"]  # both lines of the block; html always
    assert (gz.comp_level, gz.min_length, gz.vary, gz.http_version) == (5, 1024, True, "1.0")
    assert gz.proxied == ["expired", "no-cache"] and gz.disable == [] and gz.disable_msie6
    inner, star = on.locations
    assert inner.gzip is not None and inner.gzip.types == ["text/html", "text/plain"]
    assert inner.gzip.proxied == ["any"] and inner.gzip.disable == ["bot"]
    assert inner.gzip.disable_msie6  # merged on its own: an inner gzip_disable without msie6 keeps it
    assert star.gzip is not None and star.gzip.types == ["*"]
    if_step = on.rewrite[0]
    assert if_step.location is not None and if_step.location.gzip is None  # gzip off inside the if
    assert only.gzip is not None and only.gzip.disable == ["curl"] and only.gzip.disable_msie6
    # nginx's defaults, written out where nothing sets them.
    assert (only.gzip.min_length, only.gzip.comp_level, only.gzip.vary, only.gzip.http_version) == (20, 1, False, "1.1")
    assert not [g for g in translation.gaps if g.directive.startswith("gzip")]


@pytest.mark.parametrize(("directive", "message"), [
    ("gzip maybe;", 'invalid value "maybe" in "gzip" directive'),
    ("gzip_comp_level 10;", "equal or less than 9"),
    ("gzip_comp_level 0;", "equal or more than 1"),
    ("gzip_proxied expired nonsense;", 'invalid value "nonsense"'),
    ("gzip_http_version 2.0;", 'invalid value "2.0" in "gzip_http_version"'),
    ("gzip_min_length 1x;", '"gzip_min_length" directive invalid value'),
    ("gzip_vary yes;", 'invalid value "yes" in "gzip_vary"'),
])
def test_bad_gzip_values_are_file_line_errors(tmp_path: Path, directive: str, message: str) -> None:
    path = conf(tmp_path, "server { listen 80;\n location / { " + directive + " } }")
    with pytest.raises(ConfigError) as info:
        translate(parse_config(str(path)))
    assert message in str(info.value) and info.value.line == 4


def test_gzip_static_is_reported_and_tuning_ignored(tmp_path: Path) -> None:
    path = conf(tmp_path, """gzip on; gzip_buffers 16 8k; gzip_static on; gunzip on;
    server { listen 80; }""")
    translation = translate(parse_config(str(path)))
    levels = {o.directive: o.level for o in translation.occurrences}
    assert levels["gzip_static"] == "unsupported" and levels["gunzip"] == "unsupported"
    assert levels["gzip_buffers"] == "ignored" and levels["gzip"] == "exact"
