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
import weakref
from typing import Protocol

TICK = 0.05  # seconds


def tick_for(due: float) -> int:
    """The first tick whose start is past ``due`` (loop time)."""
    return int(due / TICK) + 1


class HasDeadline(Protocol):
    def on_timer(self) -> None:
        """The deadline passed (up to TICK ago)."""


class TimerWheel:
    __slots__ = ("_buckets", "_loop", "_ticks", "_timer", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Insertion-ordered, so owners due in the same tick fire in the order they were set.
        self._buckets: dict[int, dict[HasDeadline, None]] = {}
        self._ticks: list[int] = []  # a heap of the buckets' ticks
        self._timer: asyncio.TimerHandle | None = None

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
            bucket.pop(owner, None)  # an emptied bucket stays until its tick: cheaper than the heap's removal

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        ticks = self._ticks
        buckets = self._buckets
        while ticks and ticks[0] * TICK <= now:
            tick = ticks[0]
            bucket = buckets[tick]
            # The bucket stays registered while it fires: an owner's timer may cancel another's
            # in it. An owner re-armed from on_timer lands in a later tick (its new due is ahead).
            for owner in list(bucket):
                if bucket.pop(owner, 0) is not None:
                    continue  # cancelled by an earlier owner's on_timer
                try:
                    owner.on_timer()
                except Exception as exc:  # noqa: BLE001 - one connection's failure must not strand the others
                    self._loop.call_exception_handler({"message": "a connection's timer failed", "exception": exc})
            heapq.heappop(ticks)
            del buckets[tick]
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
