"""A gRPC-like HTTP/2 upstream for tests: h2c (or TLS with ALPN h2), in a thread of its own.

It records every call exactly as it arrived (headers in order, every DATA byte, the messages they
frame, trailers) and answers by ``:path``:

- ``.../Unary``: after the whole request, one DATA frame with every message echoed (``echo:`` +
  message), then trailers ``grpc-status: 0``, ``grpc-message: OK``.
- ``.../Stream``: the response headers at once, then each message echoed in a DATA frame of its
  own as soon as it is complete, then the same trailers when the request ends.
- ``.../Fail``: a trailers-only answer (one HEADERS frame with END_STREAM): ``grpc-status: 13``,
  ``grpc-message: boom``.
- ``.../Http503``: ``:status 503`` with a text body, no gRPC trailers.
- ``.../Slow``: nothing until 3 s have passed (read timeouts), then as Unary.
- ``.../Reset``: RST_STREAM (REFUSED_STREAM) instead of an answer.
- ``.../Broken``: the head and one message, then the connection closes.
- anything else: as Unary.

Messages are gRPC's length-prefixed framing: a compressed flag byte, a 4-byte big-endian length.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError

OK_TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"OK")]


def frame(message: bytes) -> bytes:
    """One gRPC message on the wire."""
    return struct.pack(">BI", 0, len(message)) + message


def unframe(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete messages at the start of ``data``, and what is left of an incomplete one."""
    messages = []
    while len(data) >= 5:
        length = struct.unpack(">I", data[1:5])[0]
        if len(data) < 5 + length:
            break
        messages.append(data[5:5 + length])
        data = data[5 + length:]
    return messages, data


@dataclass
class Call:
    """One request stream as the upstream saw it."""

    headers: list[tuple[str, str]]
    data: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False  # END_STREAM arrived
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each DATA with a payload
    # How a call that never ended was cut: "reset N" (RST_STREAM, its code), "goaway" or "closed"
    # (the connection went away), with the time.monotonic() it happened.
    cut: str = ""
    cut_at: float = 0.0

    @property
    def path(self) -> str:
        return dict(self.headers).get(":path", "")

    @property
    def messages(self) -> list[bytes]:
        return unframe(self.data)[0]


class _Conn(asyncio.Protocol):
    def __init__(self, server: GrpcUpstream) -> None:
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, Call] = {}
        self.pending: dict[int, bytes] = {}  # Stream: request bytes not yet a whole message
        self.outbox: dict[int, bytes] = {}  # DATA waiting for flow-control window
        self.closing: dict[int, list[tuple[bytes, bytes]] | None] = {}  # what ends each queued stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event.stream_id, event.headers)
            elif isinstance(event, DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._data(event.stream_id, event.data)
            elif isinstance(event, TrailersReceived):
                call = self.calls.get(event.stream_id)
                if call is not None:
                    call.trailers = [(n.decode(), v.decode()) for n, v in event.headers]
            elif isinstance(event, StreamEnded):
                self._ended(event.stream_id)
            elif isinstance(event, WindowUpdated):
                self._drain()
            elif isinstance(event, StreamReset):
                self._cut(self.calls.get(event.stream_id), f"reset {int(event.error_code)}")
            elif isinstance(event, ConnectionTerminated):
                for call in self.calls.values():
                    self._cut(call, "goaway")
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for call in self.calls.values():
            self._cut(call, "closed")

    @staticmethod
    def _cut(call: Call | None, how: str) -> None:
        if call is not None and not call.ended and not call.cut:
            call.cut, call.cut_at = how, time.monotonic()

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        call = Call(headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers])
        self.calls[stream_id] = call
        self.server.record(call)
        if call.path.endswith("/Stream"):
            self._head(stream_id)

    def _head(self, stream_id: int, status: str = "200") -> None:
        self.h2.send_headers(stream_id, [(":status", status), ("content-type", "application/grpc"),
                                         ("x-upstream", "grpc-test")])

    def _data(self, stream_id: int, data: bytes) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        call.data += data
        if data:
            call.arrivals.append(time.monotonic())
        if call.path.endswith("/Stream"):
            messages, rest = unframe(self.pending.get(stream_id, b"") + data)
            self.pending[stream_id] = rest
            for message in messages:
                self._send(stream_id, frame(b"echo:" + message))

    def _ended(self, stream_id: int) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        call.ended = True
        path = call.path
        if path.endswith("/Slow"):
            asyncio.get_running_loop().call_later(3.0, self._unary_later, stream_id)
        elif path.endswith("/Fail"):
            self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                             ("grpc-status", "13"), ("grpc-message", "boom")], end_stream=True)
        elif path.endswith("/Http503"):
            body = b"unavailable\n"
            self.h2.send_headers(stream_id, [(":status", "503"), ("content-type", "text/plain"),
                                             ("content-length", str(len(body)))])
            self._send(stream_id, body, end=True)
        elif path.endswith("/Reset"):
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        elif path.endswith("/Broken"):
            self._head(stream_id)
            self._send(stream_id, frame(b"partial"))
            self._flush()
            if self.transport is not None:
                self.transport.close()  # after the head and one message: no trailers, no END_STREAM
        elif path.endswith("/Stream"):
            self._send(stream_id, b"", trailers=OK_TRAILERS)
        else:
            self._unary(stream_id, call)

    def _unary(self, stream_id: int, call: Call) -> None:
        self._head(stream_id)
        self._send(stream_id, b"".join(frame(b"echo:" + m) for m in call.messages), trailers=OK_TRAILERS)

    def _unary_later(self, stream_id: int) -> None:
        call = self.calls.get(stream_id)
        if call is None or self.transport is None or self.transport.is_closing():
            return
        try:
            self._unary(stream_id, call)
        except ProtocolError:
            return  # the proxy gave up on the stream meanwhile
        self._flush()

    def _send(self, stream_id: int, data: bytes, end: bool = False,
              trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Queue DATA (then END_STREAM or trailers) and send what the windows allow."""
        self.outbox[stream_id] = self.outbox.get(stream_id, b"") + data
        if end or trailers is not None:
            self.closing[stream_id] = trailers
        self._drain()

    def _drain(self) -> None:
        for stream_id in list(self.outbox):
            data = self.outbox[stream_id]
            try:
                while data:
                    window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
                    if window <= 0:
                        break
                    self.h2.send_data(stream_id, data[:window])
                    data = data[window:]
                self.outbox[stream_id] = data
                if not data:
                    del self.outbox[stream_id]
                    if stream_id in self.closing:
                        trailers = self.closing.pop(stream_id)
                        if trailers is None:
                            self.h2.end_stream(stream_id)
                        else:
                            self.h2.send_headers(stream_id, trailers, end_stream=True)
            except ProtocolError:
                self.outbox.pop(stream_id, None)
        self._flush()


class GrpcUpstream:
    """Start with ``start()`` (returns the port), stop with ``stop()``; ``calls`` holds what arrived."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.calls: list[Call] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def drain(self) -> list[Call]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def start(self) -> int:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()

            def factory() -> _Conn:
                self.connections += 1
                return _Conn(self)

            self._server = loop.run_until_complete(
                loop.create_server(factory, "127.0.0.1", 0, ssl=self.tls))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="grpc-upstream")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the gRPC test upstream did not start")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None


@dataclass
class Answer:
    """What an HTTP/2 client got for one call: the events in order, as received."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    reset: int | None = None  # RST_STREAM error code
    goaway: bool = False
    goaway_error: tuple[int, bytes | None] | None = None
    ended: bool = False
    frames: int = 0  # DATA frames with a payload

    @property
    def status(self) -> str:
        return dict(self.headers).get(":status", "")

    @property
    def messages(self) -> list[bytes]:
        return unframe(self.data)[0]


def h2_call(port: int, path: str, messages: list[bytes], headers: list[tuple[str, str]] | None = None,
            authority: str = "grpc.test", tls: bool = False, timeout: float = 10.0,
            method: str = "POST", end_with_trailers: list[tuple[str, str]] | None = None) -> Answer:
    """One call over a fresh HTTP/2 connection (h2c prior knowledge, or TLS with ALPN h2): the
    request headers (gRPC's by default), the messages in one DATA frame each, then the answer."""
    import socket

    if headers is None:
        headers = [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "5S"),
                   ("user-agent", "grpc-test/1.0")]
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname=authority)
        # Headers go as given (a TE other than "trailers" too: what the proxies do with it is the test).
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False))
        conn.initiate_connection()
        request = [(":method", method), (":scheme", "https" if tls else "http"), (":path", path),
                   (":authority", authority), *headers]
        bodies = [frame(m) for m in messages]
        conn.send_headers(1, request, end_stream=not bodies and end_with_trailers is None)
        answer = Answer()

        def send_more() -> None:
            """The messages, one DATA frame each while they fit the windows (else split), then the end."""
            while bodies and answer.reset is None:
                window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
                if window <= 0:
                    return
                body = bodies[0]
                last = len(bodies) == 1 and len(body) <= window and end_with_trailers is None
                conn.send_data(1, body[:window], end_stream=last)
                if len(body) > window:
                    bodies[0] = body[window:]
                else:
                    bodies.pop(0)
                    if not bodies and end_with_trailers is not None:
                        conn.send_headers(1, end_with_trailers, end_stream=True)

        send_more()
        sock.sendall(conn.data_to_send())
        while not answer.ended and answer.reset is None and not answer.goaway:
            if bodies:
                send_more()
                sock.sendall(conn.data_to_send())
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, ResponseReceived):
                    answer.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                elif isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    answer.data += event.data
                    answer.frames += bool(event.data)
                elif isinstance(event, TrailersReceived):
                    answer.trailers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                elif isinstance(event, StreamEnded):
                    answer.ended = True
                elif isinstance(event, StreamReset):
                    answer.reset = int(event.error_code)
                elif isinstance(event, ConnectionTerminated):
                    answer.goaway = True
                    answer.goaway_error = (int(event.error_code), event.additional_data)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        return answer
    finally:
        sock.close()


def h2_conversation(port: int, path: str, messages: list[bytes], *, wait_reply: bool, pause: float = 0.0,
                    timeout: float = 5.0) -> tuple[Answer, float]:
    """One call that sends its messages one DATA frame at a time: with ``wait_reply``, each after the
    echo of the one before has arrived (a bidirectional ping-pong, which stalls behind a proxy that
    buffers the request body); ``pause`` seconds between messages (a slow client). END_STREAM goes
    in an empty DATA frame after the last. Returns the answer and when END_STREAM was sent
    (time.monotonic())."""
    import socket

    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "grpc.test"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    answer = Answer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, headers)
        sock.sendall(conn.data_to_send())

        def read_until(done: Callable[[], bool]) -> None:
            while not done() and not answer.ended and answer.reset is None and not answer.goaway:
                chunk = sock.recv(65536)
                if not chunk:
                    answer.goaway = True
                    return
                for event in conn.receive_data(chunk):
                    if isinstance(event, ResponseReceived):
                        answer.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                    elif isinstance(event, DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        answer.data += event.data
                        answer.frames += bool(event.data)
                    elif isinstance(event, TrailersReceived):
                        answer.trailers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
                    elif isinstance(event, StreamEnded):
                        answer.ended = True
                    elif isinstance(event, StreamReset):
                        answer.reset = int(event.error_code)
                    elif isinstance(event, ConnectionTerminated):
                        answer.goaway = True
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)

        for i, message in enumerate(messages):
            if i and pause:
                time.sleep(pause)
            data = frame(message)
            while data:  # within the proxy's windows: wait for its WINDOW_UPDATEs when they are shut
                read_until(lambda: conn.local_flow_control_window(1) > 0)
                size = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size, len(data))
                conn.send_data(1, data[:size])
                data = data[size:]
                sock.sendall(conn.data_to_send())
            if wait_reply:
                read_until(lambda: len(answer.messages) > i)  # noqa: B023 - used at once
        conn.end_stream(1)
        sock.sendall(conn.data_to_send())
        ended_at = time.monotonic()
        read_until(lambda: False)
    return answer, ended_at
