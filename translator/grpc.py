"""grpc_pass and the grpc_* directives (ngx_http_grpc_module) -> a ProxyConfig with protocol "grpc".

nginx's defaults are written out (ngx_http_grpc_headers, ngx_http_grpc_hide_headers): the set
headers ``Content-Length: $content_length`` and ``TE: $grpc_internal_trailers``, and Host,
Connection, Proxy-Connection, Transfer-Encoding, Keep-Alive, Expect and Upgrade hidden from the
client's headers; Date, Server and X-Accel-* hidden from the answer. ``proxy_host`` is the
``:authority`` nginx sends: the host[:port] of grpc_pass, or nothing when grpc_set_header sets Host
(nginx's host_set). Compared with nginx 1.22 in tests/test_differential_grpc.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import ProxyConfig
from nginx_parser import ConfigError, Directive, parse_time
from translator.proxy_tls import PROTOCOLS, upstream_tls

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

GRPC_DEFAULT_HEADERS: list[tuple[str, str]] = [
    ("Content-Length", "$content_length"),
    ("TE", "$grpc_internal_trailers"),
    ("Host", ""),
    ("Connection", ""),
    ("Proxy-Connection", ""),
    ("Transfer-Encoding", ""),
    ("Keep-Alive", ""),
    ("Expect", ""),
    ("Upgrade", ""),
]
GRPC_DEFAULT_HIDDEN = ["Date", "Server", "X-Accel-Expires", "X-Accel-Redirect", "X-Accel-Limit-Rate",
                       "X-Accel-Buffering", "X-Accel-Charset"]
# The upstream byte counts newproxy's gRPC client does not keep (its access-log values are 0).
_COUNTED = ("upstream_bytes_received", "upstream_bytes_sent", "upstream_response_length")
# What upstream_tls(prefix="grpc") reads (proxy_tls.PROXY_DIRECTIVES for the proxy module).
GRPC_TLS_DIRECTIVES = ("grpc_ssl_server_name", "grpc_ssl_name", "grpc_ssl_verify", "grpc_ssl_trusted_certificate",
                       "grpc_ssl_verify_depth", "grpc_ssl_certificate", "grpc_ssl_certificate_key",
                       "grpc_ssl_protocols", "grpc_ssl_ciphers")
_NEXT_UPSTREAM = frozenset({"error", "timeout", "invalid_header", "non_idempotent", "http_500", "http_502",
                            "http_503", "http_504", "http_403", "http_404", "http_429", "off"})


def grpc_config(tr: Translator, directive: Directive, chain: _Chain) -> ProxyConfig | None:
    """The ProxyConfig of ``grpc_pass URL``; None (reported) for what newproxy cannot forward."""
    url = directive.args[0]
    if "$" in url:
        tr.note(directive, "unsupported", "grpc_pass with variables is not built yet; the location answers 404")
        return None
    lowered = url.lower()
    ssl = lowered.startswith("grpcs://")
    rest = url[8:] if ssl else url[7:] if lowered.startswith("grpc://") else url
    if rest.startswith("unix:"):
        tr.note(directive, "unsupported", "grpc_pass to a unix socket is not built yet")
        return None
    for header in chain.array("add_header"):  # the add_header set in effect here
        if any("upstream_bytes_received" in arg for arg in header.args[1:2]):
            # nginx counts the HTTP/2 frames read for the head (SETTINGS included); the gRPC client
            # (newproxy/http/grpc_upstream.py) does not count them: the value is 0.
            tr.note(header, "caveat", "$upstream_bytes_received is 0 for a grpc_pass answer in newproxy "
                                      "(nginx: the bytes of the HTTP/2 frames read with the head)")
    logged = sorted({name for d in tr.nginx.all_directives() if d.name == "log_format"
                     for arg in d.args[1:] for name in _COUNTED if f"${name}" in arg or f"${{{name}}}" in arg})
    if logged:
        tr.note(directive, "caveat", f"{', '.join('$' + name for name in logged)} in the access log: 0 for a "
                                     "grpc_pass answer in newproxy (nginx counts the HTTP/2 frames read and sent)")
    authority = rest.split("/", 1)[0]
    if authority in tr.upstream_names:
        group = authority
        if not tr._reachable_group(directive, group):
            return None
    else:
        from translator.translate import _split_host_port  # translate imports this module

        host, port = _split_host_port(authority, directive)
        group = authority
        tr._implicit_group(directive, group, host, port, None)
    from translator.translate import _check_ignore_headers, _hidden_headers  # translate imports this module

    headers = tr._proxy_headers(chain, "grpc_set_header", GRPC_DEFAULT_HEADERS)
    _check_ssl_protocols(chain)  # nginx checks the values wherever they are, grpcs or not
    _check_ignore_headers(chain, "grpc_ignore_headers")  # only checked: newproxy acts on none of those headers for grpc
    host_set = any(h.source is not None and h.name.lower() == "host" for h in headers)
    return ProxyConfig(
        protocol="grpc",
        upstream=group,
        proxy_host="" if host_set else authority,
        uri=None,
        http_version="1.1",
        headers=headers,
        connect_timeout=_time(chain, "grpc_connect_timeout"),
        send_timeout=_time(chain, "grpc_send_timeout"),
        read_timeout=_time(chain, "grpc_read_timeout"),
        next_upstream=_next_upstream(chain),
        next_upstream_tries=_tries(chain),
        next_upstream_timeout=_time(chain, "grpc_next_upstream_timeout", 0.0),
        intercept_errors=_flag(chain, "grpc_intercept_errors"),
        hide_headers=_hidden_headers(chain, "grpc_hide_header", "grpc_pass_header", GRPC_DEFAULT_HIDDEN),
        tls=upstream_tls(tr, chain, prefix="grpc") if ssl else None,
        source=directive.where,
    )


def _time(chain: _Chain, name: str, default: float = 60.0) -> float:
    directive = chain.scalar(name)
    if directive is None:
        return default
    try:
        return parse_time(directive.args[0], directive)
    except ConfigError:  # ngx_conf_set_msec_slot's words
        raise ConfigError(f'"{name}" directive invalid value', directive.file, directive.line) from None


def _flag(chain: _Chain, name: str) -> bool:
    directive = chain.scalar(name)
    return directive is not None and directive.args[0] == "on"


def _tries(chain: _Chain) -> int:
    directive = chain.scalar("grpc_next_upstream_tries")
    if directive is None:
        return 0
    if not directive.args[0].isdigit():
        raise ConfigError('"grpc_next_upstream_tries" directive invalid number', directive.file, directive.line)
    return int(directive.args[0])


def _next_upstream(chain: _Chain) -> list:  # type: ignore[type-arg]
    directive = chain.scalar("grpc_next_upstream")
    if directive is None:
        return ["error", "timeout"]
    for value in directive.args:
        if value not in _NEXT_UPSTREAM:
            raise ConfigError(f'invalid value "{value}"', directive.file, directive.line)
    return ["off"] if "off" in directive.args else list(directive.args)


def _check_ssl_protocols(chain: _Chain) -> None:
    for scope in chain.scopes:
        for directive in scope.all("grpc_ssl_protocols"):
            bad = [p for p in directive.args if p not in PROTOCOLS | {"SSLv2", "SSLv3"}]
            if bad:
                raise ConfigError(f'invalid value "{bad[0]}"', directive.file, directive.line)
