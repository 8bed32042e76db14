"""nginx_parser.cli: ``parse`` and ``fmt`` as the lead will wire them into ``nginx-migrate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nginx_parser import parse_config
from nginx_parser.cli import fmt_command, parse_command
from tests.test_parser_corpus import CORPUS, spliced_shape


def test_parse_json_prints_the_ir_with_classified_occurrences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text("server {\n  listen 8080;\n  more_set_headers 'X-A: 1';\n  frobnicate;\n}\n")
    assert parse_command([str(conf), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["context"] == "http"  # detected: a top-level server block
    assert payload["http"]["servers"][0]["listens"][0]["port"] == 8080
    kinds = {(o["name"], o["line"], o["kind"]) for o in payload["occurrences"]}
    assert {("server", 1, "core"), ("listen", 2, "core"), ("more_set_headers", 3, "third-party"),
            ("frobnicate", 4, "unknown")} <= kinds


def test_parse_summary_lists_non_core_directives_with_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "loc.conf"
    conf.write_text("brotli on;\nproxy_pass http://x;\n")
    assert parse_command([str(conf), "--context", "location"]) == 0
    out = capsys.readouterr().out
    assert "parsed as location context" in out
    assert f'{conf}:1: third-party directive "brotli"' in out


def test_parse_error_is_file_line_message_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("events {}\nhttp {\n  location / {}\n}\n")
    assert parse_command([str(conf)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f'{conf}:3: "location" directive is not allowed here'
    assert "Traceback" not in captured.err


def test_envsubst_from_env_arguments_on_a_corpus_template(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = CORPUS / "awesome-compose__nginx-wsgi-flask_default.conf"
    assert parse_command([str(source), "--context", "http", "--json", "--env", "FLASK_SERVER_ADDR=app:8000"]) == 0
    payload = json.loads(capsys.readouterr().out)
    args = [o for o in payload["occurrences"] if o["name"] == "proxy_pass"]
    assert args and all(o["file"] == str(source) for o in args)
    assert fmt_command([str(source), "--context", "http", "--env", "FLASK_SERVER_ADDR=app:8000"]) == 0
    text = capsys.readouterr().out
    assert "proxy_pass http://app:8000;" in text and "$FLASK_SERVER_ADDR" not in text


def test_fmt_output_parses_back_to_the_same_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = CORPUS / "h5bp__basic.conf"
    prefix = CORPUS / "includes" / "h5bp"
    assert fmt_command([str(source), "--context", "server", "--prefix", str(prefix)]) == 0
    again = tmp_path / "again.conf"
    again.write_text(capsys.readouterr().out)
    original = parse_config(str(source), prefix=str(prefix), context="server")
    assert spliced_shape(parse_config(str(again), context="server").tree) == spliced_shape(original.tree)
