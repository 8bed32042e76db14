"""Unit checks of the balancing state machine (the differential tests compare the choices with
nginx's; these pin the bookkeeping they rely on: connection counts, tries, fallbacks)."""

from __future__ import annotations

import zlib

from newproxy.config import UpstreamConfig, UpstreamServerConfig
from newproxy.engine.upstreams import UpstreamGroup, _ip_key


def group(method: str = "round_robin", *servers: UpstreamServerConfig, key: str | None = None) -> UpstreamGroup:
    return UpstreamGroup(UpstreamConfig(name="g", balancer=method, hash_key=key, servers=list(servers)),  # type: ignore[arg-type]
                         clock=lambda: 1000.0)


def peer(port: int, **kw: object) -> UpstreamServerConfig:
    return UpstreamServerConfig(host="127.0.0.1", port=port, **kw)  # type: ignore[arg-type]


def test_conns_counted_until_freed_once() -> None:
    g = group("least_conn", peer(1), peer(2))
    first = g.begin()
    a = first.next()
    assert a is not None and a.conns == 1
    second = g.begin()
    b = second.next()
    assert b is not None and b is not a  # least_conn: the idle one
    first.succeeded(a)
    first.succeeded(a)  # a second free (client gone after the response) changes nothing
    assert (a.conns, b.conns) == (0, 1)
    second.failed(b)
    assert b.conns == 0 and b.fails == 1


def test_failed_says_when_the_peer_reaches_max_fails() -> None:
    """True exactly when nginx's free warns "upstream server temporarily disabled": the failure
    that brings fails to max_fails (not before; never with max_fails=0, for the lone peer of a
    group, or for a peer already freed)."""
    g = group("round_robin", peer(1, max_fails=2), peer(2, max_fails=0))
    outcomes = []
    for _ in range(4):
        sel = g.begin()
        chosen = sel.next()
        assert chosen is not None
        outcomes.append((chosen.port, sel.failed(chosen), sel.failed(chosen)))
    # 1 fails (1 of 2), 2 fails (max_fails=0), 1 fails again: disabled; 2 (1 is disabled now).
    assert outcomes == [(1, False, False), (2, False, False), (1, True, False), (2, False, False)]
    lone = group("round_robin", peer(3, max_fails=1))
    sel = lone.begin()
    chosen = sel.next()
    assert chosen is not None and sel.failed(chosen) is False and chosen.fails == 0


def test_max_conns_single_peer_and_group() -> None:
    g = group("round_robin", peer(1, max_conns=1))
    held = g.begin()
    assert held.next() is not None
    assert g.begin().next() is None  # nginx: no live upstreams (502)
    g2 = group("round_robin", peer(1, max_conns=1, weight=5), peer(2))
    s1 = g2.begin()
    p1 = s1.next()
    p2 = g2.begin().next()
    assert p1 is not None and p2 is not None and p1.port == 1 and p2.port == 2


def test_hash_without_key_is_round_robin_and_same_key_same_peer() -> None:
    g = group("hash", peer(1), peer(2), peer(3), key="$uri")
    picks = [g.begin(key=b"").next() for _ in range(3)]
    assert len({id(p) for p in picks}) == 3  # empty key: round robin
    same = {id(g.begin(key=b"/same").next()) for _ in range(5)}
    assert len(same) == 1


def test_consistent_points_are_160_per_weight_unit() -> None:
    g = group("hash_consistent", peer(1, weight=2), peer(2), key="$uri")
    assert g.points is not None
    assert len(g.points.hashes) == 3 * 160  # no collisions among these
    assert g.points.hashes == sorted(g.points.hashes)
    # The first point of a peer is crc32("host" "\0" "port" + four zero bytes).
    assert zlib.crc32(b"127.0.0.1\x001" + b"\0\0\0\0") in g.points.hashes


def test_ip_hash_key_bytes() -> None:
    assert _ip_key("10.1.2.3") == bytes([10, 1, 2])
    assert _ip_key("::1") == bytes(15) + b"\x01"
    assert _ip_key("::ffff:127.1.2.3") == bytes(10) + b"\xff\xff" + bytes([127, 1, 2, 3])
    assert _ip_key("unix:") == b"\0\0\0"


def test_hash_gives_up_after_20_misses() -> None:
    # Every key lands on a down peer in a group of one live and many down peers at times; after
    # 20 misses round robin decides, so a live peer is always found.
    g = group("hash", *[peer(i, down=True) for i in range(1, 30)], peer(99), key="$uri")
    for key in (b"a", b"b", b"c", b"dd"):
        chosen = g.begin(key=key).next()
        assert chosen is not None and chosen.port == 99
