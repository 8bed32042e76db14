"""TLS to https:// upstreams (proxy_ssl_*), as nginx's proxy module does it.

- SNI only with proxy_ssl_server_name on, and never for an IP address (RFC 6066);
- no ALPN; protocols and ciphers from the config (nginx 1.22: TLSv1-TLSv1.2, OpenSSL's DEFAULT);
- with proxy_ssl_verify on: the chain against proxy_ssl_trusted_certificate, then the name
  (proxy_ssl_name, else $proxy_host without its port) against the certificate's DNS names (its CN
  when it has none), as X509_check_host does, also when no SNI is sent. Python's ssl checks the
  chain during the handshake; the name is checked after it (``name_matches``), since Python's own
  check would also send the name as SNI;
- a client certificate with proxy_ssl_certificate/_key;
- proxy_ssl_session_reuse (on by default): one session per peer of a group, as
  ngx_http_upstream_save_round_robin_peer_session keeps it, offered on the next connection to that
  peer from any location (``handshake_name``, ``save_session``).
"""

from __future__ import annotations

import ipaddress
import itertools
import ssl
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from newproxy.config import UpstreamTlsConfig

_T = TypeVar("_T")

# One context per distinct set of context settings, not per location: Python's ssl offers a session
# only to connections of the context that made it, and nginx offers a peer's session from every
# location (each of which has an SSL_CTX of its own there).
_CONTEXTS: dict[tuple[tuple[object, ...], tuple[str, ...]], ssl.SSLContext] = {}


class SessionHolder(Protocol):
    """What keeps a saved session: a peer of an upstream group (newproxy/engine/upstreams.py)."""

    tls_session: ssl.SSLSession | None


# Connections being opened -> (their token, the SNI to send (None: none), the session to offer).
# asyncio and uvloop take no session for a new connection, and uvloop takes only an exact ``str`` as
# server_hostname; they hand that very object on to the context's ``wrap_bio``. So the name handed
# to them is a token made for one connection, by which ``SessionContext.wrap_bio`` finds the real
# SNI and the session. The token's text is never sent.
_PENDING: dict[int, tuple[str, str | None, ssl.SSLSession | None]] = {}
_TOKENS = itertools.count()


class SessionContext(ssl.SSLContext):
    """A client context whose connections offer the session registered for their token."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: Any = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        entry = _PENDING.pop(id(server_hostname), None)
        if entry is not None and entry[0] is server_hostname:
            _, server_hostname, session = entry
        try:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        except ValueError:
            if session is None:
                raise
            # A session another context made (a location with other proxy_ssl_* settings saved it
            # for this peer): Python refuses it, so a full handshake, where nginx would offer it.
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, None)


def handshake_name(config: UpstreamTlsConfig, name: str, peer: SessionHolder) -> str:
    """The server_hostname to hand the event loop for a connection to ``peer``: a token for the SNI
    (``server_hostname``) and, with proxy_ssl_session_reuse on, the session the peer saved
    (ngx_http_upstream_set_round_robin_peer_session). ``release`` it once the connection is made
    or has failed."""
    token = f"upstream-{next(_TOKENS)}"  # a new object, alive (and its id unique) until released
    _PENDING[id(token)] = (token, server_hostname(config, name) or None,
                           peer.tls_session if config.session_reuse else None)
    return token


def release(token: object) -> None:
    """Forget a token whose handshake did not start (a failed connect) or has started."""
    _PENDING.pop(id(token), None)


def save_session(peer: SessionHolder, ssl_object: ssl.SSLObject | None) -> None:
    """Keep the connection's session on its peer when the upstream has made it resumable, as nginx
    saves each new session the upstream hands out (ngx_ssl_new_client_session): in TLSv1.2 with the
    handshake, in TLSv1.3 in the tickets that follow it (so this is also called at the end of each
    answer). A TLSv1.3 session without a ticket yet could not be resumed: the older one is kept."""
    if ssl_object is None:
        return
    session = ssl_object.session
    if session is None or session is peer.tls_session:
        return
    if session.has_ticket or (session.id and ssl_object.version() != "TLSv1.3"):
        peer.tls_session = session


def chain_too_long(ssl_object: ssl.SSLObject | None, depth: int) -> bool:
    """Whether proxy_ssl_verify_depth refuses the chain the handshake verified. nginx sets it with
    SSL_CTX_set_verify_depth, which Python's ssl has no setter for, so it is checked after the
    handshake: OpenSSL then builds at most ``depth`` certificates above the upstream's own, so a
    chain needing more intermediates between it and the trust anchor never reaches the anchor
    (nginx 1.22: error 20, "unable to get local issuer certificate"). A resumed session was checked
    when it was made; newproxy saves none that failed."""
    if ssl_object is None or ssl_object.session_reused:
        return False
    # SSLObject.get_verified_chain is public from Python 3.13; the C object has it since 3.10.
    get_chain = getattr(ssl_object, "get_verified_chain", None) or ssl_object._sslobj.get_verified_chain  # type: ignore[attr-defined]
    chain = get_chain() or ()
    return len(chain) > depth + 2  # the upstream's certificate, `depth` intermediates, the anchor


class UpstreamTlsError(ValueError):
    """A location's proxy_ssl_* files or ciphers cannot be loaded (nginx refuses the config)."""


def client_context(config: UpstreamTlsConfig, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The client context of a location's TLS settings (and ALPN protocols: grpc_pass's h2), made
    once per distinct set of them. Raises UpstreamTlsError with nginx's words."""
    key = (config.context_key(), alpn)
    cached = _CONTEXTS.get(key)
    if cached is not None:
        return cached
    context = SessionContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the name is checked by name_matches, without forcing SNI
    versions = [ssl.TLSVersion[p.replace(".", "_")] for p in config.protocols]
    context.minimum_version, context.maximum_version = min(versions), max(versions)
    try:
        context.set_ciphers(config.ciphers)
    except ssl.SSLError:  # SSL_CTX_set_cipher_list's one failure: no cipher matched
        raise UpstreamTlsError(f'SSL_CTX_set_cipher_list("{config.ciphers}") failed '
                               "(SSL: error:0A0000B9:SSL routines::no cipher match)") from None
    # In ngx_http_proxy_set_ssl's order: the client certificate, then the trusted ones.
    if config.certificate and config.certificate_key:
        try:
            context.load_cert_chain(config.certificate, config.certificate_key)
        except (OSError, ssl.SSLError) as exc:  # Python's ssl does not say which of the two failed
            raise UpstreamTlsError(f'cannot load certificate "{config.certificate}" (key "{config.certificate_key}"): '
                                   f"{exc.strerror or exc}") from None
    if config.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        if config.trusted_certificate:
            try:
                context.load_verify_locations(config.trusted_certificate)
            except (OSError, ssl.SSLError) as exc:
                raise UpstreamTlsError(f'SSL_CTX_load_verify_locations("{config.trusted_certificate}") failed '
                                       f"({exc.strerror or exc})") from None
    else:
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    _CONTEXTS[key] = context
    return context


def load_contexts(config: object) -> None:
    """Make the client context of every https:// and grpcs:// location now, as nginx loads them with
    its config: a file that cannot be read or ciphers that match nothing stop the start (or the
    reload) with the location's file:line, not its first request. Each load starts afresh, so a
    reload reads certificate files again (a renewed one at the same path)."""
    from newproxy.config import ProxyConfig

    _CONTEXTS.clear()
    for proxy in _models_of(config, ProxyConfig):
        if proxy.tls is not None:
            try:
                client_context(proxy.tls, ("h2",) if proxy.protocol == "grpc" else ())
            except UpstreamTlsError as exc:
                raise UpstreamTlsError(f"{proxy.source}: {exc}" if proxy.source else str(exc)) from None


def _models_of(node: object, kind: type[_T]) -> Iterator[_T]:
    """Every ``kind`` model inside a config model (nested locations, if blocks...)."""
    if isinstance(node, kind):
        yield node
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _models_of(getattr(node, name), kind)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _models_of(item, kind)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _models_of(item, kind)


def server_hostname(config: UpstreamTlsConfig, name: str) -> str:
    """The SNI to send ("": none), as ngx_http_upstream_ssl_name decides."""
    if not config.server_name or not name or name.startswith("["):
        return ""
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    return ""


def name_matches(cert: dict, name: str) -> bool:  # type: ignore[type-arg]
    """X509_check_host(cert, name, flags 0): a DNS subjectAltName equal to the name (caseless) or a
    wildcard one (``*`` within the leftmost label); the subject's CN when there is no DNS name."""
    dns = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if not dns:
        dns = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    name = name.lower().rstrip(".")
    return any(_match(pattern.lower(), name) for pattern in dns)


def _match(pattern: str, name: str) -> bool:
    if "*" not in pattern:
        return pattern == name
    left, _, rest = pattern.partition(".")
    host_left, _, host_rest = name.partition(".")
    if "*" in rest or not rest or rest != host_rest or rest.count(".") < 1:
        return False
    prefix, _, suffix = left.partition("*")
    return len(host_left) >= len(prefix) + len(suffix) and host_left.startswith(prefix) and host_left.endswith(suffix)
