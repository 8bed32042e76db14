"""proxy_ssl_* -> UpstreamTlsConfig: how newproxy talks TLS to an https:// upstream, nginx's
defaults written out (no SNI, no certificate check, TLSv1-TLSv1.2 as in nginx 1.22, DEFAULT ciphers).
Written for any ``PREFIX_ssl_*`` family (proxy, grpc, uwsgi share the names and semantics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import UpstreamTlsConfig
from nginx_parser import ConfigError, Directive

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

PROTOCOLS = frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})
# What upstream_tls reads for the proxy module (other modules' families by their own prefix).
PROXY_DIRECTIVES = ("proxy_ssl_server_name", "proxy_ssl_name", "proxy_ssl_verify", "proxy_ssl_trusted_certificate",
                    "proxy_ssl_verify_depth", "proxy_ssl_certificate", "proxy_ssl_certificate_key",
                    "proxy_ssl_protocols", "proxy_ssl_ciphers", "proxy_ssl_session_reuse")


def session_sharing_gap(tr: Translator, group: str, tls: UpstreamTlsConfig, proxy_pass: Directive) -> None:
    """nginx offers a peer's saved session from every location that proxies to its group; newproxy
    only from locations whose context settings are those of the first one (a Python context offers
    only its own sessions; newproxy/http/upstream_tls.py)."""
    if not tls.session_reuse:
        return
    zone = tr.zone_directives.get(group)
    if zone is not None and _several_workers(tr):
        tr.note(zone, "caveat", "the peers' TLS sessions are kept per worker: nginx keeps them in the zone, "
                                "where a session one worker saved is offered by the others too")
    key = tls.context_key()
    first_key, first = tr.tls_session_contexts.setdefault(group, (key, proxy_pass))
    if first_key != key:
        tr.note(proxy_pass, "caveat", f"TLS sessions to {group} are resumed only from locations with the same "
                                      "proxy_ssl_* protocols, ciphers, certificates and verification: this one "
                                      f"differs from {first.file}:{first.line}, whose saved sessions nginx would "
                                      "also offer from here; newproxy does a full handshake instead (the "
                                      "requests are the same)")


def _several_workers(tr: Translator) -> bool:
    directive = next((d for d in tr.nginx.all_directives() if d.name == "worker_processes"), None)
    return directive is not None and directive.args[0] != "1"


def upstream_tls(tr: Translator, chain: _Chain, prefix: str = "proxy") -> UpstreamTlsConfig:
    config = UpstreamTlsConfig()
    directive = chain.scalar(f"{prefix}_ssl_server_name")
    config.server_name = directive is not None and directive.args[0] == "on"
    directive = chain.scalar(f"{prefix}_ssl_name")
    # $proxy_host: the proxy module's default (the grpc module has no such variable of its own)
    if directive is not None and not (prefix == "proxy" and directive.args[0] == "$proxy_host"):
        if prefix != "proxy" and "$" in directive.args[0]:
            tr.note(directive, "unsupported", f"{prefix}_ssl_name with variables is not built yet; the {prefix}_pass "
                                              "host is used")
        elif tr._variables_ok(directive, directive.args[0]):
            config.name = directive.args[0]  # a complex value: rendered per request (newproxy/engine/proxyurl.py)
    directive = chain.scalar(f"{prefix}_ssl_verify")
    config.verify = directive is not None and directive.args[0] == "on"
    directive = chain.scalar(f"{prefix}_ssl_trusted_certificate")
    if directive is not None:
        config.trusted_certificate = directive.args[0]
    if config.verify and config.trusted_certificate is None:
        where = chain.scalar(f"{prefix}_ssl_verify")
        assert where is not None
        raise ConfigError(f"no {prefix}_ssl_trusted_certificate for {prefix}_ssl_verify", where.file, where.line)
    directive = chain.scalar(f"{prefix}_ssl_verify_depth")
    if directive is not None:
        if not directive.args[0].isdigit():  # ngx_conf_set_num_slot
            raise ConfigError(f'"{directive.name}" directive invalid number', directive.file, directive.line)
        config.verify_depth = int(directive.args[0])
    for name, attribute in ((f"{prefix}_ssl_certificate", "certificate"),
                            (f"{prefix}_ssl_certificate_key", "certificate_key")):
        directive = chain.scalar(name)
        if directive is not None:
            if "$" in directive.args[0]:
                tr.note(directive, "unsupported", f"{name} with variables is not built yet; no client certificate")
            else:
                setattr(config, attribute, directive.args[0])
    if config.certificate is not None and config.certificate_key is None:
        where = chain.scalar(f"{prefix}_ssl_certificate")
        assert where is not None
        raise ConfigError(f'no "{prefix}_ssl_certificate_key" is defined for certificate "{config.certificate}"',
                          where.file, where.line)
    directive = chain.scalar(f"{prefix}_ssl_protocols")
    if directive is not None:
        bad = [p for p in directive.args if p not in PROTOCOLS | {"SSLv2", "SSLv3"}]
        if bad:
            raise ConfigError(f'invalid value "{bad[0]}"', directive.file, directive.line)
        protocols = [p for p in directive.args if p in PROTOCOLS]
        if len(protocols) < len(directive.args) or not protocols:
            tr.note(directive, "caveat", "SSLv2/SSLv3 are not offered by newproxy's TLS library")
        config.protocols = protocols or ["TLSv1.2"]  # type: ignore[assignment]
    directive = chain.scalar(f"{prefix}_ssl_ciphers")
    if directive is not None:
        config.ciphers = directive.args[0]
    # grpc_pass never resumes a session (its caveat in translator/registry.py)
    directive = chain.scalar(f"{prefix}_ssl_session_reuse")
    config.session_reuse = prefix == "proxy" and (directive is None or directive.args[0] == "on")
    return config
