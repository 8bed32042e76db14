"""The report as rich tables, for a terminal."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from translator.report.model import LEVELS, Report

STYLES = {"exact": "green", "caveat": "yellow", "ignored": "dim", "unsupported": "red", "unknown": "magenta"}


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def totals_table(report: Report) -> Table:
    table = Table(title=Text(f"Directive occurrences in {report.config}"))
    table.add_column("level")
    table.add_column("count", justify="right")
    for level in LEVELS:
        table.add_row(Text(level, style=STYLES[level]), str(getattr(report.totals, level)))
    table.add_row("total", str(report.totals.occurrences))
    return table


def units_table(report: Report) -> Table:
    table = Table(title="Servers and locations")
    for column in ("server / location", "where", "occurrences", "readiness", "shadow", "gaps"):
        table.add_column(column, justify="right" if column in ("occurrences", "readiness", "gaps") else "left",
                         overflow="fold")
    for unit in report.units:
        shadow = "-" if unit.shadow_verified is None else "verified" if unit.shadow_verified else "not verified"
        name = unit.label if unit.kind == "server" else "  " + unit.label
        table.add_row(Text(name), Text(f"{unit.file}:{unit.line}"), str(unit.counts.occurrences),
                      _percent(unit.readiness), shadow, str(len(unit.blockers)))
    return table


def gaps_table(report: Report) -> Table:
    table = Table(title="Gaps (everything not translated exactly)")
    for column in ("where", "context", "directive", "level", "reason", "suggestion"):
        table.add_column(column, overflow="fold")
    for entry in report.entries:
        if entry.level in ("caveat", "unsupported", "unknown"):
            # Text, not str: "server[name:port]" must not be read as rich markup
            table.add_row(Text(entry.where), Text(entry.context), Text(entry.directive),
                          Text(entry.level, style=STYLES[entry.level]), Text(entry.reason), Text(entry.suggestion))
    return table


def render(report: Report) -> Group:
    summary = Text(f"readiness {_percent(report.readiness)}: {report.totals.exact} of {report.totals.scored} "
                   f"scored directive occurrences translated exactly ({report.totals.occurrences} directives, "
                   f"{len(report.entries)} occurrences with include lines and data entries)")
    return Group(totals_table(report), units_table(report), gaps_table(report), summary)


def print_report(report: Report, console: Console) -> None:
    console.print(render(report))
