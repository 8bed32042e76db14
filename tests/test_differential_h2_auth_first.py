"""auth_request before the request body over HTTP/2, against real nginx 1.22.

nginx runs an HTTP/2 request's phases at its HEADERS, as it runs an HTTP/1 request's at its head:
for an auth_request location the subrequest goes out before any DATA is read. A refusal is answered
at once (the DATA that follows is dropped, and the stream is reset with NO_ERROR after the answer,
as ngx_http_v2_close_stream does while the client's side is open); an acceptance reads the body and
proxies it. newproxy/http/h2.py does the same (discard.AUTH_FIRST, Stream.body_in).

Each case opens an h2c connection to both targets at once, sends a POST's HEADERS, waits, and only
then its DATA. Compared: what came back before the DATA was sent and after (status, body length,
how the stream ended), the requests the recording upstreams had received when the DATA went out
(the auth subrequest, or nothing), and every upstream request in the end (with its body).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset
from h2.exceptions import StreamClosedError

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

CONF = """
events {}
http {
    access_log off;
    server_tokens off;
    upstream backend { server 127.0.0.1:9101; }
    upstream authsvc { server 127.0.0.1:9102; }
    server {
        listen 127.0.0.1:8080 http2;
        location /up/ { auth_request /auth-ok; proxy_pass http://backend; }
        location /deny/ { auth_request /auth-401; proxy_pass http://backend; }
        location /broken/ { auth_request /auth-500; proxy_pass http://backend; }
        location /local/ { auth_request /auth-return401; proxy_pass http://backend; }
        location /localok/ { auth_request /auth-return204; proxy_pass http://backend; }
        location /small/ { client_max_body_size 5; auth_request /auth-ok; proxy_pass http://backend; }
        location /ret/ { return 200 "no body wanted\n"; }
        location = /auth-ok {
            internal;
            proxy_pass http://authsvc/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location = /auth-401 { internal; proxy_pass http://authsvc/check/__status/401; proxy_pass_request_body off; }
        location = /auth-500 { internal; proxy_pass http://authsvc/check/__status/500; proxy_pass_request_body off; }
        location = /auth-return401 { internal; return 401; }
        location = /auth-return204 { internal; return 204; }
    }
}
"""

BODY = b"abcdefghij"
WAIT = 0.5  # between the HEADERS and the DATA: a subrequest and a refusal come back well within it

# (path, extra request headers)
CASES: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("/deny/a", ()),
    ("/local/a", ()),
    ("/broken/a", ()),
    ("/up/a", ()),
    ("/up/b", (("content-length", str(len(BODY))),)),
    ("/localok/a", ()),
    ("/small/a", ()),  # the body passes client_max_body_size while, or after, the subrequest runs
    ("/ret/a", ()),  # no auth_request: an answer that does not read the body comes at the HEADERS too
]


def _events(conn: H2Connection, data: bytes, out: list[Any]) -> None:
    """Note stream 1's events."""
    for event in conn.receive_data(data):
        if getattr(event, "stream_id", None) != 1:
            continue
        if isinstance(event, ResponseReceived):
            out.append(("status", dict(event.headers)[b":status"].decode()))
        elif isinstance(event, DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
            # Error pages name their server: newproxy's own name against nginx's.
            out.append(("data", event.data.replace(b"<center>newproxy</center>", b"<center>nginx</center>")))
        elif isinstance(event, StreamEnded):
            out.append(("end",))
        elif isinstance(event, StreamReset):
            out.append(("reset", int(event.error_code)))


def _has(events: list[Any], kind: str) -> bool:
    return any(event[0] == kind for event in events)


async def _read_until(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: H2Connection,
                      out: list[Any], until: float, done: Callable[[list[Any]], bool]) -> None:
    """Read stream 1's events into ``out`` until ``done(out)`` or the loop's clock reaches ``until``."""
    loop = asyncio.get_running_loop()
    while not done(out) and loop.time() < until:
        try:
            data = await asyncio.wait_for(reader.read(65536), until - loop.time())
        except asyncio.TimeoutError:
            return
        assert data, "connection closed"
        _events(conn, data, out)
        writer.write(conn.data_to_send())


async def _conversation(port: int, path: str, extra: tuple[tuple[str, str], ...],
                        midpoint: Any, tls: ssl.SSLContext | None = None) -> dict[str, Any]:
    """The POST's HEADERS, WAIT, then its DATA (h2c, or over TLS with ``tls``): what came back before
    and after, and what the upstreams had received when the DATA went (``midpoint()``).

    The whole pause is read, not just up to the answer's END_STREAM: the reset that follows an answer
    may come in a later read, and it belongs before the DATA all the same."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                   server_hostname="a.test" if tls is not None else None)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "a.test"),
                          *extra])
    writer.write(conn.data_to_send())
    before: list[Any] = []
    after: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        await _read_until(reader, writer, conn, before, loop.time() + WAIT, lambda out: _has(out, "reset"))
        upstream_before = midpoint()
        try:
            conn.send_data(1, BODY, end_stream=True)
            sent = True
        except StreamClosedError:
            sent = False  # reset by the server already: nothing more can go on the stream
        writer.write(conn.data_to_send())
        if not _has(before, "reset"):
            if _has(before, "end"):
                # Answered before the DATA and not reset: a reset may still follow, within a pause.
                await _read_until(reader, writer, conn, after, loop.time() + WAIT, lambda out: _has(out, "reset"))
            else:
                await _read_until(reader, writer, conn, after, loop.time() + 5,
                                  lambda out: _has(out, "reset") or _has(out, "end"))
                assert _has(after, "reset") or _has(after, "end"), "no answer"
        return {"before": before, "upstream before the body": upstream_before, "body sent": sent, "after": after}
    finally:
        writer.close()


def _seen(records: list[Any]) -> list[tuple[str, str, str, bytes, str | None]]:
    return [(r.upstream, r.method, r.uri, r.body, dict((n.lower(), v) for n, v in r.headers).get("content-length"))
            for r in records]


def test_auth_request_runs_at_the_headers_over_h2_like_nginx(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    the_plan = plan(config)
    listen = next(name for name in the_plan.listens if name.endswith(":8080"))
    results: list[dict[str, Any]] = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            port = target.listen_ports[listen]
            per_case = {}
            for case_path, extra in CASES:
                started.pool.take()
                talk = asyncio.run(_conversation(port, case_path, extra, lambda: _seen(started.pool.take())))
                started.pool.settle()
                talk["upstream after the body"] = _seen(started.pool.take())
                per_case[case_path + (" with length" if extra else "")] = talk
            results.append(per_case)
    nginx, newproxy = results
    for case in nginx:
        assert newproxy[case] == nginx[case], case
    # What makes the comparison mean something: refusals came before the body, and the acceptance's
    # subrequest had reached the auth upstream before the body went out.
    assert nginx["/deny/a"]["before"][0] == ("status", "401")
    assert nginx["/local/a"]["before"][0] == ("status", "401")
    assert nginx["/deny/a"]["before"][-1] == ("reset", 0) and not nginx["/deny/a"]["body sent"]
    accepted = nginx["/up/a"]
    assert accepted["before"] == [] and [u[2] for u in accepted["upstream before the body"]] == ["/check"]
    assert accepted["after"][0] == ("status", "200") and accepted["upstream after the body"][0][3] == BODY
