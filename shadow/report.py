"""Show a ``ShadowReport``: a rich table for the terminal, JSON for machines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shadow.runner import ShadowReport
from shadow.traffic import GROUP_SEP

_VALUE_LIMIT = 400


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= _VALUE_LIMIT else text[:_VALUE_LIMIT] + f"... ({len(text)} chars)"


def _counts_table(report: ShadowReport) -> Table:
    table = Table(title=f"nginx vs {report.against}: {report.config}", show_lines=False)
    table.add_column("server / location", overflow="fold")
    table.add_column("requests", justify="right")
    table.add_column("equivalent", justify="right", style="green")
    table.add_column("different", justify="right")
    table.add_column("errors", justify="right")
    for group, counts in report.by_group.items():
        server, sep, location = group.partition(f" {GROUP_SEP} ")
        table.add_row(
            f"  {location}" if sep else server,
            str(counts.requests),
            str(counts.equivalent),
            Text(str(counts.different), style="bold red" if counts.different else ""),
            Text(str(counts.errors), style="bold yellow" if counts.errors else ""),
        )
    return table


def render(report: ShadowReport, console: Console | None = None, max_diffs: int = 10) -> None:
    """Print the per-location table, the totals, notes, the gap summary and the first diffs."""
    console = console or Console()
    console.print(_counts_table(report))
    style = "bold green" if report.all_equivalent else "bold red"
    console.print(
        Text(
            f"{report.requests} requests: {report.equivalent} equivalent, {report.different} different, "
            f"{report.errors} errors",
            style=style,
        )
    )
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items()))
    console.print(
        f"[dim]nginx answered {statuses}; {report.upstream_requests} upstream requests "
        f"({report.upstream_reused} on a kept-alive connection)[/dim]"
    )
    if report.noted:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(report.note_kinds.items()))
        console.print(f"{report.noted} request(s) with notes, reported but not counted ({kinds})")
    if "error" in report.gaps:
        console.print(f"[yellow]translation of the original config failed: {report.gaps['error']}[/yellow]")
    elif report.gaps:
        console.print(
            f"translation: {report.gaps.get('translated')} translated, {report.gaps.get('unsupported')} unsupported, "
            f"{report.gaps.get('count')} gap(s) (see `nginx-migrate convert`)"
        )
    if report.legacy_requests is not None:
        console.print(f"strangler fallback: the legacy nginx target served {report.legacy_requests} request(s) "
                      "newproxy handed over (its access.log)")
    if report.calibrated:
        console.print(f"noise calibration (nginx against nginx first): {report.noise} request(s) with differences "
                      "seen between two nginx too, reported as notes `noise:...`, not counted")
    _coverage(report, console)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")
    shown = [e for e in report.diffs if e["verdict"] != "equivalent"] or report.diffs
    for i, entry in enumerate(shown[:max_diffs], 1):
        request = entry["request"]
        console.rule(f"{i}. {entry['verdict']}: {request['method']} {request['target']} ({request['label']})")
        console.print(f"[dim]{request['group']}[/dim]")
        console.print(Text(entry["curl"], style="cyan"))
        if "minimal" in entry and entry["minimal"]["curl"] != entry["curl"]:
            console.print(Text("  smallest request showing it: " + entry["minimal"]["curl"], style="cyan"))
        for diff in entry["diffs"]:
            console.print(Text(f"  {diff['field']}", style="bold"))
            console.print(Text(f"    nginx:            {_short(diff['nginx'])}"))
            console.print(Text(f"    {report.against + ':':<17} {_short(diff['other'])}"))
        for note in entry["notes"]:
            console.print(
                Text(
                    f"  note {note['field']}: nginx {_short(note['nginx'])}, {report.against} {_short(note['other'])}",
                    style="dim",
                )
            )
    if len(shown) > max_diffs:
        console.print(f"... and {len(shown) - max_diffs} more (use --json for all)")


def _where(source: str) -> str:
    """file:line as the user would type it: relative to the working directory when under it."""
    path, _, line = source.partition(":")
    relative = os.path.relpath(path)
    return f"{relative if not relative.startswith('..') else path}:{line}"


def _coverage(report: ShadowReport, console: Console, max_listed: int = 15) -> None:
    coverage = report.coverage
    if not coverage:
        return
    if "error" in coverage:
        console.print(f"[yellow]coverage not measured: {coverage['error']}[/yellow]")
        return
    kinds = ", ".join(f"{kind} {c['covered']}/{c['total']}" for kind, c in coverage["by_kind"].items())
    console.print(f"coverage: {coverage['percent']}% of {coverage['total']} config parts ({kinds})")
    for part in coverage["uncovered"][:max_listed]:
        console.print(Text(f"  not covered: {_where(part['source'])}: {part['what']}", style="dim"))
    if len(coverage["uncovered"]) > max_listed:
        console.print(f"[dim]  ... and {len(coverage['uncovered']) - max_listed} more (use --json for all)[/dim]")
    for error in coverage.get("replay_errors", []):
        console.print(f"[yellow]  coverage replay failed: {error}[/yellow]")


def write_json(report: ShadowReport, path: str | Path) -> None:
    Path(path).write_text(report.model_dump_json(indent=2) + "\n")
