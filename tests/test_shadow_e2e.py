"""The whole harness on real processes: nginx against nginx must be equivalent, and a changed
nginx must not be. Every run is bounded (per-request, start and stop timeouts) and leaves no process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nginx_parser import Directive
from shadow.cli import main
from shadow.runner import HarnessError, run_shadow


CONF = Path(__file__).parent / "data" / "shadow" / "small.conf"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _add_to_http(*directives: Directive):  # type: ignore[no-untyped-def]
    def tweak(tree: list[Directive]) -> list[Directive]:
        return [
            d.model_copy(update={"block": [*directives, *(d.block or [])]}) if d.name == "http" else d for d in tree
        ]

    return tweak


def test_nginx_against_nginx_is_equivalent(tmp_path: Path) -> None:
    report = run_shadow(
        str(CONF),
        against="nginx",
        workdir=str(tmp_path),
        refuse={"down.internal:81"},
        max_requests=400,
        max_seconds=120,
    )
    assert report.requests >= 200
    assert (report.different, report.errors) == (0, 0), json.dumps(report.diffs[:3], indent=1)
    assert report.equivalent == report.requests
    # The run exercised what it should: upstreams, 502s from the refusing one, returns, redirects.
    assert report.upstream_requests > 50
    assert report.upstream_reused > 0  # location /pool/ has an upstream keepalive pool
    for status in ("200", "204", "301", "403", "502"):
        assert report.statuses.get(status), report.statuses
    assert set(report.listens) == {"nginx", "nginx-b"}
    assert report.listens["nginx"]["*:80"] != report.listens["nginx-b"]["*:80"]
    assert "app1.internal:8080" in report.upstreams
    assert _processes_mentioning(str(tmp_path)) == []


def test_a_different_nginx_is_reported(tmp_path: Path) -> None:
    tweak = _add_to_http(
        Directive(name="add_header", args=["X-Shadow-Test", "1"], file="t", line=1),
        Directive(name="proxy_set_header", args=["X-Extra", "1"], file="t", line=2),
    )
    report = run_shadow(
        str(CONF), against="nginx", workdir=str(tmp_path), tweak_other=tweak, max_requests=120, max_seconds=120
    )
    assert report.different > 0
    fields = {d["field"] for entry in report.diffs for d in entry["diffs"]}
    assert "headers" in fields
    assert any(f.startswith("upstream[0].headers") for f in fields)
    entry = next(e for e in report.diffs if any(d["field"] == "headers" for d in e["diffs"]))
    header_diff = next(d for d in entry["diffs"] if d["field"] == "headers")
    assert ["X-Shadow-Test", "1"] in header_diff["other"] and header_diff["nginx"] == []
    assert entry["curl"].startswith("curl ")
    assert _processes_mentioning(str(tmp_path)) == []


def test_a_target_that_cannot_start_is_a_harness_error(tmp_path: Path) -> None:
    tweak = _add_to_http(Directive(name="no_such_directive", args=["1"], file="t", line=1))
    with pytest.raises(HarnessError) as info:
        run_shadow(str(CONF), against="nginx", workdir=str(tmp_path), tweak_other=tweak, max_requests=10)
    assert "no_such_directive" in str(info.value)
    assert _processes_mentioning(str(tmp_path)) == []


def test_cli_shadow_writes_json_and_keeps_the_work_dir(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code = main(
        [
            "shadow",
            str(CONF),
            "--against",
            "nginx",
            "--max-requests",
            "60",
            "--json",
            str(out),
            "--keep",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["requests"] == 60 and data["equivalent"] == 60 and data["different"] == 0 and data["errors"] == 0
    assert "by_group" in data and "by_label" in data and data["diffs"] == []
    assert (tmp_path / "run" / "nginx" / "nginx.conf").exists()  # --keep keeps the work dir


def test_a_run_cut_short_is_not_clean(tmp_path: Path) -> None:
    report = run_shadow(str(CONF), against="nginx", workdir=str(tmp_path), max_seconds=0.0)
    assert report.requests == 0 and report.errors == 1 and not report.all_equivalent
    assert any(n.startswith("stopped after") for n in report.notes)
    assert _processes_mentioning(str(tmp_path)) == []
