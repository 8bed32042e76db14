"""newproxy/http/parking.py's timeouts: a ring of RING tick slots linked through arrays. Each parked
connection closes at the first tick after its deadline (never before it, at most TICK late), also
when the deadline is more than a turn of the ring away, when it shares a slot with deadlines of
other turns, or when it is already past; a connection woken first is not closed; the timer wakes
only for listed slots. Driven on a simulated clock (the real lot, its loop faked)."""

from __future__ import annotations

import heapq
from collections.abc import Callable

from newproxy.http.parking import RING, TICK, ParkingLot


class _Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _Timer) -> bool:
        return self.when < other.when


class _Clock:
    """What the lot asks of its loop: time() and call_at()."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.timers: list[_Timer] = []
        self.wakeups = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self.timers, timer)
        return timer

    def run_until(self, end: float) -> None:
        while self.timers and self.timers[0].when <= end:
            timer = heapq.heappop(self.timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, timer.when + 0.0004)  # libuv runs a timer a little after it is due
            self.wakeups += 1
            timer.callback()
        self.now = end


class _Lot(ParkingLot):
    """The real lot's lists and timer; closing and waking only recorded (no sockets)."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__(clock, set(), 5.0)  # type: ignore[arg-type]
        self.closed: dict[int, float] = {}

    def enlist(self, fd: int, due: float) -> None:
        self._grow(fd)
        self._due[fd] = due
        self.count += 1
        self._bucket(fd, due)

    def wake(self, fd: int) -> None:
        self._due[fd] = 0.0
        self._unlist(fd)
        self.count -= 1

    def _ready(self) -> None:
        pass

    def _close(self, fd: int, why: int = 0, error: int = 0) -> None:
        self.closed[fd] = self.loop.time()
        self.wake(fd)


def test_parked_deadlines_close_at_their_tick_across_turns_of_the_ring() -> None:
    start = 5000.0
    clock = _Clock(start)
    lot = _Lot(clock)
    turn = RING * TICK
    dues = {
        3: start + 0.3,
        4: start + 0.3,  # same tick as 3
        5: start + 0.31 + turn,  # same slot as 3, one turn later
        6: start + 0.32 + 2.5 * turn,  # past two turns
        7: start + 75.0,  # nginx's default keepalive_timeout, beyond one turn
        8: start - 1.0,  # already past when parked
        9: start + 1.0,  # woken before its deadline
        10: start + 12.34,
    }
    for fd, due in dues.items():
        lot.enlist(fd, due)
    clock.run_until(start + 0.5)
    lot.wake(9)
    dues[11] = clock.now + 0.2  # parked after the lot's timer has run
    lot.enlist(11, dues[11])
    clock.run_until(start + 3 * turn + 1)
    assert set(lot.closed) == set(dues) - {9}
    for fd, closed in lot.closed.items():
        due = max(dues[fd], start)
        assert due <= closed <= due + TICK + 0.001, (fd, due, closed)
    assert lot.count == 0
    assert clock.wakeups <= 12  # one per listed tick, and once a turn for the far deadlines


def test_a_lot_emptied_and_parked_again_starts_from_the_present() -> None:
    clock = _Clock(100.0)
    lot = _Lot(clock)
    lot.enlist(3, 100.2)
    clock.run_until(101.0)
    assert lot.closed == {3: lot.closed[3]} and 100.2 <= lot.closed[3] <= 100.2 + TICK + 0.001
    clock.run_until(100.0 + 2 * RING * TICK)  # long quiet: nothing listed, nothing wakes
    wakeups = clock.wakeups
    lot.enlist(4, clock.now + 0.1)
    clock.run_until(clock.now + 1.0)
    assert 4 in lot.closed and clock.wakeups == wakeups + 1
