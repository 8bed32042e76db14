"""The report as SARIF 2.1.0, for code-scanning UIs: each occurrence not translated exactly is a result.

ruleId is ``<level>/<directive>``; levels map to SARIF's: unsupported and unknown -> error, caveat ->
warning, ignored -> none (reported, not a problem). Locations are the file and line of the directive,
relative to the current directory when the file is under it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from newproxy import __version__
from translator.report.model import Entry, Report

SARIF_LEVELS = {"caveat": "warning", "unsupported": "error", "unknown": "error", "ignored": "none"}
SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def _uri(path: str, base: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return absolute.as_uri()


def _message(entry: Entry) -> str:
    text = f"{entry.directive} ({entry.level}) in {entry.context}: {entry.reason or 'no reason recorded'}"
    return f"{text}. Suggestion: {entry.suggestion}" if entry.suggestion else text


def to_data(report: Report, base: str | None = None) -> dict[str, Any]:
    root = Path(os.path.abspath(base or os.getcwd()))
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for entry in report.entries:
        if entry.level == "exact":
            continue
        rule_id = f"{entry.level}/{entry.directive}"
        if rule_id not in rules:
            rules[rule_id] = {
                "id": rule_id,
                "name": f"{entry.level}-{entry.directive}",
                "shortDescription": {"text": f'"{entry.directive}" is {entry.level} in newproxy'},
                "defaultConfiguration": {"level": SARIF_LEVELS[entry.level]},
            }
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": list(rules).index(rule_id),
            "level": SARIF_LEVELS[entry.level],
            "message": {"text": _message(entry)},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(entry.file, root)},
                    "region": {"startLine": entry.line},
                },
                "logicalLocations": [{"fullyQualifiedName": entry.context, "kind": "namespace"}],
            }],
        }
        if entry.stub:
            result["properties"] = {"stub": entry.stub, "phase": entry.phase}
        results.append(result)
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "nginx-migrate", "version": __version__,
                                "rules": list(rules.values())}},
            "results": results,
            "properties": {"readiness": report.readiness, "occurrences": report.totals.occurrences},
        }],
    }


def render(report: Report) -> str:
    return json.dumps(to_data(report), indent=2, ensure_ascii=False) + "\n"
