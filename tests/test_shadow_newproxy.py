"""nginx vs newproxy through the harness: the differential test the design asks for.

The bundled example must be equivalent; when it is not, the failure message lists the diffs
(run ``nginx-migrate demo`` for the full report).
"""

from __future__ import annotations

import json
from pathlib import Path


from shadow.cli import EXAMPLE
from shadow.runner import run_shadow



def test_example_is_equivalent_under_newproxy(tmp_path: Path) -> None:
    report = run_shadow(str(EXAMPLE), against="newproxy", workdir=str(tmp_path), max_requests=400, max_seconds=120)
    assert report.requests >= 200
    problems = [{"curl": e["curl"], "diffs": e["diffs"]} for e in report.diffs if e["verdict"] != "equivalent"]
    assert (report.different, report.errors) == (0, 0), json.dumps(problems[:5], indent=1)
    assert report.gaps["count"] >= 0
