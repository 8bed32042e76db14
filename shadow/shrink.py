"""Shrinking: the smallest request that still shows a difference, for the report.

A generated request that exposes a difference carries everything its generator put in: extra
headers, a query, a body, a long path. ``shrink`` tries simpler versions one at a time, biggest cuts
first (drop the body, the query, each header but Host, each path segment; shorten the last segment;
halve the body; GET instead of another method; HTTP/1.1 instead of 1.0) and keeps a candidate when the caller says
the difference is still there, until no candidate keeps it or the budget of attempts is spent. Each
attempt is a real exchange with both targets, so the minimal request is proven, not guessed.
"""

from __future__ import annotations

import dataclasses
from typing import Awaitable, Callable, Iterator

from shadow.traffic import Request

_KEEP_HEADERS = {"host"}  # HTTP/1.1 requires it; taking it away changes the request's class
_FRAMING = {"content-length", "transfer-encoding"}


def _without_body(request: Request) -> Request:
    headers = tuple(h for h in request.headers if h[0].lower() not in _FRAMING)
    return dataclasses.replace(request, body=b"", headers=headers)


def candidates(request: Request) -> Iterator[Request]:
    """Simpler versions of ``request``, biggest cuts first."""
    if request.body:
        yield _without_body(request)
    path, sep, query = request.target.partition("?")
    if sep:
        yield dataclasses.replace(request, target=path)
        pairs = query.split("&")
        if len(pairs) > 1:
            for i in range(len(pairs)):
                yield dataclasses.replace(request, target=path + "?" + "&".join(pairs[:i] + pairs[i + 1:]))
    for i, (name, _) in enumerate(request.headers):
        if name.lower() not in _KEEP_HEADERS and name.lower() not in _FRAMING:
            yield dataclasses.replace(request, headers=request.headers[:i] + request.headers[i + 1:])
    segments = path.split("/")
    if len(segments) > 2:
        for i in range(1, len(segments)):
            shorter = "/".join(segments[:i] + segments[i + 1:]) or "/"
            yield dataclasses.replace(request, target=shorter + sep + query)
    last = segments[-1]
    if len(last) > 1:
        yield dataclasses.replace(request, target="/".join(segments[:-1] + [last[: len(last) // 2]]) + sep + query)
    length = next((v for n, v in request.headers if n.lower() == "content-length"), None)
    if request.body and length is not None and len(request.body) > 1:
        half = request.body[: len(request.body) // 2]
        headers = tuple((n, str(len(half))) if n.lower() == "content-length" else (n, v) for n, v in request.headers)
        yield dataclasses.replace(request, body=half, headers=headers)
    if request.method not in ("GET", "HEAD"):
        yield dataclasses.replace(_without_body(request), method="GET")
    if request.version == "1.0" and any(h[0].lower() == "host" for h in request.headers):
        yield dataclasses.replace(request, version="1.1")
    if request.source is not None:
        yield dataclasses.replace(request, source=None)


def size(request: Request) -> int:
    return len(request.to_bytes())


async def shrink(request: Request, still_differs: Callable[[Request], Awaitable[bool]], budget: int = 40) -> Request:
    """The smallest version of ``request`` for which ``still_differs`` holds (``request`` itself when
    nothing simpler does). At most ``budget`` calls of ``still_differs``."""
    current = request
    attempts = 0
    improved = True
    while improved and attempts < budget:
        improved = False
        for candidate in candidates(current):
            if size(candidate) >= size(current) and candidate.method == current.method:
                continue
            attempts += 1
            if await still_differs(candidate):
                current = dataclasses.replace(candidate, label=request.label + "/minimal")
                improved = True
                break
            if attempts >= budget:
                break
    return current
