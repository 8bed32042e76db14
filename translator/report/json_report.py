"""The report as JSON, valid against ``report.schema.json`` (committed beside this module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from translator.report.model import Counts, Report

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
FORMAT_VERSION = 1


def _counts(counts: Counts) -> dict[str, Any]:
    return {**counts.model_dump(), "scored": counts.scored, "readiness": counts.readiness}


def to_data(report: Report) -> dict[str, Any]:
    return {
        "format": "nginx-migrate-report",
        "version": FORMAT_VERSION,
        "config": report.config,
        "readiness": report.readiness,
        "totals": _counts(report.totals),
        "shadow_report": report.shadow_report,
        "global_blockers": report.global_blockers,
        "units": [{**unit.model_dump(exclude={"counts"}), "counts": _counts(unit.counts)} for unit in report.units],
        "occurrences": [entry.model_dump() for entry in report.entries],
    }


def render(report: Report) -> str:
    return json.dumps(to_data(report), indent=2, ensure_ascii=False) + "\n"


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]
