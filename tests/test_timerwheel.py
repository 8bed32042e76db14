"""newproxy/http/timerwheel.py: a deadline fires once, never before it is due and at most a tick
after; cancelled ones do not fire, even when cancelled from another owner's timer in the same tick."""

from __future__ import annotations

import asyncio

from newproxy.http.timerwheel import TICK, TimerWheel, tick_for


class _Owner:
    def __init__(self, name: str, fired: list[tuple[str, float]], loop: asyncio.AbstractEventLoop) -> None:
        self.name, self.fired, self.loop = name, fired, loop
        self.on_fire: list[object] = []

    def on_timer(self) -> None:
        self.fired.append((self.name, self.loop.time()))
        for action in self.on_fire:
            action()  # type: ignore[operator]


def test_deadlines_fire_in_order_not_early_and_at_most_a_tick_late() -> None:
    async def scenario() -> tuple[list[tuple[str, float]], dict[str, float]]:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[tuple[str, float]] = []
        now = loop.time()
        dues = {"c": now + 0.23, "a": now + 0.02, "b": now + 0.11, "a2": now + 0.021}
        for name, due in dues.items():
            wheel.add(_Owner(name, fired, loop), due)
        await asyncio.sleep(0.23 + 2 * TICK)
        return fired, dues

    fired, dues = asyncio.run(scenario())
    assert [name for name, _ in fired] == ["a", "a2", "b", "c"]
    for name, when in fired:
        assert dues[name] <= when + 0.001  # libuv's clock is in milliseconds
        assert when <= dues[name] + TICK + 0.03


def test_cancelled_deadlines_do_not_fire_even_from_a_timer_of_the_same_tick() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[tuple[str, float]] = []
        due = loop.time() + 0.01
        first, second, third = (_Owner(n, fired, loop) for n in ("first", "second", "third"))
        wheel.add(first, due)
        second_tick = wheel.add(second, due)
        third_tick = wheel.add(third, due + 0.3)
        assert tick_for(due) == second_tick
        first.on_fire.append(lambda: wheel.cancel(second, second_tick))  # same tick, fired next
        wheel.cancel(third, third_tick)
        await asyncio.sleep(0.4)
        return [name for name, _ in fired]

    assert asyncio.run(scenario()) == ["first"]


def test_an_owner_re_armed_from_its_timer_fires_again_later() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[tuple[str, float]] = []
        owner = _Owner("again", fired, loop)
        owner.on_fire.append(lambda: len(fired) < 3 and wheel.add(owner, loop.time() + 0.02))
        wheel.add(owner, loop.time() + 0.01)
        await asyncio.sleep(0.5)
        return [name for name, _ in fired]

    assert asyncio.run(scenario()) == ["again"] * 3


def test_a_big_bucket_emptied_goes_at_once_and_the_wheel_still_fires_what_comes_next() -> None:
    async def scenario() -> tuple[list[str], int, int, list[str]]:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[tuple[str, float]] = []
        far = loop.time() + 60
        crowd = [_Owner(f"idle{i}", fired, loop) for i in range(200)]  # a burst's keep-alive deadlines
        ticks = [wheel.add(owner, far) for owner in crowd]
        for owner, tick in zip(crowd, ticks):
            wheel.cancel(owner, tick)  # their next requests came (or they were parked)
        buckets_left, heap_left = len(wheel._buckets), len(wheel._ticks)
        soon = _Owner("soon", fired, loop)
        wheel.add(soon, loop.time() + 0.02)
        # A big bucket whose owner cancels the others while it fires stays until it is done.
        due = loop.time() + 0.05
        firing = [_Owner(f"f{i}", fired, loop) for i in range(50)]
        firing_ticks = [wheel.add(owner, due) for owner in firing]
        firing[0].on_fire.append(lambda: [wheel.cancel(o, t) for o, t in zip(firing[1:], firing_ticks[1:])])
        await asyncio.sleep(0.05 + 3 * TICK)
        return [name for name, _ in fired], buckets_left, heap_left, list(map(str, wheel._buckets))

    names, buckets_left, heap_left, buckets_after = asyncio.run(scenario())
    assert (buckets_left, heap_left) == (0, 0)
    assert names == ["soon", "f0"]
    assert buckets_after == []
