"""limit_rate: nginx's write-filter pacing (ngx_http_write_filter_module.c), for any answer.

nginx allows ``rate * (now_sec - start_sec + 1)`` bytes by whole second ``now_sec`` of its cached
wall clock (``ngx_time()``), counting what the connection sent past ``limit_rate_after`` (the head
included, as ``c->sent`` does); at or below zero it waits ``-limit * 1000 / rate + 1`` ms. After
each send it waits what that send took at the rate. So the first second's worth goes at once, and
the rest at the rate: a body of S bytes at R bytes/s ends about S/R - 1 s after it began (give or
take the phase of the clock's second).

``RatePacer`` is the arithmetic; ``PacedWriter`` applies it to an answer written in pieces (a proxied
body): it queues what the exchange writes and sends it on the pacer's schedule, pausing the exchange
while much is queued. The file sender (newproxy/http/sendfile.py) uses ``RatePacer`` directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from newproxy.engine.types import RateLimit

SENDFILE_MAX_CHUNK = 2 * 1024 * 1024  # nginx 1.22's sendfile_max_chunk default, which caps a paced send
QUEUE_HIGH = 1 << 20  # queued bytes above which the exchange is paused (nginx buffers upstream data too)


class DelayWait:
    """A limit_req delay in progress, kept where an upstream exchange would be: connection loss
    ``abort``s it; flow control has nothing to pause (nothing is being written)."""

    __slots__ = ("timer",)

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.timer = timer

    def abort(self) -> None:
        self.timer.cancel()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


class RatePacer:
    __slots__ = ("after", "rate", "sent", "start")

    def __init__(self, limit: RateLimit, sent: int = 0) -> None:
        self.rate = limit.rate
        self.after = limit.after
        self.start = limit.start
        self.sent = sent  # bytes of this answer sent so far (nginx's c->sent on a fresh connection)

    def allowance(self) -> tuple[int, float]:
        """(bytes that may be sent now, 0.0) or (0, seconds to wait first)."""
        limit = self.rate * (int(time.time()) - self.start + 1) - (self.sent - self.after)
        if limit <= 0:
            return 0, (-limit * 1000 // self.rate + 1) / 1000
        return min(limit, SENDFILE_MAX_CHUNK), 0.0

    def sent_now(self, count: int) -> float:
        """Record ``count`` bytes sent; the pause nginx makes after it (bytes past limit_rate_after)."""
        before = max(self.sent - self.after, 0)
        self.sent += count
        return ((max(self.sent - self.after, 0) - before) * 1000 // self.rate) / 1000


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...


class PacedWriter:
    """The client side of a paced answer written in pieces. ``write`` queues; the queue is sent on the
    pacer's schedule through ``send``; ``on_drained`` runs once the queue is empty and ``finish`` was
    called (the answer is over). ``pause``/``resume`` hold the producer while the queue is long."""

    __slots__ = ("_finished", "_loop", "_on_drained", "_pacer", "_paused", "_queue", "_queued", "_send",
                 "_throttle", "_timer")

    def __init__(self, limit: RateLimit, send: Callable[[bytes], None], throttle: Callable[[bool], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._pacer = RatePacer(limit)
        self._send = send
        self._throttle = throttle  # True: pause the producer, False: resume it
        self._loop = loop
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._finished = False
        self._on_drained: Callable[[], None] | None = None

    @property
    def idle(self) -> bool:
        return not self._queue

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._queue.append(data)
        self._queued += len(data)
        if self._timer is None:
            self._pump()
        if self._queued > QUEUE_HIGH and not self._paused:
            self._paused = True
            self._throttle(True)

    def finish(self, on_drained: Callable[[], None]) -> None:
        """The producer is done: call ``on_drained`` when everything queued has been sent."""
        if not self._queue:
            on_drained()
            return
        self._on_drained = on_drained

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._on_drained = None

    def _wake(self) -> None:
        self._timer = None
        self._pump()

    def _pump(self) -> None:
        queue = self._queue
        while queue:
            allowed, wait = self._pacer.allowance()
            if not allowed:
                self._timer = self._loop.call_later(wait, self._wake)
                return
            data = queue[0]
            if len(data) > allowed:
                queue[0] = data[allowed:]
                data = data[:allowed]
            else:
                queue.popleft()
            self._queued -= len(data)
            self._send(data)
            pause = self._pacer.sent_now(len(data))
            if pause > 0:
                self._timer = self._loop.call_later(pause, self._wake)
                break
        if self._paused and self._queued <= QUEUE_HIGH // 2:
            self._paused = False
            self._throttle(False)
        if not queue and self._on_drained is not None:
            done, self._on_drained = self._on_drained, None
            done()
