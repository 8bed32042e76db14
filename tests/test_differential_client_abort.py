"""A client that goes away while its request is proxied, against real nginx.

nginx watches the client's connection while the upstream works (ngx_http_upstream_check_broken_connection,
through epoll's RDHUP): a FIN, whether the client closed or only half-closed, or a reset, ends the
request at once. It logs ``[info] epoll_wait() reported that client prematurely closed connection,
so upstream connection is closed too`` in the upstream's phase (connecting, sending the request,
reading the answer's head, reading the answer), closes the peer's connection, drops what the
client pipelined behind, and logs 499 (or, once part of an answer went out, its status). Each
case is a client script (sends, pauses of 0.3 s that begin "stages", then a FIN, a close or a
reset); compared: what the client got and in which stage, when its connection was closed, what
the upstream received by stage and when the proxy closed the upstream connection (the recording
upstream's ``/__reads/`` marker, with ``/__delay/`` and ``/__slowbody/``), the info lines, and
the access log line for line. A FIN after a local answer, or after a proxied answer is complete,
changes nothing but nginx's "closed keepalive connection" line. With proxy_ignore_client_abort on,
a FIN or a close does not end the request: the answer is read and written; after a reset, the
answer is read and its write fails (nginx's "writev() failed (104: ...) while sending to client",
its status logged with nothing sent). A FIN or a reset while an auth_request subrequest is at
work ends the request in the same way (and over HTTP/2, a reset stream): nginx watches the client
for the subrequest too, and its line names the subrequest.

Over HTTP/2 (nginx checks no connection for a stream), a client's RST_STREAM while the upstream
works: nginx's "client canceled stream N" line in the upstream's phase, the peer closed, 499; and
the connection closed: the peer closed, 499, or 400 for a body being streamed upstream. With
proxy_ignore_client_abort on, the request outlives the reset and the connection's close (counted
by "client prematurely closed connection while processing HTTP/2 connection"): the answer is read,
the peer not closed early, and the status logged with nothing sent.

Not compared: a FIN while a buffered answer's body comes. nginx's event pipe holds a part of the
body smaller than a proxy buffer until the buffer fills or the answer ends, and its write filter
holds less than postpone_output; newproxy relays what comes at once, so the client has more of
the answer when it leaves.
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
from tests.blackhole import black_hole, into_hole
from tests.staged import (SeenBytes, Step, access_logs, assert_same_views, info_log, log_size, read_for,
                          request_lines, run_script, upstream_by_stage)

CONF = """
events {}
http {
    log_format abort '$request $status $body_bytes_sent $upstream_status';
    access_log logs/abort.log abort;
    server {
        listen 127.0.0.1:8080;
        listen 127.0.0.1:8081 http2;
        server_name abort.test;
        location /p/ { proxy_pass http://127.0.0.1:9000; }
        location /unbuffered/ { proxy_buffering off; proxy_pass http://127.0.0.1:9000; }
        location /streamed/ { proxy_request_buffering off; proxy_pass http://127.0.0.1:9000; }
        location /hole/ { proxy_connect_timeout 5s; proxy_pass http://127.0.0.1:9006; }
        location /ignored/ { proxy_ignore_client_abort on; proxy_pass http://127.0.0.1:9000; }
        location = /r { return 200 "local\\n"; }
        location /authed/ { auth_request /auth; proxy_pass http://127.0.0.1:9000; }
        location = /auth { internal; proxy_pass http://127.0.0.1:9000/__reads/__delay/1000/auth; }
    }
}
"""
# The peer of /hole/ never completes the handshake (tests/blackhole.py).
HOLE_LINES = {number for number, line in enumerate(CONF.splitlines(), start=1) if "9006" in line}
GAP = 0.3


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: abort.test\r\n\r\n".encode()


CASES: dict[str, list[Step]] = {
    "FIN while the answer is awaited": [_get("/p/__reads/__delay/1000/a"), GAP, "fin", 1.0],
    "close while the answer is awaited": [_get("/p/__reads/__delay/1000/b"), GAP, "close", 1.0],
    "reset while the answer is awaited": [_get("/p/__reads/__delay/1000/c"), GAP, "reset", 1.0],
    "FIN while connecting": [_get("/hole/d"), GAP, "fin", 0.6],
    "FIN while the answer's body comes, unbuffered": [_get("/unbuffered/__reads/__slowbody/1000/f"), GAP, "fin",
                                                      1.0],
    "pipelined, then FIN": [_get("/p/__reads/__delay/1000/g") + _get("/p/__reads/h"), GAP, "fin", 1.0],
    "FIN after a local answer": [_get("/r"), "fin", 0.6],
    "proxy_ignore_client_abort, FIN": [_get("/ignored/__reads/__delay/1000/n"), GAP, "fin", 1.0],
    "proxy_ignore_client_abort, close": [_get("/ignored/__reads/__delay/1000/o"), GAP, "close", 1.0],
    "proxy_ignore_client_abort, reset": [_get("/ignored/__reads/__delay/1000/p"), GAP, "reset", 1.0],
    "FIN after a proxied answer": [_get("/p/__reads/i"), GAP, "fin", 0.6],
    "FIN while the auth_request subrequest is awaited": [_get("/authed/s"), GAP, "fin", 1.0],
    "reset while the auth_request subrequest is awaited": [_get("/authed/t"), GAP, "reset", 1.0],
}
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -")]


H2_CASES: dict[str, tuple[str, str, bytes | None]] = {  # path; then "reset" (CANCEL) or "close" the
    # connection; a body: a POST that declares one byte more than it sends
    "h2: reset while the answer is awaited": ("/p/__reads/__delay/1000/j", "reset", None),
    "h2: reset while the answer's body comes, unbuffered": ("/unbuffered/__reads/__slowbody/1000/k", "reset", None),
    "h2: connection closed while the answer is awaited": ("/p/__reads/__delay/1000/l", "close", None),
    "h2: connection closed mid-body, streamed": ("/streamed/__reads/m", "close", b"abc"),
    # nginx does not watch the stream then: the answer is read on, past the connection's close.
    "h2: proxy_ignore_client_abort, reset": ("/ignored/__reads/__delay/1000/q", "reset", None),
    "h2: reset while the auth_request subrequest is awaited": ("/authed/u", "reset", None),
}


async def _run_h2(port: int, path: str, how: str, body: bytes | None) -> SeenBytes:
    """A request on an h2c connection; after 0.3 s its stream reset (CANCEL) or the connection
    closed; then 0.6 s read."""
    seen = SeenBytes(_NOISE)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET" if body is None else "POST"), (":path", path), (":scheme", "http"),
               (":authority", "abort.test")]
    if body is not None:
        headers.append(("content-length", str(len(body) + 1)))
    conn.send_headers(1, headers, end_stream=body is None)
    if body:
        conn.send_data(1, body)
    seen.marks.append(time.monotonic())
    writer.write(conn.data_to_send())

    def got(data: bytes) -> None:
        stage = seen.stage(time.monotonic())
        for event in conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                seen.got.append((stage, b"status " + dict(event.headers).get(b":status", b"")))
            elif isinstance(event, DataReceived):
                seen.got.append((stage, event.data))
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                seen.got.append((stage, b"<end>"))
            elif isinstance(event, StreamReset):
                seen.got.append((stage, b"<reset %d>" % event.error_code))
        writer.write(conn.data_to_send())

    closed = await read_for(reader, GAP, got)
    seen.marks.append(time.monotonic())
    if how == "close":
        writer.close()
        await asyncio.sleep(0.6)
        return seen
    if not closed:
        conn.reset_stream(1, 8)
        writer.write(conn.data_to_send())
    if await read_for(reader, 0.6, got, closed) and seen.closed is None:
        seen.closed = seen.stage(time.monotonic())
    writer.close()
    return seen


def _about_the_client(line: str) -> bool:
    return "client" in line.split(", client: ")[0] or " while " in line


def test_client_that_goes_away_is_handled_as_by_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    seen: dict[str, list[object]] = {}
    with black_hole() as hole, started_targets(
            config, plan(config), str(tmp_path / "run"),
            tweak_reference=lambda tree: info_log(dirs[0])(into_hole(hole, HOLE_LINES)(tree)),
            tweak_other=lambda tree: info_log(dirs[1])(into_hole(hole, HOLE_LINES)(tree))) as started:
        ports = [t.listen_ports["127.0.0.1:8080"] for t in started.targets]
        h2_ports = [t.listen_ports["127.0.0.1:8081"] for t in started.targets]
        scripts = [(name, lambda port, steps=steps: run_script(port, steps, _NOISE), ports)
                   for name, steps in CASES.items()]
        scripts += [(name, lambda port, path=path, how=how, body=body: _run_h2(port, path, how, body), h2_ports)
                    for name, (path, how, body) in H2_CASES.items()]
        for name, script, on in scripts:
            for port, directory in zip(on, dirs, strict=True):  # one at a time: the records are theirs
                start = log_size(directory)
                run = asyncio.run(script(port))
                time.sleep(0.1)
                started.pool.settle()
                # The upstream has answered: the proxy's lines about it (a close read after the
                # answer: "closed keepalive connection") follow within a moment.
                time.sleep(0.2)
                # (A connection's lines name the listening address: each target's own port.)
                lines = [line.replace(f"server: 127.0.0.1:{port}", "server: 127.0.0.1:<port>")
                         for line in request_lines(directory, start, _about_the_client)]
                seen.setdefault(name, []).append((run.answer(), run.closed, upstream_by_stage(started.pool.take(), run),
                                                  lines))
    assert_same_views(seen)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/abort.log")
    assert newproxy == nginx
    # What nginx did, so that the comparison cannot pass on two proxies that both serve on:
    answer, closed, upstream, info = seen["FIN while the answer is awaited"][0]  # type: ignore[misc]
    assert answer == [] and closed == 2 and upstream[0][2][-1] == (2, b"<closed>"), (answer, closed, upstream)
    assert len(info) == 1 and info[0].startswith(
        "[info] epoll_wait() reported that client prematurely closed connection, so upstream connection is closed "
        "too while sending request to upstream"), info
    assert [line.split()[3] for line in nginx[:3]] == ["499"] * 3, nginx
    line_of = {line.split()[1].rsplit("/", 1)[-1]: line.split() for line in nginx}
    status_of = {name: fields[3] for name, fields in line_of.items()}
    assert (status_of["l"], status_of["m"]) == ("499", "400"), nginx  # h2: connection closed
    # The auth_request subrequest is watched as the request is: its peer closed, 499, the line
    # names the subrequest.
    assert (status_of["s"], status_of["t"]) == ("499", "499"), nginx
    *_, info = seen["FIN while the auth_request subrequest is awaited"][0]  # type: ignore[misc]
    assert len(info) == 1 and ', subrequest: "/auth", upstream: ' in info[0], info
    # h2, proxy_ignore_client_abort: the answer read on after the reset and the connection's close,
    # logged with its status and nothing sent; the upstream's connection not closed early.
    assert line_of["q"][-3:] == ["200", "0", "200"], nginx
    _, _, upstream, info = seen["h2: proxy_ignore_client_abort, reset"][0]  # type: ignore[misc]
    assert all(got != b"<closed>" for _, got in upstream[0][2]), upstream
    assert info[-1].startswith("[info] client prematurely closed connection while processing HTTP/2 connection"), info
    *_, info = seen["h2: reset while the answer is awaited"][0]  # type: ignore[misc]
    assert len(info) == 1 and info[0].startswith("[info] client canceled stream 1 while sending request to upstream"), \
        info
