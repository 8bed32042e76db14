"""Over the real-world corpus (../shared/corpus/realworld, each file in its INDEX.tsv context, includes
as test_parser_corpus reads them): every directive occurrence the parser sees is in the gap report
exactly once, at its file:line; and the corpus summary command counts the same occurrences."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nginx_parser.inventory import occurrences
from shadow.cli import main
from tests.test_parser_corpus import (  # noqa: F401
    CORPUS,
    EXPECTED_FAILURES,
    PARSING,
    parse_corpus_file,
    sysroot,
)
from translator.report.corpus import summarise, total
from translator.report.model import build_report
from translator.translate import translate


@pytest.mark.parametrize("name", PARSING)
def test_every_occurrence_is_reported_once_at_its_line(name: str, sysroot: Path) -> None:  # noqa: F811
    config = parse_corpus_file(name, sysroot)
    report = build_report(config, translate(config))
    raw = Counter((o.file, o.line, o.name, o.entry) for o in occurrences(config))
    reported = Counter((e.file, e.line, e.directive, e.kind == "entry") for e in report.entries)
    assert reported == raw
    assert len(report.entries) == sum(raw.values()) > 0
    for e in report.entries:
        assert e.level in ("exact", "caveat", "ignored", "unsupported", "unknown")
        assert e.context and (e.reason or e.level == "exact")


def test_corpus_summary_counts_the_parsers_occurrences(sysroot: Path) -> None:  # noqa: F811
    rows = summarise(str(CORPUS), prefix=str(sysroot / "etc" / "nginx"), sysroot=str(sysroot),
                     prefixes=[("h5bp__*", str(CORPUS / "includes" / "h5bp")),
                               ("matomo__*", str(CORPUS / "includes" / "matomo"))])
    by_name = {row.file: row for row in rows}
    assert set(by_name) == set(PARSING) | set(EXPECTED_FAILURES)
    for name in PARSING:
        row = by_name[name]
        assert row.error is None, row.error
        assert row.occurrences == len(occurrences(parse_corpus_file(name, sysroot)))
        assert abs(sum(float(row.percent(level)) for level in row.counts) - 100) < 0.5
    for name, (line, _) in EXPECTED_FAILURES.items():
        assert by_name[name].error is not None and f"{CORPUS / name}:{line}: " in str(by_name[name].error)
    assert total(rows).occurrences == sum(by_name[name].occurrences for name in PARSING)


def test_corpus_command_on_a_small_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.conf").write_text("events {}\nhttp {\n  server {\n    listen 80;\n    ssi on;\n  }\n}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "snippet.conf").write_text("location / {\n  return 200;\n}\n")
    assert main(["corpus", str(tmp_path), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    # events, http, server, listen, ssi: 3 exact... exact 60, unsupported 20, ignored 20
    assert "| good.conf | detect | 5 | 60.0 | 0.0 | 20.0 | 0.0 | 20.0 |  |" in out
    assert "| sub/snippet.conf | detect | 2 | 100.0 |" in out
    assert "| total | 2 of 2 files | 7 |" in out
    (tmp_path / "INDEX.tsv").write_text("file\tcontext\ngood.conf\thttp\n")
    assert main(["corpus", str(tmp_path)]) == 1  # in http context, "events" is not allowed
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{tmp_path / 'good.conf'}:1: ") and "Traceback" not in captured.err
    assert "0 of 1 files" in captured.out
