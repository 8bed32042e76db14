"""Request bodies nginx does not read (ngx_http_discard_request_body) against real nginx 1.22.

A ``return``, a redirect, a file, an error page or a 413 at the head is answered as soon as the head
is read, the body read and dropped afterwards: the connection is kept if the whole body comes with
at most lingering_timeout between reads and within lingering_time, else closed (a read after
lingering_time: RST; no read for lingering_timeout: FIN, or RST with reset_timedout_connection). A
"100 Continue" goes before such an answer unless it is an error page (or a 413), none for HTTP/1.0.
A bad chunk read with the head is a 400; after the answer, nginx just closes. Over HTTP/2 the answer
comes at the HEADERS, then RST_STREAM NO_ERROR. Proxied requests still read the body whole first,
also when a rewrite or try_files leads to the proxy (newproxy/engine/discard.py decides at the head).

Each HTTP/1 case is a timed script of writes on one raw connection, run against both targets at
once; compared: what came back in bursts (bytes within 0.15 s of each other, normalised: Date,
Server, signatures, the port), when each burst came and how the connection ended (FIN/RST, when).
Times within 0.35 s of each other (1.1 s where nginx's whole-second lingering_time clock decides).
The access log lines are compared too ($status, $request_length: nginx logs a discarded request once
its body is dropped, counting only the head, less the next request's bytes read with the last of a
chunked body). Not compared (a known difference): $content_length of a chunked body nginx stopped
discarding midway (nginx logs its read-ahead guess, at least 8192; newproxy 0).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import DataFrame, Frame, PingFrame

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

CONF = """
events {}
http {
    lingering_timeout 1s;
    lingering_time 2s;
    client_body_timeout 3s;
    client_max_body_size 1m;
    log_format m '$status $request_length "$request" $request_method';
    access_log %(root)s/a.log m;
    server {
        listen 8080;
        listen 8081 http2;
        server_name d.test;
        root %(root)s;
        error_page 404 /404.html;
        location = /404.html { internal; }
        location = /r { return 200 "r\\n"; }
        location = /redir { return 302 /x; }
        location = /gone { return 410; }
        location = /small { client_max_body_size 10; return 200 "s\\n"; }
        location = /ep200 { error_page 404 =200 /r; return 404; }
        location = /epurl { error_page 404 http://e.test/x; return 404; }
        location /f/ { }
        location /p/ { client_max_body_size 10; proxy_pass http://127.0.0.1:9001; }
        location /t/ { try_files $uri /f/a.txt; }
        location /tp/ { try_files $uri @up; }
        location @up { proxy_pass http://127.0.0.1:9001; }
        location /rw/ { rewrite ^/rw/(.*)$ /r last; }
        location /rwp/ { rewrite ^/rwp/(.*)$ /tp/$1 last; }
    }
    server {
        listen 8080;
        server_name old.test;
        return 301 https://new.test$request_uri;
    }
}
"""

H = b"Host: d.test\r\n"
GET_CLOSE = b"GET /r HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
Script = list[tuple[float, bytes]]  # (seconds to wait, bytes to write)

CASES: dict[str, tuple[Script, float]] = {  # name: (script, tolerance for the times)
    "no body yet": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Content-Length: 1000000\r\n\r\n")], 0.35),
    "body later, then kept alive": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc"),
                                     (0.5, b"defghij"), (0.3, GET_CLOSE)], 0.35),
    "expect, return": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                        (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, redirect": ([(0, b"POST /redir HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 5\r\n\r\n"),
                          (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, file": ([(0, b"GET /f/a.txt HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                      (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, error page": ([(0, b"POST /gone HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                            (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, error_page to a file": ([(0, b"POST /f/nope HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
                                          b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, error_page =200": ([(0, b"POST /ep200 HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
                                    b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, error_page to a URL": ([(0, b"POST /epurl HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
                                         b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"), (0.2, GET_CLOSE)], 0.35),
    "expect, HTTP/1.0": ([(0, b"POST /r HTTP/1.0\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                          (0.3, b"hello")], 0.35),
    "expect, 413 at the head": ([(0, b"POST /small HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
                                     b"Content-Length: 100\r\n\r\n"), (0.3, b"x" * 100)], 0.35),
    "413 at the head of a proxied location": ([(0, b"POST /p/a HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n"),
                                               (0.3, b"x" * 60), (0.3, b"x" * 40)], 0.35),
    "try_files to a file": ([(0, b"GET /t/none HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"),
                             (0.2, GET_CLOSE)], 0.35),
    "try_files to a proxy": ([(0, b"PUT /tp/none HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"),
                              (0.2, GET_CLOSE)], 0.35),
    "rewrite to a return": ([(0, b"POST /rw/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"),
                             (0.2, GET_CLOSE)], 0.35),
    "rewrite to a proxy": ([(0, b"POST /rwp/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n"), (0.3, b"hello"),
                            (0.2, GET_CLOSE)], 0.35),
    "chunked, rest later": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel"),
                             (0.3, b"lo\r\n0\r\n\r\n" + GET_CLOSE)], 0.35),
    "bad chunk with the head": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")],
                                0.35),
    "bad chunk after the answer": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"),
                                    (0.3, b"zz\r\n")], 0.35),
    "pipelined after a body": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc" + GET_CLOSE)], 0.35),
    "close after the body": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 10\r\n\r\nabc"),
                              (0.5, b"defghij")], 0.35),
    "request behind a close answer": ([(0, b"POST /gone HTTP/1.1\r\n" + H + b"Connection: close\r\n"
                                           b"Content-Length: 3\r\n\r\n"), (0.3, b"abc" + GET_CLOSE)], 0.35),
    "server-level redirect": ([(0, b"POST /form HTTP/1.1\r\nHost: old.test\r\nContent-Length: 8\r\n\r\n"),
                               (0.3, b"12345678"), (0.2, GET_CLOSE.replace(b"d.test", b"old.test"))], 0.35),
    "large file before the body": ([(0, b"GET /f/big.bin HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\n"),
                                    (0.4, b"abcd"), (0.2, GET_CLOSE)], 0.35),
    "trickled past lingering_time": ([(0, b"POST /r HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n")]
                                     + [(0.3, b"x")] * 13, 1.1),
}

_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n"),
          (re.compile(rb"(d\.test|127\.0\.0\.1):\d+"), rb"\1:-")]
Event = tuple[float, str, bytes]  # (seconds since the first write, "data"/"FIN"/"RST"/"open", bytes)


def _normal(data: bytes) -> bytes:
    for pattern, replacement in _NOISE:
        data = pattern.sub(replacement, data)
    return data


async def _run(port: int, script: Script, limit: float = 5.0) -> list[Event]:
    """Write ``script`` on one connection while reading; the reads joined into bursts (within
    0.15 s of each other and with no write in between)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    events: list[Event] = []
    writes = [0, -1]  # writes made, and how many there were when the last burst began

    async def read() -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                now = time.monotonic() - start
                if not chunk:
                    events.append((now, "FIN", b""))
                    return
                if events and events[-1][1] == "data" and now - events[-1][0] < 0.15 and writes[1] == writes[0]:
                    events[-1] = (events[-1][0], "data", events[-1][2] + chunk)
                else:
                    events.append((now, "data", chunk))
                    writes[1] = writes[0]
        except ConnectionResetError:
            events.append((time.monotonic() - start, "RST", b""))

    reading = asyncio.ensure_future(read())
    for delay, data in script:
        await asyncio.sleep(delay)
        if reading.done():
            break
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            break
        writes[0] += 1
    try:
        await asyncio.wait_for(reading, limit - (time.monotonic() - start))
    except TimeoutError:
        events.append((limit, "open", b""))
    writer.close()
    return [(t, kind, _normal(data)) for t, kind, data in events]


async def _h2_post(port: int, path: str, data_after: float | None) -> list[tuple[float, str]]:
    """A POST whose HEADERS declare 5 bytes; its DATA after ``data_after`` s (None: never). What
    the server sends on the stream, with when (bounded: 1.2 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "d.test"),
                          ("content-length", "5")])
    writer.write(conn.data_to_send())
    start = time.monotonic()
    seen: list[tuple[float, str]] = []
    sent = data_after is None
    try:
        while time.monotonic() - start < 1.2:
            wait = 1.2 - (time.monotonic() - start)
            if not sent:
                wait = min(wait, max(0.0, data_after - (time.monotonic() - start)))  # type: ignore[operator]
            try:
                raw = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                raw = None
            if raw == b"":
                break
            if raw:
                for event in conn.receive_data(raw):
                    now = time.monotonic() - start
                    if isinstance(event, h2.events.ResponseReceived):
                        seen.append((now, "status " + dict(event.headers)[b":status"].decode()))
                    elif isinstance(event, h2.events.DataReceived):
                        seen.append((now, "data " + event.data[:20].decode()))
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        seen.append((now, "end"))
                    elif isinstance(event, h2.events.StreamReset):
                        seen.append((now, f"reset {int(event.error_code)}"))
            if not sent and time.monotonic() - start >= data_after:  # type: ignore[operator]
                sent = True
                try:
                    conn.send_data(1, b"hello", end_stream=True)
                except Exception:  # noqa: BLE001, S110 - the stream was reset already: nothing to send
                    pass
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return seen


async def _h2_late_data(port: int) -> list[str]:
    """HEADERS of a POST, and 0.3 s later (the answer and its RST_STREAM NO_ERROR are out) its DATA
    in two frames and a PING, written raw: every frame the server sent, by type (nginx skips DATA
    for a stream it closed; a STREAM_CLOSED reset for each would be a difference)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/r"), (":scheme", "http"), (":authority", "d.test"),
                          ("content-length", "5")])
    writer.write(conn.data_to_send())
    await asyncio.sleep(0.3)
    writer.write(DataFrame(1, data=b"hel").serialize() + DataFrame(1, data=b"lo", flags=["END_STREAM"]).serialize()
                 + PingFrame(0, opaque_data=b"12345678").serialize())
    raw = b""
    try:
        while b"\x06\x01\x00\x00\x00\x00" not in raw:  # until the PING's ACK (type 6, flags 1, stream 0)
            chunk = await asyncio.wait_for(reader.read(65536), 1.0)
            if not chunk:
                break
            raw += chunk
    except TimeoutError:
        pass
    writer.close()
    frames = []
    while len(raw) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:9 + length]))
        raw = raw[9 + length:]
        frames.append(f"{type(frame).__name__} {frame.stream_id} {getattr(frame, 'error_code', '')} "
                      f"{','.join(sorted(frame.flags))}")
    return frames


def _compare(nginx: list[Event], newproxy: list[Event], name: str, tolerance: float) -> None:
    assert [e[1:] for e in nginx] == [e[1:] for e in newproxy], (name, nginx, newproxy)
    for (t1, kind, _), (t2, _, _) in zip(nginx, newproxy):
        if kind != "open":
            assert abs(t1 - t2) <= tolerance, (name, kind, t1, t2, nginx, newproxy)


def test_discarded_bodies_match_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "f").mkdir(parents=True)
    (root / "f" / "a.txt").write_text("file\n")
    (root / "f" / "big.bin").write_bytes(bytes(range(256)) * 2048)  # 512 KiB: sent past the inline size
    (root / "404.html").write_text("not here\n")
    path = tmp_path / "nginx.conf"
    path.write_text(CONF % {"root": root})
    config = parse_config(str(path))
    the_plan = plan(config)
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        h1_ports = [t.listen_ports["*:8080"] for t in started.targets]
        h2_ports = [t.listen_ports["*:8081"] for t in started.targets]

        async def everything() -> tuple[list[list[Event]], list[list[tuple[float, str]]]]:
            h1 = asyncio.gather(*(_run(port, script) for script, _ in CASES.values() for port in h1_ports))
            h2s = asyncio.gather(*(_h2_post(port, p, after) for p, after in
                                   [("/r", None), ("/r", 0.3), ("/p/x", 0.3)] for port in h2_ports))
            return await asyncio.gather(h1, h2s)  # type: ignore[return-value]

        h1_runs, h2_runs = asyncio.run(everything())
        late = [asyncio.run(_h2_late_data(port)) for port in h2_ports]
        forwarded = started.pool.take()
        time.sleep(0.2)  # the last log lines
        logs = [sorted(next(Path(t.workdir).glob("access-*a.log")).read_text().splitlines())
                for t in started.targets]
    outcomes = {name: (h1_runs[2 * i], h1_runs[2 * i + 1]) for i, name in enumerate(CASES)}
    for name, (nginx, newproxy) in outcomes.items():
        _compare(nginx, newproxy, name, CASES[name][1])
    for i in range(0, len(h2_runs), 2):
        nginx_h2, newproxy_h2 = h2_runs[i], h2_runs[i + 1]
        assert [e[1] for e in nginx_h2] == [e[1] for e in newproxy_h2], (nginx_h2, newproxy_h2)
        assert all(abs(a[0] - b[0]) <= 0.35 for a, b in zip(nginx_h2, newproxy_h2)), (nginx_h2, newproxy_h2)
    assert late[0] == late[1] and late[0][-2:] == ["RstStreamFrame 1 0 ", "PingFrame 0  ACK"], late
    # Logged once the body is dropped, with the head's length only (nginx does not count it).
    assert logs[0] == logs[1] and len(logs[0]) > len(CASES), logs
    assert '200 54 "POST /r HTTP/1.1" POST' in logs[0], logs[0]
    assert '200 10 "POST /r HTTP/1.1" POST' in logs[0], logs[0]  # chunked, the next request in its last read

    # What the cases show, so that the comparison cannot pass on two empty answers:
    first = outcomes["no body yet"][0]
    assert first[0][0] < 0.3 and first[0][2].startswith(b"HTTP/1.1 200") and first[1][1] == "FIN"
    assert 0.8 <= first[1][0] <= 1.5, first  # lingering_timeout, not client_body_timeout
    kept = outcomes["body later, then kept alive"][0]
    assert kept[0][0] < 0.3 and kept[1][2].startswith(b"HTTP/1.1 200") and kept[2][1] == "FIN"
    assert outcomes["expect, return"][0][0][2].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert outcomes["expect, file"][0][0][2].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert outcomes["expect, error page"][0][0][2].startswith(b"HTTP/1.1 410")
    assert outcomes["expect, error_page to a file"][0][0][2].startswith(b"HTTP/1.1 404")
    assert outcomes["expect, HTTP/1.0"][0][0][2].startswith(b"HTTP/1.1 200")
    assert outcomes["expect, error_page =200"][0][0][2].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert outcomes["expect, error_page to a URL"][0][0][2].startswith(b"HTTP/1.1 302")
    too_large = outcomes["expect, 413 at the head"][0]
    assert too_large[0][2].startswith(b"HTTP/1.1 413") and too_large[1][1] == "FIN" and 0.2 < too_large[1][0] < 0.6
    assert outcomes["413 at the head of a proxied location"][0][-1][0] > 0.5  # closed once the body is in
    assert outcomes["bad chunk with the head"][0][0][2].startswith(b"HTTP/1.1 400")
    after = outcomes["bad chunk after the answer"][0]
    assert after[0][2].startswith(b"HTTP/1.1 200") and after[1][1] == "FIN" and len(after) == 2
    assert outcomes["pipelined after a body"][0][0][2].count(b"HTTP/1.1 200") == 2
    assert outcomes["request behind a close answer"][0][0][2].count(b"HTTP/1.1") == 1
    assert outcomes["server-level redirect"][0][0][2].startswith(b"HTTP/1.1 301")
    assert outcomes["try_files to a file"][0][0][0] < 0.25 and b"file\n" in outcomes["try_files to a file"][0][0][2]
    proxied = outcomes["try_files to a proxy"][0]
    assert proxied[0][0] > 0.25 and b'"body": "hello"' in proxied[0][2]  # read whole, then proxied
    assert outcomes["rewrite to a return"][0][0][0] < 0.25
    assert outcomes["rewrite to a proxy"][0][0][0] > 0.25 and b'"body": "hello"' in outcomes["rewrite to a proxy"][0][0][2]
    big = outcomes["large file before the body"][0]
    assert big[0][0] < 0.3 and len(big[0][2]) > 512 * 1024 and big[1][2].startswith(b"HTTP/1.1 200")
    assert outcomes["trickled past lingering_time"][0][-1][1] == "RST"
    assert [e[1] for e in h2_runs[0]] == ["status 200", "data r\n", "end", "reset 0"] and h2_runs[0][0][0] < 0.25
    assert h2_runs[4][0][1] == "status 200" and h2_runs[4][0][0] > 0.25  # proxied: answered once the body is in
    assert sum(1 for r in forwarded if r.body == b"hello") == 6  # the proxied bodies (h2, try_files, rewrite)
    assert not [r for r in forwarded if r.body != b"hello"]  # and nothing else went upstream


def test_body_that_never_comes_with_reset_timedout_connection(tmp_path: Path) -> None:
    """The wait for a discarded body timing out is a timed-out request: RST with the option on."""
    conf = """
events {}
http {
    lingering_timeout 1s;
    reset_timedout_connection on;
    server { listen 8080; server_name d.test; location / { return 200 "r\\n"; } }
}
"""
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        ports = [t.listen_ports["*:8080"] for t in started.targets]
        script: Script = [(0, b"POST /r HTTP/1.1\r\n" + H + b"Content-Length: 9\r\n\r\nabc")]

        async def both() -> list[list[Event]]:
            return await asyncio.gather(*(_run(port, script, 3.0) for port in ports))

        nginx, newproxy = asyncio.run(both())
    _compare(nginx, newproxy, "reset_timedout_connection", 0.35)
    assert nginx[0][2].startswith(b"HTTP/1.1 200") and nginx[1][1] == "RST" and 0.8 <= nginx[1][0] <= 1.5, nginx
