"""The raw-request corpus against real nginx: every case (hand-written and mutated, ~970) sent byte
for byte to nginx and to newproxy; the statuses, the connection's fate, the response bodies and the
bytes forwarded upstream are compared (shadow/raw.py).

Where newproxy still differs is recorded in shadow/data/h1_known_differences.yaml: this test keeps
that ledger exact, both ways. A new difference fails (a regression, or a corpus case added without
being looked at); a listed case that now agrees fails too (take it out: the ledger only shrinks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shadow.h1_corpus import corpus
from shadow.raw import differences, exchange_raw, run_raw

DATA = Path(__file__).parent.parent / "shadow" / "data"
LEDGER = DATA / "h1_known_differences.yaml"


def test_corpus_has_at_least_500_cases_with_unique_names() -> None:
    cases = corpus()
    assert len(cases) >= 500
    assert len({case.name for case in cases}) == len(cases)


def test_ledger_entries_name_corpus_cases() -> None:
    names = {case.name for case in corpus()}
    listed = [entry["case"] for entry in yaml.safe_load(LEDGER.read_text())]
    assert len(listed) == len(set(listed)), "a case is listed twice"
    assert set(listed) <= names, sorted(set(listed) - names)[:10]


def test_corpus_against_nginx_matches_the_ledger(tmp_path: Path) -> None:
    results = run_raw(str(DATA / "h1_raw.conf"), corpus(), workdir=str(tmp_path))
    differing = {result.case.name: result.diffs for result in results if result.diffs}
    listed = {entry["case"] for entry in yaml.safe_load(LEDGER.read_text())}
    new = {name: diffs for name, diffs in differing.items() if name not in listed}
    fixed = sorted(listed - set(differing))
    agree = len(results) - len(differing)
    print(f"raw corpus: {agree}/{len(results)} cases identical to nginx, {len(differing)} known differences")
    assert not new, f"{len(new)} new difference(s) from nginx: " + "\n".join(
        f"{name}: {'; '.join(diffs)[:300]}" for name, diffs in list(new.items())[:15])
    assert not fixed, f"{len(fixed)} case(s) now agree with nginx; remove them from {LEDGER.name}: {fixed[:20]}"


@pytest.mark.parametrize("first, second, expected", [
    ({"status": 200}, {"status": 400}, "statuses"),
])
def test_differences_reports_a_status_change(first: dict[str, int], second: dict[str, int], expected: str) -> None:
    a = {"responses": [{**first, "headers": [], "body": ""}], "fate": "open", "forwarded": [], "garbage": ""}
    b = {"responses": [{**second, "headers": [], "body": ""}], "fate": "open", "forwarded": [], "garbage": ""}
    assert differences(a, b)[0].startswith(expected)
    assert differences(a, a) == []


def test_exchange_raw_reports_refused_connections() -> None:
    import asyncio
    import socket

    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        outcome = asyncio.run(exchange_raw(port, b"GET / HTTP/1.1\r\n\r\n"))
    assert outcome.fate == "refused" and outcome.responses == []
