"""The running proxy: listening sockets, connections, graceful and immediate shutdown, reload.

One process, one event loop (uvloop). The engine is sans-IO; this module only wires sockets to it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from newproxy.http.errorlog import ErrorLog
from newproxy.http.h1 import ConnContext, H1Protocol
from newproxy.http.upstream import ClientResponseHead, UpstreamClient

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine

LISTEN_BACKLOG = 511  # nginx's default on Linux


class BindError(Exception):
    """``bind() to ADDR:PORT failed (98: Address already in use)``, as nginx words it."""


def format_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def open_listener(address: str, port: int, ipv6only: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if ipv6only else 0)
        sock.bind((address, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(f"bind() to {format_address(address, port)} failed ({exc.errno}: {exc.strerror})") from None
    return sock


def _client_response_head() -> ClientResponseHead:
    from newproxy.engine.proxy import client_response_head

    return client_response_head


class Server:
    """Accepts HTTP/1.1 connections for one engine; swaps engines on reload."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, log: ErrorLog) -> None:
        self.loop = loop
        self.log = log
        self.engine = engine
        self.upstream = UpstreamClient(loop, _client_response_head(), log)
        self.ctx = ConnContext(engine, self.upstream, loop, log)
        self.connections: set[H1Protocol] = self.ctx.connections
        self.sockets: list[socket.socket] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._old_upstreams: list[UpstreamClient] = []

    def bind(self) -> None:
        """Open every listening socket the engine asks for; all or nothing."""
        try:
            for address, port, ipv6only in self.engine.listen_addresses:
                self.sockets.append(open_listener(address, port, ipv6only))
        except BindError:
            self.close_sockets()
            raise

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def start(self) -> None:
        for sock in self.sockets:
            server = await self.loop.create_server(self._protocol, sock=sock, backlog=LISTEN_BACKLOG)
            self._servers.append(server)  # type: ignore[arg-type]

    def _protocol(self) -> H1Protocol:
        # Reads self.ctx at accept time: after a reload, new connections use the new engine.
        return H1Protocol(self.ctx)

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        self._servers = []
        self.close_sockets()

    async def shutdown_graceful(self, poll: float = 0.05) -> None:
        """nginx's QUIT: stop accepting, close idle connections, let in-flight requests finish."""
        self.stop_accepting()
        self.ctx.closing = True
        for conn in list(self.connections):
            conn.shutdown()
        self._close_idle_upstreams()
        while self.connections:
            await asyncio.sleep(poll)
        self._close_idle_upstreams()

    def terminate(self) -> None:
        """nginx's TERM/INT: drop everything now."""
        self.stop_accepting()
        self.ctx.closing = True
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self._close_idle_upstreams()

    def _close_idle_upstreams(self) -> None:
        self.upstream.close_idle()
        for old in self._old_upstreams:
            old.close_idle()

    def reload(self, engine: Engine) -> None:
        """Serve new connections with ``engine``; connections already open keep the old one.

        Listening sockets are not reopened: a reload that changes them is refused by the caller.
        """
        self._old_upstreams.append(self.upstream)
        self.upstream = UpstreamClient(self.loop, _client_response_head(), self.log)
        ctx = ConnContext(engine, self.upstream, self.loop, self.log)
        ctx.connections = self.connections  # one registry, so shutdown sees every connection
        ctx._ids = self.ctx._ids  # connection numbers in the log stay unique
        self.ctx = ctx
        self.engine = engine
        for old in self._old_upstreams:
            old.close_idle()
