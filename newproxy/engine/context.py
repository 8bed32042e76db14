"""Per-request state the phases share: what nginx keeps in ngx_http_request_t."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.engine.types import Request

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledServer


@dataclass(slots=True)
class RequestContext:
    request: Request
    server: CompiledServer
    host: str  # $host
    uri: str  # $uri
    args: str  # $args
    request_uri: str  # $request_uri
    uri_needs_escape: bool
    redirect_host: str  # the client's host (Host header or absolute URI), "" if none: for Location
    location: CompiledLocation | None = None
    captures: re.Match[str] | None = None
    proxy_host: str = ""
