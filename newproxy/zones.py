"""State that nginx keeps in shared memory zones, shared between newproxy's worker processes.

nginx keeps limit_req and limit_conn zones, and the peers of an upstream with ``zone``, in shared
memory mapped by every worker, and changes them under the zone's mutex (ngx_shmtx). newproxy does
the same whenever a master runs its workers: before it forks a generation of workers, the master
(newproxy/process.py ``Master.start_generation``) calls ``share(engine, peers=N > 1)``, which gives

- each limit_req zone a ``SharedReqTable`` and each limit_conn zone a ``SharedConnTable``
  (``ReqZone.shared`` / ``ConnZone.shared`` in newproxy/engine/limits.py): every lookup, charge and
  release then runs here instead of on the process's own dict;
- with more than one worker, each upstream group written with ``zone`` a ``SharedPeers``: its peers become ``SharedPeer``
  objects whose changing fields (current and effective weight: the round-robin position; fails,
  accessed, checked: max_fails/fail_timeout; conns: least_conn and max_conns) live in shared memory,
  and a peer selection (choose, free) holds the group's lock (``UpstreamGroup.lock``), as nginx's
  ngx_http_upstream_rr_peers_wlock does. A group without ``zone`` keeps per-worker state, as nginx's.

How: one anonymous ``MAP_SHARED`` mmap per zone, made in the master before the fork (the workers
inherit the pages), read as signed 64-bit integers; and one lock per zone, a POSIX semaphore
(``multiprocessing`` Lock of the fork context, made before the fork too: uncontended, acquiring it
is an atomic operation in user space). The lock records the pid holding it, so that when a worker
dies holding it the master frees it (``force_unlock``, nginx's ngx_shmtx_force_unlock).

A limit table is a fixed-size hash table: a header, buckets (the head node of each chain), and
nodes of 8 integers, as many as the zone's size can hold at the smallest node nginx allocates, so
nginx's accounting of the zone's bytes (``used``, the slab slot of each node) decides when it is
full, exactly as in the process's own zone. A key is identified by its 64-bit ``hash()`` (the same
in every worker: they are forks of one interpreter); two keys whose hashes collide would share a
node (about 2**-64 per pair). limit_req nodes are also on a doubly-linked queue, least recently
used first, which the expiry walks as nginx's does.

Zone memory is kept by the master across a reload when the zone's kind, name, size and key are
unchanged (nginx reuses such a zone and keeps its state); a zone whose size changed starts afresh;
one that kept its size but changed its key makes the reload fail (``key_conflict``: nginx's
init_zone refuses it, and the old config goes on serving); the peers of an upstream zone start
afresh with each generation (nginx copies the configured peers into the zone at each reload).
That is why limit zones are shared even with one worker: the master holds their state while the
old worker drains and the new one starts (both use it meanwhile, under the lock). A request whose
location has no limit never touches a zone, so it takes no lock. Upstream peers need no sharing
with one worker (a new generation starts them afresh anyway), so they stay lock-free objects. With
``master_process off`` nothing here is used: the zones stay plain dicts (a reload there starts them
afresh).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
from typing import TYPE_CHECKING, Any

from newproxy.engine.limits import (
    _AGAIN,
    _BUSY,
    _ERROR,
    _OK,
    CONN_FULL,
    CONN_LIMITED,
    CONN_OK,
    _slot,
)
from newproxy.engine.peer import Peer

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine
    from newproxy.engine.upstreams import UpstreamGroup

_context = multiprocessing.get_context("fork")
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

# Header fields, then the buckets, then the nodes.
_USED, _OWNER, _HEAD, _TAIL, _FREE, _TOP = range(6)
_HEADER = 8
# A node: its key's hash, the chain link (next node in the bucket), its bytes as nginx counts them,
# then per kind: limit_req [excess, last, count, queue prev, queue next]; limit_conn [count].
_HASH, _CHAIN, _SIZE = range(3)
_EXCESS, _LAST, _COUNT, _PREV, _NEXT = range(3, 8)
_CONNS = 3
_NODE = 8


class ZoneLock:
    """A lock shared by the workers, with the pid that holds it in the zone's header."""

    __slots__ = ("_sem", "mem")

    def __init__(self, mem: memoryview) -> None:
        self._sem = _context.Lock()
        self.mem = mem

    def __enter__(self) -> None:
        self._sem.acquire()
        self.mem[_OWNER] = _pid

    def __exit__(self, *exc: object) -> None:
        self.mem[_OWNER] = 0
        self._sem.release()

    def force_unlock(self, pid: int) -> bool:
        """The master: ``pid`` died; if it held the lock, free it. True when it did."""
        if self.mem[_OWNER] != pid:
            return False
        self.mem[_OWNER] = 0
        self._sem.release()
        return True


class Block:
    """One zone's shared memory and lock, made before the fork; the hash table layout on it."""

    __slots__ = ("buckets", "lock", "mask", "mem", "nodes_at", "nodes_end", "raw")

    def __init__(self, max_nodes: int) -> None:
        buckets = 1
        while buckets < max_nodes:
            buckets <<= 1
        self.mask = buckets - 1
        self.nodes_at = _HEADER + buckets
        self.nodes_end = self.nodes_at + max(max_nodes, 1) * _NODE
        self.raw = mmap.mmap(-1, self.nodes_end * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.mem = memoryview(self.raw).cast("q")
        self.mem[_TOP] = self.nodes_at
        self.lock = ZoneLock(self.mem)


class _Table:
    """A chained hash table of nodes in a ``Block`` (offsets into its memory; 0 is none). Only
    called with the block's lock held."""

    __slots__ = ("block", "capacity", "lock", "mem")

    def __init__(self, block: Block, capacity: int) -> None:
        self.block = block
        self.mem = block.mem
        self.lock = block.lock
        self.capacity = capacity  # bytes, as the process's own zone counts them (limits._usable)

    def _find(self, h: int) -> int:
        m = self.mem
        node = m[_HEADER + (h & self.block.mask)]
        while node and m[node + _HASH] != h:
            node = m[node + _CHAIN]
        return node

    def _new(self, h: int, size: int) -> int:
        """A zeroed node for hash ``h`` in its bucket, ``size`` bytes counted (room was checked)."""
        m = self.mem
        node = m[_FREE]
        if node:
            m[_FREE] = m[node + _CHAIN]
        else:
            node = m[_TOP]
            if node >= self.block.nodes_end:  # cannot happen while capacity bounds the nodes
                return 0
            m[_TOP] = node + _NODE
        for field in range(_NODE):
            m[node + field] = 0
        bucket = _HEADER + (h & self.block.mask)
        m[node + _HASH] = h
        m[node + _CHAIN] = m[bucket]
        m[node + _SIZE] = size
        m[bucket] = node
        m[_USED] += size
        return node

    def _delete(self, node: int) -> None:
        m = self.mem
        at = _HEADER + (m[node + _HASH] & self.block.mask)
        while m[at] != node:
            at = m[at] + _CHAIN
        m[at] = m[node + _CHAIN]
        m[_USED] -= m[node + _SIZE]
        m[node + _CHAIN] = m[_FREE]
        m[_FREE] = node


class SharedReqTable(_Table):
    """A limit_req zone's nodes in shared memory: ReqZone's lookup/charge/unreserve, under the lock."""

    __slots__ = ("rate",)

    def __init__(self, block: Block, capacity: int, rate: int) -> None:
        super().__init__(block, capacity)
        self.rate = rate

    # the queue: least recently used at _HEAD
    def _unlink(self, node: int) -> None:
        m = self.mem
        prev, nxt = m[node + _PREV], m[node + _NEXT]
        if prev:
            m[prev + _NEXT] = nxt
        else:
            m[_HEAD] = nxt
        if nxt:
            m[nxt + _PREV] = prev
        else:
            m[_TAIL] = prev

    def _append(self, node: int) -> None:
        m = self.mem
        tail = m[_TAIL]
        m[node + _PREV] = tail
        m[node + _NEXT] = 0
        if tail:
            m[tail + _NEXT] = node
        else:
            m[_HEAD] = node
        m[_TAIL] = node

    def lookup(self, key: str, now: int, burst: int, account: bool) -> tuple[int, int, int | None]:
        """ReqZone.lookup on the shared nodes (see newproxy/engine/limits.py)."""
        h = hash(key)
        m = self.mem
        with self.lock:
            node = self._find(h)
            if node:
                self._unlink(node)
                self._append(node)
                ms = now - m[node + _LAST]
                if ms < -60000:
                    ms = 1
                elif ms < 0:
                    ms = 0
                excess = max(m[node + _EXCESS] - self.rate * ms // 1000 + 1000, 0)
                if excess > burst:
                    return _BUSY, excess, None
                if account:
                    m[node + _EXCESS] = excess
                    if ms:
                        m[node + _LAST] = now
                    return _OK, excess, None
                m[node + _COUNT] += 1
                return _AGAIN, excess, node
            size = _slot(80 + len(key))
            self._expire(now, 1)
            if m[_USED] + size > self.capacity:
                self._expire(now, 0)
                if m[_USED] + size > self.capacity:
                    return _ERROR, 0, None
            node = self._new(h, size)
            if not node:
                return _ERROR, 0, None
            self._append(node)
            if account:
                m[node + _LAST] = now
                return _OK, 0, None
            m[node + _COUNT] = 1
            return _AGAIN, 0, node

    def _expire(self, now: int, n: int) -> None:
        """ngx_http_limit_req_expire over the shared queue (see ReqZone._expire)."""
        m = self.mem
        while n < 3:
            node = m[_HEAD]
            if not node or m[node + _COUNT]:
                return
            check = n != 0
            n += 1
            if check:
                ms = abs(now - m[node + _LAST])
                if ms < 60000 or m[node + _EXCESS] - self.rate * ms // 1000 > 0:
                    return
            self._unlink(node)
            self._delete(node)

    def unreserve(self, node: int) -> None:
        with self.lock:
            self.mem[node + _COUNT] -= 1

    def charge(self, node: int, now: int) -> int:
        m = self.mem
        with self.lock:
            ms = now - m[node + _LAST]
            if ms < -60000:
                ms = 1
            elif ms < 0:
                ms = 0
            excess = max(m[node + _EXCESS] - self.rate * ms // 1000 + 1000, 0)
            if ms:
                m[node + _LAST] = now
            m[node + _EXCESS] = excess
            m[node + _COUNT] -= 1
            return excess


class SharedConnTable(_Table):
    """A limit_conn zone's counts in shared memory: ConnZone's acquire/release, under the lock."""

    __slots__ = ()

    def acquire(self, key: str, most: int) -> int:
        """ConnZone.acquire on the shared counts: CONN_OK, CONN_LIMITED or CONN_FULL."""
        h = hash(key)
        m = self.mem
        with self.lock:
            node = self._find(h)
            if not node:
                size = _slot(36 + len(key))
                if m[_USED] + size > self.capacity:
                    return CONN_FULL
                node = self._new(h, size)
                if not node:
                    return CONN_FULL
                m[node + _CONNS] = 1
                return CONN_OK
            if m[node + _CONNS] >= most:
                return CONN_LIMITED
            m[node + _CONNS] += 1
            return CONN_OK

    def release(self, key: str) -> None:
        h = hash(key)
        m = self.mem
        with self.lock:
            node = self._find(h)
            if not node:
                return
            count = m[node + _CONNS] - 1
            if count > 0:
                m[node + _CONNS] = count
            else:
                self._delete(node)


# -- upstream peers under `zone` ------------------------------------------------------------------
_CURRENT, _EFFECTIVE, _FAILS, _PEER_CONNS, _ACCESSED, _CHECKED = range(6)
_PEER_FIELDS = 8


def _shared_int(index: int) -> property:
    def get(self: SharedPeer) -> int:
        return self._ints[self._at + index]  # type: ignore[no-any-return]

    def put(self: SharedPeer, value: int) -> None:
        self._ints[self._at + index] = value

    return property(get, put)


def _shared_float(index: int) -> property:
    def get(self: SharedPeer) -> float:
        return self._floats[self._at + index]  # type: ignore[no-any-return]

    def put(self: SharedPeer, value: float) -> None:
        self._floats[self._at + index] = value

    return property(get, put)


class SharedPeer(Peer):
    """A Peer whose changing state is a row of the group's shared memory (the configured fields stay
    in the object: they are the same in every worker). Changed only under the group's lock."""

    __slots__ = ("_at", "_floats", "_ints")
    _ints: memoryview
    _floats: memoryview
    _at: int

    current_weight = _shared_int(_CURRENT)  # type: ignore[assignment]
    effective_weight = _shared_int(_EFFECTIVE)  # type: ignore[assignment]
    fails = _shared_int(_FAILS)  # type: ignore[assignment]
    conns = _shared_int(_PEER_CONNS)  # type: ignore[assignment]
    accessed = _shared_float(_ACCESSED)  # type: ignore[assignment]
    checked = _shared_float(_CHECKED)  # type: ignore[assignment]


class SharedPeers:
    """An upstream zone: one row per peer (primary, then backup) and the group's lock."""

    __slots__ = ("floats", "ints", "lock", "raw")

    def __init__(self, group: UpstreamGroup) -> None:
        sets = [group.primary] + ([group.backup] if group.backup is not None else [])
        rows = sum(len(s.peers) for s in sets)
        self.raw = mmap.mmap(-1, (_HEADER + rows * _PEER_FIELDS) * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.ints = memoryview(self.raw).cast("q")
        self.floats = memoryview(self.raw).cast("d")
        self.lock = ZoneLock(self.ints)
        at = _HEADER
        for peers in sets:
            peers.peers[:] = [self._move(peer, at + i * _PEER_FIELDS) for i, peer in enumerate(peers.peers)]
            at += len(peers.peers) * _PEER_FIELDS

    def _move(self, peer: Peer, at: int) -> SharedPeer:
        shared = SharedPeer.__new__(SharedPeer)
        shared._ints, shared._floats, shared._at = self.ints, self.floats, at
        for name in Peer.__slots__:  # the changing fields go to the shared row through the properties
            if hasattr(peer, name):
                setattr(shared, name, getattr(peer, name))
        return shared


# -- the master's side ----------------------------------------------------------------------------
class SharedState:
    """What the master shared for the generations alive: kept limit blocks by identity, and every
    lock (to free the ones a dead worker held)."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, str, int, str], Block] = {}
        self.locks: list[ZoneLock] = []

    def share(self, engine: Engine, peers: bool = True) -> None:
        """Give ``engine``'s limit zones, and with ``peers`` its zoned upstream groups, shared memory
        (before the fork)."""
        kept: dict[tuple[str, str, int, str], Block] = {}
        locks: list[ZoneLock] = []
        for zone in engine.zones.req.values():
            block = self._block(("req", zone, 128), kept)
            zone.shared = SharedReqTable(block, zone.capacity, zone.rate)
            locks.append(block.lock)
        for czone in engine.zones.conn.values():
            block = self._block(("conn", czone, 64), kept)
            czone.shared = SharedConnTable(block, czone.capacity)
            locks.append(block.lock)
        for group in engine.upstream_groups.values() if peers else ():
            if group.zone is not None and group.lock is None:
                peers = SharedPeers(group)
                group.lock = peers.lock
                group.shared = peers
                locks.append(peers.lock)
        self.blocks = kept  # a zone the new config dropped stays mapped in the old workers only
        self.locks = self.locks + locks

    def key_conflict(self, engine: Engine) -> str | None:
        """nginx's refusal of a reload that keeps a limit zone (same kind, name and size: the memory
        is reused) under another key: the message its init_zone logs at emerg, or None."""
        for kind, label, zones in (("req", "limit_req", engine.zones.req), ("conn", "limit_conn_zone", engine.zones.conn)):
            for zone in zones.values():  # type: ignore[attr-defined]
                for had, name, size, key in self.blocks:
                    if (had, name, size) == (kind, zone.name, zone.config.size) and key != zone.config.key:
                        return (f'{label} "{zone.name}" uses the "{zone.config.key}" key while previously it used '
                                f'the "{key}" key')
        return None

    def _block(self, what: tuple[str, Any, int], kept: dict[tuple[str, str, int, str], Block]) -> Block:
        kind, zone, smallest = what
        identity = (kind, zone.name, zone.config.size, zone.config.key)
        block = self.blocks.get(identity) or kept.get(identity)
        if block is None:
            block = Block(zone.capacity // smallest)  # the most nodes nginx's accounting lets in
        kept[identity] = block
        return block

    def force_unlock(self, pid: int) -> list[ZoneLock]:
        """A worker died: free the locks it held (the caller logs them, as nginx does)."""
        return [lock for lock in self.locks if lock.force_unlock(pid)]

    def forget_locks(self, alive: list[Engine]) -> None:
        """Keep only the locks of the engines some worker still runs."""
        wanted = set()
        for engine in alive:
            for zone in list(engine.zones.req.values()) + list(engine.zones.conn.values()):  # type: ignore[operator]
                if zone.shared is not None:
                    wanted.add(id(zone.shared.lock))
            for group in engine.upstream_groups.values():
                if group.lock is not None:
                    wanted.add(id(group.lock))
        self.locks = [lock for lock in self.locks if id(lock) in wanted]

