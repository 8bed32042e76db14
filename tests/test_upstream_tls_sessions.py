"""newproxy/http/upstream_tls.py's session plumbing, which the event loop gives no hook for: the
token handed as server_hostname finds its SNI and session in wrap_bio, once; a session of another
context is not offered (Python refuses it); a group made per request for an address starts without
sessions (nginx's ngx_http_upstream_create_round_robin_peer keeps none). The behaviour against
nginx is in tests/test_differential_proxy_ssl_sessions.py."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from newproxy.config import UpstreamTlsConfig
from newproxy.engine.proxyurl import adhoc_group
from newproxy.http import upstream_tls
from newproxy.http.upstream_tls import client_context, handshake_name, release, save_session


@dataclass
class _Peer:
    tls_session: ssl.SSLSession | None = None


def _client_hello_sni(sslobj: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> bytes:
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_the_token_carries_the_sni_once_and_is_never_sent() -> None:
    config = UpstreamTlsConfig(server_name=True)
    context = client_context(config)
    token = handshake_name(config, "backend.test", _Peer())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=token)
    assert sslobj.server_hostname == "backend.test"
    hello = _client_hello_sni(sslobj, outgoing)
    assert b"backend.test" in hello and token.encode() not in hello
    assert not upstream_tls._PENDING  # taken by wrap_bio
    # Without SNI (nginx's default): no name at all in the ClientHello.
    token = handshake_name(UpstreamTlsConfig(), "backend.test", _Peer())
    outgoing = ssl.MemoryBIO()
    sslobj = client_context(UpstreamTlsConfig()).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=token)
    assert sslobj.server_hostname is None and b"upstream-" not in _client_hello_sni(sslobj, outgoing)


def test_a_failed_connect_releases_its_token() -> None:
    token = handshake_name(UpstreamTlsConfig(), "x", _Peer())
    assert id(token) in upstream_tls._PENDING
    release(token)
    assert not upstream_tls._PENDING


def test_locations_with_the_same_settings_share_a_context_and_others_do_not() -> None:
    assert client_context(UpstreamTlsConfig(server_name=True)) is client_context(UpstreamTlsConfig(name="x"))
    assert client_context(UpstreamTlsConfig(ciphers="HIGH")) is not client_context(UpstreamTlsConfig())


def test_a_group_made_per_request_starts_without_sessions() -> None:
    first, second = (adhoc_group(("127.0.0.1",), 443, "127.0.0.1:443") for _ in range(2))
    first.primary.peers[0].tls_session = object()  # type: ignore[assignment]
    assert second.primary.peers[0].tls_session is None


def _handshake(client: ssl.SSLObject, c_in: ssl.MemoryBIO, c_out: ssl.MemoryBIO, server: ssl.SSLObject,
               s_in: ssl.MemoryBIO, s_out: ssl.MemoryBIO) -> None:
    """Both ends over memory, then one read each way so that TLSv1.3 tickets arrive."""
    for _ in range(10):
        for end in (client, server):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    server.write(b"x")
    c_in.write(s_out.read())
    assert client.read(1) == b"x"


def test_a_session_of_another_context_gives_a_full_handshake(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-days", "1", "-subj", "/CN=t"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=30)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    peer = _Peer()

    def connect(config: UpstreamTlsConfig) -> ssl.SSLObject:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        client = client_context(config).wrap_bio(c_in, c_out, server_hostname=handshake_name(config, "t", peer))
        _handshake(client, c_in, c_out, server_context.wrap_bio(s_in, s_out, server_side=True), s_in, s_out)
        save_session(peer, client)
        return client

    plain = UpstreamTlsConfig()
    assert not connect(plain).session_reused and peer.tls_session is not None
    assert connect(plain).session_reused  # the same settings: the session is offered and taken
    assert not connect(UpstreamTlsConfig(ciphers="HIGH")).session_reused  # refused by Python: a full one
    assert connect(UpstreamTlsConfig(ciphers="HIGH")).session_reused  # ... which saved its own
    assert not connect(UpstreamTlsConfig(session_reuse=False)).session_reused


def test_each_config_load_makes_the_contexts_afresh() -> None:
    """A reload reads the certificate files again (a renewed one at the same path), as nginx's does:
    load_contexts (newproxy/cli.py build_engine) drops the contexts of the previous load."""
    from newproxy.config import ProxyConfig
    from newproxy.http.upstream_tls import load_contexts

    proxy = ProxyConfig(upstream="u", proxy_host="u", headers=[], tls=UpstreamTlsConfig(ciphers="HIGH"))
    load_contexts([proxy])
    first = client_context(UpstreamTlsConfig(ciphers="HIGH"))
    assert client_context(UpstreamTlsConfig(ciphers="HIGH")) is first  # one per load
    load_contexts([proxy])
    assert client_context(UpstreamTlsConfig(ciphers="HIGH")) is not first
    # grpc_pass's context offers ALPN h2; an https:// one with the same settings must not.
    assert client_context(UpstreamTlsConfig(ciphers="HIGH"), ("h2",)) is not client_context(
        UpstreamTlsConfig(ciphers="HIGH"))
