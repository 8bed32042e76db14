"""`nginx-migrate convert`: translate an nginx config into a newproxy config and summarise the gaps."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nginx_parser import ConfigError, parse_config
from translator.fallback import Fallback, FallbackError, fallback_locations, parse_fallback
from translator.report.lua import PLUGIN_DIR, write_stubs
from translator.report.model import build_report
from translator.report.plan import render as render_plan
from translator.translate import Translation, translate


def summary_table(translation: Translation) -> Table:
    table = Table(title="Directive occurrences", show_lines=False)
    table.add_column("level")
    table.add_column("count", justify="right")
    for level in ("exact", "caveat", "ignored", "unsupported", "unknown"):
        table.add_row(level, str(translation.count(level)))  # type: ignore[arg-type]
    return table


def gaps_table(translation: Translation) -> Table:
    table = Table(title="Gaps (everything not translated exactly)")
    for column in ("where", "context", "directive", "level", "reason"):
        table.add_column(column)
    for gap in translation.gaps:
        table.add_row(f"{gap.file}:{gap.line}", gap.context, gap.directive, gap.level, gap.reason)
    return table


def fallback_table(translation: Translation, legacy: Fallback) -> Table:
    table = Table(title=f"Served by legacy nginx via fallback ({legacy.url})")
    for column in ("server", "location", "where"):
        table.add_column(column)
    for server, location, where in fallback_locations(translation.config):
        table.add_row(server, location, where)
    return table


def plan_path(out: str) -> Path:
    """Where convert writes the migration plan for ``-o OUT``: beside it, ``proxy.yaml`` -> ``proxy.plan.md``."""
    path = Path(out)
    return path.with_name(f"{path.stem}.plan.md")


def run_convert(path: str, out: str | None, console: Console | None = None, context: str | None = None,
                plan: str | None = None, fallback: str | None = None) -> int:
    """``context`` is where the file's directives live (main, http, server, location); None detects it,
    so a conf.d snippet converts as it is. With ``out``, the migration plan is written beside it
    (``plan`` overrides where) and a plugin stub for each Lua directive under ``plugins/`` there."""
    console = console or Console(stderr=out is None)
    try:
        legacy = parse_fallback(fallback) if fallback is not None else None
        nginx = parse_config(path, context=context)
        translation = translate(nginx, fallback=legacy)
    except (ConfigError, FallbackError) as exc:
        print(f"nginx-migrate: {exc}", file=sys.stderr)
        return 1
    yaml_text = translation.config.dump_yaml()
    if out is None:
        sys.stdout.write(yaml_text)
    else:
        Path(out).write_text(yaml_text)
        console.print(f"wrote {out}")
    if out is not None or plan is not None:
        report = build_report(nginx, translation)
        plan_file = Path(plan) if plan is not None else plan_path(str(out))
        try:
            stubs = write_stubs(report, plan_file.parent)
            plan_file.write_text(render_plan(report))
        except OSError as exc:
            print(f"nginx-migrate: cannot write the plan {plan_file}: {exc.strerror}", file=sys.stderr)
            return 1
        console.print(f"wrote {plan_file}" + (f" and {len(stubs)} Lua plugin stub(s) under "
                                              f"{plan_file.parent / PLUGIN_DIR}" if stubs else ""))
        ready = sum(1 for unit in report.units if unit.readiness == 1.0)
        console.print(f"readiness {100 * report.readiness:.1f}%: {ready} of {len(report.units)} servers and "
                      "locations fully translated (the plan says what blocks the others)")
    translated = translation.count("exact", "caveat")
    untranslated = translation.count("unsupported", "unknown")
    console.print(summary_table(translation))
    if translation.gaps:
        console.print(gaps_table(translation))
    if legacy is not None:
        console.print(fallback_table(translation, legacy))
    console.print(f"translated: {translated}, unsupported: {untranslated}, "
                  f"ignored: {translation.count('ignored')}, total: {len(translation.occurrences)}")
    return 0
