"""One server of an upstream group, with the state nginx keeps for it (ngx_http_upstream_rr_peer_t).

A module of its own, not compiled (newproxy/native.py) when the balancer is: a zone's SharedPeer
(newproxy/zones.py) overrides the changing fields with descriptors over shared memory. Compiled code
reads an object of an interpreted class through Python's attribute lookup, so the descriptors are
honoured; a compiled Peer would be read in place, and checked by its exact type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.config import UpstreamServerConfig

if TYPE_CHECKING:
    import ssl


@dataclass(slots=True, eq=False)
class Peer:
    host: str
    port: int
    name: str
    weight: int
    max_fails: int
    fail_timeout: float
    down: bool
    max_conns: int = 0
    server: bytes = b""  # the address as written in the config: hash consistent's points
    path: str | None = None  # a unix socket (name "unix:PATH", as nginx's $upstream_addr says it)
    current_weight: int = 0
    effective_weight: int = 0
    fails: int = 0
    conns: int = 0
    accessed: float = 0.0
    checked: float = 0.0
    # The TLS session an https:// upstream last handed out on a connection to this peer, offered on
    # the next one (newproxy/http/upstream_tls.py): per worker, as nginx keeps it without a zone.
    tls_session: ssl.SSLSession | None = None

    @classmethod
    def from_config(cls, server: UpstreamServerConfig) -> Peer:
        host = server.host
        if server.unix_path is not None:
            name = f"unix:{server.unix_path}"
        else:
            name = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
        return cls(
            host=host, port=server.port, name=name, weight=server.weight, max_fails=server.max_fails,
            fail_timeout=server.fail_timeout, down=server.down, max_conns=server.max_conns,
            server=(server.name or name).encode("latin-1"), effective_weight=server.weight,
            path=server.unix_path,
        )
