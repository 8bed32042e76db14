"""Idle keep-alive connections, parked: kept open with ~50 bytes instead of a transport.

An idle HTTP/1.1 connection held by the event loop costs ~3.4 KB in a worker (uvloop's transport
and libuv handle ~1.9 KB, the protocol and its parser ~1.5 KB) where nginx spends ~0.5 KB. A
plain (not TLS) HTTP/1.1 connection idle for ``keepalive_park_after`` seconds — between two
requests, or accepted and silent — is therefore *parked*: its file descriptor is duplicated and
registered in an epoll set of the lot's own (one reader on the loop for all of them), its transport
is dropped (closing one of two descriptors of a socket does not close the connection), and what the
next request needs (connection number, request count, two times, its context) goes into arrays
indexed by the descriptor. No Python object is kept per parked connection, nor per timeout tick
(a ring of lists linked through arrays), so little is allocated among the freed transports' memory.
After a sweep that parked many, glibc's malloc_trim gives the freed heap pages back (uvloop's
transports, libuv's handles), after a full collection (the cycles of connections that closed
meanwhile, and CPython's free lists). What stays is CPython's 1 MiB arenas that a few long-lived
objects made during the burst still pin (after 10,000 connections at once: 14 arenas, mostly empty
pools, measured with sys._debugmallocstats in the worker).

When the client sends again (or closes), the connection gets a new transport and a new
``H1Protocol`` restored from the arrays (``H1Protocol.resumed``): the same connection number,
request count and timers, so ``$connection``, ``$connection_requests``, ``keepalive_requests`` and
the header/keep-alive timeouts are nginx's as if it had never been parked. A parked connection whose
timeout comes is closed with a FIN, as the protocol closes an idle connection (nothing was read:
nginx resets only timed-out requests); timeouts are kept in buckets of ``TICK`` seconds, so a parked
connection closes up to ``TICK`` after its deadline.

The lot stands in the server's connection registry for all its connections while it holds any, so a
graceful stop, a reload's drain and a fast stop reach them (``shutdown``, ``transport``);
``worker_connections`` counts them (``ParkingLot.count``), and stub_status kept them as active.

The price: a request on a parked connection costs ~90 us more of the worker's CPU than on a live
one (a new transport, as for an accepted connection; measured with clients pausing 0.15 s between
requests: 131 vs 42 us per request). Hence the 5 s default: clients that pause longer are rare per
request and are most of the idle connections a server holds (keepalive_timeout is 75 s by default).

Why not TLS or HTTP/2: their state (the TLS session, HPACK tables) lives in the transport or the
protocol and cannot be rebuilt from a descriptor.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import select
import socket
from array import array
from typing import TYPE_CHECKING, Callable

from newproxy import stats
from newproxy.http.errorlog import address_text
from newproxy.http.h1 import H1Protocol, idle_due
from newproxy.stats import ACTIVE, PARKED

if TYPE_CHECKING:
    from newproxy.http.h1 import ConnContext

_EVENTS = select.EPOLLIN | select.EPOLLRDHUP
_GONE = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
TICK = 0.05  # seconds: the granularity of parked connections' timeouts
_CLOSED, _TIMED_OUT = 1, 2  # why a parked connection is closed (0: a stop), for nginx's info line
RING = 1024  # slots of TICK (51.2 s): a later deadline waits in its slot, looked at once a turn
_MASK = RING - 1
PARK_BATCH = 64  # parked per loop turn
TRIM_AFTER = 256  # parked in one sweep: give the freed transports' memory back to the system
RELEASE_DELAY = 0.2  # seconds after such a sweep: the freed transports are gone by then


class _Dropped(asyncio.Protocol):
    """What a parked connection's old transport reports to: nothing (the connection lives on)."""


_DROPPED = _Dropped()


class ParkingLot:
    """The parked connections of one worker: their state by descriptor, epoll set and timeouts."""

    transport = None  # Server.terminate aborts the registry's transports; the lot has none

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set, park_after: float) -> None:  # type: ignore[type-arg]
        self.loop = loop
        self.connections = connections  # the server's registry: the lot is in it while count > 0
        self.park_after = park_after
        self.count = 0
        # By descriptor; _due[fd] == 0.0: not parked.
        self._due = array("d")
        self._last = array("d")
        self._head_start = array("d")
        self._conn_id = array("q")
        self._requests = array("q")
        self._ctx: list[ConnContext | None] = []
        # The listen address (a server's shared key) and, where info lines are logged, the client's
        # address: nginx's lines about a connection that closes or times out while idle.
        self._listen: list[tuple[str, int] | None] = []
        self._client: list[str | None] = []
        # Timeouts: a ring of RING lists, one per tick, linked through the descriptors (_next,
        # _prev; -1 ends a list, _prev -1-slot marks its head). Arrays only, made once and grown:
        # Python objects made while parking a burst would sit among the burst's freed memory and
        # keep CPython's 1 MiB arenas from going back to the system (newproxy/http/parking.py's
        # _release_memory).
        self._heads = array("i", [-1]) * RING
        self._next = array("i")
        self._prev = array("i")
        self._visited = 0  # the last tick whose slot was looked at
        self._timer_tick = 0  # the tick the timer is set for; 0: none
        self._epoll: select.epoll | None = None  # made at the first park
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        if self.park_after > 0:
            self._sweeper = self.loop.call_later(self.park_after / 2, self._sweep)

    # -- parking ----------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Park every plain HTTP/1.1 connection idle for park_after (checked twice per period)."""
        now = self.loop.time()
        idle_before = now - self.park_after
        candidates = [conn for conn in self.connections if type(conn) is H1Protocol and conn.can_park(idle_before)]
        if candidates:
            self._park_batch(candidates, 0, idle_before)
        # A reload (master_process off) may have turned parking off: then the sweeps stop too.
        self._sweeper = self.loop.call_at(now + self.park_after / 2, self._sweep) if self.park_after > 0 else None

    def _park_batch(self, candidates: list[H1Protocol], start: int, idle_before: float) -> None:
        """PARK_BATCH at a time: a dropped transport's descriptor closes on the next loop turn, so
        parking holds two descriptors per connection until then (worker_rlimit_nofile)."""
        if self._stopped:
            return
        end = start + PARK_BATCH
        for conn in candidates[start:end]:
            if conn.can_park(idle_before):  # a request may have come since the sweep
                try:
                    self.park(conn)
                except OSError:  # no descriptor to spare (EMFILE): the connection stays as it is
                    return
        if end < len(candidates):
            self.loop.call_soon(self._park_batch, candidates, end, idle_before)
        elif len(candidates) >= TRIM_AFTER:
            # Later, not now: the parked protocols die with ``candidates`` after this call, and their
            # transports once uvloop has closed them on the next loop turn.
            self.loop.call_later(RELEASE_DELAY, _release_memory)

    def park(self, conn: H1Protocol) -> None:
        transport = conn.transport
        assert transport is not None
        fd = os.dup(transport.get_extra_info("socket").fileno())
        try:
            epoll = self._epoll
            if epoll is None:
                epoll = self._epoll = select.epoll()
                self.loop.add_reader(epoll.fileno(), self._ready)
            epoll.register(fd, _EVENTS)
        except OSError:
            os.close(fd)
            raise
        listen, client = conn.listen, conn.client_addr[0]
        ctx, conn_id, requests, last, head_start = conn.park()
        transport.set_protocol(_DROPPED)
        transport.abort()  # closes our first descriptor only (on the next loop turn): the socket stays open on fd
        self._grow(fd)
        due = idle_due(ctx.client, requests, last, head_start)
        self._due[fd] = due
        self._last[fd] = last
        self._head_start[fd] = head_start
        self._conn_id[fd] = conn_id
        self._requests[fd] = requests
        self._ctx[fd] = ctx
        self._listen[fd] = listen
        self._client[fd] = client if ctx.log.enabled("info") else None
        self.connections.discard(conn)
        if self.count == 0:
            self.connections.add(self)
        self.count += 1
        stats.C[PARKED] += 1
        self._bucket(fd, due)

    def _grow(self, fd: int) -> None:
        missing = fd + 1 - len(self._due)
        if missing > 0:
            missing = max(missing, len(self._due))  # doubling: amortised
            zeros = array("d", bytes(8 * missing))
            self._due.extend(zeros)
            self._last.extend(zeros)
            self._head_start.extend(zeros)
            self._conn_id.extend(array("q", bytes(8 * missing)))
            self._requests.extend(array("q", bytes(8 * missing)))
            self._next.extend(array("i", bytes(4 * missing)))
            self._prev.extend(array("i", bytes(4 * missing)))
            self._ctx.extend([None] * missing)
            self._listen.extend([None] * missing)
            self._client.extend([None] * missing)

    # -- waking -----------------------------------------------------------------------------
    def _ready(self) -> None:
        """The client sent something (or closed): give its connection a transport again."""
        epoll = self._epoll
        if epoll is None:
            return
        for fd, events in epoll.poll(0):
            if fd >= len(self._due) or not self._due[fd]:
                continue
            if events & _GONE:
                readable, error = _peek(fd)
                if not readable:
                    self._close(fd, _CLOSED, error)  # closed by the client with nothing to read: as nginx, close
                    continue
            ctx = self._ctx[fd]
            assert ctx is not None
            protocol = H1Protocol.resumed(ctx, self._conn_id[fd], self._requests[fd], self._last[fd],
                                          self._head_start[fd], self._listen[fd])
            self._unpark(fd)
            self.loop.create_task(self._attach(protocol, socket.socket(fileno=fd)))

    async def _attach(self, protocol: H1Protocol, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()
            stats.C[ACTIVE] -= 1

    def _unpark(self, fd: int) -> None:
        self._due[fd] = 0.0
        self._ctx[fd] = None
        self._listen[fd] = None
        self._client[fd] = None
        self._unlist(fd)
        assert self._epoll is not None
        self._epoll.unregister(fd)
        self.count -= 1
        stats.C[PARKED] -= 1
        if self.count == 0:
            self.connections.discard(self)

    def _close(self, fd: int, why: int = 0, error: int = 0) -> None:
        """Close a parked connection (FIN): timed out, closed by the client (``error``: how it ended,
        0 a FIN), or a stop (``why``: 0)."""
        if why:
            self._log_close(fd, why, error)
        self._unpark(fd)
        os.close(fd)
        stats.C[ACTIVE] -= 1

    def _log_close(self, fd: int, why: int, error: int) -> None:
        """nginx's info line for an idle connection that the client closed or reset
        (ngx_http_keepalive_handler, ngx_http_wait_request_handler), or that sent nothing before
        client_header_timeout; a kept-alive one's keepalive_timeout passes without a line."""
        ctx, client = self._ctx[fd], self._client[fd]
        if ctx is None or client is None or not ctx.log.enabled("info"):
            return
        requests = self._requests[fd]
        if why == _TIMED_OUT:
            if requests:
                return
            what = "client timed out (110: Connection timed out)"
        else:
            reason = f" ({error}: {os.strerror(error)})" if error else ""
            if requests:
                ctx.log.log("info", f"client {client} closed keepalive connection{reason}", self._conn_id[fd])
                return
            what = f"recv() failed{reason}" if error else "client closed connection"
        listen = self._listen[fd]
        server = address_text(listen) if listen is not None else ""
        ctx.log.log("info", f"{what} while waiting for request, client: {client}, server: {server}", self._conn_id[fd])

    # -- timeouts ---------------------------------------------------------------------------
    def _bucket(self, fd: int, due: float) -> None:
        """List ``fd`` in the slot of the tick at whose start it is past its deadline."""
        tick = int(due / TICK) + 1
        if self.count == 1:
            self._visited = int(self.loop.time() / TICK)
        if tick <= self._visited:  # due already: the next tick's look finds it
            tick = self._visited + 1
        slot = tick & _MASK
        heads, nxt, prev = self._heads, self._next, self._prev
        head = heads[slot]
        nxt[fd] = head
        prev[fd] = -1 - slot
        if head >= 0:
            prev[head] = fd
        heads[slot] = fd
        if not self._timer_tick or tick < self._timer_tick:
            self._arm(tick)

    def _unlist(self, fd: int) -> None:
        nxt, prev = self._next, self._prev
        after, before = nxt[fd], prev[fd]
        if before < 0:
            self._heads[-1 - before] = after
        else:
            nxt[before] = after
        if after >= 0:
            prev[after] = before

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = self.loop.call_at(tick * TICK, self._timeouts)

    def _timeouts(self) -> None:
        self._timer = None
        self._timer_tick = 0
        self._ready()  # a request that arrived with its deadline is served, not cut
        now = self.loop.time()
        now_tick = int(now / TICK)  # the last tick that has started
        heads, nxt, due = self._heads, self._next, self._due
        for tick in range(max(self._visited + 1, now_tick - _MASK), now_tick + 1):
            fd = heads[tick & _MASK]
            expired = []
            while fd >= 0:
                if due[fd] <= now:  # not a deadline a turn of the ring or more away
                    expired.append(fd)
                fd = nxt[fd]
            for fd in expired:
                self._close(fd, _TIMED_OUT)
        self._visited = now_tick
        if self.count:
            for tick in range(now_tick + 1, now_tick + 1 + RING):  # the next listed slot
                if heads[tick & _MASK] >= 0:
                    self._arm(tick)
                    break

    # -- stopping ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """A graceful stop closes idle connections at once, as nginx does."""
        for fd, due in enumerate(self._due):
            if due:
                self._close(fd)

    def close_all(self) -> None:
        """A fast stop, or the worker's end: close every parked connection, stop the timers."""
        self._stopped = True
        self.shutdown()
        for timer in (self._timer, self._sweeper):
            if timer is not None:
                timer.cancel()
        self._timer = self._sweeper = None
        self._timer_tick = 0
        if self._epoll is not None:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None


def _peek(fd: int) -> tuple[bool, int]:
    """Whether bytes wait on ``fd`` (a FIN after a request still has the request to serve), and the
    error the connection ended with (a reset: ECONNRESET; 0: none), which the peek consumes."""
    sock = socket.socket(fileno=fd)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)), 0
    except OSError as exc:
        return False, exc.errno or 0
    finally:
        sock.detach()  # the descriptor stays the lot's


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_trim()  # looked up once: each lookup leaves objects behind, amid the freed memory


def _release_memory() -> None:
    """Give what the parked connections held back to the system: a full collection first (an idle
    worker allocates nothing, so it would not run one: the cycles of connections that closed during
    the burst, and CPython's free lists, would stay), then glibc returns its free heap pages. An
    arena of CPython's goes back only once every object in it is gone."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
