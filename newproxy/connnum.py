"""Connection numbers: ``$connection`` and the error log's ``*N``, counted as nginx counts them.

nginx gives every connection a number from one counter, ``ngx_connection_counter``, kept in shared
memory that all workers map (ngx_event_module_init) and bumped with ngx_atomic_fetch_add. What takes
a number there: each accepted client connection (ngx_event_accept; one refused because
worker_connections are used up takes none: ngx_get_connection fails first), each new upstream
connection, whether its connect() then succeeds or not (ngx_event_connect_peer; a kept-alive one
that is reused takes none), and the resolver's socket to each of its servers, opened at its first
query (ngx_udp_connect). The memory outlives a reload: the numbers of a new generation's connections
continue where the old one's stood (probed on nginx 1.22 with SIGHUP).

newproxy does the same with ``take()``, called where those connections are made (newproxy/http/h1.py
``ConnContext.next_id`` for client connections, newproxy/http/upstream.py and grpc_upstream.py for
upstream connects, newproxy/http/resolver.py for resolver servers; on an ssl listen
newproxy/http/tls.py takes it at accept, before the handshake, as nginx does). Two differences: the
resolver's sockets are told apart by their servers list, so two ``resolver`` directives naming the
same servers share one socket's number where nginx opens one per directive; and connections to
newproxy's own metrics listen, which nginx does not have, take numbers too. Without a master
(``master_process off``, or an engine run in-process by tests) the counter is private memory of the
process, kept over an in-process reload. Under a master (newproxy/process.py) the master makes one
``SharedCounter`` before its first fork and keeps it for its lifetime, so every worker of every
generation takes from it: an anonymous ``MAP_SHARED`` mmap and a ``ZoneLock`` (newproxy/zones.py's
lock, freed by the master when a worker dies holding it).

The lock only costs when it is needed: the master writes into the block how many workers are alive
(``users``), and ``take()`` locks only while more than one is (several workers, or one worker with
an old generation still draining after a reload). A lone worker bumps the counter with a plain
read and write, no lock (about 0.18 us a call against the 0.07 us of the per-process count it
replaces; with the lock, 0.66 us: nothing next to the cost of an accept). The one unguarded moment: a reload
raises ``users`` before it forks the new worker, and a lone old worker that read ``users`` just
before and is preempted between its read and its write of the counter for longer than the new
worker takes to start and accept (tens of milliseconds) could hand out a number twice.
"""

from __future__ import annotations

import mmap

# The block: the last number given, the pid holding the lock (zones.py's ZoneLock writes index 1,
# zones._OWNER), and how many workers take numbers from it now (written by the master only).
_VALUE, _OWNER, _USERS = 0, 1, 2
_WORDS = 8


class SharedCounter:
    """The master's counter, made before it forks, inherited by every worker it starts."""

    __slots__ = ("lock", "mem", "raw")

    def __init__(self) -> None:
        from newproxy.zones import ZoneLock

        self.raw = mmap.mmap(-1, _WORDS * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.mem = memoryview(self.raw).cast("q")
        self.lock = ZoneLock(self.mem)

    def set_users(self, workers: int) -> None:
        """The master, before a fork (counting the worker about to start) and after a reap."""
        self.mem[_USERS] = workers


# This process's counter: private memory until ``install`` (the master, before its first fork).
_mem: memoryview = memoryview(bytearray(_WORDS * 8)).cast("q")
_lock: object = None


def install(counter: SharedCounter) -> None:
    """Take numbers from ``counter`` from now on, in this process and the workers it forks."""
    global _mem, _lock
    _mem, _lock = counter.mem, counter.lock


def take() -> int:
    """The next connection number (the first is 1, as nginx's)."""
    mem = _mem
    if mem[_USERS] > 1:
        with _lock:  # type: ignore[attr-defined]
            number = mem[_VALUE] + 1
            mem[_VALUE] = number
        return number
    number = mem[_VALUE] + 1
    mem[_VALUE] = number
    return number

