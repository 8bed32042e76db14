"""The values that cross between the sans-IO engine and the IO edges.

The HTTP front end turns bytes into a ``Request``; the engine answers with a ``Response`` (send it)
or a ``ProxyPass`` (forward it upstream, then turn the upstream's answer into the client's with
``ProxyPass.client_head``). Nothing here touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newproxy.config import ProxyConfig
    from newproxy.engine.proxy import ResponseRelay
    from newproxy.engine.upstreams import UpstreamGroup


@dataclass(slots=True)
class Request:
    method: bytes  # b"GET", as received
    target: bytes  # the raw request-target, as received
    version: bytes  # b"1.1", b"1.0"
    headers: list[tuple[bytes, bytes]]  # as received: original case, order and duplicates
    body: bytes
    client_addr: tuple[str, int]
    local_addr: tuple[str, int]  # the address and port the request arrived on
    scheme: str = "http"
    # Set by the front end from the Connection header and the version (HTTP/1.1 defaults to keep-alive).
    keepalive: bool = True


@dataclass(slots=True)
class Response:
    """A complete answer made by the engine (return, redirect, error page)."""

    status: int
    head: bytes  # status line and headers, ending with the blank line
    body: bytes  # empty for HEAD requests and bodiless statuses
    keepalive: bool  # False: close the connection after sending
    close_without_response: bool = False  # nginx's 444: send nothing, close


@dataclass(slots=True)
class FileResponse:
    """A file answer (nginx's static handler): ``head``, then ``parts`` in order, each either bytes
    (a multipart boundary) or an (offset, length) range of the open file ``fd``, which the IO layer
    sends without copying it through Python where it can. No parts: a HEAD, or an empty file.

    Ownership: the engine opened ``fd`` (as nginx opens, then fstats); whoever receives this value
    must close it, whatever happens."""

    status: int
    head: bytes
    fd: int
    parts: list[bytes | tuple[int, int]]
    keepalive: bool
    size: int  # the file's size when the engine looked at it


@dataclass(slots=True)
class ProxyPass:
    """Forward ``head`` + ``body`` to a peer of ``upstream`` and relay its answer."""

    upstream: UpstreamGroup
    head: bytes  # request line and headers for the upstream, ending with the blank line
    body: bytes
    proxy: ProxyConfig
    request: Request
    keepalive: bool  # whether the client connection may be kept after this response
    relay: ResponseRelay  # how to turn the upstream's response head into the client's
    status_override: int = 0  # an error_page's status, which replaces the upstream's (0: keep it)
    # The engine's RequestContext, kept for Engine.upstream_failed (error_page after a 502/504).
    context: object = None
    # proxy_intercept_errors: the upstream statuses that get the location's error_page instead.
    intercept: frozenset[int] = frozenset()
