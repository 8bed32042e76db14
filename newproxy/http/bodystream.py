"""A request body sent upstream while the client still sends it (``proxy_request_buffering off``).

nginx reads such a body unbuffered (r->request_body_no_buffering, ngx_http_proxy_handler): it connects
once the head is read, sends the request's head with what came of the body so far, then each read
of the client as it comes (ngx_http_upstream_send_request_body); a chunked body goes up chunked, one
chunk per read (ngx_http_proxy_body_output_filter sizes a chunk by what it is given). Its one
``client_body_buffer_size`` buffer bounds what it holds: while the peer does not take the body (or
is not connected yet), it stops reading the client.

``BodyStream`` is that body between a front end, which ``add``s each read's decoded bytes and ``end``s
it, and the upstream exchange (newproxy/http/upstream.py), which ``take``s what waits, framed,
whenever its peer's socket takes more. HTTP/1.1 (newproxy/http/h1.py): ``flow`` is its switch for
reading the client, off while more than ``limit`` bytes wait, on again once taken. HTTP/2
(newproxy/http/streams.py): the DATA frames of one read are ``gather``ed, then added together; the
stream's window is given back as the bytes go upstream (``on_taken``).
"""

from __future__ import annotations

from collections.abc import Callable

_LAST_CHUNK = b"0\r\n\r\n"


class BodyStream:
    __slots__ = ("chunked", "consumer", "declared", "ended", "flow", "held", "limit", "on_taken", "over", "parts",
                 "reading", "waiting")

    def __init__(self, declared: int, chunked: bool, limit: int) -> None:
        self.declared = declared  # the Content-Length (a chunked body: 0, it goes up without one)
        self.chunked = chunked  # sent upstream chunked: a body without a length (to an HTTP/1.1 upstream)
        self.limit = limit  # bytes that may wait before the client is read no more
        self.parts: list[bytes] = []  # what waits: one part per read of the client
        self.waiting = 0
        self.ended = False  # the client's body is all in
        self.over = False  # and all of it was taken (the last chunk too)
        self.held = False  # the client's reading is switched off by this stream
        # The exchange sending it: called when more waits or the body ended (None: none yet).
        self.consumer: Callable[[], None] | None = None
        # The front end's reading of the client: flow(False) stops it, flow(True) goes on.
        self.flow: Callable[[bool], None] | None = None
        # HTTP/2: told how many bytes went upstream (the stream's window is given back as they do).
        self.on_taken: Callable[[int], None] | None = None
        self.reading: list[bytes] = []  # HTTP/2: the DATA of the connection's read being parsed

    def __len__(self) -> int:
        return self.declared  # $proxy_internal_body_length: nginx sends the client's Content-Length

    def __bool__(self) -> bool:
        return True

    def add(self, data: bytes) -> None:
        """One read's bytes of the body (decoded from chunks): sent on by the consumer."""
        if not data:
            return  # (an empty chunk would end a chunked body upstream)
        self.parts.append(data)
        self.waiting += len(data)
        if self.waiting > self.limit and not self.held and self.flow is not None:
            self.held = True
            self.flow(False)
        if self.consumer is not None:
            self.consumer()

    def gather(self, data: bytes) -> None:
        """HTTP/2: one DATA frame's bytes; the frames of one read of the connection go upstream
        together (``read_over``), as nginx sends them (a chunk per read)."""
        if data:
            self.reading.append(data)

    def read_over(self) -> None:
        reading = self.reading
        if reading:
            self.reading = []
            self.add(reading[0] if len(reading) == 1 else b"".join(reading))

    def end(self) -> None:
        self.read_over()
        self.ended = True
        if self.consumer is not None:
            self.consumer()

    def take(self) -> bytes:
        """What waits, as it goes upstream (chunked: a chunk per read, and the last chunk once the
        body ended); the client is read again if it was held."""
        parts = self.parts
        if parts:
            self.parts = []
            if self.on_taken is not None:
                self.on_taken(self.waiting)
            self.waiting = 0
            if self.chunked:
                parts = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts]
            if self.held and self.flow is not None:
                self.held = False
                self.flow(True)
        elif not self.ended or self.over:
            return b""
        if self.ended:
            self.over = True
            if self.chunked:
                parts = [*parts, _LAST_CHUNK]
        return parts[0] if len(parts) == 1 else b"".join(parts)
