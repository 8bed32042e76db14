"""reset_timedout_connection against real nginx (translator/client.py -> ClientConfig, applied in
newproxy/http/h1.py's timer).

nginx sets SO_LINGER 0 before closing a connection whose *request* timed out (c->timedout, in
ngx_http_free_request): a head begun but not finished (client_header_timeout), a body
(client_body_timeout), an answer the client does not read (send_timeout). A connection with no
request in progress (nothing read yet, or idle between kept-alive requests) is closed with a FIN even
with the directive on. Every case runs on both targets at the same moment, with the directive on and
off; compared: what the client received (normalised), whether the close was a reset (ECONNRESET) or
an orderly EOF, and when (within 0.5 s of each other). Over TLS the same, plus the close_notify
nginx sends when it closes an idle connection (and not when it drops a timed-out one).
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

CONF = """
events {}
http {
    %s
    client_header_timeout 1s;
    client_body_timeout 1s;
    keepalive_timeout 1s;
    send_timeout 1s;
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name t.test;
        root %s;
        location = /r { return 200 "r\\n"; }
        location /p { proxy_pass http://app; }  # reads the whole body first (client_body_timeout)
    }
}
"""
BIG = 48 * 1024 * 1024  # more than the loopback socket buffers hold, so the answer stalls
R = b"GET /r HTTP/1.1\r\nHost: t.test\r\n\r\n"
# name -> (what to send: (at seconds, bytes)..., seconds before the client starts reading)
CASES: dict[str, tuple[list[tuple[float, bytes]], float]] = {
    "idle": ([], 0.0),
    "partial line": ([(0.0, b"GET /r HT")], 0.0),
    "empty lines only": ([(0.0, b"\r\n\r\n")], 0.0),  # nginx skips them, but a request has begun
    # Bytes every 0.2 s up to 0.8 s, then none until 2 s: a byte that reaches a socket as it is
    # closed makes the kernel send RST whatever the server chose, so none is sent near the
    # 1 s timeout (nor within the 0.5 s a loaded machine may add to it).
    "trickled head": ([(0.2 * i if i < 5 else 1.0 + 0.2 * i, R[i:i + 1]) for i in range(12)], 0.0),
    "kept alive, idle": ([(0.0, R)], 0.0),
    "kept alive, then partial": ([(0.0, R), (0.3, b"GET /r HTTP/1.1\r\nHo")], 0.0),
    "body": ([(0.0, b"POST /p HTTP/1.1\r\nHost: t.test\r\nContent-Length: 10\r\n\r\nabc")], 0.0),
    "unread answer": ([(0.0, b"GET /big HTTP/1.1\r\nHost: t.test\r\n\r\n")], 2.5),
}
_NOISE = re.compile(rb"(Date|Server|Last-Modified|ETag): [^\r]*")

Outcome = tuple[bytes, str, float | None]  # received (head only for /big), "RST"/"EOF"/"", close time


async def _probe(port: int, steps: list[tuple[float, bytes]], read_after: float, limit: float = 5.0) -> Outcome:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a stalled answer stalls early
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    start = loop.time()

    async def send() -> None:
        for at, data in steps:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            try:
                await loop.sock_sendall(sock, data)
            except OSError:
                return

    sender = asyncio.create_task(send())
    await asyncio.sleep(read_after)
    received, how, closed = b"", "", None
    try:
        while loop.time() - start < limit:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), start + limit - loop.time())
            except TimeoutError:
                break
            except ConnectionResetError:
                how, closed = "RST", loop.time() - start
                break
            if not chunk:
                how, closed = "EOF", loop.time() - start
                break
            received += chunk
    finally:
        sender.cancel()
        sock.close()
    if b"\r\n\r\n" in received and received.startswith(b"HTTP/1.1 200 OK\r\nServer: ") and b"/big" in steps[0][1]:
        received = received.split(b"\r\n\r\n", 1)[0]  # how much of the body got through varies
    return _NOISE.sub(b"", received), how, closed


def _run(tmp_path: Path, reset: bool) -> dict[str, tuple[Outcome, Outcome]]:
    """Every case on both targets; the access log lines of each target are put under "log"."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    with open(root / "big", "wb") as big:
        big.truncate(BIG)
    path = tmp_path / "nginx.conf"
    path.write_text(CONF % ("reset_timedout_connection on;" if reset else "", root))
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / ("run-on" if reset else "run-off"))) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]

        async def both() -> dict[str, tuple[Outcome, Outcome]]:
            names = list(CASES)
            got = await asyncio.gather(*(_probe(port, *CASES[name]) for name in names for port in ports))
            return {name: (got[2 * i], got[2 * i + 1]) for i, name in enumerate(names)}

        outcomes = asyncio.run(both())
    run = tmp_path / ("run-on" if reset else "run-off")
    logs = [(run / name / "access.log").read_bytes() for name in ("nginx", "newproxy")]
    outcomes["log"] = ((logs[0], "", None), (logs[1], "", None))
    return outcomes


# What nginx does (asserted on nginx too, so that the comparison cannot pass on two empty answers).
EXPECTED_ON = {"idle": "EOF", "partial line": "RST", "empty lines only": "RST", "trickled head": "RST", "kept alive, idle": "EOF",
               "kept alive, then partial": "RST", "body": "RST", "unread answer": "RST"}


@pytest.mark.parametrize("reset", [True, False], ids=["on", "off"])
def test_reset_timedout_connection_like_nginx(tmp_path: Path, reset: bool) -> None:
    outcomes = _run(tmp_path, reset)
    # A timed-out body is logged 408, as nginx does (timed-out heads: tests/test_differential_cut_head_log.py).
    logs = [[re.sub(rb"\[[^]]*\]", b"", line) for line in log[0].splitlines() if b" 408 " in line and b"POST" in line]
            for log in outcomes.pop("log")]
    assert logs[0] == logs[1] == [b'127.0.0.1 - -  "POST /p HTTP/1.1" 408 0 "-" "-"'], logs
    for name, (nginx, newproxy) in outcomes.items():
        assert nginx[0] == newproxy[0], (name, nginx[0][:300], newproxy[0][:300])
        assert nginx[1] == (EXPECTED_ON[name] if reset else "EOF"), (name, nginx)
        assert newproxy[1] == nginx[1], (name, "nginx", nginx[1:], "newproxy", newproxy[1:])
        if name != "unread answer":  # read from 2.5 s on: both closes are seen then
            assert nginx[2] is not None and newproxy[2] is not None and abs(nginx[2] - newproxy[2]) <= 0.5, \
                (name, nginx[2], newproxy[2])
            assert min(nginx[2], newproxy[2]) >= 0.9, (name, nginx[2], newproxy[2])


TLS_CONF = """
events {}
http {
    %s
    client_header_timeout 1s;
    keepalive_timeout 1s;
    server {
        listen 8443 ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location = /r { return 200 "r\\n"; }
    }
}
"""


def _tls_probe(port: int, data: bytes) -> tuple[str, float | None]:
    """A TLS handshake, then ``data``, then read until the server closes: how ("close_notify": an
    orderly TLS close; "RST"; or the SSL error for a TCP close without close_notify, where Python
    cannot tell a reset from a FIN), and when (seconds)."""
    import ssl
    import time

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="t.test", suppress_ragged_eofs=False) as sock:
        start = time.monotonic()
        if data:
            sock.sendall(data)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return "close_notify", time.monotonic() - start
        except ConnectionResetError:
            return "RST", time.monotonic() - start
        except ssl.SSLError as exc:
            return exc.strerror or repr(exc), time.monotonic() - start
        except TimeoutError:
            return "", None


@pytest.mark.parametrize("reset", [True, False], ids=["on", "off"])
def test_reset_timedout_connection_over_tls_like_nginx(tmp_path: Path, reset: bool) -> None:
    from tests.test_differential_tls import _cert

    path = tmp_path / "nginx.conf"
    path.write_text(TLS_CONF % ("reset_timedout_connection on;" if reset else "", *_cert(tmp_path, "t", "rsa")))
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]

        async def both() -> list[tuple[str, float | None]]:
            cases = [b"", b"GET /r HT", b"GET /r HTTP/1.1\r\nHost: t.test\r\n\r\n"]
            return list(await asyncio.gather(*(asyncio.to_thread(_tls_probe, port, data)
                                               for data in cases for port in ports)))

        got = asyncio.run(both())
    hows = [how for how, _ in got]
    # After the handshake: idle, and kept alive after an answer -> close_notify; a partial head ->
    # no close_notify (nginx's quiet shutdown of a timed-out connection), then the reset.
    idle, partial, kept = hows[0:2], hows[2:4], hows[4:6]
    assert idle == ["close_notify"] * 2 and kept == ["close_notify"] * 2, got
    assert partial[0] == partial[1] and partial[0] != "close_notify", got
    # OpenSSL names a FIN without close_notify UNEXPECTED_EOF_WHILE_READING; a reset is a bare syscall EOF.
    assert ("UNEXPECTED_EOF" not in partial[0]) == reset, got
    for nginx, newproxy in zip(got[::2], got[1::2]):
        assert nginx[1] is not None and newproxy[1] is not None and abs(nginx[1] - newproxy[1]) <= 0.5, got


def test_translation_of_reset_timedout_connection(tmp_path: Path) -> None:
    """One value for the process: the http-level one; a server or location with another is a caveat."""
    from translator.translate import translate

    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n  reset_timedout_connection on;\n  server {\n    listen 8080;\n"
                    "    location /a { reset_timedout_connection off; return 200; }\n"
                    "    location /b { reset_timedout_connection on; return 200; }\n  }\n}\n")
    translation = translate(parse_config(str(path)))
    assert translation.config.client.reset_timedout_connection is True
    notes = [(g.line, g.level, g.reason) for g in translation.gaps if g.directive == "reset_timedout_connection"]
    reason = ("newproxy applies one value for the whole process (reset timedout connection on, from the http "
              "level or nginx's default); this one is not applied here")
    assert notes == [(6, "caveat", reason)], notes
    path.write_text("events {}\nhttp {\n  server {\n    listen 8080;\n    return 200;\n  }\n}\n")
    assert translate(parse_config(str(path))).config.client.reset_timedout_connection is False
