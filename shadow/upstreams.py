"""Recording upstreams: stand-ins for every backend of a config, recording what each proxy forwarded.

Each ``RecordingUpstream`` listens on 127.0.0.1 on a free port, records every request byte for byte
(method, raw URI, version, headers in order with their case, decoded body) and answers
deterministically with a JSON echo of the request, so a difference upstream also shows in what the
client gets back. HTTP/1.1 requests without ``Connection: close`` (and HTTP/1.0 ones asking for
keep-alive) keep the connection open, so proxies' upstream keep-alive pools are exercised.
A URI containing ``/__status/NNN`` (NNN from 400 to 599) is answered with that status, the same
echo as body: how tests make a backend fail deterministically (proxy_intercept_errors, next_upstream);
``/__delay/MS`` makes it wait MS milliseconds (up to 9999) before answering (proxy_read_timeout, 504).
``/__header/NAME=VALUE`` (repeatable; VALUE percent-encoded, up to the next "/" or "?") adds that
header to the answer, a Content-Type one replacing the echo's (empty: no Content-Type): how the gzip
tests give a response Cache-Control, Expires, ETag, Content-Encoding or another type; ``__self__``
in VALUE becomes this upstream's own host:port (a Location as the backend would write it, for
proxy_redirect; repeated Set-Cookie markers for proxy_cookie_*).
``/__cache/`` adds caching headers to the answer (``CACHE_HEADERS``: two Cache-Control, Expires,
Last-Modified, ETag), ``/__chunked/`` sends the echo with chunked encoding: how the headers filter
(expires replacing an upstream's Expires, add_trailer on a chunked body) is tested.
``/__upgrade/`` answers ``101 Switching Protocols`` (``Upgrade``: the request's, or "websocket";
``Connection: upgrade``) and then echoes every read back as ``ECHO(`` bytes ``)``, so the
direction of each byte is visible; a read containing ``__bye__`` is echoed, then the upstream
closes first. It is how the WebSocket/Upgrade tunnel is tested (tests/test_differential_websocket.py).

All upstreams of a run live in one ``UpstreamPool``: a background thread with its own event loop.
The listening sockets are bound and listening before ``add`` returns, so the address is usable at
once (the kernel queues connections until the loop accepts them). Recordings are appended from the
loop thread and drained from the caller's thread under a lock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvloop

from shadow.http1 import FramingError, Headers, has_token, parse_head, read_body, read_head


_STATUS_MARKER = re.compile(r"/__status/([45]\d\d)(?!\d)")
_DELAY_MARKER = re.compile(r"/__delay/(\d{1,4})(?!\d)")
_HEADER_MARKER = re.compile(r"/__header/([A-Za-z0-9-]+)=([^/?]*)")


def header_markers(uri: str) -> list[tuple[str, str]]:
    """The headers ``/__header/NAME=VALUE`` markers ask for, in order (VALUE percent-decoded)."""
    return [(m.group(1), unquote(m.group(2))) for m in _HEADER_MARKER.finditer(uri)]
CACHE_HEADERS = (
    "Cache-Control: private",
    "Expires: Thu, 01 Jan 2026 00:00:00 GMT",
    "X-Between: 1",
    "Cache-Control: no-transform",
    "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT",
    'ETag: "upstream"',
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as an upstream received it."""

    upstream: str  # logical name (the address written in the original config)
    raw: bytes  # head and body exactly as received (chunk framing included)
    method: str
    uri: str
    version: str  # "1.0", "1.1"
    headers: Headers
    body: bytes  # decoded payload
    connection_seq: int  # 1 for the first request on its connection, 2 for the next, ...
    seq: int = 0  # arrival order across the whole pool

    def to_json(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "method": self.method,
            "uri": self.uri,
            "version": self.version,
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("latin-1"),
            "connection_seq": self.connection_seq,
        }


def echo_body(record: RecordedRequest) -> bytes:
    """The deterministic answer body: what the upstream saw, as JSON."""
    echo = {
        "upstream": record.upstream,
        "method": record.method,
        "uri": record.uri,
        "version": record.version,
        "headers": [list(h) for h in record.headers],
        "body": record.body.decode("latin-1"),
    }
    return json.dumps(echo).encode()


@dataclass
class RecordingUpstream:
    """One stand-in backend. ``refuse``: bound but not listening, so connects get ECONNREFUSED (502 cases)."""

    name: str
    sock: socket.socket
    refuse: bool = False
    status: int = 200
    _records: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: int = 0
    _server: asyncio.Server | None = None
    _seq: Any = None  # the pool's shared counter

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def hostport(self) -> str:
        host, port = self.address
        return f"{host}:{port}"

    @property
    def inflight(self) -> int:
        return self._inflight

    def take(self) -> list[RecordedRequest]:
        """Every request recorded since the last ``take``, in arrival order."""
        with self._lock:
            records, self._records = self._records, []
        return records

    async def serve(self) -> None:
        if self.refuse:
            return
        self._server = await asyncio.start_server(self._handle, sock=self.sock, limit=1 << 20)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for connection_seq in itertools.count(1):
                head = await read_head(reader)
                if not head:
                    break
                self._inflight += 1
                try:
                    keep_alive = await self._one_request(head, connection_seq, reader, writer)
                finally:
                    self._inflight -= 1
                if not keep_alive:
                    break
        except (FramingError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the proxy gave up on this connection; nothing to answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _one_request(
        self, head: bytes, connection_seq: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        start, headers = parse_head(head)
        if len(start) != 3 or not start[2].startswith("HTTP/"):
            raise FramingError(f"bad request line {start!r}")
        method, uri, version = start[0], start[1], start[2][5:]
        raw_body, body = await read_body(reader, headers, until_close=False)
        record = RecordedRequest(
            upstream=self.name,
            raw=head + raw_body,
            method=method,
            uri=uri,
            version=version,
            headers=headers,
            body=body,
            connection_seq=connection_seq,
            seq=next(self._seq) if self._seq is not None else 0,
        )
        with self._lock:
            self._records.append(record)
        if version == "1.1":
            keep_alive = not has_token(headers, "Connection", "close")
        else:
            keep_alive = has_token(headers, "Connection", "keep-alive")
        if "/__upgrade/" in uri:
            await self._upgrade(headers, reader, writer)
            return False
        delay = _DELAY_MARKER.search(uri)
        if delay:
            await asyncio.sleep(int(delay.group(1)) / 1000)
        payload = echo_body(record)
        marker = _STATUS_MARKER.search(uri)
        status = int(marker.group(1)) if marker else self.status
        chunked = "/__chunked/" in uri
        lines = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(payload)}",
        ]
        if "/__cache/" in uri:
            lines.extend(CACHE_HEADERS)
        for name, value in header_markers(uri):
            value = value.replace("__self__", self.hostport)  # e.g. a Location naming this upstream
            if name.lower() == "content-type":  # replaces the echo's own (an empty value: none at all)
                lines = [line for line in lines if not line.startswith("Content-Type:")]
                if not value:
                    continue
            lines.append(f"{name}: {value}")
        if chunked:
            payload = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
        if not keep_alive:
            lines.append("Connection: close")
        elif version != "1.1":
            lines.append("Connection: keep-alive")
        response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(response if method == "HEAD" else response + payload)
        await writer.drain()
        return keep_alive


    async def _upgrade(self, headers: Headers, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``/__upgrade/`` marker: switch protocols, then echo each read, framed, until EOF."""
        proto = next((v for n, v in headers if n.lower() == "upgrade"), "websocket")
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: upgrade\r\n\r\n".encode("latin-1"))
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(b"ECHO(" + data + b")")
            await writer.drain()
            if b"__bye__" in data:
                return


class UpstreamPool:
    """Every recording upstream of a run, served by one background event loop thread.

    Use as a context manager; ``add`` may be called before or after entering it.
    """

    def __init__(self) -> None:
        self.upstreams: dict[str, RecordingUpstream] = {}
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UpstreamPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        loop = uvloop.new_event_loop()  # the harness's own overhead: uvloop as in newproxy
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="shadow-upstreams", daemon=True)
        self._thread.start()
        ready.wait(5)
        self._loop = loop
        for upstream in self.upstreams.values():
            self._call(upstream.serve())

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for upstream in self.upstreams.values():
            try:
                asyncio.run_coroutine_threadsafe(upstream.close(), loop).result(5)
            except Exception:  # noqa: BLE001 - stopping must go on whatever one upstream did
                pass

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        except Exception:  # noqa: BLE001
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
        for upstream in self.upstreams.values():
            upstream.sock.close()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    def add(self, name: str, *, refuse: bool = False, status: int = 200,
            bind: tuple[str, int] = ("127.0.0.1", 0)) -> RecordingUpstream:
        """A new upstream for ``name`` on a free 127.0.0.1 port, or on ``bind`` (or the existing one
        of that name). Raises OSError when ``bind`` cannot be bound."""
        if name in self.upstreams:
            return self.upstreams[name]
        sock = socket.socket(socket.AF_INET6 if ":" in bind[0] else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(bind)
        except OSError:
            sock.close()
            raise
        if not refuse:
            sock.listen(128)
        # A refusing upstream keeps its port bound but never listens: connects get RST, and no
        # other process can take the port meanwhile.
        upstream = RecordingUpstream(name=name, sock=sock, refuse=refuse, status=status, _seq=self._seq)
        self.upstreams[name] = upstream
        if self._loop is not None:
            self._call(upstream.serve())
        return upstream

    def by_address(self) -> dict[str, str]:
        """actual "127.0.0.1:port" -> logical name."""
        return {u.hostport: name for name, u in self.upstreams.items()}

    def settle(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until no upstream is in the middle of a request."""
        deadline = time.monotonic() + timeout
        while any(u.inflight for u in self.upstreams.values()) and time.monotonic() < deadline:
            time.sleep(0.001)

    def take(self) -> list[RecordedRequest]:
        """Every request recorded by any upstream since the last ``take``, in arrival order."""
        records: list[RecordedRequest] = []
        for upstream in self.upstreams.values():
            records.extend(upstream.take())
        records.sort(key=lambda r: r.seq)
        return records
