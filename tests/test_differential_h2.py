"""HTTP/2 against real nginx 1.22, over h2c with prior knowledge and over TLS with ALPN h2: the same
requests to both (shadow/h2client.py), compared as the harness compares HTTP/1.1 (status, header
list, body, trailers, the connection's fate, and what went upstream).

Covers static files, return, redirects, error pages, proxy_pass (GET, bodies, HEAD, upstream
statuses), add_trailer (return, files, proxied: a trailing HEADERS frame), gzip, 413 (Content-Length over client_max_body_size, and a body without one), large
headers, request bodies, header validation (upper-case names, connection-specific headers, pseudo
headers), the concurrent-streams limit (RST_STREAM REFUSED_STREAM), an HTTP/1 request on an h2c port,
and interop: curl --http2 / --http2-prior-knowledge and h2load against newproxy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shadow.client import TlsClient
from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONFIG = """
events {{}}
http {{
    access_log off;
    client_max_body_size 64;
    server {{
        listen 127.0.0.1:8080 http2;
        listen 127.0.0.1:8443 ssl http2;
        server_name h2.test;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        root {root};
        error_page 404 /404.html;
        location = /404.html {{ internal; }}
        location /ret {{ return 200 "$server_protocol|$request|$host|$scheme|$http_x_a|$content_length\\n"; }}
        location /redir {{ return 302 /elsewhere; }}
        location /gone {{ return 410; }}
        location /dir/ {{ }}
        location /proxy/ {{ proxy_pass http://127.0.0.1:9401; }}
        location /big/ {{ client_max_body_size 4k; proxy_pass http://127.0.0.1:9401; }}
        location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 1; proxy_pass http://127.0.0.1:9401; }}
        location /close {{ return 444; }}
        # add_trailer over HTTP/2: a trailing HEADERS frame (the length is kept).
        location /tr {{ add_trailer X-T "v1 $uri"; add_trailer X-Empty ""; return 200 "trailer body\\n"; }}
        location = /large.bin {{ add_trailer X-L "l"; }}
        location = /dir/file.txt {{ add_trailer X-F "f" always; }}
        location /ptr/ {{ add_trailer X-P "p"; proxy_pass http://127.0.0.1:9401; }}
    }}
    server {{
        listen 127.0.0.1:8080 http2;
        server_name other.test;
        location / {{ return 200 "other $host\\n"; }}
    }}
    # Two streams at a time; 4 KiB DATA frames.
    server {{
        listen 127.0.0.1:8081 http2;
        http2_max_concurrent_streams 2;
        http2_chunk_size 4k;
        location / {{ proxy_pass http://127.0.0.1:9401; }}
    }}
    # The keepalive test's copy limits requests per connection here (newproxy has one process-wide
    # value, so the other servers must not see it).
    server {{
        listen 127.0.0.1:8082 http2;
        # keepalive_requests
        location / {{ return 200 "k\\n"; }}
    }}
}}
"""


def _cert(directory: Path) -> tuple[str, str]:
    crt, key = directory / "h2.crt", directory / "h2.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-subj", "/CN=h2.test", "-days", "2"], check=True, capture_output=True, timeout=30)
    return str(crt), str(key)


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_conf(tmp_path_factory.mktemp("h2"))


def write_conf(directory: Path) -> Path:
    """CONFIG with its certificate and docroot in ``directory``."""
    crt, key = _cert(directory)
    root = directory / "www"
    (root / "dir").mkdir(parents=True)
    (root / "index.html").write_text("<p>index</p>\n")
    (root / "404.html").write_text("<p>custom 404</p>\n")
    (root / "dir" / "file.txt").write_text("a file\n" * 10)
    (root / "large.bin").write_bytes(bytes(range(256)) * 2048)  # 512 KiB: past the windows
    path = directory / "nginx.conf"
    path.write_text(CONFIG.format(crt=crt, key=key, root=root))
    return path


def _listen(plan: Plan, port: int) -> str:
    return next(name for name in plan.listens if name.endswith(f":{port}"))


def h2(listen: str, target: str, label: str, method: str = "GET", host: str | None = "h2.test",
       extra: tuple[tuple[str, str], ...] = (), body: bytes = b"", tls: bool = False) -> Request:
    request = get(listen, target, host, label, method=method, version="2", extra=extra)
    request = dataclasses.replace(request, body=body)
    return dataclasses.replace(request, tls=TlsClient(server_name="h2.test")) if tls else request


def h2_requests(plan: Plan) -> list[Request]:
    out: list[Request] = []
    for port, tls in ((8080, False), (8443, True)):
        listen = _listen(plan, port)
        via = "tls" if tls else "h2c"

        def add(target: str, label: str, listen: str = listen, via: str = via, tls: bool = tls,
                **kwargs: object) -> None:
            out.append(h2(listen, target, f"{via} {label}", tls=tls, **kwargs))  # type: ignore[arg-type]

        # Static files, directories, ranges, conditionals, error pages.
        for target in ("/", "/index.html", "/dir/file.txt", "/dir", "/dir/", "/nothing", "/large.bin"):
            add(target, f"static {target}")
            if target != "/nothing":  # (a HEAD of a custom error page: the comparator's length rule 3 misfits)
                add(target, f"static HEAD {target}", method="HEAD")
        add("/dir/file.txt", "range", extra=(("range", "bytes=2-5"),))
        add("/dir/file.txt", "two ranges", extra=(("range", "bytes=0-1,4-6"),))
        add("/dir/file.txt", "if-modified-since", extra=(("if-modified-since", "Thu, 01 Jan 2099 00:00:00 GMT"),))
        # return, redirects, status pages, variables ($server_protocol is HTTP/2.0).
        add("/ret?a=1", "return", extra=(("x-a", "one"),))
        add("/ret", "return without :authority", host=None)
        add("/ret", "return, host header and no :authority", host=None, extra=(("host", "h2.test"),))
        add("/ret", "other server by :authority", host="other.test")
        add("/ret", "authority with port", host="h2.test:8080")
        add("/redir", "relative redirect")
        add("/gone", "410 page")
        add("/close", "return 444")
        add("/tr", "return with add_trailer")
        add("/tr", "HEAD with add_trailer", method="HEAD")
        add("/ptr/x", "proxied with add_trailer")
        add("/ptr/__chunked/x", "proxied chunked with add_trailer")
        add("/ptr/__status/404", "proxied 404 with add_trailer (not always)")
        add("/ret", "TRACE", method="TRACE")
        add("/ret", "OPTIONS", method="OPTIONS")
        # Proxying: method, URI, headers and body upstream; upstream statuses and chunked answers.
        add("/proxy/a?b=c", "proxied GET", extra=(("x-a", "1"), ("cookie", "a=1"), ("cookie", "b=2")))
        add("/proxy/a", "proxied HEAD", method="HEAD")
        add("/proxy/__status/404", "proxied 404")
        add("/proxy/__status/204", "proxied 204")
        add("/proxy/__chunked/x", "proxied chunked answer")
        add("/proxy/post", "proxied POST", method="POST", body=b"a=1&b=two")
        add("/proxy/post", "proxied POST without content-length", method="POST", body=b"x" * 40,
            extra=((":authority", "h2.test"),))
        add("/proxy/empty", "proxied POST, empty body", method="POST", extra=(("content-length", "0"),))
        add("/gz/g", "gzip", extra=(("accept-encoding", "gzip"),))
        # client_max_body_size: declared too large, and a body growing past it.
        add("/proxy/post", "413 by content-length", method="POST", body=b"y" * 100)
        add("/big/post", "4k body fits", method="POST", body=b"z" * 4000)
        add("/big/post", "413 past 4k", method="POST", body=b"z" * 5000)
        # Large headers: a 6 KiB value, many headers.
        add("/proxy/h", "large header", extra=(("x-large", "v" * 6000),))
        add("/proxy/h", "many headers", extra=tuple((f"x-h{i}", "w" * 100) for i in range(60)))
        add("/proxy/h", "a field over large_client_header_buffers", extra=(("x-large", "v" * 9000),))
        add("/proxy/h", "headers over 4 x 8k in all", extra=tuple((f"x-h{i}", "w" * 1000) for i in range(40)))
        # Header validation.
        add("/ret", "upper-case header name", extra=(("X-Upper", "1"),))
        add("/proxy/u", "underscore and dot header names dropped", extra=(("x_under", "1"), ("x.dot", "2"),
                                                                          ("x-ok", "3")))
        add("/proxy/v", "NUL in a header value", extra=(("x-v", "a\x00b"),))
        add("/proxy/__reset/400", "upstream resets inside the body")
        add("/proxy/__status/502", "upstream 502")
        add("/proxy/c", "connection header", extra=(("connection", "keep-alive"),))
        add("/proxy/c", "transfer-encoding header", extra=(("transfer-encoding", "chunked"),))
        add("/proxy/c", "te trailers", extra=(("te", "trailers"),))
        add("/ret", "no :path", extra=((":path", ""),))
        add("/ret", "path without slash", extra=((":path", "ret"),))
    return out


def test_h2_matches_nginx(conf: Path, tmp_path: Path) -> None:
    report = shadow(str(conf), str(tmp_path), h2_requests, max_requests=0, guided=False)
    assert_equivalent(report, 104)
    # The cases reach what they name: refusals, resets and 413s on both sides alike.
    assert {"413", "405", "400", "206", "302", "404", "stream-reset:PROTOCOL_ERROR",
            "goaway:ENHANCE_YOUR_CALM"} <= set(report.statuses), \
        report.statuses


async def _streams_at_once(port: int, paths: list[str]) -> tuple[dict[int, int], list[str], list[int]]:
    """Open ``paths`` as streams of one h2c connection before reading anything; returns the SETTINGS
    the server announced, each stream's outcome (status, or RST_STREAM's code) in stream order, and
    the DATA frame sizes seen."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.errors import ErrorCodes
    from h2.events import (
        DataReceived,
        RemoteSettingsChanged,
        ResponseReceived,
        StreamEnded,
        StreamReset,
    )

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    ids = []
    for path in paths:
        sid = conn.get_next_available_stream_id()
        ids.append(sid)
        conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h2.test"),
                                (b":path", path.encode())], end_stream=True)
    writer.write(conn.data_to_send())
    settings: dict[int, int] = {}
    outcome: dict[int, str] = {}
    frames: list[int] = []
    done: set[int] = set()
    try:
        while len(done) < len(ids):
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, RemoteSettingsChanged):
                    settings.update({int(k): v.new_value for k, v in event.changed_settings.items()})
                elif isinstance(event, ResponseReceived):
                    outcome.setdefault(event.stream_id, dict(event.headers)[b":status"].decode())
                elif isinstance(event, DataReceived):
                    frames.append(len(event.data))
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    outcome[event.stream_id] = outcome.get(event.stream_id, "") + " end"
                    done.add(event.stream_id)
                elif isinstance(event, StreamReset):
                    outcome[event.stream_id] = f"reset {ErrorCodes(event.error_code).name}"
                    done.add(event.stream_id)
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    return settings, [outcome.get(sid, "none") for sid in ids], frames


async def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 3)
            if not chunk:
                break
            got += chunk
    finally:
        writer.close()
    return got


def test_h2_connection_behaviour_matches_nginx(conf: Path, tmp_path: Path) -> None:
    """Per target, on one connection: the SETTINGS announced, http2_max_concurrent_streams (the
    third stream at once is refused with REFUSED_STREAM while two slow ones run), http2_chunk_size
    (DATA frames of at most 4 KiB), and what an HTTP/1 request gets on an h2c port (SETTINGS,
    WINDOW_UPDATE, then GOAWAY PROTOCOL_ERROR and the close: compared byte for byte)."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    config = parse_config(str(conf))
    the_plan = plan(config)
    limited, main = _listen(the_plan, 8081), _listen(the_plan, 8080)
    seen = []
    sizes: list[int] = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            slow = ["/__delay/400/a", "/__delay/400/b", "/c"]
            settings, outcomes, _ = asyncio.run(_streams_at_once(target.listen_ports[limited], slow))
            # Once the slow ones are done, a new stream gets through (its ~18 KiB echo in 4 KiB frames).
            _, later, frames = asyncio.run(_streams_at_once(target.listen_ports[limited], ["/c" + "x" * 9000]))
            http1 = asyncio.run(_raw(target.listen_ports[main], b"GET / HTTP/1.1\r\nHost: h2.test\r\n\r\n"))
            started.pool.take()
            # (frame boundaries follow each side's buffering; the bound is what http2_chunk_size sets)
            seen.append((settings, outcomes, later, max(frames) <= 4096 and len(frames) > 2, http1))
            sizes.append(max(frames))
    nginx, newproxy = seen
    assert newproxy == nginx
    assert nginx[1] == ["200 end", "200 end", "reset REFUSED_STREAM"], nginx
    assert nginx[0] == {3: 2, 4: 65536, 5: 16777215}, nginx
    assert nginx[3] is True and sizes[0] == 4096 and nginx[2] == ["200 end"], (nginx, sizes)
    assert nginx[4].endswith(bytes.fromhex("0000080700000000000000000000000001")), nginx[4]  # GOAWAY 0 PROTOCOL_ERROR


def _frames(raw: bytes) -> list[str]:
    """The frames of a server's raw output that matter here, in order (hyperframe parses them: h2's
    client state machine stops at a GOAWAY)."""
    from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

    seen: list[str] = []
    while len(raw) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:9 + length]))
        raw = raw[9 + length:]
        if isinstance(frame, GoAwayFrame):
            seen.append(f"goaway {frame.error_code} last={frame.last_stream_id}")
        elif isinstance(frame, HeadersFrame):
            seen.append(f"headers {frame.stream_id}" + (" end" if "END_STREAM" in frame.flags else ""))
        elif isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
            seen.append(f"end {frame.stream_id}")
        elif isinstance(frame, RstStreamFrame):
            seen.append(f"rst {frame.stream_id} {frame.error_code}")
    return seen


async def _three_streams(port: int) -> list[str]:
    """Streams 1, then 3 and 5 at once, on one connection; the frames until the server closes."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"k.test"), (b":path", b"/k")]
    conn.send_headers(1, request, end_stream=True)
    writer.write(conn.data_to_send())
    await asyncio.sleep(0.2)
    conn.send_headers(3, request, end_stream=True)
    conn.send_headers(5, request, end_stream=True)
    writer.write(conn.data_to_send())
    raw = b""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 2)
            if not data:
                break
            raw += data
    except asyncio.TimeoutError:
        raw += b"(still open)"
    finally:
        writer.close()
    return _frames(raw) + (["open"] if raw.endswith(b"(still open)") else ["closed"])


def test_keepalive_requests_over_h2_like_nginx(conf: Path, tmp_path: Path) -> None:
    """keepalive_requests 2: nginx serves the second stream and sends GOAWAY NO_ERROR naming it; a
    third stream sent with it gets what nginx gives it; then the close."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    limited = tmp_path / "nginx.conf"
    limited.write_text(conf.read_text().replace("# keepalive_requests", "keepalive_requests 2;"))
    config = parse_config(str(limited))
    the_plan = plan(config)
    listen = _listen(the_plan, 8082)
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        nginx, newproxy = (asyncio.run(_three_streams(target.listen_ports[listen])) for target in started.targets)
    assert newproxy == nginx
    assert "goaway 0 last=3" in nginx and "end 3" in nginx, nginx


async def _quit_during_stream(port: int, pid: int) -> list[str]:
    """A slow stream in flight, then SIGQUIT to the server: the frames the client gets, in order
    (read raw with hyperframe: h2's client state machine stops at a GOAWAY)."""
    import os
    import signal

    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from hyperframe.frame import (
        DataFrame,
        Frame,
        GoAwayFrame,
        HeadersFrame,
        RstStreamFrame,
    )

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h2.test"),
                          (b":path", b"/proxy/__delay/600/q")], end_stream=True)
    writer.write(conn.data_to_send())
    await asyncio.sleep(0.2)
    os.kill(pid, signal.SIGQUIT)
    raw = b""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            raw += data
    finally:
        writer.close()
    seen: list[str] = []
    while len(raw) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:9 + length]))
        raw = raw[9 + length:]
        if isinstance(frame, GoAwayFrame):
            seen.append(f"goaway {frame.error_code} last={frame.last_stream_id}")
        elif isinstance(frame, HeadersFrame):
            seen.append(f"headers {frame.stream_id}" + (" end" if "END_STREAM" in frame.flags else ""))
        elif isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
            seen.append(f"end {frame.stream_id}")
        elif isinstance(frame, RstStreamFrame):
            seen.append(f"rst {frame.stream_id} {frame.error_code}")
    seen.append("closed")
    return seen


def test_graceful_stop_sends_goaway_like_nginx(conf: Path, tmp_path: Path) -> None:
    """nginx's QUIT with a stream in flight: the stream is answered, and the connection ends as
    nginx ends it (GOAWAY, then the close)."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    config = parse_config(str(conf))
    the_plan = plan(config)
    main = _listen(the_plan, 8080)
    seen = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            assert target.process is not None  # type: ignore[attr-defined]
            seen.append(asyncio.run(_quit_during_stream(target.listen_ports[main],
                                                        target.process.pid)))  # type: ignore[attr-defined]
    nginx, newproxy = seen
    assert newproxy == nginx
    assert "headers 1" in nginx and "end 1" in nginx and nginx[-1] == "closed", nginx


def _curl(port: int, *args: str) -> tuple[str, str]:
    out = subprocess.run(["curl", "-sS", "-k", "-i", "--max-time", "5", *args,
                          "--connect-to", f"h2.test:{port}:127.0.0.1:{port}"],
                         capture_output=True, timeout=10, check=False)
    text = out.stdout.decode("latin-1")
    head, _, body = text.partition("\r\n\r\n")
    return head.split("\r\n")[0], body


def test_curl_and_h2load_interop(conf: Path, tmp_path: Path) -> None:
    """curl --http2-prior-knowledge (h2c) and --http2 (TLS, ALPN), and h2load with many streams per
    connection, against both: the same status lines and bodies from curl; every h2load request
    succeeds on newproxy as on nginx."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    if shutil.which("h2load") is None:  # the Makefile's system-deps installs nghttp2-client
        raise RuntimeError("h2load is needed: apt-get install nghttp2-client")
    config = parse_config(str(conf))
    the_plan = plan(config)
    h2c, tls = _listen(the_plan, 8080), _listen(the_plan, 8443)
    seen = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            p, s = target.listen_ports[h2c], target.listen_ports[tls]
            answers = {
                "h2c": _curl(p, "--http2-prior-knowledge", f"http://h2.test:{p}/ret?curl=1"),
                "tls": _curl(s, "--http2", f"https://h2.test:{s}/ret?curl=2"),
                "tls http/1.1": _curl(s, "--http1.1", f"https://h2.test:{s}/ret?curl=3"),
                "h2c proxied": _curl(p, "--http2-prior-knowledge", f"http://h2.test:{p}/proxy/x")[0],
                "tls file": _curl(s, "--http2", f"https://h2.test:{s}/large.bin")[0],
            }
            loads = []
            for url in (f"http://127.0.0.1:{p}/ret", f"https://127.0.0.1:{s}/dir/file.txt"):
                run = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", "-H", ":authority: h2.test",
                                      url], capture_output=True, timeout=60, check=False)
                text = run.stdout.decode()
                match = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
                assert match is not None, text
                loads.append(match.groups())
            answers["h2load"] = loads  # type: ignore[assignment]
            started.pool.take()
            seen.append(answers)
    nginx, newproxy = seen
    for key in ("h2c", "tls", "tls http/1.1"):
        newproxy[key] = (newproxy[key][0], newproxy[key][1].replace(str(started.targets[1].listen_ports[h2c]), "P")
                         .replace(str(started.targets[1].listen_ports[tls]), "P"))
        nginx[key] = (nginx[key][0], nginx[key][1].replace(str(started.targets[0].listen_ports[h2c]), "P")
                      .replace(str(started.targets[0].listen_ports[tls]), "P"))
    assert newproxy == nginx
    assert nginx["h2c"][0] == "HTTP/2 200 " and nginx["tls"][0] == "HTTP/2 200 ", nginx  # curl writes "HTTP/2 200 "
    assert nginx["tls http/1.1"][0] == "HTTP/1.1 200 OK", nginx
    assert nginx["h2load"] == [("400", "400", "400")] * 2, nginx


ALPN_CONFIG = """
events {{}}
http {{
    access_log off;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:8443 ssl http2;
        listen 127.0.0.1:8444 ssl;
        server_name a.test;
        location / {{ return 200 "a $server_protocol\\n"; }}
    }}
    server {{
        listen 127.0.0.1:8443 ssl;
        listen 127.0.0.1:8444 ssl;
        server_name b.test;
        location / {{ return 200 "b $server_protocol\\n"; }}
    }}
}}
"""


def _alpn(port: int, server_name: str, offer: list[str] | None) -> str | None:
    import socket
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if offer is not None:
        context.set_alpn_protocols(offer)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as sock:
        return sock.selected_alpn_protocol()


def test_alpn_is_offered_per_listen_address(tmp_path: Path) -> None:
    """nginx 1.22 offers h2 by address:port (the listen's http2, whichever server of the port set it):
    on the ssl http2 port every server's handshake (either SNI name) selects h2; on the other ssl port
    of the same servers, a client offering h2 gets http/1.1; http/1.0 alone gets http/1.0; no ALPN, none."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    crt, key = _cert(tmp_path)
    path = tmp_path / "nginx.conf"
    path.write_text(ALPN_CONFIG.format(crt=crt, key=key))
    config = parse_config(str(path))
    the_plan = plan(config)
    offers: list[list[str] | None] = [["h2", "http/1.1"], ["http/1.1", "h2"], ["http/1.0"], None]
    seen = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            seen.append({(port, name, str(offer)): _alpn(target.listen_ports[_listen(the_plan, port)], name, offer)
                         for port in (8443, 8444) for name in ("a.test", "b.test") for offer in offers})
    nginx, newproxy = seen
    assert newproxy == nginx
    for name in ("a.test", "b.test"):
        assert nginx[(8443, name, "['h2', 'http/1.1']")] == nginx[(8443, name, "['http/1.1', 'h2']")] == "h2"
        assert nginx[(8444, name, "['h2', 'http/1.1']")] == "http/1.1"
        assert nginx[(8444, name, "['http/1.0']")] == "http/1.0" and nginx[(8444, name, "None")] is None


LOG_CONFIG = """
events {{}}
http {{
    log_format h2 '$request|$status|$bytes_sent|$body_bytes_sent|$request_length|$msec';
    access_log logs/h2.log h2;
    server {{
        listen 127.0.0.1:8080 http2;
        root {root};
        location /ret {{ return 200 "hello over h2\\n"; }}
        # (a whole URL: one made from a relative one names each target's own port, of another
        # Huffman length)
        location /redir {{ return 302 http://h2.test/elsewhere; }}
        location /odd {{ return 418; }}
        location /tr {{ add_trailer X-T "t"; return 200 "trailer\\n"; }}
        location /proxy/ {{ proxy_pass http://127.0.0.1:9401; }}
    }}
}}
"""


def test_access_log_byte_counts_over_h2_like_nginx(tmp_path: Path) -> None:
    """$bytes_sent over HTTP/2 counts the answer's frames (9-byte headers, nginx's HPACK block, DATA
    payloads, a trailing HEADERS); $request_length the request's header block as received (plus a
    proxied body); $body_bytes_sent the payload. Several requests on one connection (the first block
    carries the table size update), the Server token's Huffman length difference taken out.
    Proxied answers are small: nginx's DATA frames follow its reads from the upstream, so a larger
    one arriving in several reads may be framed (and counted) differently. Each answer's Date is a
    Huffman-coded literal whose length follows its digits: the two servers answer in different
    seconds, so that difference ($msec gives each answer's second) is taken out too."""
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    from nginx_parser import parse_config
    from shadow.rewire import access_log_name, plan
    from shadow.runner import started_targets
    from tests.test_differential_accesslog import NEWPROXY_TOKEN, NGINX_TOKEN

    root = tmp_path / "www"
    root.mkdir()
    (root / "f.txt").write_text("a static file\n" * 20)
    (root / "big.bin").write_bytes(bytes(range(256)) * 160)  # 40 KiB: several DATA frames
    path = tmp_path / "nginx.conf"
    path.write_text(LOG_CONFIG.format(root=root))
    config = parse_config(str(path))
    the_plan = plan(config)
    listen = _listen(the_plan, 8080)
    requests = [("GET", "/ret", b"", ()), ("GET", "/f.txt", b"", (("user-agent", "h2-test/1"),)),
                ("GET", "/big.bin", b"", ()), ("GET", "/missing", b"", ()), ("GET", "/redir", b"", ()),
                ("GET", "/odd", b"", ()), ("GET", "/tr", b"", ()), ("HEAD", "/f.txt", b"", ()),
                ("POST", "/ret", b"d" * 500, ()), ("GET", "/proxy/p", b"", (("x-long", "v" * 300),)),
                ("POST", "/proxy/q", b"b" * 600, (("content-type", "text/plain"),))]
    huff = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    shift = len(huff.encode(NEWPROXY_TOKEN.encode())) - len(huff.encode(NGINX_TOKEN.encode()))
    raw_shift = len(NEWPROXY_TOKEN) - len(NGINX_TOKEN)  # in an error page's body
    lines = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            port = target.listen_ports[listen]
            asyncio.run(_one_connection(port, requests))
        started.pool.take()
    for name in ("nginx", "newproxy"):
        log = tmp_path / "run" / name / access_log_name("logs/h2.log")
        lines.append(log.read_text().splitlines())
    nginx, newproxy = lines
    assert len(nginx) == len(newproxy) == len(requests), (nginx, newproxy)
    for theirs, ours in zip(nginx, newproxy):
        *theirs_fields, their_msec = theirs.split("|")
        theirs = "|".join(theirs_fields)
        request, status, sent, body, length, msec = ours.split("|")
        date_shift = len(huff.encode(_http_date(msec))) - len(huff.encode(_http_date(their_msec)))
        sent_n, body_n = int(sent) - shift - date_shift, int(body)
        if int(status) >= 300 and body_n - raw_shift == int(theirs.split("|")[3]):
            body_n -= raw_shift  # the built-in error page names its server too
            sent_n -= raw_shift
        assert "|".join((request, status, str(sent_n), str(body_n), length)) == theirs, (theirs, ours)


def _http_date(msec: str) -> bytes:
    """The Date value of an answer logged at ``msec`` (its second)."""
    return email.utils.formatdate(int(float(msec)), usegmt=True).encode()


async def _one_connection(port: int, requests: list[tuple[str, str, bytes, tuple[tuple[str, str], ...]]]) -> None:
    """The requests one after the other on one h2c connection, each answer read to its end."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import StreamEnded, StreamReset

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    try:
        for sid, (method, target, body, extra) in zip(range(1, 999, 2), requests):
            conn.send_headers(sid, [(":method", method), (":scheme", "http"), (":path", target),
                                    (":authority", "h2.test"), *extra], end_stream=not body)
            if body:
                conn.send_data(sid, body, end_stream=True)
            writer.write(conn.data_to_send())
            done = False
            while not done:
                data = await asyncio.wait_for(reader.read(65536), 5)
                assert data, "connection closed"
                for event in conn.receive_data(data):
                    if getattr(event, "stream_id", None) == sid and isinstance(event, (StreamEnded, StreamReset)):
                        done = True
                    elif hasattr(event, "flow_controlled_length"):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                writer.write(conn.data_to_send())
        await asyncio.sleep(0.3)  # the last lines reach the logs
    finally:
        writer.close()


UNBUFFERED_CONFIG = """
events {}
http {
    access_log off;
    server {
        listen 127.0.0.1:8080 http2;
        location /nb/ { proxy_request_buffering off; proxy_http_version 1.1; proxy_pass http://127.0.0.1:9401; }
        location /nb10/ { proxy_request_buffering off; proxy_pass http://127.0.0.1:9401; }
        location /b/ { proxy_http_version 1.1; proxy_pass http://127.0.0.1:9401; }
    }
}
"""


def test_request_buffering_off_over_h2_like_nginx(tmp_path: Path) -> None:
    """A request body over HTTP/2 without Content-Length, in DATA frames after its HEADERS: with
    proxy_request_buffering off and proxy_http_version 1.1 nginx sends it upstream chunked (it runs
    the request at the HEADERS, the body still to come); buffered, or over HTTP/1.0 upstream, with the
    Content-Length of what it read. With a Content-Length from the client, that one. The upstream
    requests are compared byte for byte (the Host header aside)."""
    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    path = tmp_path / "nginx.conf"
    path.write_text(UNBUFFERED_CONFIG)
    config = parse_config(str(path))
    the_plan = plan(config)
    listen = _listen(the_plan, 8080)
    body = b"0123456789" * 50
    big = bytes(range(256)) * 160  # 40 KiB: past client_body_buffer_size (newproxy: a file, its reads kept)
    cases = [("/nb/a", (), body), ("/nb/b", (("content-length", str(len(body))),), body), ("/nb10/c", (), body),
             ("/b/d", (), body), ("/nb/e", (), big), ("/b/f", (), big), ("/b/g", (("content-length", "40960"),), big)]
    seen = []
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        for target in started.targets:
            port = target.listen_ports[listen]
            statuses = [asyncio.run(_post_in_frames(port, target_path, data, extra))
                        for target_path, extra, data in cases]
            raws = [re.sub(rb"(?m)^Host: [^\r]*", b"Host: <h>", r.raw) for r in started.pool.take()]
            seen.append((statuses, raws))
    nginx, newproxy = seen
    assert newproxy == nginx
    assert nginx[0] == [200] * len(cases)
    for unbuffered in (0, 4):
        assert b"Transfer-Encoding: chunked" in nginx[1][unbuffered] and b"Content-Length" not in nginx[1][unbuffered]
    assert all(b"Content-Length: 500" in raw for raw in nginx[1][1:4])
    assert all(b"Content-Length: 40960" in raw for raw in nginx[1][5:])
    # The 40 KiB body nginx read unbuffered went upstream a chunk per read: more than one chunk.
    assert nginx[1][4].count(b"\r\n0\r\n\r\n") == 1 and nginx[1][4].count(b"\r\n") > 4
    # Buffered, it went to a temporary file, with nginx's warning (unbuffered, no file, no warning).
    from tests.test_differential_request_body_file import _warnings
    lines = [_warnings(tmp_path / "run" / target / "error.log") for target in ("nginx", "newproxy")]
    assert lines[1] == lines[0] and [line.split('"')[1] for line in lines[0]] == ["POST /b/f HTTP/2.0", "POST /b/g HTTP/2.0"]


async def _post_in_frames(port: int, path: str, body: bytes, extra: tuple[tuple[str, str], ...]) -> int:
    """POST ``body`` in two halves of DATA frames sent after the HEADERS (0.1 s apart); the answer's
    status."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "h2.test"),
                          *extra])
    writer.write(conn.data_to_send())
    await asyncio.sleep(0.1)
    half = len(body) // 2
    for part, last in ((body[:half], False), (body[half:], True)):  # each half in frames of 16 KiB at most
        for at in range(0, len(part), 16384):
            conn.send_data(1, part[at:at + 16384], end_stream=last and at + 16384 >= len(part))
        writer.write(conn.data_to_send())
        await asyncio.sleep(0 if last else 0.1)
    status = 0
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (StreamEnded, StreamReset)):
                    return status
            writer.write(conn.data_to_send())
    finally:
        writer.close()
