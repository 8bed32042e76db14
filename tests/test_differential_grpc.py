"""grpc_pass against real nginx 1.22: the same calls through nginx and newproxy to one gRPC-like h2
upstream (tests/grpc_upstream.py), over HTTP/2 (h2c, ``listen ... http2``) and HTTP/1.1.

Compared per call: what the client got (status, headers in order with Date/Server masked, the
messages and every DATA byte, trailers, resets) and what the upstream received (the h2 request
headers in order, pseudo-headers included, the message bytes, END_STREAM). Calls: unary, streaming
(one DATA frame per echoed message), a large message (flow control both ways), a trailers-only
gRPC error, an HTTP error status, an upstream that resets the stream, a dead peer (502) and the
error-log lines of a group whose peers all refuse (disabled, then no live upstreams), a read
timeout (504), grpc_set_header/grpc_hide_header (Host replacing :authority), grpcs:// (TLS with ALPN
h2 to the peer; the certificate checked, by name too), an upstream group whose first peer is dead (next upstream),
grpc_intercept_errors with an error_page, and request bodies streamed as they come (a bidirectional
ping-pong call, a slow client-streaming call), and a client that stalls mid-body past
client_body_timeout or resets its stream there (the answer, the access log, how the upstream's
stream was cut).
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

from shadow.runner import free_ports
from tests.grpc_upstream import (
    Answer,
    Call,
    GrpcUpstream,
    frame,
    h2_call,
    h2_conversation,
    unframe,
)
from tests.blackhole import black_hole
from tests.processes import stop_group

CONFIG = """
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{}}
http {{
    access_log off;
    log_format stall '$request_uri $status $body_bytes_sent';
    client_body_timeout 1s;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/pt; fastcgi_temp_path {dir}/ft;
    uwsgi_temp_path {dir}/ut; scgi_temp_path {dir}/st;
    upstream backend {{
        server 127.0.0.1:{dead};
        server 127.0.0.1:{up};
    }}
    upstream gone {{
        server 127.0.0.1:{dead} fail_timeout=30s;
        server 127.0.0.1:{dead} fail_timeout=30s;
    }}
    upstream nolive {{
        server 127.0.0.1:{dead} max_fails=0;
        server 127.0.0.1:{dead} fail_timeout=30s;
    }}
    upstream holefirst {{
        server 127.0.0.1:{hole};
        server 127.0.0.1:{up};
    }}
    upstream holetimed {{
        server 127.0.0.1:{hole};
        server 127.0.0.1:{up};
    }}
    upstream kept {{
        server 127.0.0.1:{up};
        keepalive 2;
        keepalive_requests 3;
    }}
    server {{
        listen 127.0.0.1:{h1};
        listen 127.0.0.1:{h2} http2;
        location / {{ grpc_pass grpc://127.0.0.1:{up}; }}
        location /set/ {{
            grpc_pass 127.0.0.1:{up};
            grpc_set_header X-Added "m-$request_method";
            grpc_set_header Host custom.example;
            grpc_hide_header x-upstream;
        }}
        location /dead/ {{ grpc_pass grpc://127.0.0.1:{dead}; }}
        location /stall/ {{ grpc_pass grpc://127.0.0.1:{up}; access_log {dir}/stall.log stall; }}
        location /slow/ {{ grpc_pass grpc://127.0.0.1:{up}; grpc_read_timeout 1s; }}
        # Sessions off: newproxy never resumes one, and nginx's cache is per peer, shared by these
        # locations (a verifying one resuming an unverified session fails: X509 error 20).
        grpc_ssl_session_reuse off;
        location /tls/ {{ grpc_pass grpcs://127.0.0.1:{tls}; }}
        location /tlsv/ {{
            grpc_pass grpcs://127.0.0.1:{tls};
            grpc_ssl_verify on; grpc_ssl_trusted_certificate {dir}/../ca.crt; grpc_ssl_name grpc-upstream;
            grpc_ssl_server_name on;
        }}
        location /tlsbad/ {{
            grpc_pass grpcs://127.0.0.1:{tls};
            grpc_ssl_verify on; grpc_ssl_trusted_certificate {dir}/../ca.crt; grpc_ssl_name other.example;
        }}
        location /group/ {{ grpc_pass grpc://backend; }}
        location /gone/ {{ grpc_pass grpc://gone; }}
        location /kept/ {{ grpc_pass grpc://kept; }}
        location /nolive/ {{ grpc_pass grpc://nolive; }}
        # (Connects shorter than client_body_timeout: nginx's timer for the unbuffered body runs
        # while the connect waits, and would reset the stream first.)
        location /holefirst/ {{ grpc_pass grpc://holefirst; grpc_connect_timeout 500ms; }}
        location /holetimed/ {{
            grpc_pass grpc://holetimed; grpc_connect_timeout 500ms; grpc_next_upstream_timeout 200ms;
        }}
        location /err/ {{
            grpc_pass grpc://127.0.0.1:{up};
            grpc_intercept_errors on;
            error_page 503 /errpage;
        }}
        location = /errpage {{ return 200 "intercepted\\n"; }}
        location /rw/ {{
            rewrite ^/rw/(.*)$ /moved/$1 break;
            grpc_pass grpc://127.0.0.1:{up};
        }}
        location /rw2/ {{
            rewrite ^/rw2/(.*)$ "/sp ace/$1" break;
            grpc_pass grpc://127.0.0.1:{up};
        }}
    }}
}}
"""


def _free_port() -> int:
    return free_ports(1)[0]  # (below the ephemeral range: shadow/runner.py)


def _wait_port(port: int, process: subprocess.Popen[bytes], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"target exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def _tls_server_context(directory: Path) -> ssl.SSLContext:
    """A CA (``ca.crt``, what grpc_ssl_trusted_certificate names) and the upstream's certificate it
    signed, for the DNS name grpc-upstream."""
    ca_crt, ca_key, crt, key, csr = (directory / n for n in ("ca.crt", "ca.key", "up.crt", "up.key", "up.csr"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = [("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt), "-subj", "/CN=grpc-test-ca", "-days", "2"),
           ("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=grpc-upstream"),
           ("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", "/dev/stdin")]
    for args in run:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30,
                       input=b"subjectAltName=DNS:grpc-upstream\n")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(crt), str(key))
    context.set_alpn_protocols(["h2"])
    return context


class Targets:
    def __init__(self, up: GrpcUpstream, tls_up: GrpcUpstream, ports: dict[str, dict[str, int]], base: Path,
                 dead_port: int) -> None:
        self.up = up
        self.tls_up = tls_up
        self.ports = ports
        self.base = base  # base/nginx and base/newproxy: each target's directory (its error.log)
        self.dead_port = dead_port  # the refusing peer's

    def drain(self) -> list[Call]:
        return self.up.drain() + self.tls_up.drain()


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    tmp = tmp_path_factory.mktemp("grpc")
    up = GrpcUpstream()
    tls_up = GrpcUpstream(tls=_tls_server_context(tmp))
    up.start()
    tls_up.start()
    dead = socket.socket()  # bound, never listening: connections to it are refused
    dead.bind(("127.0.0.1", 0))
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, dict[str, int]] = {}
    try:
        with black_hole() as hole:  # a peer whose connects hang (grpc_connect_timeout)
            for name in ("nginx", "newproxy"):
                directory = tmp / name
                directory.mkdir()
                ports[name] = {"h1": _free_port(), "h2": _free_port()}
                conf = directory / "nginx.conf"
                conf.write_text(CONFIG.format(dir=directory, up=up.port, tls=tls_up.port, dead=dead.getsockname()[1],
                                              hole=hole, **ports[name]))
                if name == "nginx":
                    command = ["nginx", "-p", f"{directory}/", "-c", str(conf), "-e", str(directory / "error.log"),
                               "-g", "daemon off;"]
                else:
                    command = [sys.executable, "-m", "newproxy", "-p", str(directory), "-c", str(conf)]
                process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                processes.append(process)
                for port in ports[name].values():
                    _wait_port(port, process)
            yield Targets(up, tls_up, ports, tmp, dead.getsockname()[1])
    finally:
        for process in processes:
            stop_group(process)
        dead.close()
        up.stop()
        tls_up.stop()


_SERVER_TOKEN = re.compile(rb"(nginx/1\.22\.1|newproxy/[0-9.]+)")


def _masked(headers: list[tuple[str, str]], data: bytes) -> list[tuple[str, str]]:
    """Date and Server masked; an error page's Content-Length is its length with the token masked."""
    out = []
    for name, value in headers:
        if name in ("date", "server"):
            value = f"<{name}>"
        elif name == "content-length" and int(value) == len(data):
            value = str(len(_SERVER_TOKEN.sub(b"<server>", data)))
        out.append((name, value))
    return out


def _h2_view(answer: Answer) -> dict[str, object]:
    return {"headers": _masked(answer.headers, answer.data), "messages": answer.messages,
            # DATA frame boundaries are not compared: nginx's follow its reads from the peer.
            "data": _SERVER_TOKEN.sub(b"<server>", answer.data),
            "trailers": answer.trailers, "reset": answer.reset, "ended": answer.ended}


def _upstream_view(calls: list[Call]) -> list[dict[str, object]]:
    return [{"headers": c.headers, "data": c.data, "messages": c.messages, "trailers": c.trailers, "ended": c.ended}
            for c in calls]


def _both_h2(targets: Targets, path: str, messages: list[bytes],
             headers: list[tuple[str, str]] | None = None) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The same call to nginx then newproxy; asserts equality, returns nginx's view of both sides."""
    views = []
    for name in ("nginx", "newproxy"):
        answer = h2_call(targets.ports[name]["h2"], path, messages, headers)
        views.append((_h2_view(answer), _upstream_view(targets.drain())))
    assert views[1][0] == views[0][0], f"client side differs for {path}"
    assert views[1][1] == views[0][1], f"upstream side differs for {path}"
    return views[0]


def _h1_raw(port: int, path: str, body: bytes, version: str = "1.1") -> bytes:
    request = (f"POST {path} HTTP/{version}\r\nHost: grpc.test\r\nContent-Type: application/grpc\r\nTE: trailers\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    raw = re.sub(rb"(?m)^(Date|Server): [^\r]*", rb"\1: <masked>", raw)
    return _SERVER_TOKEN.sub(b"<server>", raw)


def _both_h1(targets: Targets, path: str, body: bytes, version: str = "1.1") -> bytes:
    views = []
    for name in ("nginx", "newproxy"):
        raw = _h1_raw(targets.ports[name]["h1"], path, body, version)
        views.append((raw, _upstream_view(targets.drain())))
    nginx_raw, newproxy_raw = views[0][0], views[1][0]
    if b"<server></center>" in nginx_raw:  # error pages: the token's length shifts Content-Length
        newproxy_raw = re.sub(rb"Content-Length: \d+", b"Content-Length: N", newproxy_raw)
        nginx_raw = re.sub(rb"Content-Length: \d+", b"Content-Length: N", nginx_raw)
    assert newproxy_raw == nginx_raw, f"client side differs for {path}"
    assert views[1][1] == views[0][1], f"upstream side differs for {path}"
    return nginx_raw


def test_unary_and_streaming_over_h2(targets: Targets) -> None:
    client, upstream = _both_h2(targets, "/test.Echo/Unary", [b"hello", b"world"])
    assert client["messages"] == [b"echo:hello", b"echo:world"]
    assert client["trailers"] == [("grpc-status", "0"), ("grpc-message", "OK")]
    headers = upstream[0]["headers"]
    assert [n for n, _ in headers][:4] == [":method", ":scheme", ":path", ":authority"]
    assert ("te", "trailers") in headers and not any(n == "host" for n, _ in headers)
    client, upstream = _both_h2(targets, "/test.Echo/Stream", [b"a", b"bb", b"ccc"])
    assert client["messages"] == [b"echo:a", b"echo:bb", b"echo:ccc"]
    # No messages at all, and a client without TE: trailers (no te header goes upstream).
    client, upstream = _both_h2(targets, "/test.Echo/Unary?x=1", [], [("content-type", "application/grpc")])
    assert client["trailers"] and not any(n == "te" for n, _ in upstream[0]["headers"])


def test_request_headers_and_paths(targets: Targets) -> None:
    """:path after a rewrite (escaped again, args kept), TE with other codings, repeated headers and
    a cookie list passed as they came (no splitting), the client's :authority (its Host) not passed."""
    headers = [("content-type", "application/grpc"), ("te", "gzip, trailers;q=0.5"), ("cookie", "a=1; b=2"),
               ("x-dup", "1"), ("x-dup", "2"), ("grpc-encoding", "identity")]
    _, upstream = _both_h2(targets, "/rw/a%20b/Unary?q=1", [b"r"], headers)
    sent = upstream[0]["headers"]
    assert (":path", "/moved/a%20b/Unary?q=1") in sent and ("te", "trailers") in sent
    assert ("cookie", "a=1; b=2") in sent and [v for n, v in sent if n == "x-dup"] == ["1", "2"]
    _, upstream = _both_h2(targets, "/rw2/Unary", [b"r"], headers)  # escaped though the client's was not
    assert (":path", "/sp%20ace/Unary") in upstream[0]["headers"]
    _, upstream = _both_h2(targets, "/test.Echo/Unary", [b"t"], [("te", "gzip")])
    assert not any(n in ("te", "host") for n, _ in upstream[0]["headers"])


def test_large_message_flow_control(targets: Targets) -> None:
    big = bytes(range(256)) * 1200  # 300 KB: past every default window in both directions
    client, upstream = _both_h2(targets, "/test.Echo/Unary", [big, b"tail"])
    assert client["messages"] == [b"echo:" + big, b"echo:tail"]
    assert upstream[0]["messages"] == [big, b"tail"]


def test_error_answers_over_h2(targets: Targets) -> None:
    client, _ = _both_h2(targets, "/test.Echo/Fail", [b"x"])  # trailers-only: grpc-status in the headers
    assert ("grpc-status", "13") in client["headers"] and ("content-length", "0") in client["headers"]
    client, _ = _both_h2(targets, "/test.Echo/Http503", [b"x"])
    assert client["headers"][0] == (":status", "503")
    client, _ = _both_h2(targets, "/test.Echo/Reset", [b"x"])  # RST_STREAM before the answer: 502
    assert client["headers"][0] == (":status", "502")
    client, _ = _both_h2(targets, "/test.Echo/Broken", [b"x"])  # the peer gone after the head: a reset
    assert client["reset"] is not None and client["messages"] == [b"partial"] and not client["trailers"]
    client, upstream = _both_h2(targets, "/dead/x", [b"x"])
    assert client["headers"][0] == (":status", "502") and upstream == []
    client, _ = _both_h2(targets, "/slow/Slow", [b"x"])
    assert client["headers"][0] == (":status", "504")


_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ (.*)$")


def _error_lines(log: Path, start: int) -> list[str]:
    """The [error] and [warn] lines written to ``log`` past ``start``, without time and ids."""
    with log.open(encoding="utf-8", errors="replace") as f:
        f.seek(start)
        return [f"[{m.group(1)}] {m.group(2)}" for m in map(_LOG_LINE.match, f.read().splitlines())
                if m and m.group(1) in ("error", "warn")]


def _calls_and_lines(targets: Targets, paths: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``paths`` called in turn over h2 on nginx, then on newproxy, asserted the same: each call's
    :status, and each [error]/[warn] line logged meanwhile as (its text before " while ", its upstream)."""
    seen = []
    for name in ("nginx", "newproxy"):
        log = targets.base / name / "error.log"
        start = log.stat().st_size
        statuses = [h2_call(targets.ports[name]["h2"], path, [b"x"]).headers[0] for path in paths]
        time.sleep(0.05)
        lines = [(line.split(" while ")[0], line.split('upstream: "')[1].split('"')[0])
                 for line in _error_lines(log, start)]
        seen.append((statuses, lines))
    assert seen[1] == seen[0], seen
    return seen[0]


def test_failing_peers_error_log(targets: Targets) -> None:
    """Both peers of `gone` refuse: each failure brings its peer to max_fails (1), which nginx warns
    about after the connect error; the next call finds no live upstream and names the group."""
    statuses, lines = _calls_and_lines(targets, ["/gone/a", "/gone/b"])
    assert statuses == [(":status", "502")] * 2
    dead = f"grpc://127.0.0.1:{targets.dead_port}"
    assert lines == [
        ("[error] connect() failed (111: Connection refused)", dead),
        ("[warn] upstream server temporarily disabled", dead),
        ("[error] connect() failed (111: Connection refused)", dead),
        ("[warn] upstream server temporarily disabled", dead),
        ("[error] no live upstreams", "grpc://gone")]


def test_no_live_peer_after_a_failed_try(targets: Targets) -> None:
    """`nolive`: two refusing peers, the first never disabled (max_fails=0). The first call is
    refused by both (the second is disabled then): 502 once the tries are spent. The second call is
    refused by the first with a try left, and finds no usable peer: nginx's "no live upstreams"
    (NGX_HTTP_UPSTREAM_FT_NOLIVE) names the group. (Only a connect can fail over here: nginx does
    not retry a gRPC call once sent, its body being unbuffered.)"""
    statuses, lines = _calls_and_lines(targets, ["/nolive/a", "/nolive/b"])
    assert statuses == [(":status", "502")] * 2
    dead = f"grpc://127.0.0.1:{targets.dead_port}"
    assert lines == [
        ("[error] connect() failed (111: Connection refused)", dead),
        ("[error] connect() failed (111: Connection refused)", dead),
        ("[warn] upstream server temporarily disabled", dead),
        ("[error] connect() failed (111: Connection refused)", dead),
        ("[error] no live upstreams", "grpc://nolive")]


def test_next_upstream_timeout(targets: Targets) -> None:
    """Two groups whose first peer never completes a connect (500 ms grpc_connect_timeout):
    without grpc_next_upstream_timeout the call goes on to the second peer; with 200 ms, which the
    failed connect outlasted, it ends there (504)."""
    client, upstream = _both_h2(targets, "/holefirst/Unary", [b"a"])
    assert client["headers"][0] == (":status", "200") and len(upstream) == 1
    statuses, lines = _calls_and_lines(targets, ["/holetimed/Unary"])
    assert targets.drain() == []  # neither went on to the live peer
    assert statuses == [(":status", "504")]
    assert [text for text, _ in lines] == [  # (a timeout is logged after the peer's free warns)
        "[warn] upstream server temporarily disabled",
        "[error] upstream timed out (110: Connection timed out)"]


def test_set_and_hide_headers_tls_groups_intercept(targets: Targets) -> None:
    client, upstream = _both_h2(targets, "/set/Unary", [b"q"])
    headers = upstream[0]["headers"]
    assert not any(n == ":authority" for n, _ in headers)  # grpc_set_header Host replaces it
    assert ("host", "custom.example") in headers and ("x-added", "m-POST") in headers
    assert not any(n == "x-upstream" for n, _ in client["headers"])
    client, upstream = _both_h2(targets, "/tls/Unary", [b"secure"])
    assert client["messages"] == [b"echo:secure"] and (":scheme", "https") in upstream[0]["headers"]
    client, upstream = _both_h2(targets, "/tlsv/Unary", [b"checked"])  # chain and name checked
    assert client["messages"] == [b"echo:checked"]
    client, upstream = _both_h2(targets, "/tlsbad/Unary", [b"x"])  # a name the certificate lacks: 502
    assert client["headers"][0] == (":status", "502") and upstream == []
    for _ in range(2):  # the dead first peer: next upstream, then it is skipped while failed
        client, upstream = _both_h2(targets, "/group/Unary", [b"g"])
        assert client["messages"] == [b"echo:g"]
    client, _ = _both_h2(targets, "/err/Http503", [b"x"])
    assert client["data"] == b"intercepted\n"


def test_upstream_keepalive(targets: Targets) -> None:
    """``keepalive`` in the upstream block: calls share h2 connections (stream ids 1, 3, 5), a new
    one after keepalive_requests, and one after a call the peer reset; the same count as nginx's."""
    counts = {}
    for name in ("nginx", "newproxy"):
        before = targets.up.connections
        answers = [h2_call(targets.ports[name]["h2"], path, [b"k"]) for path in
                   ("/kept/Unary", "/kept/Stream", "/kept/Fail", "/kept/Unary", "/kept/Reset", "/kept/Unary")]
        counts[name] = (targets.up.connections - before, [_h2_view(a) for a in answers])
        targets.drain()
    assert counts["newproxy"] == counts["nginx"]
    # Calls 1-3 on one connection (keepalive_requests 3), 4 and the reset call 5 on a second (a
    # stream reset before the answer closes it), 6 on a third.
    assert counts["nginx"][0] == 3


def test_http1_clients(targets: Targets) -> None:
    body = frame(b"hello") + frame(b"world")
    raw = _both_h1(targets, "/test.Echo/Unary", body)
    assert b"Transfer-Encoding: chunked" in raw and b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: OK\r\n\r\n" in raw
    assert unframe(raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1])[0][:1] == [b"echo:hello"]
    raw = _both_h1(targets, "/test.Echo/Fail", body)
    assert b"Content-Length: 0" in raw and b"grpc-status: 13" in raw
    raw = _both_h1(targets, "/test.Echo/Unary", body, version="1.0")  # to the close, trailers dropped
    assert b"grpc-status" not in raw
    assert _both_h1(targets, "/dead/x", body).startswith(b"HTTP/1.1 502")
    raw = _both_h1(targets, "/test.Echo/Broken", body)  # closed after a chunk, no last chunk
    assert raw.endswith(b"\r\n" + frame(b"partial") + b"\r\n") and b"\r\n0\r\n" not in raw


def test_bidi_ping_pong_streams_the_request_body(targets: Targets) -> None:
    """grpc_pass never buffers the request body: each message reaches the upstream (and its echo the
    client) before the client sends the next; a proxy that waited for END_STREAM would stall here."""
    messages = [b"ping-%d" % i for i in range(8)]
    views = []
    for name in ("nginx", "newproxy"):
        answer, _ = h2_conversation(targets.ports[name]["h2"], "/test.Echo/Stream", messages, wait_reply=True)
        views.append((_h2_view(answer), _upstream_view(targets.drain())))
    assert views[1] == views[0]
    client, upstream = views[0]
    assert client["messages"] == [b"echo:" + m for m in messages]
    assert client["trailers"] == [("grpc-status", "0"), ("grpc-message", "OK")]
    assert upstream[0]["messages"] == messages and upstream[0]["ended"]
    assert not any(n == "content-length" for n, _ in upstream[0]["headers"])


def test_slow_client_streaming(targets: Targets) -> None:
    """A client that sends its messages 0.15 s apart: the upstream has the first long before the
    client's END_STREAM (streamed, not collected), and the unary answer comes after the end."""
    messages = [b"slow-%d" % i for i in range(4)]
    views = []
    for name in ("nginx", "newproxy"):
        answer, ended_at = h2_conversation(targets.ports[name]["h2"], "/test.Echo/Unary", messages,
                                           wait_reply=False, pause=0.15)
        calls = targets.drain()
        assert len(calls) == 1 and calls[0].arrivals and calls[0].arrivals[0] < ended_at - 0.3, name
        views.append((_h2_view(answer), _upstream_view(calls)))
    assert views[1] == views[0]
    assert views[0][0]["messages"] == [b"echo:" + m for m in messages]


def test_streamed_body_flow_control(targets: Targets) -> None:
    """A streamed body larger than every window, in pieces, echoed piece by piece (ping-pong)."""
    pieces = [bytes([i]) * 100_000 for i in range(3)]
    views = []
    for name in ("nginx", "newproxy"):
        answer, _ = h2_conversation(targets.ports[name]["h2"], "/test.Echo/Stream", pieces, wait_reply=True)
        views.append((_h2_view(answer), _upstream_view(targets.drain())))
    assert views[1] == views[0]
    assert views[0][0]["messages"] == [b"echo:" + p for p in pieces]


def _stalled_call(port: int, path: str, reset_after: float | None, wait: float) -> list[tuple[str, str, str]]:
    """A call that sends one message and then nothing for ``wait`` seconds, or resets its stream
    (CANCEL) after ``reset_after``: what it got, each with "early" (before 0.8 s) or "late"."""
    events: list[tuple[str, str, str]] = []
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "grpc.test"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, headers)
        conn.send_data(1, frame(b"one"))
        sock.sendall(conn.data_to_send())
        start = time.monotonic()
        reset_sent = False
        while (now := time.monotonic() - start) < wait:
            if reset_after is not None and not reset_sent and now >= reset_after:
                conn.reset_stream(1, 8)
                sock.sendall(conn.data_to_send())
                reset_sent = True
            until = reset_after if reset_after is not None and not reset_sent else wait
            sock.settimeout(max(0.01, until - now))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                events.append(("closed", "", "early" if now < 0.8 else "late"))
                break
            stage = "early" if time.monotonic() - start < 0.8 else "late"
            for event in conn.receive_data(chunk):
                if isinstance(event, ResponseReceived):
                    events.append(("status", dict(event.headers)[b":status"].decode(), stage))
                elif isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    events.append(("data", event.data.decode("latin-1"), stage))
                elif isinstance(event, StreamEnded):
                    events.append(("end", "", stage))
                elif isinstance(event, StreamReset):
                    events.append(("reset", str(int(event.error_code)), stage))
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    return events


def test_stalled_and_reset_bodies(targets: Targets) -> None:
    """grpc_pass reads the body as proxy_request_buffering off does (ngx_http_v2_read_unbuffered_request_body):
    a client that sends nothing for client_body_timeout (1 s) mid-body gets its stream reset and a
    408 in the log, and the upstream's stream is cut; one that resets its stream mid-body is logged
    400, not 499. Compared: what the client got and when, the access log line, and how and when
    the upstream's stream ended."""
    cases = {  # path, reset_after, wait
        "stalls, answer begun": ("/stall/test.Echo/Stream", None, 1.8),
        "stalls, no answer yet": ("/stall/test.Echo/Unary", None, 1.8),
        "resets its stream": ("/stall/test.Echo/Unary", 0.3, 0.9),
    }
    views = []
    for name in ("nginx", "newproxy"):
        log = targets.base / name / "stall.log"
        seen = {}
        for case, (path, reset_after, wait) in cases.items():
            start = time.monotonic()
            got = _stalled_call(targets.ports[name]["h2"], path, reset_after, wait)
            time.sleep(0.2)
            calls = targets.drain()
            upstream = [(c.messages, c.ended, c.cut, "" if not c.cut else "early" if c.cut_at - start < 0.8 else "late")
                        for c in calls]
            seen[case] = (got, upstream)
        time.sleep(0.1)
        views.append((seen, log.read_text().splitlines()))
    assert views[1] == views[0]
    seen, lines = views[0]
    assert seen["stalls, answer begun"][0][:2] == [("status", "200", "early"), ("data", "\x00\x00\x00\x00\x08echo:one", "early")]
    assert [upstream for _, upstream in seen.values()] == [[([b"one"], False, "closed", "late")]] * 2 + [
        [([b"one"], False, "closed", "early")]]
    assert [line.split()[1] for line in lines] == ["200", "408", "400"]  # an answer begun keeps its status
