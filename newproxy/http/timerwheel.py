"""Client connections' deadlines in TICK-wide buckets, with one libuv timer for all of them.

Why: each HTTP/1 connection always has a deadline (client_header_timeout, keepalive_timeout,
lingering, send_timeout...). A uvloop ``call_at`` per connection costs ~600 bytes (a TimerHandle,
its libuv timer and bookkeeping, measured with tracemalloc: a sixth of an idle connection) and ~3 µs
to set or move. Here a deadline is one entry in a bucket dict. The price is precision: a deadline
fires up to TICK after it is due, never before. nginx's own timers are looser still when moved: a
timer re-armed within NGX_TIMER_LAZY_DELAY (300 ms) of its old value is not moved at all.

An owner keeps the tick ``add`` returned (0: none), passes it to ``cancel``, and clears it when
``on_timer`` is called: the wheel has forgotten it by then.
"""

from __future__ import annotations

import asyncio
import heapq
import sys
import weakref
from typing import Protocol

TICK = 0.05  # seconds
_BIG_EMPTY = 1200  # bytes: an empty dict this big once held ~40 entries or more


def tick_for(due: float) -> int:
    """The first tick whose start is past ``due`` (loop time)."""
    return int(due / TICK) + 1


class HasDeadline(Protocol):
    def on_timer(self) -> None:
        """The deadline passed (up to TICK ago)."""


class TimerWheel:
    __slots__ = ("_buckets", "_firing", "_loop", "_ticks", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Insertion-ordered, so owners due in the same tick fire in the order they were set.
        self._buckets: dict[int, dict[HasDeadline, None]] = {}
        self._ticks: list[int] = []  # a heap of the buckets' ticks
        self._timer: asyncio.TimerHandle | None = None
        self._firing = 0  # the tick whose bucket is firing: it stays until it is done

    def add(self, owner: HasDeadline, due: float) -> int:
        """Call ``owner.on_timer()`` once ``due`` (loop time) has passed; returns the tick to cancel by."""
        tick = tick_for(due)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
            ticks = self._ticks
            heapq.heappush(ticks, tick)
            if ticks[0] == tick:  # the earliest now: the libuv timer moves to it
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(tick * TICK, self._fire)
        bucket[owner] = None
        return tick

    def cancel(self, owner: HasDeadline, tick: int) -> None:
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.pop(owner, None)
            if not bucket and tick != self._firing and sys.getsizeof(bucket) > _BIG_EMPTY:
                self._drop(tick)

    def _drop(self, tick: int) -> None:
        """An emptied bucket that once held many: a dict keeps its table when emptied, so kept
        until its tick (up to keepalive_timeout away) a burst's buckets would hold ~40 B a
        connection, and pin the allocator's arenas of the burst, long after it. Its tick stays in
        the heap (cheaper than the heap's removal) unless no bucket is left; small buckets stay
        until their tick: the common case, emptied and refilled on every request, costs nothing."""
        buckets = self._buckets
        del buckets[tick]
        if not buckets:
            self._ticks.clear()  # the timer fires once more, for nothing

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        ticks = self._ticks
        buckets = self._buckets
        while ticks and ticks[0] * TICK <= now:
            tick = ticks[0]
            bucket = buckets.get(tick)
            if bucket is None:  # emptied by cancels, or this tick is in the heap twice
                heapq.heappop(ticks)
                continue
            # The bucket stays registered while it fires: an owner's timer may cancel another's
            # in it. An owner re-armed from on_timer lands in a later tick (its new due is ahead).
            self._firing = tick
            for owner in list(bucket):
                if bucket.pop(owner, 0) is not None:
                    continue  # cancelled by an earlier owner's on_timer
                try:
                    owner.on_timer()
                except Exception as exc:  # noqa: BLE001 - one connection's failure must not strand the others
                    self._loop.call_exception_handler({"message": "a connection's timer failed", "exception": exc})
            heapq.heappop(ticks)
            del buckets[tick]
        self._firing = 0
        if ticks:
            self._timer = self._loop.call_at(ticks[0] * TICK, self._fire)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._ticks.clear()


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = weakref.WeakKeyDictionary()


def wheel_of(loop: asyncio.AbstractEventLoop) -> TimerWheel:
    """The loop's wheel (one per loop: tests run several loops in one process)."""
    wheel = _BY_LOOP.get(loop)
    if wheel is None:
        wheel = _BY_LOOP[loop] = TimerWheel(loop)
    return wheel
