"""The report as Markdown (GitHub-flavoured tables)."""

from __future__ import annotations

from translator.report.model import LEVELS, Report


def cell(text: str) -> str:
    """A table cell: pipes escaped, newlines folded (Lua bodies, multi-line args)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def render(report: Report) -> str:
    out = [f"# Migration report: `{report.config}`", ""]
    out.append(f"Readiness: **{_percent(report.readiness)}** ({report.totals.exact} of {report.totals.scored} "
               f"scored directive occurrences translated exactly; {report.totals.occurrences} directives, "
               f"{len(report.entries)} occurrences with include lines and data entries).")
    if report.shadow_report:
        out.append(f"Shadow evidence: `{report.shadow_report}`.")
    out += ["", "| level | directives |", "|---|---:|"]
    out += [f"| {level} | {getattr(report.totals, level)} |" for level in LEVELS]
    out += [f"| total | {report.totals.occurrences} |", "", "## Servers and locations", "",
            "| server / location | where | occurrences | readiness | shadow | gaps |", "|---|---|---:|---:|---|---:|"]
    for unit in report.units:
        shadow = "-" if unit.shadow_verified is None else "verified" if unit.shadow_verified else "not verified"
        name = unit.label if unit.kind == "server" else f"&nbsp;&nbsp;{unit.label}"
        out.append(f"| {cell(name)} | {cell(unit.file)}:{unit.line} | {unit.counts.occurrences} | "
                   f"{_percent(unit.readiness)} | {shadow} | {len(unit.blockers)} |")
    gaps = [e for e in report.entries if e.level in ("caveat", "unsupported", "unknown")]
    out += ["", f"## Gaps ({len(gaps)})", ""]
    if gaps:
        out += ["| where | context | directive | level | reason | suggestion |", "|---|---|---|---|---|---|"]
        for entry in gaps:
            reason = entry.reason + (f" ([stub]({entry.stub}))" if entry.stub else "")
            out.append(f"| {cell(entry.where)} | {cell(entry.context)} | `{cell(entry.directive)}` | {entry.level} | "
                       f"{cell(reason)} | {cell(entry.suggestion)} |")
    else:
        out.append("None: every directive is translated exactly or has no runtime meaning for newproxy.")
    return "\n".join(out) + "\n"
