"""Rules for nginx's ssl module (``listen ... ssl`` and the ``ssl_*`` directives), written out as
``newproxy.config.TlsConfig`` per server.

Inheritance as nginx merges them: scalars from the innermost block that sets them;
``ssl_certificate``/``ssl_certificate_key`` as arrays, whole from the innermost block that has any,
paired by position. Relative file names are read against the directory of the main config file
(nginx's conf prefix).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from newproxy.config import TlsCertificateConfig, TlsConfig
from nginx_parser import ConfigError, Directive, parse_time
from translator.values import flag, scalar_flag

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_ORDER = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _path(translator: Translator, value: str) -> str:
    if os.path.isabs(value):
        return value
    return os.path.join(os.path.dirname(os.path.abspath(translator.nginx.main_file)), value)


def ssl_on(chain: _Chain) -> Directive | None:
    """The obsolete ``ssl on`` of a server (nginx 1.22 warns and still applies it), if set."""
    directive = chain.scalar("ssl")
    return directive if directive is not None and flag(directive) else None


def tls_config(translator: Translator, chain: _Chain) -> TlsConfig | None:
    """The TLS settings of the server at the end of ``chain``; None when it has no certificate and
    no ``ssl_reject_handshake on`` (it can then only be reached over plain HTTP; the caller reports
    its ssl listens: nginx refuses to start with them)."""
    certificates = chain.array("ssl_certificate")
    keys = chain.array("ssl_certificate_key")
    reject = scalar_flag(chain, "ssl_reject_handshake", False)
    if not certificates and not reject:
        return None
    config = TlsConfig(reject_handshake=reject, source=(certificates[0] if certificates else None)
                       and certificates[0].where)
    for index, cert in enumerate(certificates):
        if index >= len(keys):
            raise ConfigError(f'no "ssl_certificate_key" is defined for certificate "{cert.args[0]}"',
                              cert.file, cert.line)
        key = keys[index]
        for directive in (cert, key):
            value = directive.args[0]
            if "$" in value or value.startswith("data:") or value.startswith("engine:"):
                translator.note(directive, "unsupported", "certificates named by variables, data: or engine: "
                                                          "are not loaded by newproxy; this pair is dropped")
                break
        else:
            config.certificates.append(TlsCertificateConfig(certificate=_path(translator, cert.args[0]),
                                                            key=_path(translator, key.args[0]), source=cert.where))
    protocols = chain.scalar("ssl_protocols")
    if protocols is not None:
        names = []
        for arg in protocols.args:
            if arg not in _PROTOCOLS:
                raise ConfigError(f'invalid value "{arg}" in "ssl_protocols" directive', protocols.file,
                                  protocols.line)
            if arg in _ORDER:
                names.append(arg)
        enabled = sorted(set(names), key=_ORDER.index)
        span = _ORDER[_ORDER.index(enabled[0]):_ORDER.index(enabled[-1]) + 1] if enabled else ()
        if list(span) != enabled:
            translator.note(protocols, "caveat", "newproxy bounds the protocols by the lowest and highest "
                                                 f"listed ({span[0]} to {span[-1]}): the ones between are on too")
        config.protocols = enabled  # type: ignore[assignment]
    ciphers = chain.scalar("ssl_ciphers")
    if ciphers is not None:
        config.ciphers = ciphers.args[0]
    config.prefer_server_ciphers = scalar_flag(chain, "ssl_prefer_server_ciphers", False)
    config.session_tickets = scalar_flag(chain, "ssl_session_tickets", True)
    timeout = chain.scalar("ssl_session_timeout")
    if timeout is not None:
        config.session_timeout = parse_time(timeout.args[0], timeout)
    dhparam = chain.scalar("ssl_dhparam")
    if dhparam is not None:
        config.dhparam = _path(translator, dhparam.args[0])
    curve = chain.scalar("ssl_ecdh_curve")
    if curve is not None:
        config.ecdh_curve = curve.args[0]
        if ":" in curve.args[0]:
            translator.note(curve, "caveat", "Python's ssl sets one curve: only the first of the list, "
                                             f'"{curve.args[0].split(":")[0]}", is offered')
    return config
