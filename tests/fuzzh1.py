"""Fuzzing newproxy's HTTP/1 front end over real sockets: what tests/test_fuzz_h1.py runs in CI and
benchmarks/fuzz_run.py runs for a million requests.

A running newproxy (one worker, nginx config ``CONF``: a return, a proxied location to a second
server of its own, a static alias, a rewrite, all client timeouts short) gets request bytes: a seed
(the raw corpus of shadow/data/h1_corpus.yaml, hand-written malformed requests and their mutations)
mutated at random (bytes flipped, tokens put in, ranges cut or doubled, numbers made huge, the input
cut short or split across writes). Every connection must be closed by the server within ``BOUND``
seconds of the client's last byte (a half-sent head runs into client_header_timeout, a kept-alive
one into keepalive_timeout): none may hang. A crash shows as a refused connection or a new worker pid;
a caught bug as "request processing failed" or a traceback in the error log, or a 500 answer.
"""

from __future__ import annotations

import asyncio
import gc
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shadow.h1_corpus import corpus
from shadow.runner import free_ports

BOUND = 3.0  # seconds from the last byte sent to the server's close (timeouts below are 300 ms)
# Past BOUND, how much longer the client waits before calling a connection hung: a close within it is
# "late" (counted, not a failure: a worker starved of CPU on a loaded machine), one after it is a hang
# (the longest legitimate wait is lingering_time, 1 s; the next timeout that could end it is 60 s).
GRACE = 12.0

CONF = """\
pid {tmp}/np.pid;
error_log {tmp}/error.log info;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_header_timeout 300ms;
    client_body_timeout 300ms;
    keepalive_timeout 300ms;
    send_timeout 1s;
    lingering_time 1s;
    lingering_timeout 300ms;
    client_max_body_size 2k;
    upstream back {{ server 127.0.0.1:{back}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        server_name raw.test;
        location / {{ return 200 "ok $request_uri\\n"; }}
        location /p/ {{ proxy_pass http://back/; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location /s/ {{ alias {tmp}/static/; }}
        location ~ ^/r/(.*)$ {{ rewrite ^ /p/$1 last; }}
        location = /x {{ return 301 /y; }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "back $request_uri $http_host $content_length\\n"; }}
    }}
}}
"""

TOKENS = [b"\r\n", b"\n", b"\r", b"\x00", b" ", b"\t", b":", b"\r\n\r\n", b"0\r\n\r\n", b"chunked", b"%", b"%00",
          b"/../", b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5\r\n", b"Content-Length: -1\r\n",
          b"Host: raw.test\r\n", b"Expect: 100-continue\r\n", b"Connection: upgrade\r\nUpgrade: websocket\r\n",
          b"Connection: close\r\n", b"GET /p/a HTTP/1.1\r\nHost: raw.test\r\n\r\n", b"\xff", b"\x80",
          b"ffffffffffffffffffff", b"99999999999999999999", b";ext=1", b"HTTP/1.0", b"HTTP/2.0", b"/s/f.txt"]


def seeds() -> list[bytes]:
    extra = [
        b"GET /p/a?b=c HTTP/1.1\r\nHost: raw.test\r\n\r\n",
        b"POST /p/post HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /p/chunk HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /s/f.txt HTTP/1.1\r\nHost: raw.test\r\nRange: bytes=1-3\r\n\r\n",
        b"GET /r/z HTTP/1.1\r\nHost: raw.test\r\n\r\nGET /x HTTP/1.1\r\nHost: raw.test\r\n\r\n",
        b"GET /p/ws HTTP/1.1\r\nHost: raw.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nxyz",
    ]
    return [case.data for case in corpus()] + extra


def mutate(rng: random.Random, data: bytes) -> bytes:
    """0 to 4 random edits of ``data``."""
    for _ in range(rng.randint(0, 4)):
        pos = rng.randint(0, len(data))
        op = rng.randrange(7)
        if op == 0 and data:
            i = min(pos, len(data) - 1)
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
        elif op == 1:
            data = data[:pos] + rng.choice(TOKENS) + data[pos:]
        elif op == 2:
            data = data[:pos] + data[pos + rng.randint(1, 16):]
        elif op == 3:
            end = min(len(data), pos + rng.randint(1, 64))
            data = data[:end] + data[pos:end] + data[end:]
        elif op == 4:
            data = data[:pos]
        elif op == 5:
            digits = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
            if digits:
                i = rng.choice(digits)
                data = data[:i] + rng.choice([b"99999999999999999999", b"0", b"-", b"00000000001"]) + data[i + 1:]
        else:
            data = data[:pos] + rng.randbytes(rng.randint(1, 8)) + data[pos:]
    return data


def split(rng: random.Random, data: bytes) -> list[bytes]:
    """The bytes as the client writes them: at once, or in 2 or 3 writes."""
    if len(data) < 2 or rng.random() < 0.6:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 2))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


@dataclass
class Exchange:
    sent: bytes
    received: bytes = b""
    closed: bool = False  # the server closed (EOF or RST) within BOUND + GRACE of the last byte
    late: bool = False  # ... but after BOUND
    refused: bool = False  # could not connect: the worker is gone


async def exchange(port: int, pieces: list[bytes], bound: float = BOUND, grace: float = GRACE) -> Exchange:
    loop = asyncio.get_running_loop()
    result = Exchange(b"".join(pieces))
    sock = socket.socket()
    sock.setblocking(False)
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), bound)
        except (TimeoutError, OSError):
            result.refused = True
            return result
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(0.01)
            try:
                await loop.sock_sendall(sock, piece)
            except OSError:
                break  # the server closed on what came first: the read below sees it
        due = loop.time() + bound
        deadline = due + grace
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return result
            except OSError:  # reset
                chunk = b""
            if not chunk:
                result.closed = True
                result.late = loop.time() > due
                return result
            result.received += chunk
    finally:
        sock.close()


@contextmanager
def steady_client() -> Iterator[None]:
    """Freeze the client's heap meanwhile: a full collection of a big test process takes ~0.2 s here,
    and a few of them in a batch delay its bytes past the server's 300 ms client_header_timeout
    (which the server then rightly applies: closed, nothing answered)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def problems(results: list[Exchange]) -> list[str]:
    """What no connection may show, as readable lines (empty: all is well)."""
    found = []
    for r in results:
        if r.refused:
            found.append(f"refused (worker down?) after sending {r.sent[:200]!r}")
        elif not r.closed:
            found.append(f"still open {BOUND + GRACE}s after {r.sent[:200]!r} (got {r.received[:100]!r})")
        elif b"HTTP/1.1 500 " in r.received:
            found.append(f"500 for {r.sent[:200]!r}")
    return found


_MARKERS = ("Traceback", "request processing failed", "Exception in callback", "exception was never retrieved")


def log_problems(*logs: Path) -> list[str]:
    """Lines of the error log and of stderr (where asyncio reports an exception in a callback) that
    show a bug: a traceback, or an exception the front end caught and answered 500 for."""
    found = []
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        found += [line for line in text.splitlines() if any(marker in line for marker in _MARKERS)]
    return found[:20]


def write_static(tmp: Path) -> None:
    static = tmp / "static"
    static.mkdir(exist_ok=True)
    (static / "f.txt").write_bytes(b"static file body\n" * 4)


def free_port() -> int:
    return free_ports(1)[0]  # (below the ephemeral range: shadow/runner.py)
