"""TLS to https:// upstreams (proxy_ssl_*), as nginx's proxy module does it.

- SNI only with proxy_ssl_server_name on, and never for an IP address (RFC 6066);
- no ALPN; protocols and ciphers from the config (nginx 1.22: TLSv1-TLSv1.2, OpenSSL's DEFAULT);
- with proxy_ssl_verify on: the chain against proxy_ssl_trusted_certificate, then the name
  (proxy_ssl_name, else $proxy_host without its port) against the certificate's DNS names (its CN
  when it has none), as X509_check_host does, also when no SNI is sent. Python's ssl checks the
  chain during the handshake; the name is checked after it (``name_matches``), since Python's own
  check would also send the name as SNI;
- a client certificate with proxy_ssl_certificate/_key;
- sessions are not resumed (asyncio cannot hand a saved session to a new connection): a full
  handshake per connection, where nginx resumes by default (proxy_ssl_session_reuse: a caveat).
"""

from __future__ import annotations

import ipaddress
import ssl

from newproxy.config import UpstreamTlsConfig

_CONTEXTS: dict[int, tuple[UpstreamTlsConfig, ssl.SSLContext]] = {}


def client_context(config: UpstreamTlsConfig) -> ssl.SSLContext:
    """The client context of a location's TLS settings, made once (keyed by the config object)."""
    cached = _CONTEXTS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the name is checked by name_matches, without forcing SNI
    versions = [ssl.TLSVersion[p.replace(".", "_")] for p in config.protocols]
    context.minimum_version, context.maximum_version = min(versions), max(versions)
    context.set_ciphers(config.ciphers)
    if config.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        if config.trusted_certificate:
            context.load_verify_locations(config.trusted_certificate)
    else:
        context.verify_mode = ssl.CERT_NONE
    if config.certificate and config.certificate_key:
        context.load_cert_chain(config.certificate, config.certificate_key)
    _CONTEXTS[id(config)] = (config, context)
    return context


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
