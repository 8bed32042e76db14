"""Upstream groups and nginx's balancing methods, peer for peer as nginx 1.22 chooses them.

- round robin: ngx_http_upstream_round_robin.c (smooth weighted, backup set after the primary one);
- least_conn: ngx_http_upstream_least_conn_module.c (fewest conns/weight, ties by round robin);
- ip_hash: ngx_http_upstream_ip_hash_module.c (89/113/6271 over the first 3 octets of an IPv4
  address or the 16 bytes of an IPv6 one, 20 tries then round robin);
- hash / hash consistent: ngx_http_upstream_hash_module.c (crc32 with the rehash loop; ketama
  points, 160 per weight unit, placed by the server's name as written);
- random / random two: ngx_http_upstream_random_module.c (weighted ranges; the less loaded of two).

Sans-IO: the IO layer asks a ``PeerSelection`` for the next peer to try and reports back whether
it failed (``failed``) or not (``succeeded``, also when the client went away). State that nginx keeps
per worker (current/effective weights, failure counts, connection counts) is kept per process here;
a group with nginx's ``zone`` shares it between workers (newproxy/zones.py).
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from newproxy.config import UpstreamConfig
from newproxy.engine.peer import Peer

if TYPE_CHECKING:
    from newproxy.engine.variables import Template

_HASH_TRIES: Final = 20  # nginx: after 20 unlucky hash/random picks, plain round robin decides


@dataclass(slots=True)
class PeerSet:
    peers: list[Peer]
    total_weight: int = 0
    # random: the first weight unit of each peer, for a bisection (ngx_http_upstream_update_random)
    ranges: list[int] = field(default_factory=list)
    # nginx's peers->single: one peer and no backup tier (init_round_robin clears it for both tiers
    # when there are backups, so a lone primary is then marked failed and skipped like any other).
    single: bool = False

    def __post_init__(self) -> None:
        self.single = len(self.peers) == 1
        self.total_weight = sum(peer.weight for peer in self.peers)
        total = 0
        for peer in self.peers:
            self.ranges.append(total)
            total += peer.weight

    def tries(self) -> int:
        return sum(1 for peer in self.peers if not peer.down)

    def usable(self, peer: Peer, now: float) -> bool:
        if peer.down:
            return False
        if peer.max_conns and peer.conns >= peer.max_conns:
            return False
        return not (peer.max_fails and peer.fails >= peer.max_fails and now - peer.checked <= peer.fail_timeout)

    def by_weight(self, value: int) -> Peer:
        """The peer owning weight unit ``value % total_weight``, walking the peers in order."""
        w = value % self.total_weight
        for peer in self.peers:
            if w < peer.weight:
                return peer
            w -= peer.weight
        raise AssertionError("total_weight is the sum of the weights")

    def pick(self, tried: set[int], now: float) -> Peer | None:
        """ngx_http_upstream_get_peer: the smooth weighted choice among usable, untried peers."""
        if self.single:
            peer = self.peers[0]
            if peer.down or id(peer) in tried or (peer.max_conns and peer.conns >= peer.max_conns):
                return None
            return peer
        best: Peer | None = None
        total = 0
        for peer in self.peers:
            if id(peer) in tried or not self.usable(peer, now):
                continue
            peer.current_weight += peer.effective_weight
            total += peer.effective_weight
            if peer.effective_weight < peer.weight:
                peer.effective_weight += 1
            if best is None or peer.current_weight > best.current_weight:
                best = peer
        if best is None:
            return None
        best.current_weight -= total
        if now - best.checked > best.fail_timeout:
            best.checked = now
        return best

    def pick_least_conn(self, tried: set[int], now: float) -> Peer | None:
        """ngx_http_upstream_get_least_conn_peer: fewest conns per weight; ties by smooth weighted
        round robin among the tied peers from the first of them on."""
        if self.single:
            return self.pick(tried, now)
        best: Peer | None = None
        first = 0
        many = False
        for i, peer in enumerate(self.peers):
            if id(peer) in tried or not self.usable(peer, now):
                continue
            if best is None or peer.conns * best.weight < best.conns * peer.weight:
                best, first, many = peer, i, False
            elif peer.conns * best.weight == best.conns * peer.weight:
                many = True
        if best is None:
            return None
        total = 0
        if many:
            lead = best
            for peer in self.peers[first:]:
                if id(peer) in tried or peer.conns * lead.weight != lead.conns * peer.weight:
                    continue
                if not self.usable(peer, now):
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.weight:
                    peer.effective_weight += 1
                if peer.current_weight > best.current_weight:
                    best = peer
        best.current_weight -= total
        if now - best.checked > best.fail_timeout:
            best.checked = now
        return best


def _ip_key(address: str) -> bytes:
    """The bytes ip_hash hashes: 3 of an IPv4 address, the 16 of an IPv6 one (an IPv4-mapped
    ``::ffff:a.b.c.d`` too, as nginx sees it on an IPv6 socket); 3 zero bytes for a unix socket."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return b"\0\0\0"
    return ip.packed[:3] if ip.version == 4 else ip.packed


@dataclass(slots=True)
class _Points:
    """hash consistent's continuum (ngx_http_upstream_init_chash): sorted, duplicates dropped."""

    hashes: list[int]
    servers: list[bytes]

    @classmethod
    def build(cls, peers: list[Peer]) -> _Points:
        points: list[tuple[int, bytes]] = []
        for peer in peers:
            server = peer.server
            if server[:5].lower() == b"unix:":
                host, port = server[5:], b""
            else:
                # The port is the run of digits after the last ":" (none: the whole name is the host).
                host, port = server, b""
                for j in range(len(server)):
                    c = server[len(server) - j - 1]
                    if c == ord(":"):
                        host, port = server[:len(server) - j - 1], server[len(server) - j:]
                        break
                    if not ord("0") <= c <= ord("9"):
                        break
            base = zlib.crc32(host + b"\0" + port)
            prev = 0
            for _ in range(peer.weight * 160):
                value = zlib.crc32(prev.to_bytes(4, "little"), base)
                points.append((value, server))
                prev = value
        # nginx's qsort compares hashes only; on a (rare) equal hash the survivor is its qsort's choice.
        points.sort(key=lambda point: point[0])
        hashes: list[int] = []
        servers: list[bytes] = []
        for value, server in points:
            if not hashes or hashes[-1] != value:
                hashes.append(value)
                servers.append(server)
        return cls(hashes, servers)

    def find(self, value: int) -> int:
        """ngx_http_upstream_find_chash_point: the first point >= value (may be len: wraps by modulo)."""
        return bisect.bisect_left(self.hashes, value)


class UpstreamGroup:
    def __init__(self, config: UpstreamConfig, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.name = config.name
        self.method = config.balancer
        self.keepalive = config.keepalive
        self.keepalive_requests = config.keepalive_requests
        self.keepalive_timeout = config.keepalive_timeout
        self.primary = PeerSet([Peer.from_config(s) for s in config.servers if not s.backup])
        backups = [Peer.from_config(s) for s in config.servers if s.backup]
        self.backup = PeerSet(backups) if backups else None
        if self.backup is not None:
            self.primary.single = self.backup.single = False
        self.clock = clock
        self.random = rng or random.Random()
        self.points = _Points.build(self.primary.peers) if self.method == "hash_consistent" else None
        self.hash_key = config.hash_key
        # nginx's `zone`: with N > 1 workers the master moves the peers' changing state to shared
        # memory (newproxy/zones.py) and sets ``lock``, held while choosing and freeing a peer.
        self.zone = config.zone
        self.lock: Any = None
        self.shared: object | None = None
        # Set by the compiler for hash methods: renders the key for a request (see balance_key).
        self.key_template: Template | None = None
        # Whether the engine must hand begin() a key: the client address or the rendered hash key.
        self.needs_key = self.method in ("hash", "hash_consistent", "ip_hash")
        # The tries a request gets: one per peer not `down`, which nothing changes at run time.
        self.tries = self.primary.tries() + (self.backup.tries() if self.backup else 0)

    def begin(self, max_tries: int = 0, key: bytes = b"") -> PeerSelection:
        """Start choosing peers for one request; ``max_tries`` is proxy_next_upstream_tries (0: no
        limit); ``key``: the rendered hash key, or the client address for ip_hash."""
        tries = self.tries
        if max_tries:
            tries = min(tries, max_tries)
        selection = PeerSelection(self, tries)  # positional, key only if any: keywords cost ~0.3 µs
        if key:
            selection.key = key
        if self.method == "ip_hash":
            selection.key = _ip_key(key.decode("latin-1"))
            selection.hash = 89
        elif self.method == "hash_consistent":
            assert self.points is not None
            selection.hash = self.points.find(zlib.crc32(key))
        return selection

    # -- the methods' first choices (None: the group has nothing to give) --------------------
    def _round_robin(self, sel: PeerSelection, now: float) -> Peer | None:
        return self._primary_then_backup(sel, now, False)

    def _least_conn(self, sel: PeerSelection, now: float) -> Peer | None:
        return self._primary_then_backup(sel, now, True)

    def _primary_then_backup(self, sel: PeerSelection, now: float, least_conn: bool) -> Peer | None:
        """A peer of the primary tier (smooth weighted round robin, or least_conn); once none is
        left, of the backups (and the request stays with them for its next tries), as nginx's round
        robin does. (Direct calls, not getattr by name: compiled, those are native calls.)"""
        peer = None
        if not sel.using_backup:
            peer = self.primary.pick_least_conn(sel.tried, now) if least_conn else self.primary.pick(sel.tried, now)
            if peer is None and self.backup is not None:
                sel.using_backup = True
        backup = self.backup
        if peer is None and sel.using_backup and backup is not None:
            peer = backup.pick_least_conn(sel.tried, now) if least_conn else backup.pick(sel.tried, now)
        return peer

    def _hashed(self, sel: PeerSelection, now: float) -> Peer | None:
        """ip_hash, hash, random: pick by number, skip the unusable, 20 misses then round robin."""
        peers = self.primary
        method = self.method
        if sel.using_backup or sel.hash_tries > _HASH_TRIES or peers.single or (method == "hash" and not sel.key):
            return self._round_robin(sel, now)
        while True:
            if method == "ip_hash":
                value = sel.hash
                for byte in sel.key:
                    value = (value * 113 + byte) % 6271
                sel.hash = value
                peer = peers.by_weight(value)
            elif method == "hash":
                # ((crc32([REHASH] KEY) >> 16) & 0x7fff) + PREV_HASH, as Cache::Memcached does
                prefix = str(sel.rehash).encode() if sel.rehash else b""
                sel.hash = (sel.hash + ((zlib.crc32(prefix + sel.key) >> 16) & 0x7FFF)) & 0xFFFFFFFF
                sel.rehash += 1
                peer = peers.by_weight(sel.hash)
            else:  # random
                peer = peers.peers[bisect.bisect_right(peers.ranges, self.random.randrange(peers.total_weight)) - 1]
            if id(peer) not in sel.tried and peers.usable(peer, now):
                break
            sel.hash_tries += 1
            if sel.hash_tries > _HASH_TRIES:
                return self._round_robin(sel, now)
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now
        return peer

    def _random_two(self, sel: PeerSelection, now: float) -> Peer | None:
        """random two least_conn: two distinct usable picks, the one with fewer conns per weight."""
        peers = self.primary
        if sel.using_backup or sel.hash_tries > _HASH_TRIES or peers.single:
            return self._round_robin(sel, now)
        prev: Peer | None = None
        while True:
            peer = peers.peers[bisect.bisect_right(peers.ranges, self.random.randrange(peers.total_weight)) - 1]
            if peer is not prev and id(peer) not in sel.tried and peers.usable(peer, now):
                if prev is not None:
                    if peer.conns * prev.weight > prev.conns * peer.weight:
                        peer = prev
                    break
                prev = peer
            sel.hash_tries += 1
            if sel.hash_tries > _HASH_TRIES:
                return self._round_robin(sel, now)
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now
        return peer

    def _consistent(self, sel: PeerSelection, now: float) -> Peer | None:
        """ngx_http_upstream_get_chash_peer: the point's server, weighted among peers of that name."""
        peers = self.primary
        points = self.points
        assert points is not None
        if sel.using_backup or sel.hash_tries > _HASH_TRIES or peers.single or not sel.key:
            return self._round_robin(sel, now)
        count = len(points.hashes)
        while True:
            server = points.servers[sel.hash % count]
            best: Peer | None = None
            total = 0
            for peer in peers.peers:
                if id(peer) in sel.tried or not peers.usable(peer, now) or peer.server != server:
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.weight:
                    peer.effective_weight += 1
                if best is None or peer.current_weight > best.current_weight:
                    best = peer
            if best is not None:
                best.current_weight -= total
                break
            sel.hash += 1
            sel.hash_tries += 1
            if sel.hash_tries > _HASH_TRIES:
                return self._round_robin(sel, now)
        if now - best.checked > best.fail_timeout:
            best.checked = now
        return best

    def choose(self, sel: PeerSelection, now: float) -> Peer | None:
        method = self.method
        if method == "round_robin":
            return self._round_robin(sel, now)
        if method == "least_conn":
            return self._least_conn(sel, now)
        if method == "hash_consistent":
            return self._consistent(sel, now)
        if method == "random_two":
            return self._random_two(sel, now)
        return self._hashed(sel, now)


class PeerSelection:
    """The peers one request tries. A plain class, not a dataclass: one is made per request."""

    def __init__(self, group: UpstreamGroup, tries_left: int) -> None:
        self.group = group
        self.tries_left = tries_left
        self.tried: set[int] = set()
        self.using_backup = False
        self.key = b""
        self.hash = 0  # ip_hash's running hash, hash's sum, or hash consistent's point index
        self.rehash = 0
        self.hash_tries = 0  # misses so far (nginx's hp->tries / iphp->tries / rp->tries)
        self.current: Peer | None = None  # the peer chosen and not yet freed (its conns counted)

    def next(self) -> Peer | None:
        lock = self.group.lock
        if lock is not None:
            with lock:
                return self._next()
        return self._next()

    def _next(self) -> Peer | None:
        if self.tries_left <= 0:
            return None
        peer = self.group.choose(self, self.group.clock())
        if peer is None:
            return None
        self.tried.add(id(peer))
        peer.conns += 1
        self.current = peer
        return peer

    def _free(self, peer: Peer) -> bool:
        """Count the peer's connection as closed; False when it was freed already."""
        if self.current is not peer:
            return False
        self.current = None
        peer.conns -= 1
        return True

    def failed(self, peer: Peer) -> bool:
        """ngx_http_upstream_free_round_robin_peer with NGX_PEER_FAILED; True when this failure
        disables the peer (it reached max_fails: nginx's "upstream server temporarily disabled")."""
        lock = self.group.lock
        if lock is not None:
            with lock:
                return self._failed(peer)
        return self._failed(peer)

    def _failed(self, peer: Peer) -> bool:
        if not self._free(peer):
            return False
        self.tries_left -= 1
        if self._single(peer):
            return False
        now = self.group.clock()
        peer.fails += 1
        peer.accessed = now
        peer.checked = now
        if peer.max_fails:
            peer.effective_weight -= peer.weight // peer.max_fails
        peer.effective_weight = max(peer.effective_weight, 0)
        return bool(peer.max_fails) and peer.fails >= peer.max_fails

    def succeeded(self, peer: Peer) -> None:
        """The free after a response, or when the request ends otherwise (the client left)."""
        lock = self.group.lock
        if lock is not None:
            with lock:
                return self._succeeded(peer)
        return self._succeeded(peer)

    def _succeeded(self, peer: Peer) -> None:
        if not self._free(peer):
            return
        self.tries_left -= 1
        if peer.accessed < peer.checked:
            peer.fails = 0

    def _single(self, peer: Peer) -> bool:
        # nginx never marks the only peer of a group as failed.
        return self.group.primary.single and self.group.backup is None and peer is self.group.primary.peers[0]
