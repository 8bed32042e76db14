"""``nginx-migrate report`` / ``convert`` (plan, stubs) and ``newproxy schema`` / ``newproxy -t``: outputs,
exit codes, ``file:line:`` errors without tracebacks, and shadow evidence read from a real shadow run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from shadow.cli import main

from tests.test_report_formats import EXAMPLES, ROOT, SARIF_SCHEMA
LUA = """\
events {}
http {
    server {
        listen 8080;
        server_name lua.test;
        location /api/ {
            rewrite_by_lua_block { ngx.req.set_uri("/x") }
            return 200;
        }
    }
}
"""


def check_output(fmt: str, text: str) -> None:
    if fmt == "json":
        assert json.loads(text)["format"] == "nginx-migrate-report"
    elif fmt == "sarif":
        jsonschema.validate(json.loads(text), SARIF_SCHEMA, cls=jsonschema.Draft4Validator)
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and 'id="readiness"' in text
    elif fmt == "markdown":
        assert text.startswith("# Migration report:")
    else:
        assert "Directive occurrences" in text and "Servers and locations" in text


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("fmt", ["terminal", "markdown", "json", "html", "sarif"])
def test_report_in_every_format(example: Path, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(example), "--format", fmt]) == 0
    check_output(fmt, capsys.readouterr().out)
    out = tmp_path / f"report.{fmt}"
    assert main(["report", str(example), "--format", fmt, "-o", str(out)]) == 0
    check_output(fmt, out.read_text())


def test_report_errors_are_file_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp {\n    server {\n        listen 80\n    }\n}\n")
    assert main(["report", str(bad), "--format", "json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:") and err.split(":")[1].isdigit() and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing.conf")]) == 1
    assert "missing.conf" in capsys.readouterr().err
    good = EXAMPLES[0]
    assert main(["report", str(good), "--shadow-report", str(tmp_path / "nope.json")]) == 1
    assert "nope.json: cannot read the shadow report" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"not": "a shadow report"}')
    assert main(["report", str(good), "--shadow-report", str(tmp_path / "other.json")]) == 1
    assert "not a shadow report" in capsys.readouterr().err
    assert main(["report", str(good), "-o", str(tmp_path / "no" / "such" / "dir.md")]) == 1
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["report", str(good), "--format", "pdf"])
    assert info.value.code == 2


def test_report_writes_lua_stubs_beside_its_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(LUA)
    out = tmp_path / "out" / "report.md"
    out.parent.mkdir()
    assert main(["report", str(conf), "--format", "markdown", "-o", str(out)]) == 0
    stub = tmp_path / "out" / "plugins" / "lua_test_8080_api_7.py"
    assert 'ngx.req.set_uri("/x")' in stub.read_text() and "newproxy phase:  rewrite" in stub.read_text()
    assert "[stub](plugins/lua_test_8080_api_7.py)" in out.read_text()


def test_convert_writes_the_plan_and_stubs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(LUA)
    out = tmp_path / "proxy.yaml"
    assert main(["convert", str(conf), "-o", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "readiness 85.7%: 0 of 2 servers and locations fully translated" in printed
    plan = (tmp_path / "proxy.plan.md").read_text()
    assert plan.startswith(f"# Migration plan for `{conf}`")
    assert "location /api/** (location" in plan and "strangler-fallback candidate" in plan
    assert "stub `plugins/lua_test_8080_api_7.py`" in plan
    assert (tmp_path / "plugins" / "lua_test_8080_api_7.py").exists()
    elsewhere = tmp_path / "plans" / "p.md"
    elsewhere.parent.mkdir()
    assert main(["convert", str(EXAMPLES[0]), "-o", str(tmp_path / "b.yaml"), "--plan", str(elsewhere)]) == 0
    assert elsewhere.read_text().startswith("# Migration plan")
    assert not (tmp_path / "b.plan.md").exists()


def test_shadow_evidence_from_a_real_shadow_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """shadow --json on a config newproxy serves like nginx, then report --shadow-report: each server and
    location the traffic covered is shadow-verified; the plan puts them first."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 8080;\n    server_name s.test;\n"
                    "    location /a { return 200 \"a\"; }\n    location = /b { return 404; }\n  }\n}\n")
    shadow_json = tmp_path / "shadow.json"
    assert main(["shadow", str(conf), "--json", str(shadow_json), "--max-requests", "80"]) == 0
    capsys.readouterr()
    assert main(["report", str(conf), "--format", "json", "--shadow-report", str(shadow_json)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shadow_report"] == str(shadow_json)
    units = {u["key"]: u for u in data["units"]}
    assert set(units) == {"server s.test (nginx.conf:3)", "server s.test (nginx.conf:3) › location /a",
                          "server s.test (nginx.conf:3) › location = /b"}
    assert all(u["shadow_verified"] is True and u["shadow_requests"] > 0 for u in units.values())
    # the same evidence with one location's requests marked different: it and its server lose the flag
    shadow = json.loads(shadow_json.read_text())
    shadow["by_group"]["server s.test (nginx.conf:3) › location /a"]["different"] = 1
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(shadow))
    assert main(["report", str(conf), "--format", "json", "--shadow-report", str(edited)]) == 0
    units = {u["key"]: u for u in json.loads(capsys.readouterr().out)["units"]}
    assert [k for k, u in units.items() if not u["shadow_verified"]] == [
        "server s.test (nginx.conf:3)", "server s.test (nginx.conf:3) › location /a"]


def newproxy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newproxy", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)


def test_newproxy_schema_validates_translated_configs(tmp_path: Path) -> None:
    result = newproxy("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    for example in EXAMPLES:
        out = tmp_path / f"{example.parent.name}.yaml"
        assert main(["convert", str(example), "-o", str(out)]) == 0
        jsonschema.validate(yaml.safe_load(out.read_text()), schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"servers": [{"listen": [{"port": "eighty"}]}]}, schema,
                            cls=jsonschema.Draft202012Validator)
    assert newproxy("schema", "extra").returncode == 1


def test_newproxy_t_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "proxy.yaml"
    bad.write_text("servers:\n  - listen:\n      - port: 8080\n    locations:\n      - match: prefix\n        path: /\n"
                   "      - match: prefix\n        path: /a\n      - match: prefix\n        path: /api/\n"
                   "        rewrite:\n          - kind: return\n            status: abc\n        proxy:\n"
                   "          upstream: u\n          proxy_host: u\n          headers: []\n"
                   "          connect_timeout: soon\n")
    result = newproxy("-t", "-c", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{bad}:18: servers[0].locations[2].proxy.connect_timeout: Input should be a valid number" in result.stderr
    assert f"{bad}:13: servers[0].locations[2].rewrite[0].status:" in result.stderr  # the union tag is left out
    broken = tmp_path / "nginx.conf"
    broken.write_text("events {}\nhttp {\n  server {\n    listen 80;\n    location / { return 2000; }\n  }\n}\n")
    result = newproxy("-t", "-c", str(broken))
    assert result.returncode == 1 and f"{broken}:5: " in result.stderr and "Traceback" not in result.stderr


def test_newproxy_imports_neither_the_parser_nor_the_translator() -> None:
    code = ("import sys, newproxy.cli, newproxy.configfile, newproxy.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nginx_parser', 'translator')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "[]"
