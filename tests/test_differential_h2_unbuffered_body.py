"""proxy_request_buffering off over HTTP/2 against real nginx: the body goes upstream as its DATA come.

nginx runs such a request at its HEADERS and sends the body on as it reads it
(ngx_http_v2_read_unbuffered_request_body): with the Content-Length the client sent, or, without
one, chunked (proxy_http_version 1.1), one chunk per read of the connection (the DATA frames of one
read together). Each case is a client script on an h2c connection: DATA frames separated by pauses
(the "stages"); the recording upstream's ``/__reads/`` marker times each read it got. Compared: per
stage, the bytes the upstream had received; the status and body the client got, and in which stage;
the info and error lines logged; the access log. Also: a client that stalls past client_body_timeout
(408, the stream reset, the peer closed), or resets the stream mid-body (400 in the log, the peer
closed); a body that outgrows or falls short of its Content-Length is
refused (400, nginx's info line; read buffered too), one without a length past client_max_body_size
too (413, "too large chunked body"), and the cases nginx reads whole (to an HTTP/1.0
upstream without a length; request buffering on) reach the upstream only once the body is in.
(Over HTTP/1.1: tests/test_differential_unbuffered_body.py.)
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.staged import (Stages, access_logs, assert_same_views, info_log, log_size, read_for, request_lines,
                          upstream_by_stage)

CONF = """
events {}
http {
    log_format stream '$request $status $body_bytes_sent $upstream_status';
    access_log logs/stream.log stream;
    client_body_timeout 1s;
    proxy_read_timeout 3s;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    upstream pair { server 127.0.0.1:9001; server 127.0.0.1:9002; }
    server {
        listen 127.0.0.1:8081 http2;
        server_name h2stream.test;
        location /s/ { proxy_pass http://127.0.0.1:9000; }
        location /pair/ { proxy_next_upstream error timeout non_idempotent; proxy_pass http://pair; }
        location /s10/ { proxy_http_version 1.0; proxy_pass http://127.0.0.1:9000; }
        location /buffered/ { proxy_request_buffering on; proxy_pass http://127.0.0.1:9000; }
        location /small/ { client_max_body_size 10; proxy_pass http://127.0.0.1:9000; }
        location /smallbuf/ { client_max_body_size 10; proxy_request_buffering on; proxy_pass http://127.0.0.1:9000; }
    }
}
"""
GAP = 0.3
END = 0.6
# A step: ("data", [bytes, ...], end_stream): DATA frames in one write; ("reset", [], False): RST_STREAM
# (CANCEL); or a float: seconds read.
Step = tuple[str, list[bytes], bool] | float


def _data(*frames: bytes, end: bool = False) -> tuple[str, list[bytes], bool]:
    return ("data", list(frames), end)


CASES: dict[str, tuple[str, int | None, list[Step]]] = {  # path, Content-Length, script
    "length in three reads": ("/s/__reads/a", 10, [_data(b"abc"), GAP, _data(b"defgh"), GAP, _data(b"ij", end=True),
                                                   END]),
    "no length: a chunk per read": ("/s/__reads/b", None, [_data(b"abc"), GAP, _data(b"defgh", b"DEFGH"), GAP,
                                                           _data(b"ij", end=True), END]),
    "no length, the end alone": ("/s/__reads/c", None, [_data(b"abc"), GAP, _data(end=True), END]),
    "more than declared": ("/s/__reads/d", 5, [_data(b"abc"), GAP, _data(b"defgh"), END]),
    "the client stalls": ("/s/__reads/k", 9, [_data(b"abc"), 1.6]),
    "the client resets the stream": ("/s/__reads/l", 9, [_data(b"abc"), GAP, ("reset", [], False), END]),
    "less than declared": ("/s/__reads/e", 9, [_data(b"abc"), GAP, _data(b"de", end=True), END]),
    "the peer closes: no next peer": ("/pair/__reads/__close/f", 5, [_data(b"ab"), GAP, _data(b"cde", end=True), END]),
    "HTTP/1.0 upstream, no length": ("/s10/__reads/g", None, [_data(b"abc"), GAP, _data(b"de", end=True), END]),
    "buffered": ("/buffered/__reads/h", 5, [_data(b"ab"), GAP, _data(b"cde", end=True), END]),
    "buffered, more than declared": ("/buffered/__reads/i", 5, [_data(b"abc"), GAP, _data(b"defgh"), END]),
    "no length, past client_max_body_size": ("/small/__reads/m", None, [_data(b"abcdef"), GAP, _data(b"ghijkl"), END]),
    "buffered, no length, past client_max_body_size": ("/smallbuf/__reads/n", None,
                                                       [_data(b"abcdef"), GAP, _data(b"ghijkl"), END]),
    "buffered, less than declared": ("/buffered/__reads/j", 9, [_data(b"abc"), GAP, _data(b"de", end=True), END]),
}
_NOISE = [(re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>")]


class Seen(Stages):
    """What one script saw: the answer's status, body pieces and end or reset, each with its stage."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[int, str, bytes]] = []

    def answer(self) -> list[tuple[int, str, bytes]]:
        merged: list[tuple[int, str, bytes]] = []
        for stage, kind, data in self.events:
            for pattern, replacement in _NOISE:
                data = pattern.sub(replacement, data)
            if merged and merged[-1][:2] == (stage, kind) and kind == "data":
                merged[-1] = (stage, kind, merged[-1][2] + data)
            else:
                merged.append((stage, kind, data))
        return merged


async def _run(port: int, path: str, length: int | None, steps: list[Step]) -> Seen:
    seen = Seen()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "h2stream.test")]
    if length is not None:
        headers.append(("content-length", str(length)))
    conn.send_headers(1, headers)
    closed = False

    def got(data: bytes) -> None:
        stage = seen.stage(time.monotonic())
        for event in conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                seen.events.append((stage, "status", dict(event.headers).get(b":status", b"")))
            elif isinstance(event, DataReceived):
                seen.events.append((stage, "data", event.data))
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                seen.events.append((stage, "end", b""))
            elif isinstance(event, StreamReset):
                seen.events.append((stage, "reset", b"%d" % event.error_code))
        writer.write(conn.data_to_send())

    for step in steps:
        if isinstance(step, float):
            closed = await read_for(reader, step, got, closed)
            continue
        kind, frames, end = step
        seen.marks.append(time.monotonic())
        try:
            if kind == "reset":
                conn.reset_stream(1, 8)
            elif not frames:
                conn.end_stream(1)
            for number, frame in enumerate(frames):
                conn.send_data(1, frame, end_stream=end and number == len(frames) - 1)
        except Exception:  # noqa: BLE001 - the stream was reset meanwhile: nothing more to send
            pass
        writer.write(conn.data_to_send())
        await writer.drain()
    writer.close()
    return seen


def _about_the_body(line: str) -> bool:
    return " body" in line or "declared" in line or " while " in line


def test_h2_unbuffered_bodies_stream_as_in_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    seen: dict[str, list[object]] = {}
    with started_targets(config, plan(config), str(tmp_path / "run"),
                         tweak_reference=info_log(dirs[0]), tweak_other=info_log(dirs[1])) as started:
        ports = [t.listen_ports["127.0.0.1:8081"] for t in started.targets]
        for name, (target, length, steps) in CASES.items():
            for port, directory in zip(ports, dirs, strict=True):  # one at a time: the records are theirs
                start = log_size(directory)
                run = asyncio.run(_run(port, target, length, steps))
                time.sleep(0.1)
                started.pool.settle()
                seen.setdefault(name, []).append((run.answer(), upstream_by_stage(started.pool.take(), run),
                                                  request_lines(directory, start, _about_the_body)))
    assert_same_views(seen)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/stream.log")  # line for line
    assert newproxy == nginx
    assert "POST /s/__reads/k HTTP/2.0 408 - -" in nginx, nginx  # (masked: 0 bytes)
    assert "POST /s/__reads/l HTTP/2.0 400 - -" in nginx, nginx
    for case in ("no length, past client_max_body_size", "buffered, no length, past client_max_body_size"):
        answer, _, lines = seen[case][0]  # type: ignore[misc]
        assert answer[0][2] == b"413" and len(lines) == 1 and "too large chunked body: 12 bytes" in lines[0], lines
    # What nginx did, so that the comparison cannot pass on two proxies that both buffer:
    _, upstream, _ = seen["length in three reads"][0]  # type: ignore[misc]
    assert [stage for stage, _ in upstream[0][2]] == [1, 2, 3], upstream
    _, upstream, _ = seen["no length: a chunk per read"][0]  # type: ignore[misc]
    assert upstream[0][2][1] == (2, b"a\r\ndefghDEFGH\r\n"), upstream
    answer, _, lines = seen["more than declared"][0]  # type: ignore[misc]
    assert answer[0][2] == b"400" and len(lines) == 1, (answer, lines)
    _, upstream, _ = seen["the peer closes: no next peer"][0]  # type: ignore[misc]
    assert len(upstream) == 1, upstream
    _, upstream, _ = seen["buffered"][0]  # type: ignore[misc]
    assert [stage for stage, _ in upstream[0][2]] == [2], upstream
