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


class HeaderSetting(_Model):
    """A header to send upstream. An empty ``value`` (after variable expansion) sends nothing."""

    name: str
    value: str
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
    connect_timeout: float = 60.0
    send_timeout: float = 60.0
    read_timeout: float = 60.0
    next_upstream: list[Literal["error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off"]] = Field(
        default_factory=lambda: ["error", "timeout"]
    )
    next_upstream_tries: int = 0
    intercept_errors: bool = Field(
        default=False, description="nginx `proxy_intercept_errors`: an upstream status >= 300 with an error_page gets the page"
    )
    hide_headers: list[str] = Field(
        default_factory=lambda: ["Date", "Server", "X-Pad", "X-Accel-Expires", "X-Accel-Redirect", "X-Accel-Limit-Rate", "X-Accel-Buffering", "X-Accel-Charset"],
        description="upstream response headers not passed to the client",
    )
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
    locations: list[LocationConfig] = Field(default_factory=list)
    source: str | None = None


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
    merge_slashes: bool = Field(
        default=True, description="nginx applies the setting of the default server of the address:port"
    )
    source: str | None = None


# nginx's types when a config has no `types` block at all (ngx_http_core_default_types).
BUILTIN_MIME_TYPES: dict[str, str] = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}


class UpstreamServerConfig(_Model):
    host: str
    port: int
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    source: str | None = None


class UpstreamConfig(_Model):
    name: str
    balancer: Literal["round_robin"] = "round_robin"
    servers: list[UpstreamServerConfig]
    keepalive: int = Field(default=0, description="idle connections cached per worker; 0 closes after each request")
    keepalive_requests: int = 1000
    keepalive_timeout: float = 60.0
    implicit: bool = Field(default=False, description="made for a proxy_pass to a plain address")
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


class NewproxyConfig(_Model):
    version: int = CONFIG_VERSION
    pid: str | None = None
    error_log: str | None = None
    worker_processes: int = 1
    server_tokens: bool = True
    servers: list[ServerConfig] = Field(default_factory=list)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    variables: list[VariableConfig] = Field(
        default_factory=list, description="variables computed per request: map, split_clients, geo"
    )
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
