"""Whole answers for small static files, remembered per request shape: the hot path of a static site.

For a plain ``GET``/``HEAD`` of a small file the phases always end the same way while the file
stays the same: the same server and location (they depend only on the address, the Host and the
target), the same head but for ``Date``, the same bytes. ``StaticMemo`` keeps such answers, keyed by
everything of the request that went into them, and on a hit only does what nginx does per request
anyway: it stats the file (``open_file_cache off``), so a file changed, replaced, removed or made
unreadable since is never served from memory (its identity: inode, device, size, mtime and ctime).

What is remembered, and when (anything else takes the phases as usual):
- the answer was a 200 from the static handler for a file the file cache holds (small, settled);
- the request: GET or HEAD, one Host header (or none at HTTP/1.0), no ``If-*``/``Range`` header;
- nothing per request between the two: no rewrite or internal redirect, no access or limits
  phase, no realip, no headers filter, no gzip, no access log, neither in the location nor in its
  server (they read the client, the time or the log context).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from newproxy.engine.static import file_identity, has_conditionals
from newproxy.engine.types import Response

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext
    from newproxy.engine.responses import DateHeader
    from newproxy.engine.types import Request

_ENTRIES = 4096  # bounded: targets come from clients
_DATE = b"\r\nDate: "

Key = tuple[tuple[str, int], bytes, bytes, bytes, bytes, bool]


class StaticMemo:
    __slots__ = ("_date", "_entries")

    def __init__(self, date: DateHeader) -> None:
        self._date = date
        # key -> (path, identity, head before the Date line, head after it, body)
        self._entries: dict[Key, tuple[str, tuple[int, ...], bytes, bytes, bytes]] = {}

    @staticmethod
    def _key(request: Request) -> Key | None:
        if request.method not in (b"GET", b"HEAD"):
            return None
        host = None
        for name, value in request.headers:
            if len(name) == 4 and name.lower() == b"host":
                if host is not None:
                    return None  # nginx answers two Hosts with 400: the phases say so
                host = value
        if has_conditionals(request.headers):
            return None
        return (request.local_addr, host or b"", request.target, request.method, request.version,
                request.keepalive)

    def lookup(self, request: Request) -> Response | None:
        if not self._entries:
            return None  # a config that serves no files pays one check per request, no more
        key = self._key(request)
        if key is None:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        path, identity, before, after, body = entry
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            del self._entries[key]
            return None
        if file_identity(st) != identity:
            del self._entries[key]
            return None
        return Response(200, before + self._date.line() + after, body, request.keepalive)

    def store(self, request: Request, ctx: RequestContext, answer: Response, path: str, st: os.stat_result) -> None:
        """Remember ``answer`` when nothing but the file could change it (see the module docstring)."""
        location, server = ctx.location, ctx.server
        if (location is None or location.rewrite or server.rewrite or ctx.internal or ctx.err_status
                or location.access is not None or location.limits is not None or location.headers is not None
                or location.gzip is not None or location.real_ip is not None or location.config.access_logs
                or server.real_ip is not None or server.config.access_logs or location.try_files is not None):
            return
        key = self._key(request)
        identity = file_identity(st)
        if key is None or identity is None:
            return
        head = answer.head
        start = head.find(_DATE)
        if start < 0:
            return
        end = head.index(b"\r\n", start + 2) + 2
        if len(self._entries) >= _ENTRIES:
            self._entries.clear()
        self._entries[key] = (path, identity, head[:start + 2], head[end:], answer.body)
