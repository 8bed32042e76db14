"""A summary over a directory of nginx configs: per file, the occurrences and the share of each level.

When the directory has an ``INDEX.tsv`` (columns ``file`` and ``context``, as the real-world corpus
has), the files it lists are read in the context it gives; otherwise every ``*.conf`` under the
directory is read with its context detected. Percentages are of all occurrences of the file,
include lines and data-block entries counted, as ``nginx_parser.inventory`` counts them. A file that
does not parse or translate is a row with its ``file:line: message``.
"""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from nginx_parser import ConfigError, parse_config
from translator.registry import Level
from translator.report.markdown import cell
from translator.report.model import build_report
from translator.translate import translate

COLUMNS: tuple[Level, ...] = ("exact", "caveat", "unsupported", "unknown", "ignored")


@dataclass
class Row:
    file: str
    context: str
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def occurrences(self) -> int:
        return sum(self.counts.values())

    def percent(self, level: str) -> str:
        return f"{100 * self.counts.get(level, 0) / self.occurrences:.1f}" if self.occurrences else "-"


def corpus_files(directory: Path) -> list[tuple[Path, str | None]]:
    index = directory / "INDEX.tsv"
    if index.is_file():
        with open(index, newline="") as handle:
            return [(directory / row["file"], row.get("context") or None)
                    for row in csv.DictReader(handle, delimiter="\t") if row.get("file")]
    return [(path, None) for path in sorted(directory.rglob("*.conf"))]


def prefix_for(name: str, prefixes: list[tuple[str, str]], default: str | None) -> str | None:
    """The include prefix of a file: the first ``GLOB=DIR`` whose glob matches its name, else ``default``."""
    for pattern, directory in prefixes:
        if fnmatch.fnmatchcase(name, pattern):
            return directory
    return default


def summarise(directory: str, prefix: str | None = None, sysroot: str | None = None,
              prefixes: list[tuple[str, str]] | None = None) -> list[Row]:
    """``prefixes``: ``(glob, dir)`` pairs giving some files their own include prefix (a relative
    dir is read against ``directory``), e.g. a checkout their relative includes come from."""
    base = Path(directory)
    pairs = [(glob, str(base / folder)) for glob, folder in prefixes or []]
    rows = []
    for path, context in corpus_files(base):
        name = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        row = Row(name, context or "detect")
        try:
            nginx = parse_config(str(path), prefix=prefix_for(name, pairs, prefix), context=context, sysroot=sysroot)
            report = build_report(nginx, translate(nginx))
        except ConfigError as exc:
            row.error = str(exc) if exc.file else f"{path}: {exc}"
        else:
            for entry in report.entries:
                row.counts[entry.level] = row.counts.get(entry.level, 0) + 1
        rows.append(row)
    return rows


def total(rows: list[Row]) -> Row:
    out = Row("total", f"{sum(1 for r in rows if r.error is None)} of {len(rows)} files")
    for row in rows:
        for level, count in row.counts.items():
            out.counts[level] = out.counts.get(level, 0) + count
    return out


def _short(error: str, base: str) -> str:
    return error.replace(base.rstrip("/") + "/", "")


def table(rows: list[Row], base: str = "") -> Table:
    result = Table(title="Corpus summary (percent of each file's directive occurrences)")
    result.add_column("file", overflow="fold")
    result.add_column("context")
    result.add_column("occurrences", justify="right")
    for level in COLUMNS:
        result.add_column(f"{level} %", justify="right")
    result.add_column("error", overflow="fold")
    for row in [*rows, total(rows)]:
        result.add_row(row.file, row.context, str(row.occurrences) if row.error is None else "-",
                       *[row.percent(level) if row.error is None else "-" for level in COLUMNS],
                       _short(row.error or "", base) if base else row.error or "")
    return result


def markdown(rows: list[Row], base: str = "") -> str:
    out = ["| file | context | occurrences | " + " | ".join(f"{level} %" for level in COLUMNS) + " | error |",
           "|---|---|---:|" + "---:|" * len(COLUMNS) + "---|"]
    for row in [*rows, total(rows)]:
        cells = [row.percent(level) if row.error is None else "-" for level in COLUMNS]
        out.append(f"| {cell(row.file)} | {row.context} | {row.occurrences if row.error is None else '-'} | "
                   + " | ".join(cells) + f" | {cell(_short(row.error or '', base) if base else row.error or '')} |")
    return "\n".join(out) + "\n"
