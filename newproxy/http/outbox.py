"""Writes held to the end of the event loop's turn, then sent one connection after another.

Why: a write to a loopback (or any local) socket whose reader sleeps in epoll wakes that reader
from inside our ``send()``; on a virtual machine the wake-up is an inter-processor interrupt, a
VM exit. Profiling the worker under ``benchmarks/h1_proxy.py`` put 17% of its CPU there
(``sock_def_readable`` under ``tcp_sendmsg``), because with a write done at once from each read
callback our Python work between two writes gave the reader (wrk, the upstream) time to fall
asleep again. Holding the writes of one turn and sending them together at its end lets one wake-up
serve several of them: h1_proxy went from 0.39x to about 0.5x nginx's req/s.

The order of bytes on a connection is its owner's business: an owner holds its output in its own
buffer, registers here once per turn (``hold``), and must send what it holds before anything else
touches its transport (close, write_eof, a direct write). nginx writes at once, but every write it
makes in one turn of its own loop reaches the kernel within microseconds too, so the bytes on the
wire and their timing are unchanged at the scale any client or test can see.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Final, Protocol


class HoldsOutput(Protocol):
    def send_held(self) -> None:
        """Write what is held to the transport (nothing if it was sent meanwhile)."""


class Outbox:
    """The connections holding output in this turn of one event loop."""

    __slots__ = ("_loop", "_due", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: list[HoldsOutput] = []

    def hold(self, owner: HoldsOutput) -> None:
        """``owner`` has output to send at the end of this turn. Registering twice is harmless
        (``send_held`` finds nothing the second time), so owners need no flag of their own."""
        due = self._due
        if not due:
            self._loop.call_soon(self._send)
        due.append(owner)

    def _send(self) -> None:
        due = self._due
        self._due = []
        for owner in due:
            try:
                owner.send_held()
            except Exception as exc:  # noqa: BLE001 - one connection's failure must not strand the others
                self._loop.call_exception_handler({"message": "sending held output failed", "exception": exc})


_BY_LOOP: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox]] = weakref.WeakKeyDictionary()


# The outbox asked for last: a worker has one loop, and each new connection asks (the weak
# dictionary's lookup is interpreted code, ~1 µs). It keeps that one loop alive, no other.
_LAST: Final[list[Outbox]] = []


def outbox_of(loop: asyncio.AbstractEventLoop) -> Outbox:
    """The loop's outbox (one per loop: tests run several loops in one process)."""
    if _LAST and _LAST[0]._loop is loop:
        return _LAST[0]
    box = _BY_LOOP.get(loop)
    if box is None:
        box = _BY_LOOP[loop] = Outbox(loop)
    _LAST[:] = [box]
    return box
