"""Upstream groups and nginx's smooth weighted round robin (ngx_http_upstream_round_robin.c).

Sans-IO: the IO layer asks a ``PeerSelection`` for the next peer to try and reports back whether
it failed. State that nginx keeps per worker (current/effective weights, failure counts) is kept
per process here too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from newproxy.config import UpstreamConfig, UpstreamServerConfig


@dataclass(slots=True, eq=False)
class Peer:
    host: str
    port: int
    name: str
    weight: int
    max_fails: int
    fail_timeout: float
    down: bool
    current_weight: int = 0
    effective_weight: int = 0
    fails: int = 0
    accessed: float = 0.0
    checked: float = 0.0

    @classmethod
    def from_config(cls, server: UpstreamServerConfig) -> Peer:
        host = server.host
        name = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
        return cls(
            host=host, port=server.port, name=name, weight=server.weight, max_fails=server.max_fails,
            fail_timeout=server.fail_timeout, down=server.down, effective_weight=server.weight,
        )


@dataclass(slots=True)
class PeerSet:
    peers: list[Peer]

    @property
    def single(self) -> bool:
        return len(self.peers) == 1

    def tries(self) -> int:
        return sum(1 for peer in self.peers if not peer.down)

    def usable(self, peer: Peer, now: float) -> bool:
        if peer.down:
            return False
        return not (peer.max_fails and peer.fails >= peer.max_fails and now - peer.checked <= peer.fail_timeout)

    def pick(self, tried: set[int], now: float) -> Peer | None:
        """ngx_http_upstream_get_peer: the smooth weighted choice among usable, untried peers."""
        if self.single:
            peer = self.peers[0]
            return None if peer.down or id(peer) in tried else peer
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


class UpstreamGroup:
    def __init__(self, config: UpstreamConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = config.name
        self.keepalive = config.keepalive
        self.keepalive_requests = config.keepalive_requests
        self.keepalive_timeout = config.keepalive_timeout
        self.primary = PeerSet([Peer.from_config(s) for s in config.servers if not s.backup])
        backups = [Peer.from_config(s) for s in config.servers if s.backup]
        self.backup = PeerSet(backups) if backups else None
        self.clock = clock

    def begin(self, max_tries: int = 0) -> PeerSelection:
        """Start choosing peers for one request; ``max_tries`` is proxy_next_upstream_tries (0: no limit)."""
        tries = self.primary.tries() + (self.backup.tries() if self.backup else 0)
        if max_tries:
            tries = min(tries, max_tries)
        return PeerSelection(self, tries)


@dataclass(slots=True)
class PeerSelection:
    group: UpstreamGroup
    tries_left: int
    tried: set[int] = field(default_factory=set)
    using_backup: bool = False

    def next(self) -> Peer | None:
        if self.tries_left <= 0:
            return None
        now = self.group.clock()
        peer = None
        if not self.using_backup:
            peer = self.group.primary.pick(self.tried, now)
            if peer is None and self.group.backup is not None:
                self.using_backup = True
        if peer is None and self.using_backup and self.group.backup is not None:
            peer = self.group.backup.pick(self.tried, now)
        if peer is None:
            return None
        self.tried.add(id(peer))
        return peer

    def failed(self, peer: Peer) -> None:
        """ngx_http_upstream_free_round_robin_peer with NGX_PEER_FAILED."""
        self.tries_left -= 1
        if self._single(peer):
            return
        now = self.group.clock()
        peer.fails += 1
        peer.accessed = now
        peer.checked = now
        if peer.max_fails:
            peer.effective_weight -= peer.weight // peer.max_fails
        if peer.effective_weight < 0:
            peer.effective_weight = 0

    def succeeded(self, peer: Peer) -> None:
        self.tries_left -= 1
        if peer.accessed < peer.checked:
            peer.fails = 0

    def _single(self, peer: Peer) -> bool:
        # nginx never marks the only peer of a group as failed.
        return self.group.primary.single and self.group.backup is None and peer is self.group.primary.peers[0]
