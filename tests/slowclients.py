"""Slow clients (slowloris): many connections that never finish a request head, each recording
when and how the server closed it. Used by tests/test_slowloris.py and benchmarks/slowloris_bench.py.

Kinds of slow connection (``KINDS``):
- ``silent``: connects and sends nothing;
- ``partial``: sends a partial request line at once, then nothing;
- ``trickle``: sends a request head one byte every ``interval`` seconds, never ending it;
- ``keepalive``: one whole request (its answer read), then after ``pause`` seconds a second request
  trickled as above. Its close is timed from the second request's first byte, the others' from the
  connect (nginx times the first head from the accept, a later one from its first byte).

Raw non-blocking sockets on the running event loop: one reader task per connection and, for the
trickling kinds, one writer task; nothing else, so a thousand of them stay cheap.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from dataclasses import dataclass, field

KINDS = ("silent", "partial", "trickle", "keepalive")
HEAD = b"GET /slow HTTP/1.1\r\nHost: t.test\r\nUser-Agent: slow\r\nX-Pad: "


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit), for the
    client's sockets and the servers it starts (children inherit it). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class Outcome:
    kind: str
    received: bytes = b""
    closed_after: float | None = None  # seconds from the timed moment to the close; None: still open
    # How long the connect took to complete, as this client saw it: the server's accept (where its
    # timer starts) happened between the timed moment (connect started) and that.
    connected_after: float = 0.0
    how: str = ""  # "EOF", "RST" or "" (still open at the deadline)
    start: float = 0.0  # loop time the close is timed from
    error: str = ""  # the client failed to connect or send (not a server close)
    extra: dict[str, float] = field(default_factory=dict)


async def _send_slowly(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes, interval: float,
                       done: asyncio.Event) -> None:
    """One byte every ``interval`` until the server closes (``done``); padding once ``data`` runs out."""
    index = 0
    while not done.is_set():
        byte = data[index:index + 1] or b"a"
        index += 1
        try:
            await loop.sock_sendall(sock, byte)
        except OSError:
            return  # the server closed: the reader records how
        try:
            await asyncio.wait_for(done.wait(), interval)
        except TimeoutError:
            pass


async def _read_until_close(loop: asyncio.AbstractEventLoop, sock: socket.socket, outcome: Outcome,
                            until: float, stop_after: bytes = b"") -> bool:
    """Read until the server closes (True) or ``until`` (loop time) passes (False). With
    ``stop_after``, return (False) as soon as the received bytes end with it (an answer is in)."""
    while True:
        left = until - loop.time()
        if left <= 0:
            return False
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except TimeoutError:
            return False
        except ConnectionResetError:
            outcome.how = "RST"
            outcome.closed_after = loop.time() - outcome.start
            return True
        if not chunk:
            outcome.how = "EOF"
            outcome.closed_after = loop.time() - outcome.start
            return True
        outcome.received += chunk
        if stop_after and outcome.received.endswith(stop_after):
            return False


async def slow_connection(port: int, kind: str, limit: float, interval: float = 0.4, pause: float = 0.5,
                          first: bytes = b"GET /first HTTP/1.1\r\nHost: t.test\r\n\r\n",
                          first_answer_end: bytes = b"first\n") -> Outcome:
    """One slow connection of ``kind`` to 127.0.0.1:``port``, watched for ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    outcome = Outcome(kind)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    done = asyncio.Event()
    writer: asyncio.Task[None] | None = None
    try:
        outcome.start = loop.time()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), limit)
        except (TimeoutError, OSError) as exc:
            outcome.error = f"connect: {exc!r}"
            return outcome
        outcome.connected_after = loop.time() - outcome.start
        until = outcome.start + limit
        if kind == "partial":
            await loop.sock_sendall(sock, HEAD[:12])
        elif kind == "trickle":
            writer = asyncio.create_task(_send_slowly(loop, sock, HEAD, interval, done))
        elif kind == "keepalive":
            await loop.sock_sendall(sock, first)
            if await _read_until_close(loop, sock, outcome, until, first_answer_end) or not outcome.received:
                outcome.error = "the first request was not answered"
                return outcome
            await asyncio.sleep(pause)
            outcome.extra["first_request_at"] = outcome.start
            outcome.start = loop.time()  # timed from the second head's first byte
            outcome.connected_after = 0.0
            until = outcome.start + limit
            writer = asyncio.create_task(_send_slowly(loop, sock, HEAD, interval, done))
        elif kind != "silent":
            raise ValueError(f"unknown slow connection kind {kind!r}")
        await _read_until_close(loop, sock, outcome, until)
        return outcome
    finally:
        done.set()
        if writer is not None:
            await writer
        sock.close()


def mix(count: int) -> list[str]:
    """``count`` kinds, in proportions 3 silent : 3 partial : 3 trickle : 1 keepalive, interleaved."""
    pattern = ["silent", "partial", "trickle"] * 3 + ["keepalive"]
    return [pattern[i % len(pattern)] for i in range(count)]


async def slow_crowd(port: int, kinds: list[str], limit: float, interval: float = 0.4,
                     pause: float = 0.5) -> list[Outcome]:
    """All of ``kinds`` at once against one port (connects in batches so the listen backlog holds)."""
    tasks: list[asyncio.Task[Outcome]] = []
    for start in range(0, len(kinds), 100):
        for kind in kinds[start:start + 100]:
            tasks.append(asyncio.create_task(slow_connection(port, kind, limit, interval, pause)))
        await asyncio.sleep(0)  # let this batch connect before the next one
    return list(await asyncio.gather(*tasks))
