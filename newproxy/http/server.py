"""The running proxy: listening sockets, connections, graceful and immediate shutdown, reload.

One process, one event loop (uvloop). The engine is sans-IO; this module only wires sockets to it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from newproxy import stats
from newproxy.config import Http2Config
from newproxy.engine.servers import canonical_address
from newproxy.http.accesslog import AccessLogs, open_access_logs
from newproxy.http.errorlog import ErrorLog
from newproxy.http.h1 import ConnContext, H1Protocol
from newproxy.http.h2 import H2Protocol
from newproxy.http.parking import ParkingLot
from newproxy.http.tls import ListenTls, TlsConfigError, TlsConnection, listen_tls
from newproxy.http.upstream import ClientResponseHead, UpstreamClient
from newproxy.stats import ACCEPTED

if TYPE_CHECKING:
    from aioquic.quic.configuration import QuicConfiguration

    from newproxy.config import ServerConfig
    from newproxy.http.h3 import QuicListener
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


def listen_h2(engine: Engine) -> dict[tuple[str, int], Http2Config]:
    """Every plain address:port some `listen ... http2` names, with its default server's settings."""
    keys = {(canonical_address(listen.address), listen.port) for server in engine.config.servers
            for listen in server.listen if listen.http2 and not listen.ssl}
    return {(address, port): engine.router.table_for(address, port).default.config.http2
            for address, port, _ in engine.listen_addresses if (address, port) in keys}


class _Refused(asyncio.Protocol):
    """An accepted connection over worker_connections: closed at once, as nginx closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stats.C[ACCEPTED] += 1  # accepted, not handled: stub_status's two counts differ by these
        transport.close()


def _capped(factory: Callable[[], asyncio.Protocol], connections: set, parking: ParkingLot,  # type: ignore[type-arg]
            cap: int, log: ErrorLog) -> Callable[[], asyncio.Protocol]:
    def protocol() -> asyncio.Protocol:
        # The lot stands in the registry for the connections it holds (newproxy/http/parking.py).
        if len(connections) + (parking.count - 1 if parking.count else 0) >= cap:
            log.log("alert", f"{cap} worker_connections are not enough")
            return _Refused()
        return factory()

    return protocol


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
        self.access_logs: list[AccessLogs] = []  # every generation's files, flushed and closed on stop
        # ssl listens (newproxy/http/tls.py), by (address, port); empty when no listen has ssl.
        self.tls: dict[tuple[str, int], ListenTls] = {}
        # plain `http2` listens (h2c), by (address, port): the default server's HTTP/2 settings.
        self.h2: dict[tuple[str, int], Http2Config] = {}
        self._keys: list[tuple[str, int]] = []
        self.max_connections = 0  # worker_connections, set by a worker (newproxy/worker.py); 0: no cap
        # `listen ... quic` (newproxy/http/h3.py): UDP sockets, and their listeners once started.
        self._udp: list[tuple[socket.socket, ServerConfig, QuicConfiguration]] = []
        self.quic: list[QuicListener] = []
        self.parking = ParkingLot(loop, self.connections, engine.config.keepalive_park_after)

    def bind(self) -> None:
        """Open every listening socket the engine asks for, and the access logs; all or nothing."""
        try:
            self.tls = self._listen_tls(self.engine)
            self.h2 = listen_h2(self.engine)
            for address, port, ipv6only in self.engine.listen_addresses:
                self.sockets.append(open_listener(address, port, ipv6only))
                self._keys.append((address, port))
            self._open_quic(reuseport=False)
            self.ctx.access = self._open_logs(self.engine)
        except BindError:
            self.close_sockets()
            raise

    def adopt(self, listeners: list[tuple[tuple[str, int], socket.socket]]) -> None:
        """A worker's bind(): serve the sockets its master opened (newproxy/process.py), and open the
        access logs and certificates itself. Raises BindError as bind() does."""
        self.tls = self._listen_tls(self.engine)
        self.h2 = listen_h2(self.engine)
        for key, sock in listeners:
            self.sockets.append(sock)
            self._keys.append(key)
        # Each worker binds its own quic sockets with SO_REUSEPORT: the kernel hashes a client's
        # address to one socket, so a connection's datagrams reach the worker that holds its state.
        self._open_quic(reuseport=True)
        self.ctx.access = self._open_logs(self.engine)

    def _open_quic(self, reuseport: bool) -> None:
        if not getattr(self.engine, "quic_addresses", ()):
            return
        # Imported only when some listen has quic: aioquic and cryptography cost startup time and memory.
        from newproxy.http.h3 import QuicConfigError, build_configuration, open_udp, quic_server

        for address, port, ipv6only in self.engine.quic_addresses:  # type: ignore[attr-defined]
            server = quic_server(self.engine, address, port)
            try:  # the certificate is read at load, as for TCP ssl listens
                configuration = build_configuration(server, self.ctx.client.keepalive_timeout)
                sock = open_udp(address, port, ipv6only, reuseport)
            except QuicConfigError as exc:
                raise BindError(str(exc)) from None
            except OSError as exc:
                raise BindError(f"bind() to {format_address(address, port)} (udp) failed ({exc.errno}: "
                                f"{exc.strerror})") from None
            self._udp.append((sock, server, configuration))

    @staticmethod
    def _listen_tls(engine: Engine) -> dict[tuple[str, int], ListenTls]:
        if not any(listen.ssl for server in engine.config.servers for listen in server.listen):
            return {}
        try:
            return listen_tls(engine)
        except TlsConfigError as exc:
            raise BindError(str(exc)) from None

    def _open_logs(self, engine: Engine) -> AccessLogs | None:
        try:
            access = open_access_logs(engine, self.loop)
        except OSError as exc:
            raise BindError(f'open() "{exc.filename}" failed ({exc.errno}: {exc.strerror})') from None
        if access is not None:
            self.access_logs.append(access)
        return access

    def reopen_logs(self) -> None:
        """USR1: reopen every access log (after rotation)."""
        for access in self.access_logs:
            access.reopen()

    def close_logs(self) -> None:
        """Write what is buffered and close the files (on stop, after the last request)."""
        for access in self.access_logs:
            access.close()
        self.access_logs = []

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self._keys = []
        if not self.quic:  # not started: the datagram transports own them once started
            for udp, _, _ in self._udp:
                udp.close()
        self._udp = []

    async def start(self) -> None:
        for sock, key in zip(self.sockets, self._keys):
            factory = self._h1_factory(key) if key not in self.tls else self._tls_factory(key)
            if key not in self.tls and key in self.h2:
                factory = self._h2_factory(key)
            if key == self.engine.metrics_address:  # type: ignore[attr-defined]
                factory = self._metrics_factory()
            if self.max_connections:
                factory = _capped(factory, self.connections, self.parking, self.max_connections, self.log)
            server = await self.loop.create_server(factory, sock=sock, backlog=LISTEN_BACKLOG)
            self._servers.append(server)  # type: ignore[arg-type]
        for sock, server, configuration in self._udp:
            self.quic.append(await self._start_quic(sock, server, configuration))
        self.parking.start()

    async def _start_quic(self, sock: socket.socket, server: ServerConfig,
                          configuration: QuicConfiguration) -> QuicListener:
        from newproxy.config import Http3Config
        from newproxy.http.h3 import QuicListener

        local = sock.getsockname()[:2]
        _, listener = await self.loop.create_datagram_endpoint(
            lambda: QuicListener(lambda: self.ctx, configuration, server.http3 or Http3Config(), local, self.loop),
            sock=sock)
        return listener

    def _metrics_factory(self) -> Callable[[], H1Protocol]:
        """The Prometheus endpoint's connections (newproxy/http/metrics.py), in the same registry
        as the others so that a stop drains them too."""
        from newproxy.http.metrics import MetricsEndpoint

        ctx = ConnContext(MetricsEndpoint(self.engine.config.metrics, self.engine.maker,
                                          getattr(self.engine, "request_metrics", None)),  # type: ignore[arg-type]
                          self.upstream, self.loop, self.log)
        ctx.connections = self.connections
        return lambda: H1Protocol(ctx)

    def _tls_factory(self, key: tuple[str, int]) -> Callable[[], TlsConnection]:
        # self.ctx and self.tls are read at accept time, so a reload's engine serves new connections.
        return lambda: TlsConnection(self.ctx, self.tls[key])

    def _h2_factory(self, key: tuple[str, int]) -> Callable[[], H2Protocol]:
        """h2c with prior knowledge (nginx 1.22's `listen ... http2` without ssl: no HTTP/1 there)."""
        return lambda: H2Protocol(self.ctx, self.h2[key], listen=key)

    def _h1_factory(self, key: tuple[str, int]) -> Callable[[], H1Protocol]:
        # Reads self.ctx at accept time: after a reload, new connections use the new engine.
        return lambda: H1Protocol(self.ctx, listen=key)

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        self._servers = []
        for listener in self.quic:  # no new QUIC connections; idle ones close, busy ones when done
            listener.shutdown()
        self.close_sockets()

    async def shutdown_graceful(self, poll: float = 0.05) -> None:
        """nginx's QUIT: stop accepting, close idle connections, let in-flight requests finish."""
        self.stop_accepting()
        self.ctx.closing = True
        for conn in list(self.connections):
            conn.shutdown()
        self._close_idle_upstreams()
        while self.connections or self.quic_open():
            await asyncio.sleep(poll)
        self.parking.close_all()
        self._close_quic()
        self._close_idle_upstreams()
        self.close_logs()

    def quic_open(self) -> bool:
        """Whether a QUIC connection is still open (a graceful stop waits for them as for TCP ones)."""
        return any(listener.live for listener in self.quic)

    def _close_quic(self) -> None:
        for listener in self.quic:
            listener.terminate()
        self.quic = []

    def terminate(self) -> None:
        """nginx's TERM/INT: drop everything now."""
        self.stop_accepting()
        self.ctx.closing = True
        self.parking.close_all()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self._close_quic()
        self._close_idle_upstreams()
        self.close_logs()

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
        try:
            ctx.access = self._open_logs(engine)
        except BindError as exc:  # the new config's log cannot be opened: keep the old one's
            self.log.log("emerg", str(exc))
            ctx.access = self.ctx.access
        if self.tls:
            try:
                self.tls = self._listen_tls(engine)
            except BindError as exc:  # a certificate the new config names cannot be loaded: keep the old ones
                self.log.log("emerg", str(exc))
        self.h2 = listen_h2(engine)
        ctx.connections = self.connections  # one registry, so shutdown sees every connection
        self.ctx = ctx
        self.engine = engine
        self.parking.park_after = engine.config.keepalive_park_after  # from the next sweep on
        for old in self._old_upstreams:
            old.close_idle()
