"""The error-log lines of a bad upstream answer against real nginx 1.22, with what the client gets.

1. ``upstream sent invalid header: "..."``: ngx_http_proxy_process_header quotes the refused header
   line up to the byte ngx_http_parse_header_line stopped at, then that byte in hex
   (newproxy/http/invalidheader.py). The recording upstream's ``/__header/NAME=VALUE`` marker
   (VALUE percent-decoded, so CR/LF make further lines) sends a NUL in a value or a name, a space or
   a tab in a name, a CR that does not end a line (after a value, after spaces, at a line's start),
   a line starting with ":", raw bytes >= 0x80, and a line longer than the 2048 bytes nginx formats
   a log line in (cut there). And values nginx relays though strict llhttp refuses them: a control
   byte, DEL (newproxy/http/upstream.py response_parser). And header lines nginx relays though
   llhttp refuses them: odd bytes in a name, a line without a colon, IIS's duplicate status line
   (skipped) (newproxy/http/lenienthead.py).
2. A reset (RST) from the upstream: before any byte and after part of the head, nginx's ``recv()
   failed (104: Connection reset by peer) while reading response header from upstream`` (a 502);
   after the head, mid-body, ``readv() failed (...) while reading upstream`` with proxy_buffering
   on (the event pipe's readv), ``recv() failed (...)`` with it off; a FIN instead of a RST is
   ``upstream prematurely closed connection``. In an upgraded connection (a WebSocket tunnel), ``recv()
   failed (...) while proxying upgraded connection``.

Each request goes to nginx, then to newproxy, on a connection of its own; compared per request:
the bytes the client got (Date and Server masked) and whether the connection ended with a FIN
or a reset, and the ``[error]``/``[warn]`` lines written meanwhile (time, pid and connection
masked). What nginx wrote is also spelled out, so that a case that stopped writing a line is seen.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator

import pytest

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import StartedTargets, started_targets

CONFIG = """
events {}
http {
    server {
        listen 127.0.0.1:8080;
        server_name faults.test;
        location /b/ { proxy_pass http://127.0.0.1:9601; }
        location /nb/ { proxy_pass http://127.0.0.1:9601; proxy_buffering off; }
        location /ws/ {
            proxy_pass http://127.0.0.1:9601;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }
    }
}
"""
LINE = re.compile(rb"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")
_MASK = re.compile(rb"^(Date|Server): [^\r]*\r$", re.MULTILINE)
_PAGE_SERVER = re.compile(rb"<hr><center>[^<]*</center>")  # the built-in error page's server token
BODY = b"z" * 6000  # echoed back: an answer of about 6.3 KB, past the 4 KB header buffer


def _h(value: str) -> str:
    return f"/__header/X-H={value}"


# (label, target, body): each a GET (or a POST of BODY, for a long answer) to the upstream.
INVALID = [
    ("nul in a value", "/b/__badheader/a", False),
    ("nul in a name", "/b/a?" + _h("v%0D%0AX-B%00ad:%20a"), False),
    ("space in a name", "/b" + _h("v%0D%0AX%20Bad:%20a") + "/a", False),
    ("tab in a name", "/b" + _h("v%0D%0AX-Bad%09:%20a") + "/a", False),
    ("cr inside a value", "/b" + _h("abc%0Ddef") + "/a", False),
    ("spaces then cr", "/b" + _h("abc%20%20%0Ddef") + "/a", False),
    ("cr at a line start", "/b" + _h("v%0D%0A%0DX") + "/a", False),
    ("colon first", "/b" + _h("v%0D%0A:%20abc") + "/a", False),
    ("raw high bytes", "/b/a?" + _h("%C3%BF%C3%BE%01%00z"), False),
    ("cr after a name", "/b" + _h("v%0D%0AX-Bad%0Dz") + "/a", False),
    ("too long to log", "/b/a?" + _h("y" * 2500 + "%00"), False),
]
# Header values nginx relays as they are: a control byte, DEL, bytes >= 0x80.
RELAYED = [
    ("control byte in a value", "/b/a?" + _h("a%01b%1Fc%09d"), False),
    ("del in a value", "/b/a?" + _h("a%7Fb"), False),
    ("high bytes in a value", "/b/a?" + _h("%C3%BF%C3%A9"), False),
]
# Header lines nginx relays though strict llhttp refuses their names: bytes that are not a token's
# (only marked invalid by ngx_http_parse_header_line), and IIS's duplicate status line (skipped).
ODD_NAMES = [  # ("/" is %2F: a bare one would end the recording upstream's marker)
    ("at sign in a name", "/b/a?" + _h("v%0D%0AX@Odd:%20a"), False),
    ("brackets and slash in a name", "/b/a?" + _h("v%0D%0AX(y)%2F{z}:%20b"), False),
    ("high bytes in a name", "/b/a?" + _h("v%0D%0AX%C3%BF:%20c"), False),
    ("a line without a colon", "/b/a?" + _h("v%0D%0AX-Bare%0D%0AX-After:%20f"), False),
    ("odd name before the length", "/b/a?" + _h("v%0D%0AContent@Length:%205"), True),
    ("duplicate status line", "/b/a?" + _h("v%0D%0AHTTP%2F1.1%20200%20OK%0D%0AX-After:%20d"), False),
    ("odd name, long answer", "/b/a?" + _h("v%0D%0AX@Odd:%20e"), True),
    ("a bare linefeed between lines", "/b/a?" + _h("v%0AX-Lf:%20g"), False),
]
RESETS = [
    ("rst before any byte", "/b/__reset/0/a", False),
    ("rst in the head", "/b/__reset/30/a", False),
    ("rst in the body, in the head's buffer", "/b/__reset/2000/a", True),
    ("rst in the body, past the head's buffer", "/b/__reset/5000/a", True),
    ("fin before any byte", "/b/__close/a", False),
    ("unbuffered rst before any byte", "/nb/__reset/0/a", False),
    ("unbuffered rst in the head", "/nb/__reset/30/a", False),
    ("unbuffered rst in the body", "/nb/__reset/2000/a", True),
    ("unbuffered rst past the head's buffer", "/nb/__reset/5000/a", True),
]
CASES = INVALID + RELAYED + ODD_NAMES + RESETS
BUFFERED_BODY_GAP = ("rst in the body, in the head's buffer", "rst in the body, past the head's buffer")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StartedTargets, str]]:
    tmp = tmp_path_factory.mktemp("upstream_faultlines")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run")) as started:
        yield started, str(tmp / "run")


def fetch(port: int, target: str, body: bool) -> tuple[bytes, str]:
    """What the client got on a connection of its own, and how the connection ended."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if body:
            sock.sendall(f"POST {target} HTTP/1.1\r\nHost: faults.test\r\nConnection: close\r\n"
                         f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY)
        else:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: faults.test\r\nConnection: close\r\n\r\n".encode())
        return _read_to_end(sock, b"")


def _read_to_end(sock: socket.socket, data: bytes) -> tuple[bytes, str]:
    """``data`` and the rest of what the connection brings (Date and Server masked), and whether
    it ended with a FIN ("eof") or a reset."""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return _masked(data), "reset"
    return _masked(data), "eof"


def _masked(data: bytes) -> bytes:
    data = _PAGE_SERVER.sub(b"<hr><center>-</center>", _MASK.sub(rb"\1: -\r", data))
    # The page's length changes with the token's: compared as the body that follows.
    return re.sub(rb"Content-Length: \d+\r\n(?=(?:[^\r\n]+\r\n)*\r\n<html>)", b"Content-Length: -\r\n", data)


def logged(log: str, start: int) -> list[bytes]:
    time.sleep(0.05)  # both write before answering; a margin for the file
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read()
    return [b"[" + m.group(1) + b"] " + m.group(2) for m in map(LINE.match, text.split(b"\n"))
            if m and m.group(1) in (b"error", b"warn")]


def test_fault_lines_match_nginx(run: tuple[StartedTargets, str]) -> None:
    started, base = run
    seen: list[list[tuple[str, bytes, str, list[bytes]]]] = []
    for target in started.targets:
        port = target.listen_ports["127.0.0.1:8080"]
        log = os.path.join(base, target.label, "error.log")
        outcomes: list[tuple[str, bytes, str, list[bytes]]] = []
        for label, path, body in CASES:
            start = os.path.getsize(log)
            answer, end = fetch(port, path, body)
            started.pool.settle()
            started.pool.take()
            outcomes.append((label, answer, end, logged(log, start)))
        seen.append(outcomes)
    assert len(seen[0]) == len(seen[1]) == len(CASES)
    for theirs, ours in zip(seen[0], seen[1]):
        if theirs[0] in BUFFERED_BODY_GAP:
            # The known gap (translator/registry.py, proxy_buffering): nginx's event pipe passes a
            # body buffer on only once it is full, and a reset loses the partial one; newproxy
            # relays each read. The head, the connection's end and the log line are the same.
            head_theirs, _, body_theirs = theirs[1].partition(b"\r\n\r\n")
            head_ours, _, body_ours = ours[1].partition(b"\r\n\r\n")
            assert (theirs[0], head_theirs, theirs[2], theirs[3]) == (ours[0], head_ours, ours[2], ours[3])
            assert body_ours.startswith(body_theirs)
        else:
            assert theirs == ours

    # What nginx did, spelled out (the request context cut off).
    by_label = {label: (answer, end, [line.split(b", client: ")[0] for line in lines])
                for label, answer, end, lines in seen[0]}
    invalid = b"[error] upstream sent invalid header: "
    header_phase = b" while reading response header from upstream"
    expected = {
        "nul in a value": b'"X-Bad: a\\x00..."',
        "nul in a name": b'"X-B\\x00..."',
        "space in a name": b'"X\\x20..."',
        "tab in a name": b'"X-Bad\\x09..."',
        "cr inside a value": b'"X-H: abc\\x0d..."',
        "spaces then cr": b'"X-H: abc\\x20..."',
        "cr at a line start": b'"\\x0d..."',
        "colon first": b'"\\x3a..."',
        "raw high bytes": b'"X-H: \xff\xfe\x01\\x00..."',
        "cr after a name": b'"X-Bad\\x0d..."',
    }
    for label, quoted in expected.items():
        answer, _, lines = by_label[label]
        assert answer.startswith(b"HTTP/1.1 502 ") and lines == [invalid + quoted + header_phase], (label, lines)
    for label, value in (("control byte in a value", b"a\x01b\x1fc\td"), ("del in a value", b"a\x7fb"),
                         ("high bytes in a value", b"\xff\xe9")):
        answer, _, lines = by_label[label]
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nX-H: " + value + b"\r\n" in answer, label
        assert lines == [], label
    for label, line in (("at sign in a name", b"X@Odd: a"), ("brackets and slash in a name", b"X(y)/{z}: b"),
                        ("high bytes in a name", b"X\xff: c"), ("a line without a colon", b"X-Bare: \r\nX-After: f"),
                        ("odd name before the length", b"Content@Length: 5"), ("duplicate status line", b"X-H: v\r\nX-After: d"),
                        ("odd name, long answer", b"X@Odd: e"),
                        ("a bare linefeed between lines", b"X-H: v\r\nX-Lf: g")):
        answer, end, lines = by_label[label]
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n" + line + b"\r\n\r\n" in answer, label
        assert lines == [] and end == "eof", label
    # A line past NGX_MAX_ERROR_STR is cut at 2047 bytes (then the linefeed): no request context.
    (long_line,) = by_label["too long to log"][2]
    assert long_line.startswith(invalid + b'"X-H: yyy') and long_line.endswith(b"yyy")

    reset = b"(104: Connection reset by peer)"
    for label in ("rst before any byte", "rst in the head", "unbuffered rst before any byte", "unbuffered rst in the head"):
        answer, _, lines = by_label[label]
        assert answer.startswith(b"HTTP/1.1 502 ") and lines == [b"[error] recv() failed " + reset + header_phase]
    answer, _, lines = by_label["fin before any byte"]
    assert answer.startswith(b"HTTP/1.1 502 ") and lines == [b"[error] upstream prematurely closed connection" + header_phase]
    for label, call in (("rst in the body, in the head's buffer", b"readv()"),
                        ("rst in the body, past the head's buffer", b"readv()"),
                        ("unbuffered rst in the body", b"recv()"), ("unbuffered rst past the head's buffer", b"recv()")):
        answer, end, lines = by_label[label]
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and end == "eof", label
        assert lines == [b"[error] " + call + b" failed " + reset + b" while reading upstream"], (label, lines)
    # What the client got of the body: unbuffered, every byte read before the reset; buffered, only
    # the buffers nginx filled: none of the 2000 bytes (the head's 4 KB buffer is not full), the
    # head's buffer of the 5000.
    assert len(by_label["unbuffered rst in the body"][0].partition(b"\r\n\r\n")[2]) > 1800
    assert by_label["rst in the body, in the head's buffer"][0].endswith(b"\r\n\r\n")
    assert 3900 < len(by_label["rst in the body, past the head's buffer"][0].partition(b"\r\n\r\n")[2]) < 4096


def tunnel(port: int) -> tuple[bytes, str]:
    """An upgraded connection whose upstream resets after echoing a first message."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /ws/__upgrade/t HTTP/1.1\r\nHost: faults.test\r\nUpgrade: websocket\r\n"
                     b"Connection: upgrade\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.sendall(b"one __rst__")
        return _read_to_end(sock, data)


def test_tunnel_reset_line_matches_nginx(run: tuple[StartedTargets, str]) -> None:
    started, base = run
    seen = []
    for target in started.targets:
        log = os.path.join(base, target.label, "error.log")
        start = os.path.getsize(log)
        answer, end = tunnel(target.listen_ports["127.0.0.1:8080"])
        started.pool.settle()
        started.pool.take()
        seen.append((answer, end, logged(log, start)))
    assert seen[0] == seen[1]
    answer, end, lines = seen[0]
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\nECHO(one __rst__)") and end == "eof"
    assert [line.split(b", client: ")[0] for line in lines] == [
        b"[error] recv() failed (104: Connection reset by peer) while proxying upgraded connection"]
