"""TLS front end for ``listen ... ssl``: contexts built at load, SNI server selection, and a record
layer over a memory BIO that hands plaintext to the same ``H1Protocol`` as plain listens.

Why not ``loop.create_server(ssl=...)``: nginx peeks at the first byte of a connection on an ssl
port; a TLS handshake (0x16, or SSLv2's high bit) starts TLS, anything else is read as plain HTTP
and answered with 497 ("The plain HTTP request was sent to HTTPS port") once the header is in.
asyncio's and uvloop's SSL transports cannot give the first bytes back, so this module sniffs them
and drives an ``ssl.SSLObject`` itself. That also lets a failed handshake's alert (protocol
version, unrecognized_name for ``ssl_reject_handshake``) reach the client before the close, as
with nginx, where asyncio's SSL transport drops it.

Plain listens never see this module: their sockets get ``H1Protocol`` directly.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from typing import TYPE_CHECKING, Any

from newproxy.config import Http2Config, TlsConfig
from newproxy.engine.servers import InvalidHost, NameTable, canonical_address, normalise_host
from newproxy.engine.types import TlsInfo
from newproxy.http.h1 import PLAIN_ON_TLS_PORT, ConnContext, H1Protocol
from newproxy.http.h2 import H2Protocol

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledServer
    from newproxy.engine.engine import Engine

_READ = 65536
_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
# nginx 1.22's ALPN lists (ngx_http_ssl_alpn_select: its own order of preference): h2 first only on
# an address:port with `http2`; without it, a client offering h2 gets http/1.1.
ALPN_H1 = ["http/1.1", "http/1.0", "http/0.9"]
ALPN_H2 = ["h2", *ALPN_H1]


class TlsConfigError(Exception):
    """A certificate, key or setting OpenSSL refuses (said as nginx says it, with the file)."""


def build_context(tls: TlsConfig) -> ssl.SSLContext:
    """One server's SSLContext, set up as nginx's ngx_ssl_create + the ssl module's directives do
    (Python's own defaults — server cipher preference, TLSv1.2 minimum, its cipher string — undone)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    enabled = [name for name in _ORDER if name in tls.protocols]
    if enabled:
        # nginx turns protocols off with SSL_OP_NO_*: a gap in the list (TLSv1 TLSv1.2) is
        # impossible with min/max, so the lowest and highest enabled bound it (a caveat in the
        # translator when the list has a hole).
        with warnings.catch_warnings():  # TLSv1/1.1 are deprecated in Python, yet in nginx 1.22's default
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = _VERSIONS[enabled[0]]
            ctx.maximum_version = _VERSIONS[enabled[-1]]
    if not tls.prefer_server_ciphers:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if not tls.session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    try:
        ctx.set_ciphers(tls.ciphers)
    except ssl.SSLError:
        raise TlsConfigError(f'SSL_CTX_set_cipher_list("{tls.ciphers}") failed') from None
    for cert in tls.certificates:
        try:
            ctx.load_cert_chain(cert.certificate, cert.key)
        except (OSError, ssl.SSLError) as exc:
            where = f"{cert.source}: " if cert.source else ""
            raise TlsConfigError(f'{where}cannot load certificate "{cert.certificate}" (key "{cert.key}"): '
                                 f'{exc}') from None
    if tls.dhparam is not None:
        try:
            ctx.load_dh_params(tls.dhparam)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f'cannot load DH parameters "{tls.dhparam}": {exc}') from None
    if tls.ecdh_curve != "auto":
        try:
            ctx.set_ecdh_curve(tls.ecdh_curve.split(":")[0])
        except (ValueError, ssl.SSLError):
            raise TlsConfigError(f'unknown curve "{tls.ecdh_curve}"') from None
    return ctx


class ListenTls:
    """The TLS side of one ssl address:port: the default server's context (the handshake starts with
    it) and, per server reachable there, the context its SNI name switches to."""

    def __init__(self, table: NameTable[CompiledServer], contexts: dict[int, ssl.SSLContext],
                 rejects: dict[int, bool], http2: Http2Config | None = None,
                 address: tuple[str, int] | None = None) -> None:
        self.table = table
        self.address = address  # the listen's address and port (nginx's listening addr_text, in lines)
        self.http2 = http2  # `listen ... ssl http2`: ALPN h2 gets the HTTP/2 front end with these settings
        self._contexts = contexts  # id(ServerConfig) -> its context
        self._rejects = rejects
        default = table.default.config
        initial = contexts.get(id(default))
        if initial is None:  # a default server without TLS settings of its own: nginx's defaults
            initial = build_context(TlsConfig())
            initial.sni_callback = _sni
            initial.set_alpn_protocols(ALPN_H2 if http2 is not None else ALPN_H1)
        self.initial = initial

    def select(self, sslobj: ssl.SSLObject, name: str | None) -> int | None:
        """ngx_http_ssl_servername: a valid name that picks a server lends its certificates; no name,
        an unknown or invalid one keeps the default server's; then that server's reject_handshake."""
        server = self.table.default
        if name:
            try:
                host = normalise_host(name.encode("latin-1"))
            except (InvalidHost, UnicodeEncodeError):
                host = ""
            if host:
                server = self.table.find(host)[0]
                context = self._contexts.get(id(server.config))
                if context is not None and context is not sslobj.context:
                    sslobj.context = context
        if self._rejects.get(id(server.config), False):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None


def _sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
    """Every context's sni_callback: a context may be the default of several ports, so the
    connection (set on its SSLObject) tells which port's names apply."""
    conn: TlsConnection = sslobj._newproxy_conn  # type: ignore[attr-defined]
    if name:
        conn.server_name = name
    return conn.listen.select(sslobj, name)


def listen_tls(engine: Engine) -> dict[tuple[str, int], ListenTls]:
    """For every address:port with an ``ssl`` listen, its ``ListenTls`` (built at load: contexts are
    shared by the listens of a server, and reloads build new ones)."""
    rejects: dict[int, bool] = {}
    for server in engine.config.servers:
        if server.tls is not None:
            rejects[id(server)] = server.tls.reject_handshake
    # ALPN is a context's setting, and nginx offers h2 per address:port (the listen's http2), while
    # contexts follow the server SNI picks: so each server's contexts come in the variants the ports
    # need, with h2 offered and without (both only when some ssl ports have http2 and some not).
    variants: dict[bool, dict[int, ssl.SSLContext]] = {}

    def contexts_for(h2: bool) -> dict[int, ssl.SSLContext]:
        contexts = variants.get(h2)
        if contexts is None:
            contexts = variants[h2] = {}
            for server in engine.config.servers:
                if server.tls is not None:
                    # Without certificates (ssl_reject_handshake on) too: as the default server of a
                    # port, its protocols and ciphers are what the handshake starts with.
                    context = build_context(server.tls)
                    context.sni_callback = _sni
                    context.set_alpn_protocols(ALPN_H2 if h2 else ALPN_H1)
                    contexts[id(server)] = context
        return contexts

    h2_keys = {(canonical_address(listen.address), listen.port) for server in engine.config.servers
               for listen in server.listen if listen.ssl and listen.http2}
    out: dict[tuple[str, int], ListenTls] = {}
    ssl_keys = {(canonical_address(listen.address), listen.port) for server in engine.config.servers for listen in server.listen
                if listen.ssl}
    for address, port, _ in engine.listen_addresses:
        if (address, port) in ssl_keys:
            table = engine.router.table_for(address, port)
            h2 = (address, port) in h2_keys
            http2 = table.default.config.http2 if h2 else None
            out[(address, port)] = ListenTls(table, contexts_for(h2), rejects, http2, (address, port))
    return out


class _AppTransport(asyncio.Transport):
    """The transport ``H1Protocol`` writes to: plaintext in, TLS records out to the socket."""

    def __init__(self, conn: TlsConnection) -> None:
        super().__init__()
        self._conn = conn

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.write(bytes(data))

    def writelines(self, lines: Any) -> None:
        self._conn.write(b"".join(lines))

    def close(self) -> None:
        self._conn.close()

    def abort(self) -> None:
        self._conn.raw.abort()

    def is_closing(self) -> bool:
        return self._conn.closing or self._conn.raw.is_closing()

    def pause_reading(self) -> None:
        self._conn.raw.pause_reading()

    def resume_reading(self) -> None:
        self._conn.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._conn.raw.is_reading()

    def can_write_eof(self) -> bool:
        return False  # a TLS half-close is a close_notify, sent by close()

    def get_write_buffer_size(self) -> int:
        return self._conn.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._conn.raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return None  # no sendfile(2) through TLS: newproxy/http/sendfile.py reads and writes
        if name == "tcp_socket":  # the TCP socket under TLS: SO_LINGER for reset_timedout_connection
            return self._conn.raw.get_extra_info("socket")
        if name == "ssl_object":
            return self._conn.sslobj
        if name == "sslcontext":
            return self._conn.sslobj.context
        return self._conn.raw.get_extra_info(name, default)


class TlsConnection(asyncio.Protocol):
    """One connection on an ssl listen: sniff, handshake, then the record layer for ``H1Protocol``."""

    def __init__(self, ctx: ConnContext, listen: ListenTls) -> None:
        self.ctx = ctx
        self.listen = listen
        self.raw: asyncio.Transport = None  # type: ignore[assignment]
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = listen.initial.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.sslobj._newproxy_conn = self  # type: ignore[attr-defined]  # for the SNI callback
        self.server_name = ""
        self.app: H1Protocol | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.sniffed = False
        self.handshaken = False
        self.closing = False
        # nginx numbers the connection at accept: a handshake that fails has used a number too.
        self.number = ctx.next_id()

    # -- the socket side ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        # nginx bounds the first byte and the handshake by client_header_timeout; H1Protocol's own
        # timers take over once it runs.
        self.timer = self.ctx.loop.call_later(self.ctx.client.header_timeout, self._timed_out)

    def _timed_out(self) -> None:
        if not self.handshaken and self.raw.get_protocol() is self:
            self.raw.abort()

    def data_received(self, data: bytes) -> None:
        if not self.sniffed:  # nginx peeks at the first byte only
            self.sniffed = True
            first = data[0]
            if first != 0x16 and not first & 0x80:
                self._plain(data)
                return
        self.incoming.write(data)
        if not self.handshaken:
            if not self._handshake():
                return
        self._read()

    def _plain(self, data: bytes) -> None:
        """Plain HTTP on an ssl port: the HTTP/1.1 protocol reads it and answers 497."""
        self._stop_timer()
        app = H1Protocol(self.ctx, number=self.number, listen=self.listen.address)
        app.tls = PLAIN_ON_TLS_PORT
        self.raw.set_protocol(app)
        app.connection_made(self.raw)
        app.data_received(data)

    def _handshake(self) -> bool:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ssl.CertificateError) as exc:
            # The alert OpenSSL wrote (protocol_version, unrecognized_name...) goes out first.
            self._flush()
            self.ctx.log.log("info", f"SSL_do_handshake() failed ({exc.__class__.__name__}: {exc}) while SSL "
                                     "handshaking", self.number)
            self.closing = True
            self.raw.close()
            return False
        self._flush()
        self._stop_timer()
        self.handshaken = True
        sslobj = self.sslobj
        cipher = sslobj.cipher()
        info = TlsInfo(sslobj.version() or "", cipher[0] if cipher else "", self.server_name, sslobj.session_reused)
        http2 = self.listen.http2
        if http2 is not None and sslobj.selected_alpn_protocol() == "h2":
            self.app = H2Protocol(self.ctx, http2, info, self.number, self.listen.address)  # type: ignore[assignment]
        else:
            app = self.app = H1Protocol(self.ctx, number=self.number, listen=self.listen.address)
            app.tls = info
        self.app.connection_made(_AppTransport(self))  # type: ignore[union-attr]
        return True

    def _read(self) -> None:
        app = self.app
        sslobj = self.sslobj
        while app is not None and not self.raw.is_closing():
            try:
                chunk = sslobj.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                self.ctx.log.log("info", f"SSL_read() failed ({exc})", self.number)
                self.raw.abort()
                break
            if not chunk:  # close_notify (Python returns b"" for it): the client's half-close
                if not app.eof_received():
                    self.close()
                break
            app.data_received(chunk)
        self._flush()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def eof_received(self) -> bool | None:
        if self.app is not None:
            return self.app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.sslobj._newproxy_conn = None  # type: ignore[attr-defined]  # no cycle left for the GC
        if self.app is not None:
            self.app.connection_lost(exc)
            self.app = None

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- the application side ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing or self.raw.is_closing():
            return
        try:
            self.sslobj.write(data)
        except ssl.SSLError as exc:
            self.ctx.log.log("info", f"SSL_write() failed ({exc})", self.number)
            self.raw.abort()
            return
        self._flush()

    def close(self) -> None:
        """close_notify, then the socket (nginx's ngx_ssl_shutdown does not wait for the client's)."""
        if self.closing:
            return
        self.closing = True
        if self.handshaken:
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # SSLWantReadError: our close_notify is written; not waiting for the client's
            self._flush()
        self.raw.close()

    def _flush(self) -> None:
        pending = self.outgoing.pending
        if pending:
            self.raw.write(self.outgoing.read())
