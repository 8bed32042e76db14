"""newproxy/zones.py: the shared tables decide exactly as the process's own zones do, and are shared.

The process's own ReqZone/ConnZone are nginx's zone logic (tests/test_differential_limits.py shows
it against nginx); here a shared table is driven with the same random operations as a process's
own zone and must give the same answers, zone-full cases included. The cross-worker behaviour
against nginx is tests/test_differential_shared_zones.py.
"""

from __future__ import annotations

import os
import random

from newproxy.config import (
    LimitConnZoneConfig,
    LimitReqZoneConfig,
    ListenConfig,
    NewproxyConfig,
    ServerConfig,
    UpstreamConfig,
    UpstreamServerConfig,
)
from newproxy.engine.engine import Engine
from newproxy.engine.limits import (
    _AGAIN,
    _BUSY,
    _ERROR,
    _OK,
    CONN_FULL,
    CONN_LIMITED,
    CONN_OK,
    ConnZone,
    ReqZone,
)
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.zones import (
    Block,
    SharedConnTable,
    SharedPeers,
    SharedReqTable,
    SharedState,
    ZoneLock,
)


def _req_pair(size: int, rate: int) -> tuple[ReqZone, ReqZone]:
    config = LimitReqZoneConfig(name="z", key="$k", size=size, rate=rate)
    local, shared = ReqZone(config, None), ReqZone(config, None)  # type: ignore[arg-type]
    shared.shared = SharedReqTable(Block(shared.capacity // 128), shared.capacity, rate)
    return local, shared


def test_req_table_answers_as_the_local_zone() -> None:
    """3000 random lookups, charges and unreserves over 400 keys in a zone that fills up (32k: 32
    nodes of 128 bytes): the same (rc, excess) every time, and the same bytes used."""
    rng = random.Random(7)
    local, shared = _req_pair(32768, 2000)
    now = 100_000
    held: list[tuple[object, object]] = []
    answers = set()
    for _ in range(3000):
        now += rng.choice((0, 1, 5, 50, 500, 70_000))
        key = f"key{rng.randrange(400 if rng.random() < 0.3 else 20)}"
        burst = rng.choice((0, 1000, 5000))
        if held and rng.random() < 0.08:
            a, b = held.pop(rng.randrange(len(held)))
            if rng.random() < 0.5:
                assert local.charge(a, now) == shared.charge(b, now)
            else:
                local.unreserve(a)
                shared.unreserve(b)
            continue
        account = rng.random() < 0.5
        rc_a, ex_a, node_a = local.lookup(key, now, burst, account)
        rc_b, ex_b, node_b = shared.lookup(key, now, burst, account)
        assert (rc_a, ex_a) == (rc_b, ex_b)
        answers.add(rc_a)
        if node_a is not None:
            held.append((node_a, node_b))
        assert shared.shared is not None
        assert local.used == shared.shared.mem[0]
    assert answers == {_OK, _AGAIN, _BUSY, _ERROR}  # all happened: the zone filled up with reserved nodes


def test_conn_table_counts_as_the_local_zone() -> None:
    config = LimitConnZoneConfig(name="c", key="$k", size=32768)
    local, shared = ConnZone(config, None), ConnZone(config, None)  # type: ignore[arg-type]
    shared.shared = SharedConnTable(Block(shared.capacity // 64), shared.capacity)
    rng = random.Random(3)
    held: list[str] = []
    kinds: set[int] = set()
    for _ in range(3000):
        if held and rng.random() < 0.15:
            key = held.pop(rng.randrange(len(held)))
            local.release(key)
            shared.release(key)
            continue
        key = f"k{rng.randrange(20 if rng.random() < 0.5 else 5000)}"
        a, b = local.acquire(key, 2), shared.acquire(key, 2)
        assert a == b
        kinds.add(a)
        if a == CONN_OK:
            held.append(key)
        assert local.used == shared.shared.mem[0]
    assert kinds == {CONN_OK, CONN_LIMITED, CONN_FULL}  # the zone filled up too


def test_counts_from_two_processes_add_up() -> None:
    """Two forked processes acquire the same key 5000 times each: the count is 10000."""
    config = LimitConnZoneConfig(name="c", key="$k", size=32768)
    zone = ConnZone(config, None)  # type: ignore[arg-type]
    zone.shared = SharedConnTable(Block(zone.capacity // 64), zone.capacity)
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            for _ in range(5000):
                zone.acquire("same", 10**9)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    table = zone.shared
    assert table.mem[table._find(hash("same")) + 3] == 10000


def test_lock_held_by_a_dead_process_is_freed() -> None:
    block = Block(4)
    lock = block.lock
    pid = os.fork()
    if pid == 0:
        lock.__enter__()
        os._exit(0)  # dies holding it
    os.waitpid(pid, 0)
    state = SharedState()
    state.locks = [lock]
    assert state.force_unlock(pid) == [lock]
    with lock:  # would block forever if it were still held
        pass
    assert isinstance(lock, ZoneLock) and block.mem[1] == 0


def test_shared_peers_keep_their_fields_and_share_state() -> None:
    config = UpstreamConfig(name="u", zone="z", servers=[
        UpstreamServerConfig(host="127.0.0.1", port=1, weight=3),
        UpstreamServerConfig(host="127.0.0.1", port=2, max_fails=2),
        UpstreamServerConfig(host="127.0.0.1", port=3, backup=True)])
    group = UpstreamGroup(config)
    before = [group.choose(group.begin(), 0.0).name for _ in range(8)]  # type: ignore[union-attr]
    group = UpstreamGroup(config)
    group.lock = SharedPeers(group).lock
    peers = group.primary.peers + group.backup.peers  # type: ignore[union-attr]
    assert [(p.name, p.weight, p.max_fails, p.effective_weight) for p in peers] == [
        ("127.0.0.1:1", 3, 1, 3), ("127.0.0.1:2", 1, 2, 1), ("127.0.0.1:3", 1, 1, 1)]
    sel = group.begin()
    pid = os.fork()
    if pid == 0:  # a "worker" takes a connection to the first choice and fails it
        peer = sel.next()
        assert peer is not None
        sel.failed(peer)
        os._exit(0)
    os.waitpid(pid, 0)
    assert peers[0].fails == 1 and peers[0].effective_weight == 0 and peers[0].conns == 0  # 3 - 3 // max_fails
    assert peers[0].current_weight == -1  # 3 - (3 + 1): the child's round-robin step is seen here
    assert before[:4] == ["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"]


def _engine(size: int, key: str = "$http_x_key") -> Engine:
    return Engine(NewproxyConfig(
        servers=[ServerConfig(listen=[ListenConfig(address="127.0.0.1", port=1)])],
        limit_req_zones=[LimitReqZoneConfig(name="z", key=key, size=size, rate=1000)],
        limit_conn_zones=[LimitConnZoneConfig(name="c", key=key, size=size)]))


def test_a_reload_keeps_an_unchanged_zone() -> None:
    """nginx reuses a zone of the same name, size and key over a reload: its state goes on. A zone
    whose size or key changed starts afresh."""
    state = SharedState()
    first, same, bigger, rekeyed = _engine(65536), _engine(65536), _engine(131072), _engine(65536, "$uri")
    state.share(first)
    req = first.zones.req["z"].shared
    assert req is not None and req.lookup("k", 1000, 0, True)[0] == _OK
    state.share(same)
    kept = same.zones.req["z"].shared
    assert kept is not None and kept.block is req.block
    assert kept.lookup("k", 1000, 0, True)[0] == _BUSY  # the request counted before the reload
    assert same.zones.conn["c"].shared.block is first.zones.conn["c"].shared.block  # type: ignore[union-attr]
    for other in (bigger, rekeyed):
        state.share(other)
        fresh = other.zones.req["z"].shared
        assert fresh is not None and fresh.block is not req.block and fresh.lookup("k", 1000, 0, True)[0] == _OK


def test_a_new_key_for_a_kept_zone_is_a_conflict() -> None:
    """nginx refuses a reload that keeps a zone's name and size but not its key (its init_zone
    logs it at emerg); a new size, or the same key, is no conflict."""
    state = SharedState()
    state.share(_engine(65536))
    assert state.key_conflict(_engine(65536)) is None
    assert state.key_conflict(_engine(131072, "$uri")) is None  # a new zone: nothing reused
    assert state.key_conflict(_engine(65536, "$uri")) == \
        'limit_req "z" uses the "$uri" key while previously it used the "$http_x_key" key'
