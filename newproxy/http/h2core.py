"""The server side of the HTTP/2 framing layer (RFC 9113), sans-IO, lean enough for the hot path.

The ``h2`` library's connection object runs every frame through two state machines, event objects
and header validation we switch off anyway; on a small answer that was most of the front end's
time. This core does only what a server needs: the preface, frame parsing, HEADERS/CONTINUATION
with HPACK (``hpack``'s decoder with a memo of repeated blocks, a stateless encoder:
newproxy/http/hpackfast.py), stream ids, flow control both ways, SETTINGS/PING/WINDOW_UPDATE/
RST_STREAM/GOAWAY. Frames are serialized by hand into ``out``; the protocol writes them.

It reports to a handler (``newproxy.http.h2.H2Protocol``) through direct calls:
``on_request(sid, headers, end)``, ``on_data(sid, data, end)``, ``on_trailers(sid, headers)``,
``on_reset(sid)``, ``on_window(sid)`` (0: the connection's window or every stream's changed),
``on_goaway()``. A connection error raises ``ConnectionError_`` after queueing its GOAWAY.

Invariants: ``streams`` holds every stream not closed both ways; a stream id is only ever opened
above ``last_sid``; ``send_data`` is never given more than ``window(sid)`` allows (the caller
checks), so the peer's windows are never overrun.
"""

from __future__ import annotations

from typing import Protocol

from hpack.exceptions import HPACKError

from newproxy.http.hpackfast import CachingDecoder, NginxEncoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
MAX_FRAME = 2**24 - 1  # what we accept (and announce, as nginx does)

# Frame types and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9
ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


class ConnectionError_(Exception):
    """A connection error: the GOAWAY is queued; the protocol writes it and closes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Handler(Protocol):
    def on_request(self, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> None: ...

    def on_data(self, sid: int, data: bytes, end: bool) -> None: ...

    def on_trailers(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def on_reset(self, sid: int) -> None: ...

    def on_window(self, sid: int) -> None: ...

    def on_goaway(self) -> None: ...


class _Stream:
    __slots__ = ("local_closed", "manual", "recv_pending", "remote_closed", "window")

    def __init__(self, window: int, remote_closed: bool) -> None:
        self.window = window  # what we may still send on it
        self.remote_closed = remote_closed
        self.local_closed = False
        self.recv_pending = 0  # body bytes taken but not yet given back by WINDOW_UPDATE
        self.manual = False  # the front end gives the window back (``consumed``): a streamed body


class H2Core:
    """One server connection's framing state. ``out`` collects frames to write, in order."""

    def __init__(self, handler: Handler, *, max_concurrent_streams: int, initial_window: int) -> None:
        self.handler = handler
        self.out: list[bytes] = []
        self.streams: dict[int, _Stream] = {}
        self.last_sid = 0
        self.encoder = NginxEncoder()
        self.decoder = CachingDecoder(1 << 30)  # header limits are the front end's (nginx's own)
        self.send_window = 65535  # the peer's connection window for what we send
        self.peer_initial = 65535  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.peer_frame = 16384  # the peer's SETTINGS_MAX_FRAME_SIZE
        self.recv_initial = initial_window  # ours, announced
        self.recv_window = MAX_WINDOW  # what the peer may still send on the connection
        self.goaway_received = False
        self.block_size = 0  # the size of the header block of the request being reported (on_request)
        self.reset_code = -1  # the error code of the RST_STREAM being reported (on_reset; -1: our own reset)
        self._buf = b""
        self._preface = False
        self._settings_seen = False
        self._continuation: tuple[int, int, list[bytes]] | None = None  # sid, flags, fragments
        self.out.append(frame(SETTINGS, 0, 0, b"".join(
            key.to_bytes(2, "big") + value.to_bytes(4, "big")
            for key, value in ((3, max_concurrent_streams), (4, initial_window), (5, MAX_FRAME)))))
        self.out.append(frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - 65535).to_bytes(4, "big")))

    # -- input ----------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        if not self._preface:
            if len(buf) < 24:
                if not PREFACE.startswith(buf):
                    self._fail(PROTOCOL_ERROR, "invalid connection preface")
                self._buf = buf
                return
            if buf[:24] != PREFACE:
                self._fail(PROTOCOL_ERROR, "invalid connection preface")
            self._preface = True
            pos = 24
        end = len(buf)
        while end - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if end - pos - 9 < length:
                break
            kind = buf[pos + 3]
            flags = buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9:pos + 9 + length]
            pos += 9 + length
            if not self._settings_seen and kind != SETTINGS:
                self._fail(PROTOCOL_ERROR, "the client's preface has no SETTINGS")
            if self._continuation is not None and kind != CONTINUATION:
                self._fail(PROTOCOL_ERROR, "CONTINUATION expected")
            if kind == HEADERS:
                self._headers(sid, flags, payload)
            elif kind == DATA:
                self._data(sid, flags, payload)
            elif kind == CONTINUATION:
                self._more_headers(sid, flags, payload)
            elif kind == SETTINGS:
                self._settings(sid, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == RST_STREAM:
                if sid == 0 or len(payload) != 4:
                    self._fail(PROTOCOL_ERROR, "bad RST_STREAM")
                if self.streams.pop(sid, None) is not None:
                    self.reset_code = int.from_bytes(payload, "big")
                    self.handler.on_reset(sid)
                    self.reset_code = -1
            elif kind == PING:
                if sid != 0 or len(payload) != 8:
                    self._fail(PROTOCOL_ERROR if sid else FRAME_SIZE_ERROR, "bad PING")
                if not flags & ACK:
                    self.out.append(frame(PING, ACK, 0, payload))
            elif kind == GOAWAY:
                self.goaway_received = True
                self.handler.on_goaway()
            elif kind == PUSH_PROMISE:
                self._fail(PROTOCOL_ERROR, "a client cannot push")
            elif kind == PRIORITY and (sid == 0 or len(payload) != 5):
                self._fail(PROTOCOL_ERROR, "bad PRIORITY")
            # unknown frame types are ignored (RFC 9113 4.1)
        self._buf = buf[pos:] if pos < end else b""

    def _fail(self, code: int, message: str) -> None:
        self.out.append(frame(GOAWAY, 0, 0, self.last_sid.to_bytes(4, "big") + code.to_bytes(4, "big")))
        raise ConnectionError_(code, message)

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes | None:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                return None
            return payload[1:len(payload) - payload[0]]
        return payload

    def _headers(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0 or not sid & 1:
            self._fail(PROTOCOL_ERROR, "HEADERS on an invalid stream id")
        block = self._unpad(flags, payload)
        if block is None:
            self._fail(PROTOCOL_ERROR, "bad padding")
        if flags & PRIORITY_FLAG:
            block = block[5:]  # type: ignore[index]
        if not flags & END_HEADERS:
            self._continuation = (sid, flags, [block])  # type: ignore[list-item]
            return
        self._header_block(sid, flags, block)  # type: ignore[arg-type]

    def _more_headers(self, sid: int, flags: int, payload: bytes) -> None:
        cont = self._continuation
        if cont is None or cont[0] != sid:
            self._fail(PROTOCOL_ERROR, "unexpected CONTINUATION")
        assert cont is not None
        cont[2].append(payload)
        if flags & END_HEADERS:
            self._continuation = None
            self._header_block(sid, cont[1], b"".join(cont[2]))

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        try:
            headers = self.decoder.decode(block, raw=True)
        except (HPACKError, ValueError, IndexError) as exc:
            self._fail(COMPRESSION_ERROR, f"cannot decode a header block ({exc})")
        end = bool(flags & END_STREAM)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers
            if stream.remote_closed or not end:
                self._fail(PROTOCOL_ERROR, "HEADERS on a half-closed stream")
            stream.remote_closed = True
            self._maybe_forget(sid, stream)
            self.handler.on_trailers(sid, headers)
            return
        if sid <= self.last_sid:
            self._fail(STREAM_CLOSED, "HEADERS on a closed stream")
        self.last_sid = sid
        self.streams[sid] = _Stream(self.peer_initial, end)
        self.block_size = len(block)  # nginx's $request_length over HTTP/2: the header block as received
        self.handler.on_request(sid, headers, end)

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            self._fail(PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self.recv_window -= size
        if self.recv_window < 0:
            self._fail(FLOW_CONTROL_ERROR, "the connection's window was overrun")
        if self.recv_window < MAX_WINDOW // 2:  # give the connection's window back in large steps
            self.out.append(frame(WINDOW_UPDATE, 0, 0, (MAX_WINDOW - self.recv_window).to_bytes(4, "big")))
            self.recv_window = MAX_WINDOW
        data = self._unpad(flags, payload)
        if data is None:
            self._fail(PROTOCOL_ERROR, "bad padding")
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed:
            if sid > self.last_sid:
                self._fail(PROTOCOL_ERROR, "DATA on an idle stream")
            if stream is not None:  # half-closed by the peer, which sends more: STREAM_CLOSED
                self.out.append(frame(RST_STREAM, 0, sid, STREAM_CLOSED.to_bytes(4, "big")))
            # A stream already closed (reset, or its answer over before the body it did not want):
            # what was in flight is dropped, as nginx skips it ("unknown http2 stream").
            return
        end = bool(flags & END_STREAM)
        if end:
            stream.remote_closed = True
            self._maybe_forget(sid, stream)
        elif size and (not stream.manual or stream.local_closed):
            # The body is taken at once (the front end buffers it, or our answer is over and it is
            # dropped): give the stream's window back once half of it is used.
            stream.recv_pending += size
            if stream.recv_pending >= self.recv_initial // 2:
                self.out.append(frame(WINDOW_UPDATE, 0, sid, stream.recv_pending.to_bytes(4, "big")))
                stream.recv_pending = 0
        self.handler.on_data(sid, data, end)  # type: ignore[arg-type]

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            self._fail(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                self._fail(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            self._fail(FRAME_SIZE_ERROR, "SETTINGS of a bad length")
        self._settings_seen = True
        window_changed = False
        for at in range(0, len(payload), 6):
            key = int.from_bytes(payload[at:at + 2], "big")
            value = int.from_bytes(payload[at + 2:at + 6], "big")
            if key == 4:  # INITIAL_WINDOW_SIZE: applies to every open stream (RFC 9113 6.9.2)
                if value > MAX_WINDOW:
                    self._fail(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial
                self.peer_initial = value
                for stream in self.streams.values():
                    stream.window += delta
                window_changed = True
            elif key == 5:
                if not 16384 <= value <= MAX_FRAME:
                    self._fail(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_frame = value
            elif key == 1:
                self.encoder.header_table_size = value
            elif key == 2 and value > 1:
                self._fail(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
        self.out.append(frame(SETTINGS, ACK, 0))
        if window_changed:
            self.handler.on_window(0)

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._fail(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a bad length")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            if not increment:
                self._fail(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                self._fail(FLOW_CONTROL_ERROR, "the connection's window went over 2^31-1")
            self.handler.on_window(0)
            return
        stream = self.streams.get(sid)
        if stream is None:
            return  # a closed stream's late update
        if not increment or stream.window + increment > MAX_WINDOW:
            self.reset(sid, PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR)
            self.handler.on_reset(sid)
            return
        stream.window += increment
        self.handler.on_window(sid)

    def _maybe_forget(self, sid: int, stream: _Stream) -> None:
        if stream.remote_closed and stream.local_closed:
            self.streams.pop(sid, None)

    def manual_window(self, sid: int) -> None:
        """The stream's body is streamed: its window opens only as ``consumed`` reports (so a slow
        upstream holds the client back, as nginx's unbuffered body reading does)."""
        stream = self.streams.get(sid)
        if stream is not None:
            stream.manual = True

    def consumed(self, sid: int, size: int) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.remote_closed:
            return
        stream.recv_pending += size
        if stream.recv_pending >= self.recv_initial // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, sid, stream.recv_pending.to_bytes(4, "big")))
            stream.recv_pending = 0

    # -- output ---------------------------------------------------------------------------------
    def window(self, sid: int) -> int:
        stream = self.streams.get(sid)
        if stream is None:
            return 0
        return min(stream.window, self.send_window)

    def send_headers(self, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> int:
        """Returns the bytes written (frame headers included: nginx's $bytes_sent counts them)."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return 0
        block = self.encoder.encode(headers)
        limit = self.peer_frame
        flags = END_STREAM if end else 0
        written = len(block) + 9 * max(1, -(-len(block) // limit))
        if len(block) <= limit:
            self.out.append(frame(HEADERS, flags | END_HEADERS, sid, block))
        else:
            self.out.append(frame(HEADERS, flags, sid, block[:limit]))
            for at in range(limit, len(block), limit):
                last = at + limit >= len(block)
                self.out.append(frame(CONTINUATION, END_HEADERS if last else 0, sid, block[at:at + limit]))
        if end:
            stream.local_closed = True
            self._maybe_forget(sid, stream)
        return written

    def send_data(self, sid: int, data: bytes, end: bool, max_frame: int) -> int:
        """``data`` fits ``window(sid)``; split into frames of at most ``max_frame`` bytes. Returns
        the bytes written, frame headers included."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_closed:
            return 0
        size = len(data)
        stream.window -= size
        self.send_window -= size
        limit = min(max_frame, self.peer_frame) if max_frame else self.peer_frame
        written = size + 9 * max(1, -(-size // limit))
        if size <= limit:
            self.out.append(frame(DATA, END_STREAM if end else 0, sid, data))
        else:
            for at in range(0, size, limit):
                last = at + limit >= size
                self.out.append(frame(DATA, END_STREAM if end and last else 0, sid, data[at:at + limit]))
        if end:
            stream.local_closed = True
            self._maybe_forget(sid, stream)
        return written

    def reset(self, sid: int, code: int) -> None:
        self.streams.pop(sid, None)
        self.out.append(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))

    def end_unread(self, sid: int) -> None:
        """Our side of a stream ended while the peer's is still open (its body was not wanted):
        RST_STREAM NO_ERROR, as nginx's ngx_http_v2_close_stream sends (RFC 9113 8.1)."""
        stream = self.streams.get(sid)
        if stream is not None and stream.local_closed and not stream.remote_closed:
            self.reset(sid, NO_ERROR)

    def ignore(self, sid: int) -> None:
        """Forget a stream just opened by the peer, saying nothing (after our GOAWAY)."""
        self.streams.pop(sid, None)

    def refuse(self, sid: int, code: int) -> None:
        """RST_STREAM for a stream just opened by the peer (too many, or after our GOAWAY)."""
        self.reset(sid, code)

    def goaway(self, code: int) -> None:
        self.out.append(frame(GOAWAY, 0, 0, self.last_sid.to_bytes(4, "big") + code.to_bytes(4, "big")))

    def take(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data
