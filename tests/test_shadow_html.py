"""The shadow HTML report renders in headless Chromium with its key numbers on the page: a run with
a seeded bug (so there are differences, each with its smallest request) and a clean run."""

from __future__ import annotations

from pathlib import Path

from newproxy.config import NewproxyConfig
from shadow.html import render
from tests.chromium import chromium_dom
from tests.differential import shadow

CONF = Path(__file__).parent / "data" / "seeded" / "app.conf"


def redirect_302(config: NewproxyConfig) -> NewproxyConfig:
    moved = next(loc for loc in config.servers[0].locations if loc.path == "/moved")
    moved.rewrite[0].status = 302  # type: ignore[union-attr]
    return config


def test_report_with_differences_renders_its_numbers(tmp_path: Path) -> None:
    report = shadow(str(CONF), str(tmp_path / "run"), max_requests=60, mutate_translation=redirect_302, shrink=1)
    assert report.different > 0
    page = tmp_path / "report.html"
    page.write_text(render(report), encoding="utf-8")
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.split("<body>")[0]  # self-contained
    dom, console = chromium_dom(page)
    assert console == []
    for name, value in [("requests", report.requests), ("equivalent", report.equivalent),
                        ("different", report.different), ("errors", report.errors)]:
        assert f'id="{name}" data-value="{value}">{value}</span>' in dom, name
    assert 'id="verdict" data-value="different"' in dom
    assert f'id="coverage" data-value="{report.coverage["percent"]}"' in dom
    assert 'id="diff-1"' in dom and "/moved" in dom and "curl -sS" in dom
    assert "<code>status</code>" in dom  # the differing field, side by side


def test_clean_report_says_equivalent(tmp_path: Path) -> None:
    report = shadow(str(CONF), str(tmp_path / "run"), max_requests=30, calibrate=True)
    page = tmp_path / "report.html"
    page.write_text(render(report), encoding="utf-8")
    dom, console = chromium_dom(page)
    assert console == []
    assert 'id="verdict" data-value="equivalent"' in dom and 'id="different" data-value="0"' in dom
    assert f'id="noise" data-value="{report.noise}"' in dom
