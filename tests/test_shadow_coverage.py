"""Coverage of a shadow run (shadow/coverage.py) and the coverage-guided requests (shadow/guided.py):
which parts are counted, that the engine's trace attributes each request to the right ones, and that
the guided search reaches parts that need two inputs at once. The last test shadows the config
against real nginx with the guided requests included: a part covered is a part compared."""

from __future__ import annotations

from pathlib import Path

from nginx_parser import parse_config
from newproxy.engine import trace
from shadow.coverage import Replayer, measure
from shadow.guided import guided_requests
from shadow.rewire import plan
from shadow.traffic import generate
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "coverage"
EXAMPLES = Path(__file__).parent.parent / "examples"


def _generated(path: Path) -> tuple[object, list]:
    config = parse_config(str(path))
    requests, _ = generate(config, plan(config), seed=0, max_requests=1000)
    return config, requests


def test_parts_are_every_server_location_step_and_map_entry() -> None:
    config = parse_config(str(DATA / "guided.conf"))
    parts = Replayer(config).parts
    kinds = [p.kind for p in parts]
    assert kinds.count("server") == 1
    assert kinds.count("location") == 4
    assert kinds.count("if") == 2 * 4  # taken and not taken, each
    assert kinds.count("map") == 3  # two entries and the default; geo is not a map
    assert all(":" in p.source for p in parts)


def test_trace_attributes_map_entries_and_if_sides() -> None:
    config = parse_config(str(DATA / "guided.conf"))
    replayer = Replayer(config)
    listen = next(iter(plan(config).listens))
    by_detail = {p.detail: p for p in replayer.parts}
    crawler = replayer.trace(get(listen, "/", "guided.test", "t", extra=(("User-Agent", "MyCrawler"),)))
    pinger = replayer.trace(get(listen, "/", "guided.test", "t", extra=(("User-Agent", "Pinger/1.0"),)))
    plain = replayer.trace(get(listen, "/", "guided.test", "t"))
    assert by_detail["map $robot entry '~*crawler'"] in crawler
    assert by_detail["map $robot entry 'Pinger/1.0'"] in pinger
    assert by_detail["map $robot default"] in plain
    assert by_detail["if (...) taken, in location /"] in crawler
    assert by_detail["if (...) not taken, in location /"] in plain
    assert trace.tracer is None  # the tracer is only on while a request is replayed


def test_guided_search_reaches_what_needs_two_inputs() -> None:
    config, requests = _generated(DATA / "guided.conf")
    before = measure(config, requests)
    added = guided_requests(config, requests)
    after = measure(config, requests + added)
    missing_before = {p.detail for p in before.uncovered}
    missing_after = {p.detail for p in after.uncovered}
    assert "location @soon" in missing_before and "location @soon" not in missing_after
    assert "rewrite in location /" not in missing_after
    assert after.percent("location") == 100.0
    # 127.0.0.2 is not staff: a client address is a probe too.
    assert "if (...) taken, in location = /staff" not in missing_after
    assert after.percent() > before.percent()
    assert len(added) <= 10


def test_examples_cover_every_location() -> None:
    for path in sorted(EXAMPLES.glob("*/nginx.conf")):
        config, requests = _generated(path)
        coverage = measure(config, requests + guided_requests(config, requests))
        assert coverage.percent("location") == 100.0, (path, [p.detail for p in coverage.uncovered])
        assert not coverage.replay_errors, coverage.replay_errors[:3]


def test_shadow_reports_coverage_and_compares_the_guided_requests(tmp_path: Path) -> None:
    report = shadow(str(DATA / "guided.conf"), str(tmp_path), max_requests=200)
    assert_equivalent(report, 50)
    coverage = report.coverage
    assert coverage["by_kind"]["location"]["percent"] == 100.0
    assert 0 < coverage["percent"] <= 100.0
    # The guided requests were sent too: @soon is only reached through them, and nginx answered 503.
    assert "location @soon" not in {p["what"] for p in coverage["uncovered"]}
    assert report.statuses.get("503", 0) >= 1
