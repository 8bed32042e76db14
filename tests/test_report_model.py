"""The gap report's model: levels come from the registry and the translation, never better than the
registry allows; context paths, per-unit readiness, shadow evidence, Lua stubs and the plan order."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from nginx_parser import parse_config
from shadow.traffic import _iter_locations, server_label
from translator import registry
from translator.report.lua import write_stubs
from translator.report.model import GROUP_SEP, Report, build_report
from translator.report.plan import ordered, render, tier
from translator.translate import translate

CONF = """\
worker_processes 1;
events { worker_connections 64; }
http {
    upstream pool { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name example.com www.example.com;
        location = /ok { return 200 "ok"; }
        location /api/ {
            proxy_pass http://pool;
            ssi on;
            location /api/inner/ { return 204; }
        }
        location /lua {
            access_by_lua_block {
                ngx.exit(403)
            }
            content_by_lua 'ngx.say("hi")';
        }
        location /mystery { frobnicate on; }
    }
    server {
        listen 8081;
        return 404;
    }
}
"""


def report_of(tmp_path: Path, text: str = CONF, shadow: dict | None = None) -> Report:
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    nginx = parse_config(str(path))
    return build_report(nginx, translate(nginx), shadow)


def entry(report: Report, directive: str):  # type: ignore[no-untyped-def]
    found = [e for e in report.entries if e.directive == directive]
    assert len(found) == 1, found
    return found[0]


def test_levels_contexts_and_suggestions(tmp_path: Path) -> None:
    report = report_of(tmp_path)
    proxy = entry(report, "proxy_pass")
    assert (proxy.level, proxy.line) == ("caveat", 10)  # X-Accel-Limit-Rate not over HTTP/2...
    assert proxy.context == "http > server[example.com:8080] > location /api/"
    assert proxy.suggestion == registry.DEFAULT_SUGGESTIONS["caveat"]
    assert entry(report, "server_name").suggestion == ""  # exact: nothing to do
    ssi = entry(report, "ssi")  # a directive nobody translates yet
    assert ssi.level == "unsupported" and ssi.suggestion == registry.DEFAULT_SUGGESTIONS["unsupported"]
    assert registry.suggestion("fastcgi_pass", "unsupported") == registry.SUGGESTIONS["fastcgi_pass"]
    assert registry.suggestion("fastcgi_pass", "exact") == ""
    mystery = entry(report, "frobnicate")
    assert mystery.level == "unknown" and mystery.suggestion == registry.DEFAULT_SUGGESTIONS["unknown"]
    assert entry(report, "worker_connections").context == "events"
    assert entry(report, "worker_processes").context == "main"
    assert entry(report, "worker_connections").level == "caveat"  # worker_connections: upstream connections are not counted
    inner = next(e for e in report.entries if e.directive == "return" and e.line == 12)
    assert inner.context == "http > server[example.com:8080] > location /api/ > location /api/inner/"
    assert entry(report, "server_name").context == "http > server[example.com:8080]"


def test_report_cannot_claim_exact_without_a_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With proxy_pass taken out of the registry, neither the translator nor the report says exact."""
    assert entry(report_of(tmp_path), "proxy_pass").level == "caveat"
    rules = dict(registry.RULES)
    del rules["proxy_pass"]
    monkeypatch.setattr(registry, "RULES", rules)
    proxy = entry(report_of(tmp_path), "proxy_pass")
    assert proxy.level == "unsupported" and "not translated" in proxy.reason


def test_a_translation_claiming_exact_for_a_directive_without_rule_is_overruled(tmp_path: Path) -> None:
    """Even if the translation says exact (a translator note, a bug), the registry's missing rule wins."""
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    nginx = parse_config(str(path))
    translation = translate(nginx)
    forged = [o.model_copy(update={"level": "exact", "reason": "forged"}) for o in translation.occurrences]
    report = build_report(nginx, translation.model_copy(update={"occurrences": forged}))
    assert entry(report, "ssi").level == "unsupported"
    assert entry(report, "frobnicate").level == "unknown"
    assert entry(report, "access_by_lua_block").level == "unsupported"
    assert entry(report, "proxy_pass").level == "exact"  # it has a rule: the translation's word stands


def test_units_and_readiness(tmp_path: Path) -> None:
    report = report_of(tmp_path)
    units = {u.key: u for u in report.units}
    server = "server example.com www.example.com (nginx.conf:5)"
    api = units[f"{server} {GROUP_SEP} location /api/"]
    # location exact, proxy_pass caveat (X-Accel-Limit-Rate cases); ssi unsupported; the nested location is its own unit
    assert (api.counts.exact, api.counts.caveat, api.counts.unsupported, api.counts.scored) == (1, 1, 1, 3)
    assert api.readiness == pytest.approx(1 / 3) and api.fallback_candidate
    assert api.blockers == [f"{tmp_path}/nginx.conf:10 proxy_pass: {entry(report, 'proxy_pass').reason}",
                            f"{tmp_path}/nginx.conf:11 ssi: {entry(report, 'ssi').reason}"]
    nested = units[f"{server} {GROUP_SEP} location /api/ > location /api/inner/"]
    assert nested.readiness == 1.0 and not nested.fallback_candidate and nested.blockers == []
    whole = units[server]
    assert whole.counts.occurrences == 15 and whole.counts.unsupported + whole.counts.unknown == 4
    assert not whole.fallback_candidate  # its own directives translate; some locations do not
    assert report.totals.occurrences == sum(1 for e in report.entries if e.kind == "directive")
    assert report.readiness == report.totals.exact / report.totals.scored


def test_unit_keys_are_the_shadow_harness_group_names(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    nginx = parse_config(str(path))
    assert nginx.http is not None
    expected = set()
    for server in nginx.http.servers:
        expected.add(server_label(server))
        expected |= {f"{server_label(server)} {GROUP_SEP} {name}" for name, _ in _iter_locations(server.locations)}
    assert {u.key for u in build_report(nginx, translate(nginx)).units} == expected


def test_shadow_verified_needs_coverage_and_no_difference(tmp_path: Path) -> None:
    server = "server example.com www.example.com (nginx.conf:5)"
    ok = {"requests": 3, "equivalent": 3, "different": 0, "errors": 0}
    groups = {server: ok, f"{server} {GROUP_SEP} location = /ok": ok,
              f"{server} {GROUP_SEP} location /api/": {**ok, "equivalent": 2, "different": 1},
              'server "" (nginx.conf:22)': ok}
    units = {u.key: u for u in report_of(tmp_path, shadow={"by_group": groups}).units}
    assert units[f"{server} {GROUP_SEP} location = /ok"].shadow_verified is True
    assert units[f"{server} {GROUP_SEP} location /api/"].shadow_verified is False  # a difference
    assert units[f"{server} {GROUP_SEP} location /mystery"].shadow_verified is False  # not covered
    assert units[server].shadow_verified is False  # not all of its locations are verified
    assert units['server "" (nginx.conf:22)'].shadow_verified is True
    assert all(u.shadow_verified is None for u in report_of(tmp_path).units)


def test_lua_stubs_carry_the_source_and_refuse_to_run(tmp_path: Path) -> None:
    report = report_of(tmp_path)
    written = write_stubs(report, tmp_path / "out")
    assert len(written) == 2
    block = entry(report, "access_by_lua_block")
    assert block.level == "unsupported" and block.phase == "access"
    assert block.stub == "plugins/example_com_8080_lua_15.py" and block.stub in block.reason
    text = (tmp_path / "out" / block.stub).read_text()
    module = ast.parse(text)
    docstring = ast.get_docstring(module) or ""
    assert "ngx.exit(403)" in docstring and "newproxy phase:  access" in docstring
    spec = importlib.util.spec_from_file_location("stub", tmp_path / "out" / block.stub)
    assert spec is not None and spec.loader is not None
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    assert stub.PHASE == "access" and stub.SOURCE == block.where
    with pytest.raises(NotImplementedError, match="not implemented: port this Lua"):
        stub.handle(object())
    content = entry(report, "content_by_lua")
    assert content.phase == "content" and 'ngx.say("hi")' in (tmp_path / "out" / str(content.stub)).read_text()


@pytest.mark.parametrize(("name", "phase"), [
    ("rewrite_by_lua_block", "rewrite"), ("header_filter_by_lua", "response header filter"),
    ("body_filter_by_lua_block", "body filter"), ("log_by_lua_file", "log"), ("set_by_lua", "rewrite (set)"),
])
def test_lua_phase_mapping(name: str, phase: str, tmp_path: Path) -> None:
    args = "$x 'return 1'" if name.startswith("set_") else "'x'" if not name.endswith("_block") else "{ x() }"
    if name.startswith("set_"):
        text = f"events {{}} http {{ server {{ location / {{ {name} {args}; }} }} }}"
    else:
        text = f"events {{}} http {{ server {{ location / {{ {name} {args}{';' if '{' not in args else ''} }} }} }}"
    report = report_of(tmp_path, text)
    found = entry(report, name)
    assert (found.phase, found.level) == (phase, "unsupported")


def test_plan_order_and_fallback_candidates(tmp_path: Path) -> None:
    server = "server example.com www.example.com (nginx.conf:5)"
    ok = {"requests": 3, "equivalent": 3, "different": 0, "errors": 0}
    report = report_of(tmp_path, shadow={"by_group": {f"{server} {GROUP_SEP} location = /ok": ok}})
    order = [u.key for u in ordered(report)]
    assert order[0] == f"{server} {GROUP_SEP} location = /ok"  # translated and shadow-verified leads
    tiers = [tier(u) for u in ordered(report)]
    assert tiers == sorted(tiers)
    # fallback candidates last, by readiness: 1/2, 1/3, 1/3
    assert order[-3:] == [f"{server} {GROUP_SEP} location /mystery", f"{server} {GROUP_SEP} location /api/",
                          f"{server} {GROUP_SEP} location /lua"]
    text = render(report)
    assert "strangler-fallback candidate" in text and "Blocked by:" in text
    assert "move it with these locations kept on the legacy nginx (strangler fallback): location /api/, " \
           "location /lua, location /mystery" in text
