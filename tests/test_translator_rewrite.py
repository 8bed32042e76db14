"""translator: the rewrite module, computed variables, error_page and try_files are translated into
explicit steps, and what is not translated exactly is reported with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from newproxy.config import IfStep, RewriteRuleStep, SetStep
from nginx_parser import ConfigError, parse_config
from translator import translate


def conf(tmp_path: Path, http_body: str) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def gaps(path: Path) -> dict[tuple[str, int], str]:
    return {(g.directive, g.line): g.level for g in translate(parse_config(str(path))).gaps}


def test_rewrite_steps_are_explicit(tmp_path: Path) -> None:
    path = conf(tmp_path, """server { listen 80;
        rewrite ^/a/(.*)$ /b/$1 last;
        location / {
            set $x "v";
            if ($arg_q ~* ^(\\d+)$) { rewrite ^ /n/$1? break; }
            proxy_pass http://127.0.0.1:9000;
        }
    }""")
    translation = translate(parse_config(str(path)))
    server = translation.config.servers[0]
    assert server.rewrite == [RewriteRuleStep(regex="^/a/(.*)$", replacement="/b/$1", flag="last",
                                              source=f"{path}:4")]
    steps = server.locations[0].rewrite
    assert isinstance(steps[0], SetStep) and isinstance(steps[1], IfStep)
    assert steps[1].condition.operator == "~*" and steps[1].condition.operand == "^(\\d+)$"
    # the if block is an implicit location that inherits the proxy_pass
    assert steps[1].location is not None and steps[1].location.proxy is not None
    # Nothing untranslated: only proxy_pass's stated caveat (an auth_request X-Accel-Redirect...).
    assert [(g.directive, g.level) for g in translation.gaps] == [("proxy_pass", "caveat")]


def test_static_handler_reachable_after_break_is_not_a_gap(tmp_path: Path) -> None:
    path = conf(tmp_path, """server { listen 80;
        location /a/ { rewrite ^/a/(.*)$ /b/$1 break; }
        location /b/ { rewrite ^/b/(.*)$ /c/$1 last; }
        location / { return 404; }
    }""")
    found = gaps(path)
    assert ("location", 4) not in found  # break: nginx then serves a file, and so does newproxy
    assert ("location", 5) not in found  # always restarts with another URI


def test_unknown_variables_and_unsupported_blocks_are_reported(tmp_path: Path) -> None:
    path = conf(tmp_path, """
        geo $ranged { ranges; 10.0.0.1-10.0.0.9 a; }
        map $ranged $m { default x; }
        server { listen 80;
            if ($nginx_version) { return 200; }
            location / { return 200 "$m"; }
            location /t/ { alias /srv/; try_files $uri =404; }
        }""")
    found = gaps(path)
    assert found[("geo", 4)] == "unsupported"
    assert found[("map", 5)] == "unsupported"  # uses the variable of an untranslated geo
    assert found[("if", 7)] == "unsupported"  # $nginx_version is not emulated
    assert found[("return", 8)] == "unsupported"  # uses $m
    assert found[("try_files", 9)] == "unsupported"


def test_invalid_rewrite_arguments_are_errors(tmp_path: Path) -> None:
    path = conf(tmp_path, "server { listen 80; location / { rewrite ^ /x bogus; } }")
    with pytest.raises(ConfigError, match='invalid parameter "bogus"'):
        translate(parse_config(str(path)))


def test_error_page_forms(tmp_path: Path) -> None:
    path = conf(tmp_path, """server { listen 80;
        error_page 404 = /fallback;
        error_page 500 502 =200 @named;
        location @named { return 200; }
    }""")
    pages = translate(parse_config(str(path))).config.servers[0].error_pages
    assert [(p.codes, p.target, p.response, p.target_status) for p in pages] == [
        ([404], "/fallback", None, True), ([500, 502], "@named", 200, False)]
