"""Concurrent replay: many request pairs in flight at once, for large replays (``--concurrency``).

The sequential driver (runner._drive) knows which upstream requests a pair caused because nothing
else is in flight. Here every request carries ``X-Shadow-Id: <n>a`` (to nginx) or ``<n>b`` (to the
target under test), added after its own headers; the recording upstreams see it in what each proxy
forwards, and their records are filed by it. Both sides' values are masked before comparing (the
header, and its echo in the upstream's JSON answer), so the tag itself never shows as a difference.

What this mode cannot see: an upstream request that does not carry the request's headers
(``proxy_pass_request_headers off``, a ``proxy_set_header`` that rebuilds everything) cannot be
filed; such records are counted and reported, and the run says to use the sequential mode for that
config. Keep-alive pools and round-robin positions are shared by interleaved requests, as in
production: per-request upstream choices may differ from a sequential run (both targets see the
same interleaving only approximately), so balancing is compared in sequential mode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from typing import Callable

from shadow import client
from shadow.compare import Normaliser, Observation, compare
from shadow.targets import Target
from shadow.traffic import Request
from shadow.upstreams import RecordedRequest, UpstreamPool

TAG = "X-Shadow-Id"
TAG_MASK = "<shadow-id>"


class _Filing:
    """Upstream records, filed by the tag they carry."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._by_tag: dict[str, list[RecordedRequest]] = defaultdict(list)
        self.untagged = 0

    def collect(self) -> None:
        for record in self._pool.take():
            tag = next((value for name, value in record.headers if name.lower() == TAG.lower()), None)
            if tag is None:
                self.untagged += 1
            else:
                self._by_tag[tag].append(record)

    def pop(self, tag: str) -> list[RecordedRequest]:
        self.collect()
        return self._by_tag.pop(tag, [])


def tagged(request: Request, tag: str) -> Request:
    return dataclasses.replace(request, headers=(*request.headers, (TAG, tag)))


async def drive_concurrent(
    requests: list[Request], reference: Target, other: Target, pool: UpstreamPool,
    norms: tuple[Normaliser, Normaliser], timeout: float, probe: float, concurrency: int,
    rate: float | None = None, progress: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> tuple[list[object], int, str | None]:
    """Send every request to both targets, ``concurrency`` pairs at a time (at most ``rate`` pairs
    started per second). Returns the results in request order, the upstream requests that could not
    be filed, and why the run stopped early (None if it did not)."""
    from shadow.runner import RequestResult  # the runner imports this module

    norm_a, norm_b = norms
    filing = _Filing(pool)
    results: list[RequestResult | None] = [None] * len(requests)
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    deadline = start + max_seconds if max_seconds is not None else None
    done = 0

    async def one(index: int, request: Request) -> None:
        nonlocal done
        async with gate:
            if rate:
                await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
            if deadline is not None and time.monotonic() > deadline:
                return
            tag_a, tag_b = f"{index}a", f"{index}b"
            ex_a, ex_b = await asyncio.gather(
                client.exchange(tagged(request, tag_a).to_bytes(), reference.listen_ports[request.listen],
                                request.method, timeout=timeout, source=request.source, tls=request.tls),
                client.exchange(tagged(request, tag_b).to_bytes(), other.listen_ports[request.listen],
                                request.method, timeout=timeout, source=request.source, tls=request.tls))
            resp_a, resp_b = await asyncio.gather(ex_a.finish(probe), ex_b.finish(probe))
            # A proxy records its upstream request before it answers: the responses are complete,
            # so the records are in (the upstreams file them before replying).
            a = Observation(norm_a.response(resp_a, request.method), [norm_a.record(r) for r in filing.pop(tag_a)])
            b = Observation(norm_b.response(resp_b, request.method), [norm_b.record(r) for r in filing.pop(tag_b)])
            results[index] = RequestResult(request, compare(a, b), a, b)
            done += 1
            if progress:
                progress(done, len(requests))

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    finished = [r for r in results if r is not None]
    stopped = None
    if len(finished) < len(requests):
        stopped = f"stopped after {max_seconds}s: {len(requests) - len(finished)} request(s) not sent"
    filing.collect()
    return finished, filing.untagged, stopped
