"""A client that goes away while a large answer is still being written to it, against real nginx.

Once an answer is all made but not all written (a static file, or a proxied answer the upstream
has finished, which nginx holds in its temporary file), nginx watches the client without reading
it (ngx_http_test_reading, through epoll's RDHUP): a FIN or a reset ends the answer. It logs
``[info] client prematurely closed connection[ (104: ...)] while sending response to client`` (a
file) or ``while sending to client`` (proxied: the upstream module's last action), closes the
connection with what the kernel has not taken dropped, drops what was pipelined behind, and logs
the answer's status with the bytes that went ($body_bytes_sent is nginx's c->sent). Unbuffered
(proxy_buffering off), the upstream still works: its broken-connection line, "while reading
upstream" as the client stopped taking the answer.

Each case is a client with a small receive buffer that reads the answer's first bytes, stops
reading for 0.5 s (the proxy's writes back up), then half-closes (and reads what comes) or resets.
How much of the answer went depends on the kernel's buffers and timing, so the bytes are not
compared across the proxies. Compared: the info lines, the access log's request and status, whether
the answer was cut short (and, after a FIN, whether the proxy closed the connection), and that the
logged $body_bytes_sent is what the client got of the body. A request sent while an answer is
blocked is read once the answer is out: both answers come whole, in order.

send_timeout (1 s here) runs from the last write that made progress: a client that stops reading
for longer gets nginx's "client timed out (110: Connection timed out) while sending response to
client" (a file; "while sending to client" proxied, whatever the upstream's phase), and the
connection closed as after a FIN. (newproxy looks for progress when its timer comes, so a client
that took some then stalled is cut between one and two send_timeouts after its last read.)
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes

from nginx_parser import parse_config
from nginx_parser.ir import NginxConfig
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.staged import access_logs, assert_same_views, info_log, log_size, request_lines

SIZE = 8 << 20  # past what the kernel buffers between a proxy and a client that stops reading (~4 MiB here)
CONF = """
events {}
http {
    log_format cut '$request $status $body_bytes_sent';
    access_log logs/cut.log cut;
    server {
        listen 127.0.0.1:8080;
        listen 127.0.0.1:8081 http2;
        server_name cut.test;
        send_timeout 1s;
        root ROOT;
        location /p/ { proxy_pass http://127.0.0.1:9000; }
        location /u/ { proxy_buffering off; proxy_pass http://127.0.0.1:9000; }
    }
}
"""
BIG = f"/__big/{SIZE >> 10}"  # the recording upstream's answer of SIZE bytes
# name: (the requests sent at once, how the client leaves: "fin", "reset", "stall": it stops reading
# for 2 s, past send_timeout, then reads what comes, or "stay": a second request after the pause,
# then everything read)
CASES: dict[str, tuple[list[str], str]] = {
    "a file, FIN": (["/big.bin"], "fin"),
    "a file, reset": (["/big.bin"], "reset"),
    "a file with a request pipelined behind, FIN": (["/big.bin", "/big.bin"], "fin"),
    "proxied, FIN": ([f"/p{BIG}/a"], "fin"),
    "proxied, reset": ([f"/p{BIG}/b"], "reset"),
    "proxied unbuffered, FIN": ([f"/u{BIG}/c"], "fin"),
    "proxied unbuffered, reset": ([f"/u{BIG}/d"], "reset"),
    "a file, past send_timeout": (["/big.bin"], "stall"),
    "proxied, past send_timeout": ([f"/p{BIG}/e"], "stall"),
    "proxied unbuffered, past send_timeout": ([f"/u{BIG}/f"], "stall"),
    "a file, then a request while it is blocked": (["/big.bin"], "stay"),  # last: two log lines
}


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: cut.test\r\n\r\n".encode()


def _both_answers(data: bytes) -> bool:
    """Two whole answers of SIZE bytes."""
    second = data.find(b"\r\n\r\n", data.find(b"\r\n\r\n") + 4 + SIZE)
    return second >= 0 and len(data) >= second + 4 + SIZE


def _read_all(sock: socket.socket, seconds: float, enough: Callable[[bytes], bool]) -> tuple[bytes, bool]:
    """What comes within ``seconds`` (or until it is ``enough``), and whether the proxy closed the
    connection."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not enough(bytes(data)):
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            return bytes(data), False
        except ConnectionError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def _client(port: int, paths: list[str], how: str) -> tuple[bytes, bool]:
    """The client's script: what it got, and whether the proxy closed the connection."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"".join(_get(path) for path in paths))
        got = sock.recv(65536)
        time.sleep(0.5)
        if how == "reset":  # SO_LINGER 0: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return got, True
        if how == "fin":
            sock.shutdown(socket.SHUT_WR)
        elif how == "stall":
            time.sleep(1.5)
        else:
            sock.sendall(_get(paths[0]))
        rest, closed = _read_all(sock, 5.0, (lambda data: _both_answers(got + data)) if how == "stay"
                                 else (lambda data: False))
        return got + rest, closed
    finally:
        sock.close()


def _body_got(got: bytes) -> int:
    """The bytes of the (first) answer's body the client got."""
    return len(got) - (got.find(b"\r\n\r\n") + 4)


def _config(tmp_path: Path) -> NginxConfig:
    """CONF, its root a directory holding big.bin (SIZE bytes)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(b"0123456789abcde\n" * (SIZE // 16))
    path = tmp_path / "nginx.conf"
    path.write_text(CONF.replace("ROOT", str(www)))
    return parse_config(str(path))


def test_client_that_leaves_a_large_answer_is_handled_as_by_nginx(tmp_path: Path) -> None:
    config = _config(tmp_path)
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    seen: dict[str, list[object]] = {}
    got_of: dict[str, list[bytes]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run"), tweak_reference=info_log(dirs[0]),
                         tweak_other=info_log(dirs[1])) as started:
        ports = [t.listen_ports["127.0.0.1:8080"] for t in started.targets]
        for name, (paths, how) in CASES.items():
            for port, directory in zip(ports, dirs, strict=True):
                start = log_size(directory)
                got, closed = _client(port, paths, how)
                time.sleep(0.2)
                lines = request_lines(directory, start, lambda line: "[info]" in line and "client" in line)
                answers = len(re.findall(rb"HTTP/1\.1 200 OK\r\n", got))
                cut = _body_got(got) < SIZE
                seen.setdefault(name, []).append((answers, cut, closed if how in ("fin", "stall") else None, lines))
                got_of.setdefault(name, []).append(got)
    assert_same_views(seen)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/cut.log")
    assert [line.rsplit(" ", 1)[0] for line in newproxy] == [line.rsplit(" ", 1)[0] for line in nginx]
    # Each proxy logs the body bytes its client got (after a FIN or a stall, the client read all that came).
    fin_cases = [name for name, (_, how) in CASES.items() if how in ("fin", "stall")]
    for log in (nginx, newproxy):
        side = 0 if log is nginx else 1
        logged = dict(zip(CASES, (int(line.rsplit(" ", 1)[1]) for line in log), strict=False))
        for name in fin_cases:
            assert logged[name] == _body_got(got_of[name][side]), (side, name, logged[name])
    # A reset: both count about what the kernels took (a few MiB here), not the whole answer.
    for line in nginx + newproxy:
        assert int(line.rsplit(" ", 1)[1]) <= SIZE
    # What nginx did, so that the comparison cannot pass on two proxies that both write on:
    answers, cut, closed, lines = seen["a file, FIN"][0]  # type: ignore[misc]
    assert (answers, cut, closed) == (1, True, True), seen["a file, FIN"]
    assert lines == ['[info] client prematurely closed connection while sending response to client, client: '
                     '127.0.0.1, server: cut.test, request: "GET /big.bin HTTP/1.1", host: "cut.test"'], lines
    assert seen["proxied, reset"][0][3][0].startswith(  # type: ignore[index]
        "[info] client prematurely closed connection (104: Connection reset by peer) while sending to client")
    assert seen["a file, then a request while it is blocked"][0][:2] == (2, False)
    assert [line.split()[3] for line in nginx] == ["200"] * len(CASES) + ["200"], nginx
    assert seen["a file, past send_timeout"][0][3] == [  # type: ignore[index]
        '[info] client timed out (110: Connection timed out) while sending response to client, client: 127.0.0.1, '
        'server: cut.test, request: "GET /big.bin HTTP/1.1", host: "cut.test"'], seen["a file, past send_timeout"]


H2_PATHS = {"a file": "/big.bin", "proxied": f"/p{BIG}/h2a", "proxied unbuffered": f"/u{BIG}/h2b"}


def _h2_stalled(port: int, path: str) -> tuple[int, list[str]]:
    """An h2c request whose client never opens its window past the initial 65,535 bytes, read for
    2.5 s: the DATA bytes it got, and what ended the stream (and after how many seconds, rounded)."""
    sock = socket.create_connection(("127.0.0.1", port))
    conn = H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "cut.test")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    got, ends = 0, []
    began = time.monotonic()
    try:
        while (left := began + 2.5 - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                ends.append("closed")
                break
            for event in conn.receive_data(data):
                if isinstance(event, DataReceived):
                    got += len(event.data)  # (never acknowledged: the window stays shut)
                elif isinstance(event, StreamReset):
                    # Rounded, not truncated: nginx's timer fires up to a few ms before the wall
                    # clock's second (its time is cached per event loop turn), so "0.99 s" is 1 s.
                    ends.append(f"reset {event.error_code} after {round(time.monotonic() - began)} s")
                elif isinstance(event, StreamEnded):
                    ends.append("ended")
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return got, ends


def test_http2_stream_whose_window_stays_shut_times_out_as_in_nginx(tmp_path: Path) -> None:
    """Over HTTP/2, send_timeout runs while a stream's answer waits for the client's window: nginx
    then resets the stream (PROTOCOL_ERROR), logs "client timed out (110: Connection timed out)"
    ("while sending response to client" for a file, "while sending to client" proxied), and logs
    the answer's status with the body bytes sent (the initial window's 65,535)."""
    config = _config(tmp_path)
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    seen: dict[str, list[object]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run"), tweak_reference=info_log(dirs[0]),
                         tweak_other=info_log(dirs[1])) as started:
        ports = [t.listen_ports["127.0.0.1:8081"] for t in started.targets]
        for name, target in H2_PATHS.items():
            for port, directory in zip(ports, dirs, strict=True):
                start = log_size(directory)
                got, ends = _h2_stalled(port, target)
                time.sleep(0.2)
                lines = request_lines(directory, start, lambda line: "[info]" in line and "timed out" in line)
                seen.setdefault(name, []).append((got, ends, lines))
    assert_same_views(seen)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/cut.log")
    assert newproxy == nginx
    assert seen["a file"][0][:2] == (65535, ["reset 1 after 1 s"]), seen["a file"]
    assert nginx[0] == "GET /big.bin HTTP/2.0 200 65535", nginx


def _h2_not_reading(port: int, path: str) -> tuple[int, bool]:
    """An h2c request with the windows open wide whose client reads nothing for 2.5 s, then what
    comes: the bytes it got, and whether the proxy closed the connection."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", port))
    conn = H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    conn.increment_flow_control_window(2**31 - 1 - 65535)
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "cut.test")],
                      end_stream=True)
    try:
        sock.sendall(conn.data_to_send())
        time.sleep(2.5)
        data, closed = _read_all(sock, 3.0, lambda data: False)
        return len(data), closed
    finally:
        sock.close()


def test_http2_connection_the_client_stops_reading_times_out_as_in_nginx(tmp_path: Path) -> None:
    """A client that reads nothing of its HTTP/2 connection (its windows open): nginx closes the
    connection after send_timeout (no line at info), and logs the stream's status with the body
    bytes the kernel took. How many depends on the kernels' buffers, so compared: that each proxy
    cut the answer short and closed, and, for the file, logged about what its client got (the
    frames' headers aside: within 1%). Not for the proxied answer: newproxy relays it all into the
    connection's buffer before the stall is seen, ends the stream there and logs it whole; nginx
    counts what the kernel took."""
    config = _config(tmp_path)
    got: dict[str, list[tuple[int, bool]]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [t.listen_ports["127.0.0.1:8081"] for t in started.targets]
        for name, target in {"a file": "/big.bin", "proxied": f"/p{BIG}/h2c"}.items():
            for port in ports:
                got.setdefault(name, []).append(_h2_not_reading(port, target))
        time.sleep(0.2)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/cut.log")
    assert [line.rsplit(" ", 1)[0] for line in newproxy] == [line.rsplit(" ", 1)[0] for line in nginx]
    for side, log in enumerate((nginx, newproxy)):
        for (name, views), line in zip(got.items(), log, strict=True):
            received, closed = views[side]
            logged = int(line.rsplit(" ", 1)[1])
            assert closed and received < SIZE, (side, name, views)
            if name == "a file" or side == 0:
                assert received * 0.99 <= logged <= received, (side, name, logged, received)
