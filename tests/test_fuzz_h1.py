"""Fuzzing the HTTP/1 front end over sockets (tests/fuzzh1.py): batches of mutated raw-corpus requests,
sent concurrently to one running newproxy worker. Every connection is closed by the server within
fuzzh1.BOUND seconds, none is refused, none gets a 500, the worker stays the same process and its
logs show no traceback. Deterministic (derandomized); ``FUZZ_EXAMPLES`` raises the batch count;
benchmarks/fuzz_run.py is the long run (a million requests, RSS and fds sampled).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzh1 import (
    CONF,
    Exchange,
    exchange,
    free_port,
    log_problems,
    mutate,
    problems,
    seeds,
    split,
    steady_client,
    write_static,
)
from tests.test_process_model import Running, newproxy

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
BATCH = 30
SEEDS = seeds()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("fuzz-h1")
    write_static(tmp)
    port = free_port()
    with newproxy(tmp, CONF.format(tmp=tmp, port=port, back=free_port()), port, workers=1) as running:
        yield running


def _cases(draws: list[tuple[int, int]]) -> list[list[bytes]]:
    out = []
    for index, seed in draws:
        rng = random.Random(seed)
        out.append(split(rng, mutate(rng, SEEDS[index % len(SEEDS)])))
    return out


async def _batch(port: int, cases: list[list[bytes]]) -> list[str]:
    return problems(await _gather(port, cases))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2**32)), min_size=1, max_size=BATCH))
def test_mutated_requests_are_answered_or_closed_never_crash(proxy: Running, draws: list[tuple[int, int]]) -> None:
    workers = proxy.workers()
    with steady_client():
        found = asyncio.run(_batch(proxy.port, _cases(draws)))
    assert found == [], found[:5]
    assert proxy.workers() == workers  # the worker did not die and get replaced
    assert log_problems(proxy.tmp / "error.log", proxy.tmp / "stderr.log") == []


def test_the_fuzzer_reaches_every_kind_of_answer(proxy: Running) -> None:
    """The mutated inputs are not all rejected at the first byte: many kinds of answer come back."""
    cases = _cases([(i * 7919, i) for i in range(300)])
    with steady_client():
        results = asyncio.run(_gather(proxy.port, cases))
    statuses = {r.received[9:12] for r in results if r.received.startswith(b"HTTP/1.")}
    assert {b"200", b"400", b"301"} <= statuses and len(statuses) >= 5, statuses
    assert any(b"\r\n\r\nback /" in r.received for r in results)  # some went through the proxy
    assert problems(results) == []


async def _gather(port: int, cases: list[list[bytes]]) -> list[Exchange]:
    return list(await asyncio.gather(*(exchange(port, pieces) for pieces in cases)))
