"""A scriptable raw HTTP/1.1 upstream for IO tests: the request path picks the answer.

Runs in a thread of the test process on 127.0.0.1, counts the TCP connections it accepts and
records every request head it reads, so tests can assert what the proxy did on the wire
(keep-alive reuse, retries). Answers are written byte for byte, so malformed ones are possible.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Self

from shadow.runner import free_ports

BIG = 64 * 1024 * 1024
Answer = Callable[[socket.socket, bytes], bool]  # write the answer; return False to close


def _read_request(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One request head (its body, by Content-Length, is read and dropped); None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    del buf[:length]
    return head


def _path(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode("latin-1").split("?")[0]


def _ok(body: bytes, keepalive: bool = True) -> bytes:
    conn = b"" if keepalive else b"Connection: close\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), conn, body)


class FakeUpstream:
    """``with FakeUpstream() as up:`` serves on ``up.port`` until the block ends."""

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay  # how long /slow waits before answering
        self.connections = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._drop_next: set[socket.socket] = set()  # connections that close on their next request
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                with outer._lock:
                    outer.connections += 1
                    outer._socks.add(sock)
                try:
                    buf = bytearray()
                    while True:
                        head = _read_request(sock, buf)
                        if head is None:
                            return
                        with outer._lock:
                            outer.requests.append(head)
                        if not outer.answer(sock, head):
                            return
                except OSError:
                    return
                finally:
                    with outer._lock:
                        outer._socks.discard(sock)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def answer(self, sock: socket.socket, head: bytes) -> bool:
        path = _path(head)
        is_head = head.startswith(b"HEAD ")
        if sock in self._drop_next:  # like a peer whose keepalive_timeout fired just now
            self._drop_next.discard(sock)
            return False
        if path == "/then-drop":  # answer keep-alive, then close when the next request comes
            self._drop_next.add(sock)
            sock.sendall(_ok(b"then drop\n"))
            return True
        if path == "/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello ", b"chunked ", b"world\n"):
                time.sleep(0.02)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
            return True
        if path == "/slow":
            time.sleep(self.delay)
            sock.sendall(_ok(b"slow answer\n"))
            return True
        if path == "/close":  # an HTTP/1.0-style body that ends with the connection
            sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close\n")
            return False
        if path == "/truncated":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            return False
        if path == "/bad-header":
            sock.sendall(b"HTTP/1.1 200 OK\r\nBroken header line\r\n\r\n")
            return False
        if path == "/hang":  # never answers: the proxy's read timeout fires
            time.sleep(self.delay)
            return False
        if path == "/reset":
            return False
        if path == "/big":  # BIG bytes, for flow control: the proxy must not buffer them all
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
            piece = b"b" * 65536
            for _ in range(BIG // len(piece)):
                sock.sendall(piece)
            return True
        if path == "/no-keepalive":
            sock.sendall(_ok(b"once\n", keepalive=False))
            return False
        body = b"hello from upstream\n"
        if is_head:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body))
            return True
        sock.sendall(_ok(body))
        return True


def free_port() -> int:
    return free_ports(1)[0]  # (below the ephemeral range: shadow/runner.py)
