"""Idle keep-alive connections of one upstream group (nginx's ``keepalive N`` cache): the HTTP/1
upstream client's (upstream.py) and the gRPC client's (grpc_upstream.py).

As ngx_http_upstream_keepalive_module: a connection freed after a complete answer waits here; the
next request to the same peer takes the newest one; at most ``size`` wait, the oldest is closed to
make room; one idle past ``timeout`` (keepalive_timeout) is closed by the pool's one timer, or
when found; the owner stops putting one back after ``requests`` (keepalive_requests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from newproxy.engine.upstreams import UpstreamGroup


class Pooled(Protocol):
    """What the pool needs of a connection. ``closed``: it went away while idle (the peer closed it,
    or it was discarded: any input on an idle connection, a GOAWAY)."""

    peer_name: str
    idle_since: float
    closed: bool

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


class KeepalivePool(Generic[C]):
    """Invariant: ``idle`` is ordered oldest first, and ``_sweeper`` is set whenever it is not empty."""

    __slots__ = ("_loop", "_sweeper", "idle", "now", "requests", "size", "timeout")

    def __init__(self, group: UpstreamGroup, loop: asyncio.AbstractEventLoop) -> None:
        self.idle: list[C] = []
        self.size = group.keepalive
        self.timeout = group.keepalive_timeout
        self.requests = group.keepalive_requests
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop = loop
        # loop.time, bound once: compiled, calling it is then one call (a method call on the loop,
        # whose type mypyc does not know, is a lookup by name each time). Its connections use it too.
        self.now: Callable[[], float] = loop.time

    def get(self, peer_name: str) -> C | None:
        """The newest idle connection to the peer, taken out of the pool (the most likely to be
        still open); those found closed or idle too long are dropped on the way."""
        idle = self.idle
        i = len(idle) - 1
        while i >= 0:
            conn = idle[i]
            if conn.peer_name == peer_name:
                del idle[i]
                if conn.closed:
                    i -= 1
                    continue
                if self.now() - conn.idle_since >= self.timeout:
                    conn.close()
                    i -= 1
                    continue
                return conn
            i -= 1
        return None

    def put(self, conn: C) -> None:
        idle = self.idle
        if len(idle) >= self.size:
            idle.pop(0).close()
        conn.idle_since = self.now()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_at(idle[0].idle_since + self.timeout, self._sweep)

    def discard(self, conn: C) -> None:
        """Out of the pool, if it is there (a test first: most connections discarded are not, and
        a ValueError made and dropped per closed connection costs more than the scan)."""
        idle = self.idle
        if conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        idle = self.idle
        deadline = self._loop.time() - self.timeout
        while idle and idle[0].idle_since <= deadline:
            idle.pop(0).close()
        if idle:
            self._sweeper = self._loop.call_at(idle[0].idle_since + self.timeout, self._sweep)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
