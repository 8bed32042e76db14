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
                    "proxy_ssl_protocols", "proxy_ssl_ciphers")


def session_reuse_gap(tr: Translator, chain: _Chain, proxy_pass: Directive) -> None:
    """proxy_ssl_session_reuse on (nginx's default): nginx resumes the session its peer saved (and
    with it the first handshake's SNI, client certificate and verification result, whatever this
    location sets); newproxy does a full handshake per connection."""
    directive = chain.scalar("proxy_ssl_session_reuse")
    if directive is None or directive.args[0] == "on":
        tr.note(proxy_pass, "caveat", "TLS sessions to the upstream are not resumed (nginx's "
                                      "proxy_ssl_session_reuse on, its default, resumes them): a full handshake per "
                                      "connection; the requests are the same")


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
    return config
