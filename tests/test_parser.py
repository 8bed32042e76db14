"""nginx_parser: includes, spans, errors, escapes and the round trip through fmt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nginx_parser import ConfigError, format_tree, parse_config
from nginx_parser.loader import unescape

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basic" / "nginx.conf"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_example_parses_with_exact_lines() -> None:
    config = parse_config(str(EXAMPLE))
    assert config.http is not None
    names = [s.server_names for s in config.http.servers]
    assert ["old.example.com"] in names
    lines = EXAMPLE.read_text().splitlines()
    for directive in config.all_directives():
        assert directive.name in lines[directive.line - 1], (directive.name, directive.line)


def test_includes_are_resolved_relative_to_the_main_file_and_sorted(tmp_path: Path) -> None:
    write(tmp_path, "conf.d/b.conf", "server { listen 81; server_name b; }\n")
    write(tmp_path, "conf.d/a.conf", "server { listen 82; server_name a; }\n")
    write(tmp_path, "snippets/loc.conf", "\nreturn 204;\n")
    main = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  include conf.d/*.conf;\n"
                 "  server { location / { include snippets/loc.conf; } }\n}\n")
    config = parse_config(str(main))
    assert config.http is not None
    assert [s.server_names for s in config.http.servers] == [["a"], ["b"], [""]]
    loc = config.http.servers[2].locations[0]
    (ret,) = list(loc.directives())
    assert (ret.name, os.path.basename(ret.file), ret.line) == ("return", "loc.conf", 2)
    # Directives after an include keep their own file (crossplane's combine=True gets this wrong).
    after = [d for d in config.all_directives() if d.name == "server"][2]
    assert os.path.basename(after.file) == "nginx.conf" and after.line == 4


def test_missing_include_names_the_including_line(tmp_path: Path) -> None:
    main = write(tmp_path, "nginx.conf", "events {}\nhttp {\n\n  include missing.conf;\n}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(str(main))
    assert str(info.value).startswith(f"{main}:4: ")
    assert "missing.conf" in str(info.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path, "nginx.conf", "events {}\nhttp {\n  server {\n    listen 80\n  }\n")
    with pytest.raises(ConfigError) as info:
        parse_config(str(main))
    assert str(info.value).startswith(f"{main}:")
    assert info.value.line is not None


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.conf", "include b.conf;\n")
    write(tmp_path, "b.conf", "include a.conf;\n")
    main = write(tmp_path, "nginx.conf", "http { include a.conf; }\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_config(str(main))


def test_nginx_escapes_are_undone() -> None:
    assert unescape(r"ok\n") == "ok\n"
    assert unescape(r"a\\b") == "a\\b"
    assert unescape(r"\.php$") == r"\.php$"


def test_format_round_trip(tmp_path: Path) -> None:
    config = parse_config(str(EXAMPLE))
    again = write(tmp_path, "again.conf", format_tree(config.tree))
    reparsed = parse_config(str(again))
    assert [(d.name, d.args) for d in config.all_directives()] == [(d.name, d.args) for d in reparsed.all_directives()]
