"""Sending a ``FileResponse``: the head, then the file's ranges.

A small body (``INLINE_MAX`` bytes or less) is read with ``os.pread`` and written with the head in
one write: for small files one read beats a sendfile per range plus the bookkeeping. A larger one
goes through ``FileSender``, which the connection treats like an upstream exchange (it is ``_busy``
meanwhile, so pipelined requests wait their turn; ``pause``/``resume`` follow the transport's flow
control; ``abort`` on connection loss). While the transport's buffer is empty the file is sent with
``os.sendfile`` straight to the socket (zero-copy; uvloop has no ``loop.sendfile``); whatever the
kernel does not take at once is read and written through the transport, which buffers it and
pauses us. The engine opened the file; the descriptor is closed here on every path.
With limit_rate (``FileResponse.rate``) every file goes through ``FileSender``, which sends on the
schedule nginx's write filter keeps (newproxy/http/pacing.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from newproxy.engine.types import FileResponse
from newproxy.http.pacing import RatePacer

INLINE_MAX = 262144
CHUNK = 1 << 20  # bytes per sendfile call
READ_CHUNK = 262144  # bytes per fallback read
# Bytes read into memory in one turn of the loop before the rest waits for the next: a sink whose
# writes go out only at the end of the turn (an HTTP/2 or HTTP/3 stream, whose client's window may
# take it all) would otherwise get the whole file in memory before its transport could pause us.
TURN_READ_MAX = 4 * READ_CHUNK


class Sink(Protocol):
    transport: asyncio.Transport | None

    def upstream_done(self, keepalive: bool) -> None: ...
    def upstream_abort(self) -> None: ...


def read_inline(resp: FileResponse) -> bytes | None:
    """head + body for a small answer, closing the file; None when the file is now shorter."""
    fd = resp.fd
    try:
        if not resp.parts:
            return resp.head
        body = [resp.head]
        for part in resp.parts:
            if isinstance(part, bytes):
                body.append(part)
                continue
            offset, length = part
            data = os.pread(fd, length, offset)
            if len(data) != length:
                return None
            body.append(data)
        return b"".join(body)
    except OSError:
        return None
    finally:
        os.close(fd)


def close(resp: FileResponse) -> None:
    try:
        os.close(resp.fd)
    except OSError:
        pass


def body_length(resp: FileResponse) -> int:
    return sum(len(p) if isinstance(p, bytes) else p[1] for p in resp.parts)


class FileSender:
    __slots__ = ("_done", "_fd", "_parts", "_paused", "_rate", "_sink", "_sock", "_timer", "_turn_due", "keepalive")

    def __init__(self, sink: Sink, resp: FileResponse, head_sent: int = 0) -> None:
        self._sink = sink
        # limit_rate: nginx's write filter pacing, counting the head as sent (nginx's c->sent), and
        # the timer of the pause after a send.
        self._rate = RatePacer(resp.rate, head_sent) if resp.rate is not None else None
        self._timer: asyncio.TimerHandle | None = None
        self._parts = list(reversed(resp.parts))
        self._paused = False
        self._done = False
        self._turn_due = False  # a _next_turn is scheduled
        self.keepalive = resp.keepalive
        self._fd = resp.fd  # owned from here: closed by _finish
        sock = sink.transport.get_extra_info("socket") if sink.transport is not None else None
        self._sock = sock.fileno() if sock is not None and sink.transport.get_extra_info("sslcontext") is None else -1

    def start(self) -> None:
        self._pump()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused and not self._done:
            self._paused = False
            self._pump()

    def abort(self) -> None:
        self._finish()

    def unsent(self) -> int:
        """The bytes of the answer's body not yet given to the transport (counted as sent up front)."""
        return sum(len(part) if isinstance(part, bytes) else part[1] for part in self._parts)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            os.close(self._fd)
            if self._timer is not None:
                self._timer.cancel()

    def _allowance(self) -> int:
        """What limit_rate lets us send now (newproxy/http/pacing.py); 0 after arming the wait."""
        assert self._rate is not None
        allowed, wait = self._rate.allowance()
        if not allowed:
            self._wait(wait)
        return allowed

    def _paced(self, sent: int, more: bool) -> bool:
        """After a send nginx waits what it took at the rate; after the last one the answer is over at
        once (nginx finalizes the request; the pause would only hold the connection's next one)."""
        assert self._rate is not None
        pause = self._rate.sent_now(sent)
        if pause > 0 and more:
            self._wait(pause)
            return True
        return False

    def _wait(self, seconds: float) -> None:
        transport = self._sink.transport
        if transport is None:
            return
        self._timer = asyncio.get_running_loop().call_later(seconds, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if not self._done and not self._paused:
            self._pump()

    def _next_turn(self) -> None:
        self._turn_due = False
        if not self._done and not self._paused and self._timer is None:
            self._pump()

    def _pump(self) -> None:
        transport = self._sink.transport
        parts = self._parts
        read = 0
        try:
            while parts and not self._paused and not self._done:
                if transport is None or transport.is_closing():
                    self._finish()
                    return
                part = parts[-1]
                cap = CHUNK
                if self._rate is not None:
                    if self._timer is not None:
                        return  # a pause is running; _wake goes on
                    cap = self._allowance()
                    if not cap:
                        return
                if isinstance(part, bytes):
                    if len(part) > cap:
                        parts[-1] = part[cap:]
                        part = part[:cap]
                    else:
                        parts.pop()
                    transport.write(part)
                    if self._rate is not None and self._paced(len(part), bool(parts)):
                        return
                    continue
                offset, length = part
                length = min(length, cap)
                sent = 0
                if self._sock >= 0 and transport.get_write_buffer_size() == 0:
                    try:
                        sent = os.sendfile(self._sock, self._fd, offset, min(length, CHUNK))
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    if sent == 0 and length and os.fstat(self._fd).st_size <= offset:
                        raise EOFError
                if sent == 0:
                    if read >= TURN_READ_MAX:
                        if not self._turn_due:
                            self._turn_due = True
                            asyncio.get_running_loop().call_soon(self._next_turn)
                        return
                    data = os.pread(self._fd, min(length, READ_CHUNK), offset)
                    if not data:
                        raise EOFError
                    sent = len(data)
                    read += sent
                    transport.write(data)  # may call pause() synchronously
                left = parts[-1][1] - sent  # type: ignore[index]
                if not left:
                    parts.pop()
                else:
                    parts[-1] = (offset + sent, left)
                if self._rate is not None and self._paced(sent, bool(parts)):
                    return
        except (OSError, EOFError):
            # The file shrank or the socket failed: the promised length cannot be kept; close.
            self._finish()
            self._sink.upstream_abort()
            return
        if not parts and not self._done:
            self._finish()
            self._sink.upstream_done(self.keepalive)
