"""examples/rewrite/nginx.conf, the rewrite-heavy example, must shadow with 0 differences: what
``nginx-migrate shadow examples/rewrite/nginx.conf --max-requests 1000`` runs, bounded in time."""

from __future__ import annotations

import json
from pathlib import Path

from shadow.runner import run_shadow

EXAMPLE = Path(__file__).parent.parent / "examples" / "rewrite" / "nginx.conf"


def test_rewrite_example_is_equivalent_under_newproxy(tmp_path: Path) -> None:
    report = run_shadow(str(EXAMPLE), against="newproxy", workdir=str(tmp_path), max_requests=1000, max_seconds=150)
    assert report.requests >= 1000, report.requests
    problems = [{"curl": e["curl"], "diffs": e["diffs"]} for e in report.diffs if e["verdict"] != "equivalent"]
    assert (report.different, report.errors) == (0, 0), json.dumps(problems[:5], indent=1)
    # Issue 7: every location of the example is reached by the traffic that was compared.
    assert report.coverage["by_kind"]["location"]["percent"] == 100.0, report.coverage["uncovered"]
    # Everything in the example is translated: the only gaps are caveats (process model, server_tokens),
    # none unsupported or unknown.
    levels = {item["directive"]: item["level"] for item in report.gaps["items"]}
    assert set(levels.values()) == {"caveat"}, levels
    assert set(levels) == {"worker_processes", "worker_connections", "server_tokens", "proxy_pass"}, levels
