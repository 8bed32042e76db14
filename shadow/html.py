"""A shadow report as one self-contained HTML page: inline CSS, no script, no external resource.

Per server and location: requests, equivalent, different, errors. Then each difference side by side
(nginx | the target under test), with the request as a curl command and the smallest request that
still shows it; then the coverage of the config, with what the traffic did not reach. The key
numbers carry ids and ``data-value`` attributes (``#requests``, ``#equivalent``, ``#different``,
``#errors``, ``#noise``, ``#coverage``) for tools and tests.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from shadow.runner import ShadowReport

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; }
.ok { color: #176b1f; } .bad { color: #b00020; font-weight: bold; } .note { color: #777; }
.key { font-size: 1.4em; font-weight: bold; }
pre { margin: 0; white-space: pre-wrap; word-break: break-all; max-width: 48em; }
code { font-family: ui-monospace, monospace; }
section.diff { border-top: 2px solid #ddd; margin-top: 1em; }
"""
_MAX_DIFFS = 50
_VALUE_LIMIT = 1500


def _key(name: str, value: int | float, text: str | None = None, good: bool | None = None) -> str:
    css = "key" + ("" if good is None else " ok" if good else " bad")
    shown = escape(text if text is not None else str(value))
    return f'<span class="{css}" id="{name}" data-value="{value}">{shown}</span>'


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False, default=str)
    if len(text) > _VALUE_LIMIT:
        text = text[:_VALUE_LIMIT] + f"... ({len(text)} chars)"
    return f"<pre>{escape(text)}</pre>"


def _groups(report: ShadowReport) -> list[str]:
    rows = ["<h2>Per server and location</h2>", "<table><tr><th>server / location</th><th>requests</th>"
            "<th>equivalent</th><th>different</th><th>errors</th></tr>"]
    for group, counts in sorted(report.by_group.items()):
        bad = counts.different or counts.errors
        rows.append(f'<tr class="{"bad" if bad else "ok"}"><td><code>{escape(group)}</code></td>'
                    f'<td class="num">{counts.requests}</td><td class="num">{counts.equivalent}</td>'
                    f'<td class="num">{counts.different}</td><td class="num">{counts.errors}</td></tr>')
    rows.append("</table>")
    return rows


def _diffs(report: ShadowReport) -> list[str]:
    shown = [e for e in report.diffs if e["verdict"] != "equivalent"]
    if not shown:
        return ["<h2>Differences</h2>", '<p class="ok">None.</p>']
    parts = [f"<h2>Differences ({len(shown)})</h2>"]
    for number, entry in enumerate(shown[:_MAX_DIFFS], 1):
        request = entry["request"]
        parts.append(f'<section class="diff" id="diff-{number}">')
        parts.append(f"<h3>{number}. {escape(entry['verdict'])}: <code>{escape(request['method'])} "
                     f"{escape(request['target'])}</code></h3>")
        parts.append(f'<p class="note">{escape(request["group"])} ({escape(request["label"])})</p>')
        parts.append(f"<p>Request: <code>{escape(entry['curl'])}</code></p>")
        minimal = entry.get("minimal")
        if minimal is not None and minimal["curl"] != entry["curl"]:
            parts.append(f'<p>Smallest request that still shows it: <code class="minimal">'
                         f'{escape(minimal["curl"])}</code></p>')
        parts.append(f"<table><tr><th>field</th><th>nginx</th><th>{escape(report.against)}</th></tr>")
        for diff in entry["diffs"]:
            parts.append(f"<tr><td><code>{escape(diff['field'])}</code></td><td>{_value(diff['nginx'])}</td>"
                         f"<td>{_value(diff['other'])}</td></tr>")
        for note in entry["notes"]:
            parts.append(f'<tr class="note"><td><code>note {escape(note["field"])}</code></td>'
                         f"<td>{_value(note['nginx'])}</td><td>{_value(note['other'])}</td></tr>")
        parts.append("</table></section>")
    if len(shown) > _MAX_DIFFS:
        parts.append(f"<p>... and {len(shown) - _MAX_DIFFS} more (see the JSON report).</p>")
    return parts


def _coverage(report: ShadowReport) -> list[str]:
    coverage = report.coverage
    if not coverage or "error" in coverage:
        reason = coverage.get("error", "not measured") if coverage else "not measured"
        return ["<h2>Coverage</h2>", f"<p>{escape(str(reason))}</p>"]
    percent = coverage["percent"]
    parts = ["<h2>Coverage</h2>",
             f"<p>{_key('coverage', percent, f'{percent}%')} of {coverage['total']} config parts.</p>",
             "<table><tr><th>kind</th><th>covered</th><th>total</th><th>%</th></tr>"]
    for kind, counts in coverage["by_kind"].items():
        parts.append(f'<tr><td>{escape(kind)}</td><td class="num">{counts["covered"]}</td>'
                     f'<td class="num">{counts["total"]}</td><td class="num">{counts["percent"]}</td></tr>')
    parts.append("</table>")
    if coverage["uncovered"]:
        parts.append("<p>Not reached by the traffic:</p><ul>")
        parts.extend(f"<li><code>{escape(part['source'])}</code>: {escape(part['what'])}</li>"
                     for part in coverage["uncovered"])
        parts.append("</ul>")
    return parts


def render(report: ShadowReport) -> str:
    clean = report.different == 0 and report.errors == 0
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Shadow report: {escape(report.config)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Shadow report: <code>{escape(report.config)}</code></h1>",
        f"<p>nginx against <b>{escape(report.against)}</b>: {_key('requests', report.requests)} requests, "
        f"{_key('equivalent', report.equivalent, good=True)} equivalent, "
        f"{_key('different', report.different, good=report.different == 0)} different, "
        f"{_key('errors', report.errors, good=report.errors == 0)} errors.</p>",
        f'<p id="verdict" data-value="{"equivalent" if clean else "different"}" class="{"ok" if clean else "bad"}">'
        f'{"Equivalent on every request." if clean else "Not equivalent: see the differences below."}</p>',
    ]
    if report.calibrated:
        parts.append(f"<p>Noise calibration (nginx against a second nginx first): {_key('noise', report.noise)} "
                     "request(s) with differences two nginx show too, reported as notes, not counted.</p>")
    parts += _groups(report) + _diffs(report) + _coverage(report)
    if report.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li>{escape(note)}</li>" for note in report.notes)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
