"""``nginx-migrate report`` and ``nginx-migrate corpus``.

Exit codes: 0 the report was written; 1 a config error (``file:line: message``, no traceback), a
shadow report that cannot be read, or (corpus) a file that does not parse or translate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from nginx_parser import ConfigError, parse_config
from translator.report import html_report, json_report, markdown, sarif, terminal
from translator.report.corpus import markdown as corpus_markdown
from translator.report.corpus import summarise
from translator.report.corpus import table as corpus_table
from translator.report.lua import write_stubs
from translator.report.model import Report, build_report
from translator.translate import translate

FORMATS = ("terminal", "markdown", "json", "html", "sarif")
_RENDERERS = {"markdown": markdown.render, "json": json_report.render, "html": html_report.render,
              "sarif": sarif.render}


def load_shadow(path: str) -> dict[str, Any]:
    """A ``nginx-migrate shadow --json`` report; a ValueError says what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the shadow report ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON shadow report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("by_group"), dict):
        raise ValueError(  # noqa: TRY004 - a user's bad file, reported like the other read errors
            f"{path}: not a shadow report (no by_group): write one with `nginx-migrate shadow --json`")
    return data


def make_report(path: str, context: str | None, shadow_report: str | None) -> Report:
    nginx = parse_config(path, context=context)
    translation = translate(nginx)
    shadow = load_shadow(shadow_report) if shadow_report else None
    return build_report(nginx, translation, shadow, shadow_report)


def run_report(path: str, fmt: str, out: str | None = None, shadow_report: str | None = None,
               context: str | None = None) -> int:
    try:
        report = make_report(path, context, shadow_report)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"nginx-migrate: {exc}", file=sys.stderr)
        return 1
    try:
        _write(report, fmt, out)
    except OSError as exc:
        print(f"nginx-migrate: cannot write {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _write(report: Report, fmt: str, out: str | None) -> None:
    if out is not None:
        write_stubs(report, Path(out).parent)  # the report links to them, relative to where it is
    if fmt == "terminal":
        if out is None:
            terminal.print_report(report, Console())
        else:
            with open(out, "w") as handle:
                terminal.print_report(report, Console(file=handle, width=200, no_color=True))
        return
    text = _RENDERERS[fmt](report)
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def run_corpus(directory: str, fmt: str = "terminal", prefix: str | None = None, sysroot: str | None = None,
               prefix_for: list[str] | None = None) -> int:
    """``prefix_for``: ``GLOB=DIR`` strings (see corpus.summarise)."""
    if not Path(directory).is_dir():
        print(f"nginx-migrate: {directory}: not a directory", file=sys.stderr)
        return 1
    pairs = []
    for item in prefix_for or []:
        glob, sep, folder = item.partition("=")
        if not sep or not glob or not folder:
            print(f'nginx-migrate: --prefix-for "{item}": expected GLOB=DIR', file=sys.stderr)
            return 1
        pairs.append((glob, folder))
    rows = summarise(directory, prefix=prefix, sysroot=sysroot, prefixes=pairs)
    base = str(Path(directory).resolve()) if Path(directory).is_absolute() else directory
    if fmt == "markdown":
        sys.stdout.write(corpus_markdown(rows, base))
    else:
        Console(width=max(Console().width, 160)).print(corpus_table(rows, base))
    errors = [row.error for row in rows if row.error]
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0
