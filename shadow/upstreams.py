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
``/__http10/`` answers with an ``HTTP/1.0`` status line (and ``Connection: keep-alive`` while the
connection is kept): a proxy must not reuse that connection, keep-alive or not (nginx closes it).
``/__upgrade/`` answers ``101 Switching Protocols`` (``Upgrade``: the request's, or "websocket";
``Connection: upgrade``) and then echoes every read back as ``ECHO(`` bytes ``)``, so the
direction of each byte is visible; a read containing ``__bye__`` is echoed, then the upstream
closes first; after a read containing ``__stall__`` it reads nothing more (proxy_send_timeout);
after one containing ``__rst__`` (echoed) it resets the connection.
It is how the WebSocket/Upgrade tunnel is tested (tests/test_differential_websocket.py).
``/__reads/`` records the request as soon as its head is read, then each read of its body as it
comes (``reads``: the time and the raw bytes, the head first; an empty one: the proxy closed), and answers
once the body is all in (by Content-Length, or the last chunk): how a test sees whether a proxy sends
a body upstream while the client still sends it (proxy_request_buffering off). With it,
``/__early/`` answers at the head, before reading the body, ``/__close/`` closes once the body
is in, without answering, and ``/__delay/MS`` (before the answer) and ``/__slowbody/MS`` (after
half of it) wait, noting when the proxy closes the connection meanwhile (a client that went away).
``/__noread/`` records the request head and reads nothing more, not even the body, holding the
connection open (a stalled reader: proxy_send_timeout while the request body is sent).
``/__big/KIB`` answers KIB KiB (up to 65536) of numbered 16-byte lines instead of the echo, so that a
body moved, lost or repeated anywhere shows (proxy_buffering and a slow client); each record notes
when its answer was all written (``answered``).

Faults (for proxy_next_upstream, tests/test_differential_next_upstream.py): ``/__reset/N`` sends the
answer's first N bytes (0: none) then resets the connection (RST); ``/__close/`` closes it before
answering; ``/__slowhead/MS`` waits MS after the status line, ``/__slowbody/MS`` after half the body;
``/__badheader/`` adds a header with a NUL (an invalid header to nginx and newproxy); ``/__garbage/``
answers without a status line. ``/__at/PORT/MARKER`` scopes one marker (``/__name`` or
``/__name/DIGITS``) to the upstream whose logical name ends in ``:PORT``: the others ignore it, so
one request makes a chosen peer of a group fail.

An upstream whose logical name is ``unix:PATH`` listens on a unix socket (in a directory of the
pool's own), so unix socket peers are really connected to over AF_UNIX; one made with ``tls=``
(``TlsUpstream``) speaks TLS and adds to its echo a ``tls`` object: the SNI it got (null: none), the
protocol, the cipher, the client certificate's CN (null: none), checked against ``client_ca``, and
whether the proxy resumed a session (a ticket, or an id from the context's cache).

All upstreams of a run live in one ``UpstreamPool``: a background thread with its own event loop.
The listening sockets are bound and listening before ``add`` returns, so the address is usable at
once (the kernel queues connections until the loop accepts them). Recordings are appended from the
loop thread and drained from the caller's thread under a lock.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import uvloop

from shadow.http1 import FramingError, Headers, has_token, header_values, parse_head, read_body, read_head


_STATUS_MARKER = re.compile(r"/__status/([45]\d\d)(?!\d)")
_DELAY_MARKER = re.compile(r"/__delay/(\d{1,4})(?!\d)")
_HEADER_MARKER = re.compile(r"/__header/([A-Za-z0-9-]+)=([^/?]*)")
_AT_MARKER = re.compile(r"/__at/(\d+)(/__[a-z]+(?:/\d+)?)")
_RESET_MARKER = re.compile(r"/__reset/(\d{1,5})(?!\d)")
_SLOW_HEAD_MARKER = re.compile(r"/__slowhead/(\d{1,4})(?!\d)")
_SLOW_BODY_MARKER = re.compile(r"/__slowbody/(\d{1,4})(?!\d)")
_BIG_MARKER = re.compile(r"/__big/(\d{1,5})(?!\d)")


@functools.lru_cache(maxsize=4)
def big_body(kib: int) -> bytes:
    """``/__big/KIB``'s body: 16-byte lines numbering themselves (no two KiB alike)."""
    return b"".join(b"%015x\n" % line for line in range(kib * 64))


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
class TlsUpstream:
    """A recording upstream that speaks TLS (for ``proxy_pass https://``): its certificate chain and
    key, and the CA whose client certificates it asks for and checks (None: none asked)."""

    certificate: str
    key: str
    client_ca: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        context.set_ciphers("DEFAULT")
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(self.client_ca)
        return context


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
    # Over TLS (a recording upstream made with ``tls=``): the SNI the proxy sent (None: none), the
    # protocol, cipher, the client certificate's subject CN (None: none presented) and "resumed".
    tls: dict[str, Any] | None = None
    # When the whole answer had been handed to the kernel (time.monotonic(), appended once by the
    # upstream's loop): how a test sees whether a proxy read the answer on while its client did not.
    answered: list[float] = field(default_factory=list, compare=False, repr=False)
    # ``/__reads/``: the head, then each read of the body as it came (time.monotonic(), raw bytes;
    # b"": the proxy closed the connection).
    reads: list[tuple[float, bytes]] = field(default_factory=list, compare=False, repr=False)

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
    if record.tls is not None:  # in the answer, so the comparison sees how each proxy spoke TLS
        echo["tls"] = record.tls
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
    tls: ssl.SSLContext | None = None  # a TLS server (an https:// upstream), else plain HTTP
    _sni: dict[int, str] = field(default_factory=dict)  # id(SSLObject) -> the SNI it got

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def hostport(self) -> str:
        """"127.0.0.1:PORT", or "unix:PATH" for a unix socket upstream (as nginx writes both)."""
        if self.sock.family == socket.AF_UNIX:
            return f"unix:{self.sock.getsockname()}"
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
        if self.tls is not None:
            self.tls.sni_callback = self._got_sni
        if self.sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._handle, sock=self.sock, limit=1 << 20, ssl=self.tls)
        else:
            self._server = await asyncio.start_server(self._handle, sock=self.sock, limit=1 << 20, ssl=self.tls)

    def _got_sni(self, sslobj: Any, name: str | None, _context: ssl.SSLContext) -> None:
        if name is not None:
            if len(self._sni) > 1000:  # handshakes that failed never collect theirs
                self._sni.clear()
            self._sni[id(sslobj)] = name

    def _tls_info(self, writer: asyncio.StreamWriter) -> dict[str, Any] | None:
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is None:
            return None
        cert = sslobj.getpeercert() or {}
        cn = next((value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"), None)
        cipher = sslobj.cipher()
        return {"sni": self._sni.pop(id(sslobj), None), "protocol": sslobj.version(),
                "cipher": cipher[0] if cipher else None, "client_cert": cn, "resumed": sslobj.session_reused}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = self._tls_info(writer) if self.tls is not None else None
        try:
            for connection_seq in itertools.count(1):
                head = await read_head(reader)
                if not head:
                    break
                self._inflight += 1
                try:
                    keep_alive = await self._one_request(head, connection_seq, reader, writer, tls)
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
        self, head: bytes, connection_seq: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        tls: dict[str, Any] | None = None,
    ) -> bool:
        start, headers = parse_head(head)
        if len(start) != 3 or not start[2].startswith("HTTP/"):
            raise FramingError(f"bad request line {start!r}")
        method, uri, version = start[0], start[1], start[2][5:]
        if "/__noread/" in uri:  # a stalled reader: the proxy's writes of the body back up (proxy_send_timeout)
            with self._lock:
                self._records.append(RecordedRequest(
                    upstream=self.name, raw=head, method=method, uri=uri, version=version, headers=headers, body=b"",
                    connection_seq=connection_seq, seq=next(self._seq) if self._seq is not None else 0, tls=tls))
            await asyncio.sleep(60)  # until the pool stops (the proxy's close is not seen: nothing is read)
            return False
        if "/__reads/" in uri:
            return await self._read_as_it_comes(head, (method, uri, version), headers, connection_seq,
                                                reader, writer, tls)
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
            tls=tls,
        )
        with self._lock:
            self._records.append(record)
        if version == "1.1":
            keep_alive = not has_token(headers, "Connection", "close")
        else:
            keep_alive = has_token(headers, "Connection", "keep-alive")
        uri = self._scoped(uri)  # the markers that apply to this upstream (the record keeps the URI)
        if "/__upgrade/" in uri:
            await self._upgrade(headers, reader, writer)
            return False
        if "/__close/" in uri:  # FIN before any answer: "upstream prematurely closed connection"
            return False
        delay = _DELAY_MARKER.search(uri)
        if delay:
            await asyncio.sleep(int(delay.group(1)) / 1000)
        big = _BIG_MARKER.search(uri)
        payload = big_body(min(int(big.group(1)), 65536)) if big else echo_body(record)
        marker = _STATUS_MARKER.search(uri)
        status = int(marker.group(1)) if marker else self.status
        chunked = "/__chunked/" in uri
        http10 = "/__http10/" in uri
        lines = [
            f"HTTP/{'1.0' if http10 else '1.1'} {status} {'OK' if status == 200 else 'Status'}",
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
        elif version != "1.1" or http10:
            lines.append("Connection: keep-alive")
        if "/__badheader/" in uri:  # a NUL in a header value: both proxies' "invalid header"
            lines.append("X-Bad: a\x00b")
        response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        data = response if method == "HEAD" else response + payload
        if "/__garbage/" in uri:  # no status line at all
            data = b"garbage, not HTTP\r\n\r\n" + payload
        keep_alive = await self._send_faulty(uri, data, len(response), writer, keep_alive)
        record.answered.append(time.monotonic())
        return keep_alive

    async def _read_as_it_comes(
        self, head: bytes, line: tuple[str, str, str], headers: Headers, connection_seq: int,
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: dict[str, Any] | None,
    ) -> bool:
        """``/__reads/``: the record first, then the body's reads as they come (see the module's doc)."""
        method, uri, version = line
        record = RecordedRequest(upstream=self.name, raw=head, method=method, uri=uri, version=version,
                                 headers=headers, body=b"", connection_seq=connection_seq,
                                 seq=next(self._seq) if self._seq is not None else 0, tls=tls)
        record.reads.append((time.monotonic(), head))
        with self._lock:
            self._records.append(record)
        keep_alive = not has_token(headers, "Connection", "close") if version == "1.1" \
            else has_token(headers, "Connection", "keep-alive")
        chunked = has_token(headers, "Transfer-Encoding", "chunked")
        lengths = header_values(headers, "Content-Length")
        length = int(lengths[0]) if lengths and not chunked else 0
        early = "/__early/" in uri
        if early:
            await self._answer_reads(record, reader, writer, keep_alive)
        raw = b""
        while not (raw.endswith(b"0\r\n\r\n") if chunked else len(raw) >= length):
            data = await reader.read(65536)
            record.reads.append((time.monotonic(), data))
            if not data:
                return False
            raw += data
        if "/__close/" in uri:
            return False
        if not early:
            delay = _DELAY_MARKER.search(uri)
            if delay and await self._closed_within(reader, record, int(delay.group(1)) / 1000):
                return False
            if not await self._answer_reads(record, reader, writer, keep_alive):
                return False
        return keep_alive

    @staticmethod
    async def _closed_within(reader: asyncio.StreamReader, record: RecordedRequest, seconds: float) -> bool:
        """Wait ``seconds``, or until the proxy closes the connection (recorded as an empty read)."""
        try:
            data = await asyncio.wait_for(reader.read(65536), seconds)
        except TimeoutError:
            return False
        record.reads.append((time.monotonic(), data))
        return not data

    async def _answer_reads(self, record: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            keep_alive: bool) -> bool:
        """A ``/__reads/`` request's answer: the body bytes read so far, counted; with
        ``/__slowbody/MS``, MS after the first half of it (False: the proxy closed meanwhile)."""
        payload = b"read %d bytes of the body" % sum(len(data) for _, data in record.reads[1:])
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s" % (
            len(payload), b"" if keep_alive else b"Connection: close\r\n", payload)
        slow = _SLOW_BODY_MARKER.search(record.uri)
        if slow:
            cut = len(answer) - len(payload) // 2
            writer.write(answer[:cut])
            await writer.drain()
            if await self._closed_within(reader, record, int(slow.group(1)) / 1000):
                return False
            answer = answer[cut:]
        writer.write(answer)
        await writer.drain()
        record.answered.append(time.monotonic())
        return True

    def _scoped(self, uri: str) -> str:
        """``/__at/PORT/MARKER`` applies MARKER only on the upstream whose logical name ends in
        ``:PORT`` (the others see neither): how one request makes a chosen peer of a group fail."""
        if "/__at/" not in uri:
            return uri
        own = self.name.rpartition(":")[2]
        return _AT_MARKER.sub(lambda m: m.group(2) if m.group(1) == own else "", uri)

    async def _send_faulty(self, uri: str, data: bytes, head_len: int, writer: asyncio.StreamWriter,
                           keep_alive: bool) -> bool:
        """Write ``data`` (head then body), as the fault markers say: ``/__reset/N`` sends the
        first N bytes then resets the connection (RST); ``/__slowhead/MS`` sends the status line,
        waits MS, then the rest; ``/__slowbody/MS`` sends the head and half the body, waits MS,
        then the rest."""
        reset = _RESET_MARKER.search(uri)
        slow_head = _SLOW_HEAD_MARKER.search(uri)
        slow_body = _SLOW_BODY_MARKER.search(uri)
        if reset:
            if int(reset.group(1)):
                writer.write(data[:int(reset.group(1))])
                await writer.drain()
                await asyncio.sleep(0.02)  # let the bytes go out before the RST
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        split = 0
        if slow_head:
            split, wait = data.find(b"\r\n") + 2, int(slow_head.group(1))
        elif slow_body:
            split, wait = head_len + (len(data) - head_len) // 2, int(slow_body.group(1))
        if split:
            writer.write(data[:split])
            await writer.drain()
            await asyncio.sleep(wait / 1000)
            data = data[split:]
        writer.write(data)
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
            if b"__stall__" in data:  # stop reading: the proxy's writes back up (proxy_send_timeout)
                await asyncio.sleep(60)
                return
            if b"__rst__" in data:  # after the echo, a reset (RST) in the middle of the tunnel
                await asyncio.sleep(0.02)  # let the echo go out first
                sock = writer.get_extra_info("socket")
                if sock is not None and sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
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
        self._unix_dir: str | None = None  # where unix socket upstreams listen (made on first use)

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
        if self._unix_dir is not None:
            shutil.rmtree(self._unix_dir, ignore_errors=True)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    def add(self, name: str, *, refuse: bool = False, status: int = 200,
            bind: tuple[str, int] = ("127.0.0.1", 0), tls: TlsUpstream | None = None) -> RecordingUpstream:
        """A new upstream for ``name`` on a free 127.0.0.1 port, or on ``bind`` (or the existing one
        of that name); over TLS with ``tls``. Raises OSError when ``bind`` cannot be bound."""
        if name in self.upstreams:
            return self.upstreams[name]
        if name.startswith("unix:"):
            # A unix socket upstream listens on a unix socket too (in the pool's own directory; the
            # path stays short: sun_path holds 107 bytes), so both proxies' unix paths are exercised.
            if self._unix_dir is None:
                self._unix_dir = tempfile.mkdtemp(prefix="shadow-u")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            bind_to: Any = os.path.join(self._unix_dir, f"{len(self.upstreams)}.sock")
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in bind[0] else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bind_to = bind
        try:
            sock.bind(bind_to)
        except OSError:
            sock.close()
            raise
        if not refuse:
            sock.listen(128)
        # A refusing upstream keeps its port bound but never listens: connects get RST, and no
        # other process can take the port meanwhile.
        upstream = RecordingUpstream(name=name, sock=sock, refuse=refuse, status=status, _seq=self._seq,
                                     tls=tls.context() if tls is not None else None)
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
