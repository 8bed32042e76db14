"""Per-request variables against real nginx 1.22: $connection, $connection_requests, $request_length,
$request_time, $msec, and $upstream_addr/_status/_connect_time/_header_time/_response_time/
_bytes_received/_http_NAME/_cookie_NAME, in ``return``, ``proxy_set_header`` and ``add_header``
(the header filter of proxied answers, engine answers and a 304), over keep-alive connections
(connection_requests 1, 2, 3...), with upstream retries (proxy_next_upstream: "a, b"), a refused
peer, an error_page after an upstream error, HEAD and HTTP/2 (streams as requests, HPACK sizes).

Both targets start from one config (shadow.runner.started_targets) and get the same bytes over one
connection each. Compared: the whole byte stream, after masking only what cannot be equal:
- Date and Server (as the harness does);
- $connection: each server numbers its connections with its own counter (nginx counts its upstream
  connections too), so "c=N" is masked once both are checked to be a number;
- times ($request_time, $upstream_*_time, $msec): compared as to shape (digits, "." and three
  decimals; "-" stays as it is, so where nginx has no time yet newproxy must have none either) and
  plausibility (a request time under 2 s, a $msec within 30 s of the test's clock), then masked.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

CONF = """
events {}
http {
    root ROOT;
    upstream app { server 127.0.0.1:9501; server 127.0.0.1:9502; }
    upstream withdead { server 127.0.0.1:9509; server 127.0.0.1:9501; }
    server {
        listen 8080;
        listen 8081 http2;
        server_name facts.test;
        add_header X-Conn "c=$connection n=$connection_requests" always;
        add_header X-Len "len=$request_length" always;
        add_header X-Time "t=$request_time" always;
        add_header X-Up-Addr "$upstream_addr" always;
        add_header X-Up-Status "$upstream_status" always;
        add_header X-Up-Times "[$upstream_connect_time][$upstream_header_time][$upstream_response_time]" always;
        add_header X-Up-Bytes "$upstream_bytes_received" always;
        add_header X-Up-H "[$upstream_http_x_up][$upstream_http_content_type][$upstream_cookie_k][$upstream_cookie_no]" always;
        proxy_set_header X-Facts "n=$connection_requests len=$request_length up=[$upstream_addr][$upstream_status]";
        proxy_next_upstream error http_500;

        location = /r {
            return 200 "n=$connection_requests len=$request_length t=$request_time m=$msec up=[$upstream_addr][$upstream_status][$upstream_connect_time][$upstream_header_time][$upstream_response_time][$upstream_bytes_received][$upstream_http_x_up][$upstream_cookie_k]\\n";
        }
        location = /rc { return 200 "c=$connection\\n"; }
        location /p/ { proxy_pass http://app; }
        location /dead/ { proxy_pass http://withdead; }
        location /gone/ { proxy_pass http://127.0.0.1:9509; error_page 502 = /r; }
        location /files/ { }
        # An intercepted answer: the page still reads its headers ($upstream_http_NAME) and attempts.
        location /ic/ { proxy_pass http://app; proxy_intercept_errors on; error_page 503 = /r; }
        # A page that proxies again: a second pass, " : " between the passes' attempts.
        location /ic2/ { proxy_pass http://app; proxy_intercept_errors on; error_page 503 = /p/again; }
    }
}
"""

HOST = b"Host: facts.test\r\n"
_DATE = re.compile(rb"(Date|Server|Last-Modified): [^\r]*")
_CONN = re.compile(rb"c=(\d+)")
_REQUEST_TIME = re.compile(rb"t=(\d+\.\d{3})")
_MSEC = re.compile(rb"m=(\d+)\.\d{3}")
# A body of $connection alone: its length differs with the number's digits.
_CONN_BODY = re.compile(rb"Content-Length: \d+\r\n((?:[^\r\n]+\r\n)*\r\n)c=\d+\n")
_TIME = re.compile(rb"(?<![\d.])\d+\.\d{3}(?![\d.])")  # any other time: $upstream_*_time


def _normal(data: bytes) -> bytes:
    data = _DATE.sub(rb"\1: -", data)
    data = _CONN_BODY.sub(rb"Content-Length: -\r\n\1c=N\n", data)
    assert _CONN.search(data) is not None or b"c=" not in data
    data = _CONN.sub(b"c=N", data)
    for value in _REQUEST_TIME.findall(data):
        assert float(value) < 2.0, value
    data = _REQUEST_TIME.sub(b"t=T", data)
    for value in _MSEC.findall(data):
        assert abs(int(value) - time.time()) < 30, value
    data = _MSEC.sub(b"m=M", data)
    return _TIME.sub(b"T", data)


async def _talk(port: int, data: bytes, limit: float = 3.0) -> bytes:
    """Send ``data`` on one connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return received


async def _h2(port: int, requests: list[tuple[str, bytes]]) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """Each request in turn as a stream of one h2c connection: (response headers, body) each."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, ResponseReceived, StreamEnded

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    out = []
    try:
        for path, body in requests:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(b":method", b"POST" if body else b"GET"), (b":scheme", b"http"),
                                    (b":authority", b"facts.test"), (b":path", path.encode())], end_stream=not body)
            if body:
                conn.send_data(sid, body, end_stream=True)
            writer.write(conn.data_to_send())
            headers: list[tuple[bytes, bytes]] = []
            data = b""
            ended = False
            while not ended:
                chunk = await asyncio.wait_for(reader.read(65536), 3)
                assert chunk, "connection closed"
                for event in conn.receive_data(chunk):
                    if isinstance(event, ResponseReceived) and event.stream_id == sid:
                        headers = [(k, v) for k, v in event.headers if k not in (b"date", b"server")]
                    elif isinstance(event, DataReceived) and event.stream_id == sid:
                        data += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    elif isinstance(event, StreamEnded) and event.stream_id == sid:
                        ended = True
                writer.write(conn.data_to_send())
            out.append((headers, data))
    finally:
        writer.close()
    return out


def _get(target: str, extra: bytes = b"", method: bytes = b"GET") -> bytes:
    return method + b" " + target.encode() + b" HTTP/1.1\r\n" + HOST + extra + b"\r\n"


# One connection each: connection_requests 1..N, a body read (proxied) and one discarded (return).
KEEPALIVE = b"".join([
    _get("/r"),
    _get("/r", b"X-Pad: 12345\r\n"),
    b"POST /r HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nabcde",
    _get("/p/__header/X-Up=up%20value/__header/Set-Cookie=k%3D%20v1%3B%20path%3D%2F/a"),
    b"POST /p/b HTTP/1.1\r\n" + HOST + b"Content-Length: 7\r\n\r\nbody123",
    _get("/p/c", method=b"HEAD"),
    # Both peers answer 500: "a, b", "500, 500", the last one relayed.
    _get("/p/__status/500/d"),
    _get("/p/__status/404/e"),
    # A refused peer, then a good one; a refused single peer and its error_page (a return).
    _get("/dead/f"),
    _get("/gone/g"),
    _get("/files/a.txt", b"If-Modified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n"),
    _get("/files/a.txt"),
    _get("/rc", b"Connection: close\r\n"),
])

# One connection each (an intercepted answer's connection is closed, as is an HTTP/1.0 one).
SINGLE = [
    _get("/ic/__header/X-Up=from503/__header/Set-Cookie=k%3Dc503/__status/503/a", b"Connection: close\r\n"),
    _get("/ic2/__header/X-Up=from503/__status/503/b", b"Connection: close\r\n"),
    b"POST /p/chunked HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
    b"GET /r HTTP/1.0\r\n" + HOST + b"\r\n",
    b"HEAD /p/h HTTP/1.0\r\n\r\n",
]

H2_REQUESTS = [("/r", b""), ("/r", b""), ("/r", b"abcde"), ("/p/__header/X-Up=v/x", b""), ("/p/y", b"xyz"),
               ("/dead/z", b"")]


def _start(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "files").mkdir(parents=True)
    (root / "files" / "a.txt").write_text("file\n")
    os.utime(root / "files" / "a.txt", (1000000000, 1000000000))  # the If-Modified-Since sent: a 304
    path = tmp_path / "nginx.conf"
    path.write_text(CONF.replace("ROOT", str(root)))
    config = parse_config(str(path))
    return started_targets(config, plan(config), str(tmp_path / "run"), refuse=frozenset({"127.0.0.1:9509"}))


def test_request_facts_over_keepalive_and_h2_match_nginx(tmp_path: Path) -> None:
    with _start(tmp_path) as started:
        h1_ports = [t.listen_ports[next(iter(t.listen_ports))] for t in started.targets]
        h2_ports = [list(t.listen_ports.values())[1] for t in started.targets]

        async def run() -> tuple[list[bytes], list[list[tuple[list[tuple[bytes, bytes]], bytes]]]]:
            h1 = [await _talk(port, KEEPALIVE) for port in h1_ports]
            h2 = [await _h2(port, H2_REQUESTS) for port in h2_ports]
            single = [[await _talk(port, data) for data in SINGLE] for port in h1_ports]
            return h1 + single, h2

        (nginx, other, nginx_single, other_single), (nginx_h2, other_h2) = asyncio.run(run())
    assert _normal(nginx) == _normal(other), (nginx.decode("latin-1"), other.decode("latin-1"))
    # What the exchange shows, so the comparison cannot pass on two empty or failed streams:
    answers = _normal(nginx).split(b"HTTP/1.1 ")[1:]
    assert [int(a[:3]) for a in answers] == [200, 200, 200, 200, 200, 200, 500, 404, 200, 200, 304, 200, 200]
    assert b"X-Conn: c=N n=1\r\n" in answers[0] and b"\r\n\r\nn=1 len=37 t=T m=M up=[][][][][][][][]\n" in answers[0]
    assert b"\r\n\r\nn=2 len=51 " in answers[1]
    assert b"\r\n\r\nn=3 len=57 " in answers[2]  # the body a return discards is not counted
    assert b"X-Len: len=66\r\n" in answers[4]  # head (59) and the body read to proxy it (7)
    assert b"X-Up-H: [up value][application/json][v1][]\r\n" in answers[3]
    assert b'["X-Facts", "n=4 len=110 up=[][]"]' in answers[3]  # before any upstream attempt: empty
    assert b"X-Up-Status: 500, 500\r\n" in answers[6] and b"X-Up-Times: [T, T][T, T][T, -]\r\n" in answers[6]
    assert b"X-Up-Status: 502, 200\r\n" in answers[8] and b"X-Up-Times: [-, T][-, T][T, -]\r\n" in answers[8]
    assert b"X-Up-Bytes: 0, 281\r\n" in answers[8]
    assert b"][502][-][-][T][0][][]\n" in answers[9]  # the error_page's return after a refused peer
    assert b"X-Up-Addr" not in answers[10] and b"X-Conn: c=N n=11\r\n" in answers[10]  # a 304: no upstream
    assert answers[12].endswith(b"\r\n\r\nc=N\n")

    for nginx_answer, other_answer in zip(nginx_single, other_single, strict=True):
        assert _normal(nginx_answer) == _normal(other_answer), (nginx_answer.decode("latin-1"),
                                                                other_answer.decode("latin-1"))
    intercepted, again, chunked, http10, head10 = (_normal(answer) for answer in nginx_single)
    assert b"][503][T][T][T][" in intercepted and b"][from503][c503]\n" in intercepted
    assert b"X-Up-Status: 503 : 200\r\n" in again and b"X-Up-Times: [T : T][T : T][T : -]\r\n" in again
    assert b"X-Len: len=122\r\n" in chunked  # head (93) and the chunked body as received (29: framing too)
    assert b"\r\n\r\nn=1 len=37 " in http10 and b"X-Up-Status: 200\r\n" in head10

    assert len(nginx_h2) == len(other_h2) == len(H2_REQUESTS)
    for (nginx_headers, nginx_body), (other_headers, other_body) in zip(nginx_h2, other_h2):
        assert _normal(b"\n".join(k + b": " + v for k, v in nginx_headers) + b"\n" + nginx_body) == \
            _normal(b"\n".join(k + b": " + v for k, v in other_headers) + b"\n" + other_body)
    # Streams count as the connection's requests; $request_length is the HPACK-coded block (and the body read).
    assert [body.split(b" t=")[0] for _, body in nginx_h2[:3]] == [b"n=1 len=15", b"n=2 len=4", b"n=3 len=4"]
    assert (b"x-len", b"len=12") in nginx_h2[4][0]
