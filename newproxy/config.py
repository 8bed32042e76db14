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


# The rewrite phase is a list of steps; more kinds (rewrite, set, if) join this union.
RewriteStep = Annotated[Union[ReturnStep], Field(discriminator="kind")]


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


class NewproxyConfig(_Model):
    version: int = CONFIG_VERSION
    pid: str | None = None
    error_log: str | None = None
    worker_processes: int = 1
    server_tokens: bool = True
    servers: list[ServerConfig] = Field(default_factory=list)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
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


def json_schema() -> dict:
    return NewproxyConfig.model_json_schema()
