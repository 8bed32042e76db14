"""newproxy/http/outbox.py: writes held to the end of the loop's turn reach every owner once per
registration, in order, even when one owner fails."""

from __future__ import annotations

import asyncio

from newproxy.http.outbox import Outbox, outbox_of


class _Owner:
    def __init__(self, name: str, sent: list[str], fail: bool = False) -> None:
        self.name, self.sent, self.fail = name, sent, fail

    def send_held(self) -> None:
        self.sent.append(self.name)
        if self.fail:
            raise RuntimeError("boom")


def test_held_output_is_sent_at_the_end_of_the_turn_in_order_despite_a_failure() -> None:
    async def scenario() -> tuple[list[str], list[str], list[dict[str, object]]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        box = Outbox(loop)
        sent: list[str] = []
        box.hold(_Owner("a", sent))
        box.hold(_Owner("b", sent, fail=True))
        box.hold(_Owner("c", sent))
        during = list(sent)  # nothing goes out before the turn ends
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return during, sent, errors

    during, sent, errors = asyncio.run(scenario())
    assert during == []
    assert sent == ["a", "b", "c"]
    assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)


def test_each_turn_sends_only_what_was_held_in_it() -> None:
    async def scenario() -> list[list[str]]:
        box = outbox_of(asyncio.get_running_loop())
        assert box is outbox_of(asyncio.get_running_loop())  # one per loop
        sent: list[str] = []
        turns: list[list[str]] = []
        box.hold(_Owner("first", sent))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        turns.append(list(sent))
        box.hold(_Owner("second", sent))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        turns.append(list(sent))
        return turns

    assert asyncio.run(scenario()) == [["first"], ["first", "second"]]
