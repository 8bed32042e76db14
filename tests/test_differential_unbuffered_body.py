"""proxy_request_buffering off against real nginx: the body goes upstream while the client sends it.

nginx reads such a body unbuffered (r->request_body_no_buffering): it connects once the head is read,
sends the request's head with what came of the body so far, then each later read as it comes (a
chunked body chunked again, one chunk per read). Each case here is a client script: sends separated
by pauses (0.3 s, the "stages"), maybe a close. The recording upstream's ``/__reads/`` marker keeps
the time of each read it got, so what is compared is, per stage, the bytes the upstream had received
(the head and the body as it went up), then what the client got and in which stage, and whether the
connection was closed on it; then the access log (status, bytes, upstream address) and the info
lines of the error log, line for line. The cases:

- a body by length and a chunked one in three stages; a chunked one whose head came alone; with
  ``Expect: 100-continue`` ("100 Continue" at once, as the content handler reads the body at once);
- the client closes mid-body (nginx's [info] "client prematurely closed connection while sending
  request to upstream", 400 in the log, the upstream connection closed), or stalls past
  client_body_timeout (408, both connections closed, nothing answered);
- the upstream answers at the head (relayed at once; nginx then closes the client's connection,
  reading and dropping the rest of the body);
- client_max_body_size passed, and a bad chunk, mid-body (413 and 400 pages; the peer closed);
- a peer that closes once the body is in: no other peer is tried (u->request_sent with an
  unbuffered body), even with non_idempotent in proxy_next_upstream, where a refused connect still
  goes on to the next peer with the whole body;
- a kept-alive upstream connection used by two streamed bodies in turn; a request pipelined behind
  a streamed body;
- the client closes while the peer is still being connected to (a peer that never completes the
  handshake): nginx's broken-connection check, 499 and "while connecting to upstream";
- a peer that reads nothing: the body backs up (nginx stops reading the client once its buffer is
  full), then proxy_send_timeout's 504;
- not streamed: a chunked body to an HTTP/1.0 upstream, and a location with request buffering on
  (both sent once the body is all in). (Over HTTP/2: tests/test_differential_h2_unbuffered_body.py.)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.blackhole import black_hole, into_hole
from tests.staged import (Step, access_logs, assert_same_views, info_log, log_size, request_lines, run_script,
                          upstream_by_stage)

CONF = """
events {}
http {
    log_format stream '$request $status $body_bytes_sent $upstream_addr $upstream_status $request_length '
                      '$upstream_bytes_sent';
    access_log logs/stream.log stream;
    client_body_timeout 1s;
    proxy_read_timeout 3s;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    upstream pair { server 127.0.0.1:9001; server 127.0.0.1:9002; }
    upstream refused { server 127.0.0.1:9003; server 127.0.0.1:9004; }
    upstream kept { server 127.0.0.1:9005; keepalive 4; }
    server {
        listen 8080;
        server_name stream.test;
        location /s/ { proxy_pass http://127.0.0.1:9000; }
        location /limit/ { client_max_body_size 8; proxy_pass http://127.0.0.1:9000; }
        location /pair/ { proxy_next_upstream error timeout non_idempotent; proxy_pass http://pair; }
        location /refused/ { proxy_pass http://refused; }
        location /kept/ { proxy_set_header Connection ""; proxy_pass http://kept; }
        location /s10/ { proxy_http_version 1.0; proxy_pass http://127.0.0.1:9000; }
        location /buffered/ { proxy_request_buffering on; proxy_pass http://127.0.0.1:9000; }
        location /stuck/ { client_max_body_size 0; proxy_send_timeout 1s; proxy_pass http://127.0.0.1:9000; }
        location /hole/ { proxy_connect_timeout 5s; proxy_pass http://127.0.0.1:9006; }
    }
}
"""
# The peer of /hole/ never completes the handshake (tests/blackhole.py).
HOLE_LINES = {number for number, line in enumerate(CONF.splitlines(), start=1) if "9006" in line}
GAP = 0.3
END = 0.6  # read after the last send: the answers come at once


def _kernel_buffering() -> int:
    """The most the kernel may hold of a body between a proxy and a peer that reads nothing: the
    peer's receive buffer and the proxy's send buffer, each at its autotuning limit."""
    return sum(int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2]) for name in ("tcp_rmem", "tcp_wmem"))


# A body that cannot all fit: what a proxy reads of it past the kernel's buffers is its own buffering
# (half of it is still more than the kernel can hold: 80 MiB where the limits are 32 MiB and 4 MiB).
BIG = 2 * _kernel_buffering() + (8 << 20)


def _head(target: str, *headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: stream.test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _length(target: str, length: int, *more: str) -> bytes:
    return _head(target, f"Content-Length: {length}", *more)


def _chunked(target: str) -> bytes:
    return _head(target, "Transfer-Encoding: chunked")


CASES: dict[str, list[Step]] = {
    "length in three reads": [_length("/s/__reads/a", 13) + b"abc", GAP, b"defgh", GAP, b"ijEND", END],
    "chunked in three reads": [_chunked("/s/__reads/b") + b"3\r\nabc\r\n", GAP, b"5\r\ndefgh\r\n2\r\nij\r\n", GAP,
                               b"0\r\n\r\n", END],
    "chunked, the head alone": [_chunked("/s/__reads/c"), GAP, b"5\r\nhello\r\n0\r\n\r\n", END],
    "expect 100-continue": [_length("/s/__reads/d", 5, "Expect: 100-continue"), GAP, b"hello", END],
    "client closes mid-body": [_length("/s/__reads/e", 13) + b"abc", GAP, b"defgh", GAP, "close"],
    "client stalls": [_length("/s/__reads/f", 13) + b"abc", 1.6],
    "upstream answers at the head": [_length("/s/__reads/__early/g", 10) + b"abc", GAP, b"defgh", GAP, b"ij", GAP],
    "past client_max_body_size": [_chunked("/limit/__reads/h") + b"3\r\nabc\r\n", GAP, b"8\r\n12345678\r\n0\r\n\r\n",
                                  END],
    "a bad chunk": [_chunked("/s/__reads/i") + b"3\r\nabc\r\n", GAP, b"zz\r\n", END],
    "the peer closes: no next peer": [_length("/pair/__reads/__close/j", 5) + b"ab", GAP, b"cde", END],
    "a refused peer: the next one": [_length("/refused/__reads/k", 5) + b"ab", GAP, b"cde", END],
    "kept-alive upstream, first": [_length("/kept/__reads/l", 5) + b"ab", GAP, b"cde", END],
    "kept-alive upstream, second": [_length("/kept/__reads/m", 5) + b"ab", GAP, b"cde", END],
    "pipelined behind": [_length("/s/__reads/n", 5) + b"ab", GAP,
                         b"cde" + b"GET /s/__reads/n2 HTTP/1.1\r\nHost: stream.test\r\nConnection: close\r\n\r\n", END],
    "HTTP/1.0 upstream, chunked": [_chunked("/s10/__reads/o") + b"3\r\nabc\r\n", GAP, b"0\r\n\r\n", END],
    "buffered": [_length("/buffered/__reads/p", 5) + b"ab", GAP, b"cde", END],
    "client closes while connecting": [_length("/hole/r", 10) + b"abc", GAP, "close"],
    # A peer that reads nothing: the body backs up to the client, then proxy_send_timeout (last:
    # its access log line's byte counts are masked below).
    "a peer that does not read": [_length("/stuck/__noread/q", BIG) + b"x" * BIG, 1.5],
}
_NOISE = [(re.compile(rb"Date: [^\r]*"), b"Date: -"), (re.compile(rb"Server: [^\r]*"), b"Server: -"),
          (re.compile(rb"<center>(nginx|newproxy)[^<]*</center>"), b"<center>-</center>"),
          (re.compile(rb"Content-Length: \d+\r\n(?=(?:[^\r]*\r\n)*\r\n<html>)"), b"Content-Length: -\r\n")]


def _compare(tmp_path: Path) -> Iterator[tuple[str, list[object]]]:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    config = parse_config(str(path))
    dirs = [tmp_path / "run" / label for label in ("nginx", "newproxy")]
    with black_hole() as hole, started_targets(
            config, plan(config), str(tmp_path / "run"), refuse={"127.0.0.1:9003"},
            tweak_reference=lambda tree: info_log(dirs[0])(into_hole(hole, HOLE_LINES)(tree)),
            tweak_other=lambda tree: info_log(dirs[1])(into_hole(hole, HOLE_LINES)(tree))) as started:
        ports = [next(iter(t.listen_ports.values())) for t in started.targets]
        for name, steps in CASES.items():
            views: list[object] = []
            for port, directory in zip(ports, dirs, strict=True):  # one at a time: the records are theirs
                info_start = log_size(directory)
                seen = asyncio.run(run_script(port, steps, _NOISE))
                time.sleep(0.1)
                started.pool.settle()
                records = started.pool.take()
                views.append((seen.answer(), seen.closed, upstream_by_stage(records, seen),
                              request_lines(directory, info_start, lambda line: " while " in line)))
            yield name, views


def test_unbuffered_bodies_stream_as_in_nginx(tmp_path: Path) -> None:
    seen = dict(_compare(tmp_path))
    assert_same_views(seen)
    # (How much of the body a peer that reads nothing got before the timeout depends on buffer
    # sizes: each proxy's and the kernel's.)
    nginx, newproxy = access_logs(tmp_path / "run", "logs/stream.log")
    backed_up = [[int(n) for n in line.split()[-2:]] for line in (nginx[-1], newproxy[-1])]
    assert all(0 < n < BIG // 2 for counts in backed_up for n in counts), backed_up
    nginx[-1], newproxy[-1] = (" ".join(line.split()[:-2]) for line in (nginx[-1], newproxy[-1]))
    assert newproxy == nginx
    assert [line.split()[3] for line in nginx if "/hole/r" in line] == ["499"], nginx
    *_, info = seen["client closes while connecting"][0]  # type: ignore[misc]
    assert len(info) == 1 and "so upstream connection is closed too while connecting" in info[0], info
    # What nginx did, so that the comparison cannot pass on two proxies that both buffer:
    answer, closed, upstream, info = seen["length in three reads"][0]  # type: ignore[misc]
    assert [stage for stage, _ in upstream[0][2]] == [1, 2, 3], upstream  # each send's bytes, as it came
    answer, closed, upstream, info = seen["chunked in three reads"][0]  # type: ignore[misc]
    assert upstream[0][2][1] == (2, b"7\r\ndefghij\r\n"), upstream  # a chunk per read
    answer, closed, upstream, info = seen["client closes mid-body"][0]  # type: ignore[misc]
    assert upstream[0][2][-1][1].endswith(b"<closed>") and len(info) == 1, (upstream, info)
    answer, closed, upstream, info = seen["upstream answers at the head"][0]  # type: ignore[misc]
    assert answer[0][0] == 1 and closed == 1, (answer, closed)  # with the head's stage
    answer, closed, upstream, info = seen["the peer closes: no next peer"][0]  # type: ignore[misc]
    assert len(upstream) == 1 and answer[0][1].startswith(b"HTTP/1.1 502"), (upstream, answer)
    answer, closed, upstream, info = seen["kept-alive upstream, second"][0]  # type: ignore[misc]
    assert upstream[0][1] == 2, upstream
    answer, closed, upstream, info = seen["buffered"][0]  # type: ignore[misc]
    assert [stage for stage, _ in upstream[0][2]] == [2], upstream  # all at once, once the body is in
    assert any(" 400 " in line for line in nginx) and any(" 408 " in line for line in nginx), nginx
