"""newproxy's own typed config.

Explicit, not implicit: nothing here is inherited or defaulted behind the operator's back. The
translator resolves nginx's inheritance and writes out nginx's implicit defaults (the proxy headers
``Host $proxy_host`` and ``Connection close``, ``proxy_http_version 1.0``…), so reading this file
tells exactly what the proxy does. Values that contain variables use nginx's syntax
(``$scheme://$host$request_uri``) because that is what operators already read fluently.

Every block keeps ``source``: the ``file:line`` of the nginx directive it came from, if any.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field

CONFIG_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ListenConfig(_Model):
    """One listening socket of a server. ``address`` is an IP literal; ``0.0.0.0`` / ``::`` mean every address."""

    address: str = "0.0.0.0"
    port: int
    default_server: bool = False
    ipv6only: bool = True
    ssl: bool = Field(default=False, description="TLS on this socket (nginx `listen ... ssl`); the server's `tls` "
                                                 "block gives the certificates")
    quic: bool = Field(default=False, description="a UDP socket serving HTTP/3 over QUIC (nginx >= 1.25 `listen ... "
                                                  "quic`), apart from any TCP socket on the same port; the server's "
                                                  "`tls` block gives the certificate, `http3` the settings")
    http2: bool = Field(default=False, description="HTTP/2 on this address:port (nginx 1.22 `listen ... http2`): "
                                                   "with ssl offered by ALPN next to http/1.1, without it h2c with "
                                                   "prior knowledge only; the default server's `http2` settings apply")
    source: str | None = None


TlsProtocol = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


class TlsCertificateConfig(_Model):
    """One ``ssl_certificate``/``ssl_certificate_key`` pair (PEM files)."""

    certificate: str
    key: str
    source: str | None = None


class TlsConfig(_Model):
    """A server's TLS settings (nginx's ssl module), inheritance resolved, nginx's defaults written out.

    OpenSSL picks among ``certificates`` (an RSA and an ECDSA one, say) by the client's signature
    algorithms. On one address:port the handshake starts with the default server's settings; the
    server whose name matches the client's SNI then lends only its certificates (and
    ``reject_handshake``), as OpenSSL's SSL_set_SSL_CTX does for nginx: protocols and ciphers stay
    the default server's."""

    certificates: list[TlsCertificateConfig] = Field(default_factory=list)
    protocols: list[TlsProtocol] = Field(default_factory=lambda: ["TLSv1", "TLSv1.1", "TLSv1.2"],
                                         description="nginx 1.22's default has no TLSv1.3")
    ciphers: str = Field(default="HIGH:!aNULL:!MD5", description="OpenSSL cipher string (TLSv1.2 and below)")
    prefer_server_ciphers: bool = False
    session_tickets: bool = True
    session_timeout: float = Field(default=300.0, description="seconds (not applied: Python's ssl has no setter)")
    dhparam: str | None = Field(default=None, description="PEM DH parameters for DHE ciphers")
    ecdh_curve: str = Field(default="auto", description="auto: OpenSSL's default groups; else one curve name")
    reject_handshake: bool = Field(default=False, description="refuse handshakes whose SNI picks this server")
    source: str | None = None


class ReturnStep(_Model):
    """nginx ``return``: stop processing and answer.

    For 301, 302, 303, 307 and 308, ``text`` is the redirect target (``Location``); a relative one is
    made absolute as nginx does (``absolute_redirect on``). For other codes it is the response body;
    without ``text`` an error code gets the built-in error page.
    """

    kind: Literal["return"] = "return"
    status: int
    text: str | None = None
    source: str | None = None


class RewriteRuleStep(_Model):
    """nginx ``rewrite REGEX REPLACEMENT [FLAG]``, matched against $uri.

    ``replacement`` is kept as written: a literal "?" in it starts new args (the original args are
    appended after "&" unless the replacement ends with "?", which drops them). One starting with
    ``http://``, ``https://`` or ``$scheme`` is a redirect (302, or 301 with ``permanent``).
    ``flag``: ``none`` goes on with the next step (the location is searched again at the end of
    the phase); ``last`` ends the phase and searches the location again; ``break`` ends the phase
    and stays; ``redirect``/``permanent`` answer with 302/301.
    """

    kind: Literal["rewrite"] = "rewrite"
    regex: str
    replacement: str
    flag: Literal["none", "last", "break", "redirect", "permanent"] = "none"
    source: str | None = None


class SetStep(_Model):
    """nginx ``set $variable value``; ``variable`` without the "$"."""

    kind: Literal["set"] = "set"
    variable: str
    value: str
    source: str | None = None


class BreakStep(_Model):
    """nginx ``break``: end the rewrite phase here, keep the location."""

    kind: Literal["break"] = "break"
    source: str | None = None


IfOperator = Literal["true", "=", "!=", "~", "~*", "!~", "!~*", "-f", "!-f", "-d", "!-d", "-e", "!-e", "-x", "!-x"]


class IfCondition(_Model):
    """An ``if`` condition. ``true``: ``value`` is neither empty nor "0". ``=``/``!=`` compare ``value``
    with ``operand``; the regex operators match ``value`` against the regex ``operand`` (captures
    become $1..$9 and named variables); the file operators test the path ``value`` on disk."""

    operator: IfOperator
    value: str
    operand: str | None = None


class IfStep(_Model):
    """nginx ``if (condition) { ... }``: when the condition holds, ``steps`` run in place.

    ``location``: the config of the if block itself (nginx makes each if inside a location an implicit
    nested location, inheriting the enclosing one's settings and content handler); when the
    condition holds it becomes the request's location config, so the last if that held decides the
    content handler. Null for a server-level if (find-location replaces its config anyway).
    """

    kind: Literal["if"] = "if"
    condition: IfCondition
    steps: list[RewriteStep] = Field(default_factory=list)
    location: LocationConfig | None = None
    source: str | None = None


# The rewrite phase is a list of steps, run in order (nginx compiles them into one script).
RewriteStep = Annotated[Union[ReturnStep, RewriteRuleStep, SetStep, BreakStep, IfStep], Field(discriminator="kind")]


class ErrorPageConfig(_Model):
    """nginx ``error_page CODE... [=[RESPONSE]] TARGET`` for the errors newproxy makes itself.

    ``target``: a URI (internal redirect: the server rewrite phase and the location search run again,
    the method becomes GET unless HEAD), ``@name`` (a named location, method kept) or a URL
    (``http://``, ``https://``, ``$scheme``: a redirect, 302 unless ``response`` is a redirect code).
    ``response``: the status to answer with (``=CODE``); ``target_status``: answer with the target's
    own status (a bare ``=``); neither: the original error code. Applied once per request
    (``recursive_error_pages off``)."""

    codes: list[int]
    target: str
    response: int | None = None
    target_status: bool = False
    source: str | None = None


class TryFilesConfig(_Model):
    """nginx ``try_files``: each of ``files`` (a value ending in "/" names a directory) is looked up
    under ``root``; the first that exists becomes $uri. When none does, ``fallback``: ``=CODE``, a
    named location ``@name``, or a URI (an internal redirect).

    A file that exists is then served by the location's content handler with the new $uri: proxied
    when the location proxies, as nginx does, otherwise served from disk (``static``)."""

    files: list[str]
    fallback: str
    root: str
    source: str | None = None


class StaticConfig(_Model):
    """nginx's static, index and autoindex modules for one location (or a server's no-location
    requests): how a file is found and answered. ``alias`` replaces the location's prefix (or, in a
    regex location, is the whole path after capture substitution) where ``root`` is prepended."""

    alias: str | None = Field(default=None, description="nginx `alias` (root is ignored when set)")
    index: list[str] = Field(default_factory=lambda: ["index.html"], description="nginx `index`, tried in order")
    autoindex: bool = Field(default=False, description="nginx `autoindex` (html format)")
    autoindex_exact_size: bool = True
    autoindex_localtime: bool = False
    etag: bool = True
    if_modified_since: Literal["off", "exact", "before"] = "exact"
    source: str | None = None


class GzipConfig(_Model):
    """nginx's gzip filter for one location (``gzip on``), every setting written out, inheritance
    resolved. Null where gzip is off. The ``gzip_vary``/``gzip_proxied``/``gzip_disable``/
    ``gzip_http_version`` settings (nginx's core module) only matter while the filter is on.

    A response is compressed when its status is 200, 403 or 404, it has no Content-Encoding, its
    Content-Length (if known) is at least ``min_length``, its type is in ``types`` (``["*"]``: any,
    even none), and the request passes nginx's ngx_http_gzip_ok: an Accept-Encoding naming gzip
    (not ``q=0``), HTTP version >= ``http_version``, not MSIE 4-6 under ``disable_msie6``, a
    User-Agent matching none of ``disable`` (caseless), and for requests with a Via header the
    ``proxied`` rules. ``vary``: add ``Vary: Accept-Encoding`` to every response the filter looked
    at (compressed or not)."""

    types: list[str] = Field(default_factory=lambda: ["text/html"],
                             description="MIME types to compress, lower-case; text/html is always among them")
    min_length: int = 20
    comp_level: int = Field(default=1, ge=1, le=9)
    vary: bool = False
    proxied: list[Literal["off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth",
                          "any"]] = Field(default_factory=lambda: ["off"])
    disable: list[str] = Field(default_factory=list, description="gzip_disable regexes on User-Agent (caseless)")
    disable_msie6: bool = False
    http_version: Literal["1.0", "1.1"] = "1.1"
    source: str | None = None


class HeaderSetting(_Model):
    """A header to send upstream. An empty ``value`` (after variable expansion) sends nothing."""

    name: str
    value: str
    source: str | None = None


class AddHeaderConfig(_Model):
    """nginx ``add_header``/``add_trailer NAME VALUE [always]``. ``value`` may have variables; an empty
    one adds nothing. Without ``always`` only for 200, 201, 204, 206, 301, 302, 303, 304, 307, 308."""

    name: str
    value: str
    always: bool = False
    source: str | None = None


class ExpiresConfig(_Model):
    """nginx ``expires``: ``epoch``, ``max``, ``access`` (``seconds`` from now), ``modified``
    (``seconds`` from the response's Last-Modified) or ``daily`` (the next ``seconds`` after local
    midnight). ``value``: a value with variables, parsed per request as nginx parses the directive
    (then ``mode`` is ``access`` or ``modified``); one that does not parse, or ``off``, sets nothing."""

    mode: Literal["epoch", "max", "access", "modified", "daily"]
    seconds: int = 0
    value: str | None = None
    source: str | None = None


class ResponseHeadersConfig(_Model):
    """nginx's headers filter for one location, inheritance resolved: the innermost level with any
    ``add_header`` gives the whole list (likewise ``add_trailer``); ``expires`` the innermost one set
    (``expires off`` is written as no ``expires``)."""

    expires: ExpiresConfig | None = None
    add: list[AddHeaderConfig] = Field(default_factory=list, description="add_header, in order")
    trailers: list[AddHeaderConfig] = Field(default_factory=list, description="add_trailer, in order")


class RewriteRuleConfig(_Model):
    """One ``proxy_redirect``, ``proxy_cookie_domain`` or ``proxy_cookie_path`` rule.

    ``prefix``: ``pattern`` (a complex value) matched case-sensitively at the start of the value,
    that part replaced. ``domain`` (cookie domains): the whole value, after one leading ".", equal to
    ``pattern`` with the case ignored, replaced after that dot. ``regex`` / ``regex_caseless``: the
    value searched; on a match the whole value becomes ``replacement`` (captures as $1..$9).
    ``replacement`` is a complex value."""

    kind: Literal["prefix", "domain", "regex", "regex_caseless"]
    pattern: str
    replacement: str
    source: str | None = None


class ProxyConfig(_Model):
    """nginx ``proxy_pass`` with every setting it depends on written out."""

    upstream: str = Field(description="name of an entry in `upstreams` (an address is given an implicit group)")
    proxy_host: str = Field(description="value of $proxy_host: the host[:port] written in proxy_pass")
    uri: str | None = Field(
        default=None,
        description="URI part of proxy_pass; null passes the client's URI unchanged",
    )
    http_version: Literal["1.0", "1.1"] = "1.0"
    headers: list[HeaderSetting] = Field(
        description="headers set by proxy_set_header and nginx's defaults, in the order they are sent"
    )
    pass_request_headers: bool = True
    pass_request_body: bool = True
    method: str | None = Field(
        default=None, description="nginx `proxy_method` (a complex value); null sends the client's method")
    body: str | None = Field(
        default=None,
        description="nginx `proxy_set_body` (a complex value): sent instead of the client's body, whatever the "
                    "method, with Content-Length set to its length; null sends the client's body")
    connect_timeout: float = 60.0
    send_timeout: float = 60.0
    read_timeout: float = 60.0
    next_upstream: list[Literal["error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off"]] = Field(
        default_factory=lambda: ["error", "timeout"]
    )
    next_upstream_tries: int = 0
    next_upstream_timeout: float = Field(
        default=0.0, description="nginx `proxy_next_upstream_timeout`: no next peer once this long has passed since "
                                 "the first was tried; 0 is no limit")
    intercept_errors: bool = Field(
        default=False, description="nginx `proxy_intercept_errors`: an upstream status >= 300 with an error_page gets the page"
    )
    ignore_client_abort: bool = Field(
        default=False, description="nginx `proxy_ignore_client_abort`: a client that closes its connection (a FIN, "
                                   "or a half-close) while the upstream works does not end the request; the answer "
                                   "is read and written all the same")
    redirects: list[RewriteRuleConfig] = Field(
        default_factory=list,
        description="nginx `proxy_redirect` (with `default` written out), tried in order on Location and on "
                    "Refresh after url=; the first that matches applies. Empty: off")
    cookie_domains: list[RewriteRuleConfig] = Field(
        default_factory=list, description="nginx `proxy_cookie_domain`: the Domain attributes of Set-Cookie")
    cookie_paths: list[RewriteRuleConfig] = Field(
        default_factory=list, description="nginx `proxy_cookie_path`: the Path attributes of Set-Cookie")
    accel_redirect: bool = Field(
        default=True,
        description="follow an upstream's X-Accel-Redirect (nginx's default; false: `proxy_ignore_headers "
                    "X-Accel-Redirect`): the answer is dropped and the request redirected internally "
                    "(newproxy/engine/accel.py)")
    request_buffering: bool = Field(
        default=True, description="nginx `proxy_request_buffering`: off, an HTTP/1.1 or HTTP/2 client's body goes "
                                  "upstream as it arrives (one without a length chunked, a chunk per read, with "
                                  "proxy_http_version 1.1; to an HTTP/1.0 upstream it is read whole first); an "
                                  "HTTP/3 client's is read whole first, then sent")
    accel_limit_rate: bool = Field(
        default=True, description="an upstream's X-Accel-Limit-Rate paces the answer (nginx's default; false: "
                                  "`proxy_ignore_headers X-Accel-Limit-Rate`)")
    buffering: bool = Field(
        default=True, description="nginx `proxy_buffering`: on, an answer the client cannot take as fast as the "
                                  "upstream sends it is read on into `buffers` and a temporary file (at most "
                                  "`max_temp_file_size`), so that the upstream connection is freed (an upstream's "
                                  "X-Accel-Buffering switches it per answer); off, the upstream waits for the "
                                  "client. Either way the answer is relayed as it arrives. On also keeps nginx's "
                                  "quirk for a response head that fills proxy_buffer_size exactly (the body is "
                                  "not read: the client gets the head, then a close)")
    buffers: int = Field(
        default=32768, ge=0, description="nginx `proxy_buffers` (number x size, 8 4k by default): the bytes of "
                                         "an answer held in memory for a slow client before the temporary file")
    max_temp_file_size: int = Field(
        default=1073741824, ge=0,
        description="nginx `proxy_max_temp_file_size`: the bytes the temporary file of one answer may take in "
                    "all (0: none); past them the upstream is read only as the client takes the answer")
    temp_path: str | None = Field(
        default=None, description="nginx `proxy_temp_path`'s directory, for the temporary files (unnamed); "
                                  "None: the system's temporary directory")
    client_body_buffer_size: int = Field(
        default=16384, description="nginx `client_body_buffer_size`: a request body read whole is kept in memory "
                                   "up to this, then in a temporary file (a Content-Length one whose rest is "
                                   "under 1.25 times this stays in memory)")
    client_body_temp_path: str | None = Field(
        default=None, description="nginx `client_body_temp_path`'s directory for those files (named as nginx's, "
                                  "unlinked at once); None: the system's temporary directory")
    accel_buffering: bool = Field(
        default=True, description="an upstream's X-Accel-Buffering (yes/no) switches `buffering` for its answer "
                                  "(nginx's default; false: `proxy_ignore_headers X-Accel-Buffering`)")
    buffer_size: int = Field(
        default=4096, description="nginx `proxy_buffer_size`: an upstream response head (status line and "
                                  "headers) longer than this is answered with 502, \"upstream sent too big header\"")
    hide_headers: list[str] = Field(
        default_factory=lambda: ["Date", "Server", "X-Pad", "X-Accel-Expires", "X-Accel-Redirect", "X-Accel-Limit-Rate", "X-Accel-Buffering", "X-Accel-Charset"],
        description="upstream response headers not passed to the client",
    )
    pass_through: bool = Field(
        default=False,
        description="the strangler fallback: send the client's request as received (method, raw URI, "
                    "version, headers, body) and relay the answer as it is (only hop-by-hop headers are "
                    "replaced; a Location the legacy nginx made absolute with its own port gets the client's "
                    "port). `uri`, `headers`, `hide_headers` and `http_version` are not used",
    )
    legacy_auto_redirect: bool = Field(
        default=False,
        description="with pass_through: the nginx location had a *_pass directive, so nginx answers its "
                    "path without the final \"/\" with a redirect; such requests are handed to legacy too",
    )
    protocol: Literal["http", "grpc"] = Field(
        default="http",
        description="grpc: nginx `grpc_pass` (newproxy/http/grpc_upstream.py): the request goes out as an HTTP/2 "
                    "stream (:authority is `proxy_host`; empty when grpc_set_header sets Host, which then goes as a header), `uri` is null, `headers` are "
                    "grpc_set_header with nginx's grpc defaults, and response trailers are relayed")
    tls: UpstreamTlsConfig | None = Field(
        default=None, description="grpcs:// (TLS with ALPN h2 to the peer); null: plain (h2c for grpc)")
    url: str | None = Field(
        default=None,
        description="nginx `proxy_pass` with variables: the URL (a complex value) evaluated per request; "
                    "`upstream` and `proxy_host` are then empty. Its host names an upstream block (no port) or "
                    "a group made for a literal proxy_pass (same host and port), else is an IP address, else "
                    "is resolved with `resolver` (none: 502, as nginx)")
    resolver: ResolverConfig | None = Field(
        default=None, description="nginx `resolver`/`resolver_timeout` in effect where the proxy_pass is")
    source: str | None = None


class ResolverConfig(_Model):
    """nginx ``resolver``: the DNS servers asked (over UDP, in turn) for names in a proxy_pass URL made
    of variables. Answers are cached for ``valid`` seconds, or for their TTL when null."""

    servers: list[str] = Field(description="\"IP:PORT\" (\"[IPv6]:PORT\") of each DNS server")
    valid: float | None = None
    ipv4: bool = True
    ipv6: bool = True
    timeout: float = Field(default=30.0, description="nginx `resolver_timeout`")


class UpstreamTlsConfig(_Model):
    """The client side of TLS to a peer (nginx's grpc_ssl_* settings), nginx's defaults written out:
    no SNI, no certificate check."""

    server_name: bool = Field(default=False, description="send SNI (grpc_ssl_server_name)")
    name: str | None = Field(default=None, description="the SNI name and the name checked (grpc_ssl_name; "
                                                      "proxy_ssl_name, a complex value for proxy_pass); null: "
                                                      "the host of grpc_pass, $proxy_host for proxy_pass")
    verify: bool = Field(default=False, description="check the peer's certificate (grpc_ssl_verify)")
    trusted_certificate: str | None = Field(default=None, description="PEM CA file for verify")
    verify_depth: int = 1
    certificate: str | None = Field(default=None, description="client certificate (grpc_ssl_certificate)")
    certificate_key: str | None = None
    protocols: list[TlsProtocol] = Field(default_factory=lambda: ["TLSv1", "TLSv1.1", "TLSv1.2"])
    ciphers: str = "DEFAULT"
    session_reuse: bool = Field(default=True, description="offer each peer's saved session on its next "
                                                          "connection (proxy_ssl_session_reuse; grpc_pass "
                                                          "never resumes)")

    def context_key(self) -> tuple[object, ...]:
        """The settings that make the SSL context (SNI, the name checked and session reuse are per
        connection): locations that agree on them share one context, and with it their sessions."""
        return (self.verify, self.trusted_certificate, self.verify_depth, self.certificate, self.certificate_key,
                tuple(self.protocols), self.ciphers)


class ClientConfig(_Model):
    """How newproxy treats client connections (nginx's client_*/keepalive_*/send/lingering
    settings). One set for the whole process: the translator writes the value the config gives
    everywhere, and reports a server or location that sets another."""

    header_timeout: float = Field(default=60.0, description="client_header_timeout: reading a request head")
    body_timeout: float = Field(default=60.0, description="client_body_timeout: between two reads of a body")
    keepalive_timeout: float = Field(default=75.0, description="keepalive_timeout: an idle kept-alive "
                                                               "connection; 0 disables keep-alive")
    keepalive_requests: int = Field(default=1000, ge=0, description="requests on one connection, then close")
    send_timeout: float = Field(default=60.0, description="between two writes the client accepts")
    lingering_time: float = Field(default=30.0, description="how long a closing connection's input is drained")
    lingering_timeout: float = Field(default=5.0, description="the wait for more input while draining")
    header_buffer_size: int = Field(
        default=1024, description="client_header_buffer_size: the first buffer a request head is read into")
    large_header_buffer_size: int = Field(
        default=8192, description="large_client_header_buffers size: the longest request line or header line")
    large_header_buffers: int = Field(default=4, description="large_client_header_buffers number")
    reset_timedout_connection: bool = Field(
        default=False, description="reset_timedout_connection: a request that timed out (head begun, body, send) "
                                   "is closed with a TCP RST (SO_LINGER 0), not a FIN")


class LimitReqZoneConfig(_Model):
    """nginx ``limit_req_zone KEY zone=NAME:SIZE rate=RATE``: one leaky bucket per distinct ``key``
    value (an empty value is not limited). ``rate`` is in milli-requests per second, as nginx keeps it
    (``10r/s`` -> 10000, ``30r/m`` -> 500). Shared by every worker, as nginx's zone (newproxy/zones.py)."""

    name: str
    key: str = Field(description="a complex value, e.g. $binary_remote_addr")
    size: int = Field(description="zone size in bytes; bounds how many keys are tracked")
    rate: int = Field(description="milli-requests per second (requests per second x 1000)")
    source: str | None = None


class LimitConnZoneConfig(_Model):
    """nginx ``limit_conn_zone KEY zone=NAME:SIZE``: requests in flight per distinct ``key`` value,
    counted over every worker, as nginx's zone (newproxy/zones.py)."""

    name: str
    key: str
    size: int
    source: str | None = None


class LimitReqConfig(_Model):
    """nginx ``limit_req zone=NAME [burst=N] [nodelay | delay=N]``."""

    zone: str
    burst: int = Field(default=0, description="requests allowed over the rate, delayed or not")
    delay: int = Field(default=0, description="excess requests served without delay (nginx `delay=`)")
    nodelay: bool = Field(default=False, description="nginx `nodelay`: never delay, only reject")
    source: str | None = None


class LimitConnConfig(_Model):
    """nginx ``limit_conn ZONE N``."""

    zone: str
    conn: int
    source: str | None = None


class LimitsConfig(_Model):
    """The limit_req, limit_conn and limit_rate settings in effect in one location (inheritance
    resolved). limit_req and limit_conn run in nginx's preaccess phase (after the rewrite phase,
    before access), once per request even across internal redirects; limit_rate paces the body."""

    req: list[LimitReqConfig] = Field(default_factory=list)
    req_status: int = 503
    req_dry_run: bool = False
    conn: list[LimitConnConfig] = Field(default_factory=list)
    conn_status: int = 503
    conn_dry_run: bool = False
    rate: str = Field(default="0", description="nginx `limit_rate`: bytes per second, a complex value (0: none)")
    rate_after: str = Field(default="0", description="nginx `limit_rate_after`: bytes sent before pacing starts")
    req_log_level: Literal["info", "notice", "warn", "error"] = Field(
        default="error", description="nginx `limit_req_log_level`: rejections; delays one level lower")
    conn_log_level: Literal["info", "notice", "warn", "error"] = Field(
        default="error", description="nginx `limit_conn_log_level`")


class AccessLogConfig(_Model):
    """nginx ``access_log PATH [FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION]]``: one log a request
    is written to when it completes. ``path`` is absolute (the translator resolves a relative one
    against nginx's prefix); ``format`` names an entry of ``log_formats`` (or ``combined``).
    ``buffer``: bytes kept in memory before a write (0: write each line at once); ``flush``: seconds
    after which buffered lines are written anyway. ``condition``: a complex value; the line is
    skipped when it is empty or "0"."""

    path: str
    format: str = "combined"
    buffer: int = 0
    flush: float = 0.0
    condition: str | None = None
    source: str | None = None


class AccessRuleConfig(_Model):
    """nginx ``allow``/``deny``: ``address`` is ``all``, ``unix:``, an IPv4 or IPv6 address, or a CIDR
    block (its low bits already cleared, as nginx does with a warning). IPv4, IPv6 and unix clients
    are each matched against the rules of their own family (``all`` is in each), in order, and the
    first match decides; an IPv4-mapped IPv6 client is matched as IPv4."""

    action: Literal["allow", "deny"]
    address: str
    source: str | None = None


class AuthRequestSetConfig(_Model):
    """nginx ``auth_request_set $variable value``: ``value`` is evaluated in the subrequest once it is
    answered (``$upstream_status``, ``$upstream_http_NAME`` are its upstream's)."""

    variable: str
    value: str
    source: str | None = None


class AccessConfig(_Model):
    """nginx's access phase for one location (or a server's requests that match no location),
    inheritance resolved: allow/deny rules (whole, from the innermost level with any), then
    auth_basic, then auth_request, combined by ``satisfy``: ``all`` stops at the first refusal,
    ``any`` lets the first handler that allows win (else 401 if any handler asked for credentials,
    else 403). Not applied to auth_request subrequests."""

    satisfy: Literal["all", "any"] = "all"
    rules: list[AccessRuleConfig] = Field(default_factory=list)
    auth_basic: str | None = Field(default=None, description="the realm, a complex value (evaluating to \"off\": off)")
    auth_basic_user_file: str | None = Field(default=None, description="absolute path, a complex value")
    auth_request: str | None = Field(default=None, description="the URI of the subrequest")
    auth_request_set: list[AuthRequestSetConfig] = Field(default_factory=list)
    auth_delay: float = Field(default=0.0, description="nginx `auth_delay`: seconds a 401 from this phase waits")
    source: str | None = None


class RealIpConfig(_Model):
    """nginx's realip module: when the client connects from ``set_real_ip_from`` (addresses, CIDR
    blocks, ``unix:``), its address becomes the one ``header`` gives (X-Real-IP, X-Forwarded-For or
    any header name): the last one, or with ``recursive`` the last one not itself trusted."""

    set_real_ip_from: list[str]
    header: str = "X-Real-IP"
    recursive: bool = False
    source: str | None = None


LocationMatch = Literal["exact", "prefix_priority", "prefix", "regex", "regex_caseless", "named"]


class LocationConfig(_Model):
    """One nginx ``location``. ``match`` names the modifier: = ^~ (none) ~ ~* @."""

    match: LocationMatch
    path: str
    rewrite: list[RewriteStep] = Field(default_factory=list)
    proxy: ProxyConfig | None = None
    default_type: str = "text/plain"
    types: str = Field(default="builtin", description="name of the `mime_types` table for this location")
    client_max_body_size: int = 1048576
    error_pages: list[ErrorPageConfig] = Field(default_factory=list)
    internal: bool = Field(default=False, description="nginx `internal`: a 404 for requests from outside")
    root: str = Field(default="/usr/share/nginx/html", description="$document_root: files are served from root + $uri")
    try_files: TryFilesConfig | None = None
    static: StaticConfig = Field(default_factory=StaticConfig, description="how files under root/alias are served")
    access_logs: list[AccessLogConfig] = Field(
        default_factory=list, description="where a request handled here is logged (inheritance resolved); empty: off")
    error_log: str | list[str] | None = Field(
        default=None, description="nginx `error_log FILE [LEVEL]` for the messages about a request handled here "
                                  "(inheritance resolved); a list for several error_log in one block (a message goes "
                                  "to each whose level admits it); null: the main error_log")
    gzip: GzipConfig | None = Field(default=None, description="nginx's gzip filter; null: gzip off")
    limits: LimitsConfig | None = Field(default=None, description="limit_req/limit_conn/limit_rate; null: none")
    headers: ResponseHeadersConfig | None = Field(default=None, description="expires, add_header, add_trailer")
    access: AccessConfig | None = Field(default=None, description="allow/deny, auth_basic, auth_request; null: none")
    real_ip: RealIpConfig | None = Field(
        default=None, description="realip in the preaccess phase, when it differs from the server's (post-read)")
    stub_status: bool = Field(
        default=False, description="nginx `stub_status`: the content is the server's connection counts "
                                   "(newproxy/stats.py) instead of files")
    locations: list[LocationConfig] = Field(default_factory=list)
    source: str | None = None


class Http3Config(_Model):
    """nginx's http_v3 and quic settings of a server (nginx >= 1.25), inheritance resolved."""

    enabled: bool = Field(default=True, description="`http3 on|off`: off refuses HTTP/3 requests on quic listens")
    max_concurrent_streams: int = Field(default=128, description="`http3_max_concurrent_streams`: bidirectional "
                                                                 "streams a client may open at once")
    retry: bool = Field(default=False, description="`quic_retry`: validate client addresses with a Retry packet")
    stream_buffer_size: int = Field(default=65536, description="`http3_stream_buffer_size`: per-stream flow control "
                                                               "window")


class Http2Config(_Model):
    """nginx 1.22's http_v2 settings of a server (those of the default server of an address:port apply
    to its connections, as in nginx)."""

    max_concurrent_streams: int = Field(default=128, description="`http2_max_concurrent_streams`: streams over "
                                                                 "it are refused (RST_STREAM REFUSED_STREAM)")
    chunk_size: int = Field(default=8192, description="`http2_chunk_size`: the largest DATA frame sent")
    body_preread_size: int = Field(default=65536, description="`http2_body_preread_size`: the initial stream "
                                                              "window announced to clients")


class ServerConfig(_Model):
    listen: list[ListenConfig]
    server_names: list[str] = Field(default_factory=lambda: [""])
    rewrite: list[RewriteStep] = Field(default_factory=list, description="server-level rewrite phase")
    locations: list[LocationConfig] = Field(default_factory=list)
    default_type: str = "text/plain"
    types: str = Field(default="builtin", description="name of the `mime_types` table for this server")
    client_max_body_size: int = 1048576
    error_pages: list[ErrorPageConfig] = Field(
        default_factory=list, description="for requests that match no location"
    )
    root: str = Field(default="/usr/share/nginx/html", description="$document_root outside any location")
    static: StaticConfig = Field(default_factory=StaticConfig, description="files for requests matching no location")
    access_logs: list[AccessLogConfig] = Field(
        default_factory=list, description="logs for requests that end outside any location (server-level return, "
                                          "front-end errors); empty: off")
    error_log: str | list[str] | None = Field(
        default=None, description="nginx `error_log FILE [LEVEL]` for requests matching no location; a list for "
                                  "several; null: the main error_log")
    gzip: GzipConfig | None = Field(default=None, description="gzip for requests matching no location")
    limits: LimitsConfig | None = Field(default=None, description="limits for requests matching no location")
    headers: ResponseHeadersConfig | None = Field(
        default=None, description="expires, add_header, add_trailer for requests matching no location")
    access: AccessConfig | None = Field(default=None, description="the access phase for requests matching no location")
    real_ip: RealIpConfig | None = Field(default=None, description="realip in the post-read phase (server level)")
    merge_slashes: bool = Field(
        default=True, description="nginx applies the setting of the default server of the address:port"
    )
    # How a request's header names are read: the setting of the default server of the address:port
    # (or of the TLS SNI's server) until the request line's host or the Host header names another.
    underscores_in_headers: bool = Field(default=False, description="a header name with '_' is valid (kept)")
    ignore_invalid_headers: bool = Field(
        default=True, description="a header line whose name has a byte other than letters, digits, '-' (and '_' "
                                  "with underscores_in_headers) is dropped; off: kept and forwarded")
    tls: TlsConfig | None = Field(default=None, description="certificates and TLS settings for `ssl` listens")
    http2: Http2Config = Field(default_factory=Http2Config, description="HTTP/2 settings of `http2` listens")
    http3: Http3Config | None = Field(default=None, description="HTTP/3 settings of `quic` listens (those of the "
                                                                "default server of an address:port apply there)")
    stub_status: bool = Field(default=False, description="nginx `stub_status` at server level: the content for "
                                                         "requests that match no location")
    source: str | None = None


# nginx's types when a config has no `types` block at all (ngx_http_core_default_types).
BUILTIN_MIME_TYPES: dict[str, str] = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}


class UpstreamServerConfig(_Model):
    host: str = Field(description="an IP address or a name (resolved when connecting); \"localhost\" for a unix socket")
    port: int = Field(description="0 for a unix socket")
    unix_path: str | None = Field(
        default=None, description="nginx `unix:/path`: connect to this unix socket instead of host:port")
    name: str | None = Field(
        default=None, description="the address as written in the server line (hash consistent places its points by "
                                  "it); null: host:port")
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    max_conns: int = Field(default=0, description="nginx `max_conns`: 0 is no limit")
    backup: bool = False
    down: bool = False
    source: str | None = None


class UpstreamConfig(_Model):
    """nginx ``upstream``. Peer state (failures, least_conn counts, round-robin position) lives in each
    worker process, as in nginx without ``zone``; with ``zone`` and ``worker_processes`` over 1 it is
    shared between the workers, as nginx's (newproxy/zones.py)."""

    name: str
    balancer: Literal["round_robin", "least_conn", "ip_hash", "hash", "hash_consistent", "random", "random_two"] = Field(
        default="round_robin",
        description="nginx's method: round_robin (smooth weighted), least_conn, ip_hash (first 3 octets of IPv4, the "
                    "whole IPv6 address), hash / hash_consistent (crc32 of `hash_key`; ketama points), random, "
                    "random_two (random two least_conn)")
    hash_key: str | None = Field(default=None, description="the complex value `hash` hashes, e.g. $request_uri")
    servers: list[UpstreamServerConfig]
    keepalive: int = Field(default=0, description="idle connections cached per worker; 0 closes after each request")
    keepalive_requests: int = 1000
    keepalive_timeout: float = 60.0
    implicit: bool = Field(default=False, description="made for a proxy_pass to a plain address")
    zone: str | None = Field(default=None, description="nginx `zone NAME`: with worker_processes over 1 the "
                                                      "peers' state is shared between workers (newproxy/zones.py)")
    source: str | None = None


class MapEntryConfig(_Model):
    """One entry of a ``map``: ``exact`` (compared with the case ignored), ``hostname`` (a wildcard
    ``*.example.com``, ``.example.com`` or ``www.example.*``; only in a map with ``hostnames``), or a
    regex (``regex`` / ``regex_caseless``, whose captures the ``value`` may use)."""

    kind: Literal["exact", "hostname", "regex", "regex_caseless"]
    key: str
    value: str = Field(description="a complex value: text with variables")
    source: str | None = None


class MapConfig(_Model):
    """nginx ``map SOURCE $variable { ... }``: ``variable`` is computed from ``source`` when first used
    by a request, then kept for that request unless ``volatile``. Exact keys win, then the longest
    wildcard (``*.`` / ``.`` prefix, then ``.*`` suffix), then the first regex in order, then ``default``."""

    kind: Literal["map"] = "map"
    variable: str
    source_value: str = Field(description="the complex value that is looked up")
    default: str = ""
    hostnames: bool = False
    volatile: bool = False
    entries: list[MapEntryConfig] = Field(default_factory=list)
    source: str | None = None


class SplitBucketConfig(_Model):
    percent: float | None = Field(default=None, description="share of the hash space; null for the \"*\" rest")
    value: str


class SplitClientsConfig(_Model):
    """nginx ``split_clients``: MurmurHash2 of ``source_value`` picks the bucket, in order."""

    kind: Literal["split_clients"] = "split_clients"
    variable: str
    source_value: str
    buckets: list[SplitBucketConfig]
    source: str | None = None


class GeoEntryConfig(_Model):
    network: str = Field(description="a CIDR block or an address (IPv4 or IPv6)")
    value: str


class GeoConfig(_Model):
    """nginx ``geo [SOURCE] $variable``: the longest network containing the address wins, else
    ``default``. A source value that is not an address is read as 255.255.255.255, as nginx does."""

    kind: Literal["geo"] = "geo"
    variable: str
    source_value: str = "$remote_addr"
    default: str = ""
    entries: list[GeoEntryConfig] = Field(default_factory=list)
    source: str | None = None


VariableConfig = Annotated[Union[MapConfig, SplitClientsConfig, GeoConfig], Field(discriminator="kind")]


class LogFormatConfig(_Model):
    """nginx ``log_format NAME [escape=default|json|none] STRING...``: ``format`` is the strings joined.
    ``combined`` is predefined (nginx's own) and need not be listed."""

    name: str
    escape: Literal["default", "json", "none"] = "default"
    format: str
    source: str | None = None


class MetricsConfig(_Model):
    """newproxy's own Prometheus endpoint (no nginx directive maps to it): a listening address of its
    own, served by every worker, answering ``path`` with the counters of newproxy/stats.py in the
    Prometheus text exposition format (newproxy/http/metrics.py)."""

    address: str = Field(default="127.0.0.1", pattern=r"^[0-9A-Fa-f:.]+$", description="an IPv4 or IPv6 address")
    port: int = Field(ge=1, le=65535)
    path: str = Field(default="/metrics", pattern=r"^/")


class NewproxyConfig(_Model):
    version: int = CONFIG_VERSION
    pid: str | None = None
    error_log: str | list[str] | None = Field(
        default=None, description="nginx's main `error_log FILE [LEVEL]`; a list for several (each gets the "
                                  "messages its level admits); null: stderr at error")
    worker_processes: int | Literal["auto"] = Field(
        default=1, description="worker processes under the master (newproxy/process.py); auto: one per CPU")
    master_process: bool = Field(
        default=True, description="nginx's master_process: off runs one process with no workers (debugging)")
    worker_connections: int = Field(
        default=512, ge=1, description="client connections one worker holds at once; more are closed at accept")
    worker_rlimit_nofile: int | None = Field(default=None, ge=1, description="RLIMIT_NOFILE set in each worker")
    client: ClientConfig = Field(default_factory=ClientConfig, description="client connection timeouts and limits")
    worker_shutdown_timeout: float | None = Field(
        default=None, gt=0, description="seconds a stopping worker waits for its connections before closing them")
    keepalive_park_after: float = Field(
        default=5.0, ge=0, description="seconds an idle plain HTTP/1.1 connection keeps its transport before it is "
                                       "parked (~50 B of state instead of ~3.4 KB; a request on a parked connection "
                                       "costs ~90 us more CPU; newproxy/http/parking.py); 0: never park. newproxy's "
                                       "own: nginx has no such setting")
    server_tokens: bool = True
    metrics: MetricsConfig | None = Field(
        default=None, description="a Prometheus /metrics endpoint on an address of its own; null: none")
    servers: list[ServerConfig] = Field(default_factory=list)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    variables: list[VariableConfig] = Field(
        default_factory=list, description="variables computed per request: map, split_clients, geo"
    )
    log_formats: list[LogFormatConfig] = Field(default_factory=list, description="nginx log_format, by name")
    limit_req_zones: list[LimitReqZoneConfig] = Field(default_factory=list)
    limit_conn_zones: list[LimitConnZoneConfig] = Field(default_factory=list)
    mime_types: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"builtin": dict(BUILTIN_MIME_TYPES)},
        description="extension -> MIME type tables, named by the `types` blocks they come from",
    )
    source: str | None = Field(default=None, description="the nginx config this was translated from")

    def upstream(self, name: str) -> UpstreamConfig:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise KeyError(name)

    def dump_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, width=120)

    @classmethod
    def load_file(cls, path: str | Path) -> NewproxyConfig:
        text = Path(path).read_text()
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.model_validate(data)


IfStep.model_rebuild()
LocationConfig.model_rebuild()
ServerConfig.model_rebuild()


def json_schema() -> dict:
    return NewproxyConfig.model_json_schema()
