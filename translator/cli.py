"""`nginx-migrate convert`: translate an nginx config into a newproxy config and summarise the gaps."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nginx_parser import ConfigError, parse_config
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


def run_convert(path: str, out: str | None, console: Console | None = None, context: str | None = None) -> int:
    """``context`` is where the file's directives live (main, http, server, location); None detects it,
    so a conf.d snippet converts as it is."""
    console = console or Console(stderr=out is None)
    try:
        translation = translate(parse_config(path, context=context))
    except ConfigError as exc:
        print(f"nginx-migrate: {exc}", file=sys.stderr)
        return 1
    yaml_text = translation.config.dump_yaml()
    if out is None:
        sys.stdout.write(yaml_text)
    else:
        Path(out).write_text(yaml_text)
        console.print(f"wrote {out}")
    translated = translation.count("exact", "caveat")
    untranslated = translation.count("unsupported", "unknown")
    console.print(summary_table(translation))
    if translation.gaps:
        console.print(gaps_table(translation))
    console.print(f"translated: {translated}, unsupported: {untranslated}, "
                  f"ignored: {translation.count('ignored')}, total: {len(translation.occurrences)}")
    return 0
