"""Rules for nginx's http_v3 and quic modules (nginx >= 1.25): ``listen ... quic`` and the ``http3*``
/ ``quic_*`` directives, written out as ``newproxy.config.Http3Config`` per server.

Debian's nginx 1.22 knows none of them (``nginx -t`` refuses them): the shadow harness drops them
from nginx's side (shadow/rewire.py) and compares newproxy over HTTP/3 with the same config over
HTTP/1.1 instead (shadow/h3.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import Http3Config, ListenConfig, ServerConfig, TlsConfig
from nginx_parser import Server
from translator.values import flag, number

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain


def http3_config(translator: Translator, chain: _Chain) -> Http3Config:
    """The HTTP/3 settings in force in the server at the end of ``chain``."""
    from translator.translate import parse_size

    config = Http3Config()
    directive = chain.scalar("http3")
    if directive is not None:
        config.enabled = flag(directive)
    directive = chain.scalar("http3_max_concurrent_streams")
    if directive is not None:
        config.max_concurrent_streams = number(directive)
    directive = chain.scalar("quic_retry")
    if directive is not None:
        config.retry = flag(directive)
    directive = chain.scalar("http3_stream_buffer_size")
    if directive is not None:
        config.stream_buffer_size = parse_size(directive.args[0], directive)
    directive = chain.scalar("http3_hq")
    if directive is not None and flag(directive):
        translator.note(directive, "unsupported", "hq-interop (HTTP/0.9 over QUIC) is not served by newproxy: "
                                                  "only the h3 ALPN is offered")
    # quic_gso, quic_host_key, quic_active_connection_id_limit, quic_bpf: their registry rules say
    # what newproxy does instead; nothing to write out.
    return config


def http3_listens(translator: Translator, chain: _Chain, server: Server, listens: list[ListenConfig],
                  tls: TlsConfig | None) -> tuple[list[ListenConfig], Http3Config | None]:
    """The server's listens with its ``quic`` ones kept only when a certificate is there to serve
    them (nginx refuses to start otherwise), and its HTTP/3 settings when it has any quic listen."""
    if not any(listen.quic for listen in listens):
        return listens, None
    if tls is None or not tls.certificates:
        for listen in server.listens:
            if listen.directive is not None and listen.quic:
                translator.note(listen.directive, "unsupported", 'no "ssl_certificate" is defined for the "listen '
                                                                 '... quic" directive (nginx refuses to start): '
                                                                 'dropped')
        return [listen for listen in listens if not listen.quic], None
    for listen in server.listens:
        if listen.directive is not None and listen.quic:
            # aioquic's TLS has no SNI callback: the certificate cannot follow the name.
            translator.note(listen.directive, "caveat", "HTTP/3 by aioquic: every client gets the first certificate "
                                                        "of the default server of this address:port whatever its "
                                                        "SNI name ($ssl_server_name is empty); Host still picks the "
                                                        "server")
    return listens, http3_config(translator, chain)


def shared_quic_ports(translator: Translator, servers: list[Server], configs: list[ServerConfig]) -> None:
    """newproxy picks a request's server among those listening on its address:port, TCP and quic
    listens together; nginx keeps a UDP port's servers apart from the TCP port's. That is the same
    thing unless some server listens on only one of the two: said as a caveat on its quic listens."""
    tcp: dict[tuple[str, int], list[int]] = {}
    quic: dict[tuple[str, int], list[int]] = {}
    for index, config in enumerate(configs):
        for listen in config.listen:
            table = quic if listen.quic else tcp
            table.setdefault((listen.address, listen.port), []).append(index)
    for key, quic_servers in quic.items():
        tcp_servers = tcp.get(key)
        if tcp_servers is None or tcp_servers == quic_servers:
            continue
        for index in set(quic_servers):
            for listen in servers[index].listens:
                if listen.directive is not None and listen.quic:
                    reason = (f"{key[0]}:{key[1]} has TCP listens of other servers: newproxy chooses among the "
                              "TCP and quic servers of the port together (default server and names), nginx "
                              "among the quic ones only")
                    before = translator.levels.get(id(listen.directive))
                    if before is not None and before[0] == "caveat":  # keep the certificate caveat too
                        reason = f"{before[1]}; {reason}"
                    translator.note(listen.directive, "caveat", reason)
