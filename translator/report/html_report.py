"""The report as one self-contained HTML page: inline CSS, no script, no external resource.

The key numbers carry ids and data attributes (``#occurrences``, ``#readiness``, ``#level-<name>``)
so that tools and tests can read them from the rendered page.
"""

from __future__ import annotations

from html import escape

from translator.report.model import LEVELS, Report

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; }
.exact { color: #176b1f; } .caveat { color: #8a6100; } .ignored { color: #777; }
.unsupported { color: #b00020; font-weight: bold; } .unknown { color: #7b1fa2; font-weight: bold; }
.key { font-size: 1.4em; font-weight: bold; }
code { font-family: ui-monospace, monospace; }
"""


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def render(report: Report) -> str:
    e = escape
    totals = report.totals
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Migration report: {e(report.config)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Migration report: <code>{e(report.config)}</code></h1>",
        ("<p>Readiness: "
         f'<span class="key" id="readiness" data-value="{report.readiness:.4f}">{_percent(report.readiness)}</span>'
         f' — <span id="exact-count" data-value="{totals.exact}">{totals.exact}</span> of '
         f'<span id="scored" data-value="{totals.scored}">{totals.scored}</span> scored directive occurrences '
         f'translated exactly; <span class="key" id="occurrences" data-value="{totals.occurrences}">'
         f"{totals.occurrences}</span> directives, "
         f'<span id="all-occurrences" data-value="{len(report.entries)}">{len(report.entries)}</span> occurrences '
         "with include lines and data entries.</p>"),
    ]
    if report.shadow_report:
        parts.append(f"<p>Shadow evidence: <code>{e(report.shadow_report)}</code></p>")
    parts.append("<table><tr><th>level</th><th>directives</th></tr>")
    for level in LEVELS:
        count = getattr(totals, level)
        parts.append(f'<tr><td class="{level}">{level}</td>'
                     f'<td class="num" id="level-{level}" data-value="{count}">{count}</td></tr>')
    parts.append("</table><h2>Servers and locations</h2><table><tr><th>server / location</th><th>where</th>"
                 "<th>occurrences</th><th>readiness</th><th>shadow</th><th>gaps</th></tr>")
    for unit in report.units:
        shadow = "-" if unit.shadow_verified is None else "verified" if unit.shadow_verified else "not verified"
        indent = "" if unit.kind == "server" else "&nbsp;&nbsp;&nbsp;&nbsp;"
        parts.append(
            f'<tr data-unit="{e(unit.key)}" data-readiness="{unit.readiness:.4f}"><td>{indent}{e(unit.label)}</td>'
            f"<td><code>{e(unit.file)}:{unit.line}</code></td><td class=\"num\">{unit.counts.occurrences}</td>"
            f'<td class="num">{_percent(unit.readiness)}</td><td>{shadow}</td>'
            f'<td class="num">{len(unit.blockers)}</td></tr>')
    gaps = [entry for entry in report.entries if entry.level in ("caveat", "unsupported", "unknown")]
    parts.append(f'<h2>Gaps (<span id="gaps" data-value="{len(gaps)}">{len(gaps)}</span>)</h2>')
    parts.append("<table><tr><th>where</th><th>context</th><th>directive</th><th>level</th><th>reason</th>"
                 "<th>suggestion</th></tr>")
    for entry in gaps:
        stub = f' (stub: <a href="{e(entry.stub)}">{e(entry.stub)}</a>)' if entry.stub else ""
        parts.append(
            f'<tr class="gap" data-level="{entry.level}"><td><code>{e(entry.where)}</code></td>'
            f"<td>{e(entry.context)}</td><td><code>{e(entry.directive)}</code></td>"
            f'<td class="{entry.level}">{entry.level}</td><td>{e(entry.reason)}{stub}</td>'
            f"<td>{e(entry.suggestion)}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"
