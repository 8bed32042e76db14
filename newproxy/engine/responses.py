"""Responses the proxy makes itself (return, redirects, error pages), in nginx's header order.

nginx's header filter writes: status line, Server, Date, Content-Type, Content-Length,
Last-Modified, a relative Location made absolute, Transfer-Encoding, Connection, then every other
header in the order it was added. An absolute Location is one of those others, so it comes after
Connection; a relative one comes before it.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from newproxy import __version__
from newproxy.engine.status import CLOSE_AFTER, error_page, status_line, wire_status
from newproxy.engine.types import Request, Response

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Without text, nginx answers these by closing the connection.
CLOSE_CODES = frozenset({444, 499, 408})


class DateHeader:
    """The Date header line, formatted once per second."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    @property
    def second(self) -> int:
        """The time (whole seconds) of the Date header last written: what expires counts from."""
        if self._second < 0:
            self.line()
        return self._second

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


class ResponseMaker:
    def __init__(self, server_tokens: bool) -> None:
        self.token = f"newproxy/{__version__}" if server_tokens else "newproxy"
        self.server_line = f"Server: {self.token}\r\n".encode()
        self.date = DateHeader()

    def head(
        self,
        status: int,
        keepalive: bool,
        content_type: bytes | None = None,
        content_length: int | None = None,
        relative_location: bytes | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
        chunked: bool = False,
    ) -> bytes:
        parts = [status_line(status), self.server_line, self.date.line()]
        if content_type is not None:
            parts.append(b"Content-Type: " + content_type + b"\r\n")
        if content_length is not None:
            parts.append(b"Content-Length: " + str(content_length).encode() + b"\r\n")
        if relative_location is not None:
            parts.append(b"Location: " + relative_location + b"\r\n")
        if chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"Connection: keep-alive\r\n" if keepalive else b"Connection: close\r\n")
        if extra:
            for name, value in extra:
                parts.append(name + b": " + value + b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def error(self, status: int, request: Request | None, keepalive: bool, location: bytes | None = None,
              absolute_location: bytes | None = None) -> Response:
        """nginx's special response: the built-in page for ``status`` (or an empty body)."""
        keepalive = keepalive and status not in CLOSE_AFTER
        page = error_page(status, self.token)
        head_only = request is not None and request.method == b"HEAD"
        extra = [(b"Location", absolute_location)] if absolute_location is not None else None
        if page is None:
            # No page: no Content-Type for 4xx/5xx, default_type for the rest (handled by callers).
            head = self.head(wire_status(status), keepalive, None, 0, location, extra)
            return Response(status, head, b"", keepalive)
        head = self.head(wire_status(status), keepalive, b"text/html", len(page), location, extra)
        return Response(status, head, b"" if head_only else page, keepalive)

    def text(self, status: int, request: Request, keepalive: bool, content_type: bytes, body: bytes) -> Response:
        """ngx_http_send_response: a body with the location's default_type."""
        if status == 204:
            return Response(status, self.head(status, keepalive), b"", keepalive)
        head = self.head(status, keepalive, content_type, len(body))
        no_body = request.method == b"HEAD" or status == 304
        return Response(status, head, b"" if no_body else body, keepalive)

    @staticmethod
    def close() -> Response:
        return Response(444, b"", b"", False, close_without_response=True)
