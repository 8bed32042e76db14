"""newproxy/http/grpc_upstream.py in process, against the gRPC-like test upstream: the engine's
ProxyPass for a grpc_pass location, run by a GrpcExchange that reports to a recording sink (an
HTTP/1.1 one, and a multiplexed one with ``upstream_trailers`` as newproxy/http/streams.py has).

What nginx does is compared in tests/test_differential_grpc.py; this covers the client's own
mechanics: flow control past the peer's windows both ways, the connection closed after the call,
trailers to each kind of sink, failures before the head (502 for a reset, next peer after a refused
connection), a client that goes away mid-call, upstream keepalive (one connection, streams 1, 3, 5)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from newproxy.engine.engine import Engine
from newproxy.engine.proxy import client_response_head
from newproxy.engine.types import ProxyPass, Request
from newproxy.http.errorlog import ErrorLog
from newproxy.http.grpc_upstream import GrpcExchange
from newproxy.http.upstream import UpstreamClient
from nginx_parser import parse_config
from tests.grpc_upstream import GrpcUpstream, frame, unframe
from translator import translate


class Sink:
    conn_id = 1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.writes: list[bytes] = []
        self.end: asyncio.Future[tuple[str, object]] = loop.create_future()

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def upstream_done(self, keepalive: bool) -> None:
        self.end.set_result(("done", keepalive))

    def upstream_error(self, status: int) -> None:
        self.end.set_result(("error", status))

    def upstream_abort(self) -> None:
        self.end.set_result(("abort", None))


class MuxSink(Sink):
    def upstream_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.end.set_result(("trailers", trailers))


@pytest.fixture(scope="module")
def upstream() -> Iterator[GrpcUpstream]:
    up = GrpcUpstream()
    up.start()
    yield up
    up.stop()


def _engine(tmp_path: Path, port: int) -> Engine:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more: refused
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""events {{}}
http {{
    upstream pair {{ server 127.0.0.1:{dead_port}; server 127.0.0.1:{port}; }}
    upstream kept {{ server 127.0.0.1:{port}; keepalive 1; }}
    server {{
        listen 127.0.0.1:18097;
        location / {{ grpc_pass grpc://127.0.0.1:{port}; }}
        location /pair/ {{ grpc_pass grpc://pair; }}
        location /kept/ {{ grpc_pass grpc://kept; }}
    }}
}}
""")
    return Engine(translate(parse_config(str(conf))).config)


def _pass(engine: Engine, path: str, body: bytes, version: bytes = b"1.1") -> ProxyPass:
    request = Request(b"POST", path.encode(), version, [(b"Host", b"x"), (b"TE", b"trailers"),
                                                        (b"Content-Type", b"application/grpc")],
                      body, ("127.0.0.1", 5000), ("127.0.0.1", 18097))
    result = engine.handle(request)
    assert isinstance(result, ProxyPass) and result.grpc_headers is not None
    return result


async def _run(pp: ProxyPass, sink_type: type[Sink] = Sink, abort_after: float = 0.0) -> tuple[Sink, UpstreamClient]:
    loop = asyncio.get_running_loop()
    client = UpstreamClient(loop, client_response_head, ErrorLog("/dev/null"))
    sink = sink_type(loop)
    exchange = GrpcExchange(client, pp, sink)  # type: ignore[arg-type]
    exchange.start()
    if abort_after:
        await asyncio.sleep(abort_after)
        exchange.abort()
        assert exchange.done and exchange.conn is None
        return sink, client
    await asyncio.wait_for(sink.end, 10)
    client.deadlines.close()
    return sink, client


def test_large_call_both_ways_and_trailers(tmp_path: Path, upstream: GrpcUpstream) -> None:
    engine = _engine(tmp_path, upstream.port)
    big = b"z" * 200_000  # past the peer's 65535-byte stream window: sent as WINDOW_UPDATEs come
    sink, client = asyncio.run(_run(_pass(engine, "/svc/Unary", frame(big) + frame(b"end"))))
    assert sink.end.result() == ("done", True) and client.connections_opened == 1
    raw = b"".join(sink.writes)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    chunks, rest = b"", body
    while True:
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        chunks += rest[:int(size, 16)]
        rest = rest[int(size, 16) + 2:]
    assert unframe(chunks)[0] == [b"echo:" + big, b"echo:end"]
    assert rest == b"grpc-status: 0\r\ngrpc-message: OK\r\n\r\n"
    call = upstream.drain()[-1]
    assert call.messages == [big, b"end"] and call.ended


def test_multiplexed_sink_gets_trailers_and_raw_data(tmp_path: Path, upstream: GrpcUpstream) -> None:
    engine = _engine(tmp_path, upstream.port)
    sink, _ = asyncio.run(_run(_pass(engine, "/svc/Stream", frame(b"a") + frame(b"b"), b"2.0"), MuxSink))
    assert sink.end.result() == ("trailers", [(b"grpc-status", b"0"), (b"grpc-message", b"OK")])
    head, _, first = sink.writes[0].partition(b"\r\n\r\n")
    data = first + b"".join(sink.writes[1:])
    assert b"Transfer-Encoding" not in head and unframe(data)[0] == [b"echo:a", b"echo:b"]
    upstream.drain()


def test_failures_before_the_head(tmp_path: Path, upstream: GrpcUpstream) -> None:
    engine = _engine(tmp_path, upstream.port)
    sink, _ = asyncio.run(_run(_pass(engine, "/svc/Reset", frame(b"x"))))
    assert sink.end.result() == ("error", 502) and sink.writes == []
    sink, client = asyncio.run(_run(_pass(engine, "/pair/Unary", frame(b"y"))))  # refused, then the next peer
    assert sink.end.result() == ("done", True) and client.connections_opened == 1
    assert upstream.drain()[-1].path == "/pair/Unary"


def test_client_gone_mid_call(tmp_path: Path, upstream: GrpcUpstream) -> None:
    engine = _engine(tmp_path, upstream.port)
    sink, _ = asyncio.run(_run(_pass(engine, "/svc/Slow", frame(b"s")), abort_after=0.3))
    assert not sink.end.done() and sink.writes == []
    upstream.drain()


def test_keepalive_reuses_the_connection_with_new_stream_ids(tmp_path: Path, upstream: GrpcUpstream) -> None:
    engine = _engine(tmp_path, upstream.port)

    async def calls() -> tuple[list[object], UpstreamClient]:
        loop = asyncio.get_running_loop()
        client = UpstreamClient(loop, client_response_head, ErrorLog("/dev/null"))
        ends, streams = [], []
        for path in ("/kept/Unary", "/kept/Stream", "/kept/Unary"):
            sink = Sink(loop)
            exchange = GrpcExchange(client, _pass(engine, path, frame(b"k")), sink)  # type: ignore[arg-type]
            exchange.start()
            ends.append(await asyncio.wait_for(sink.end, 10))
            streams.append(exchange.stream)
        client.deadlines.close()
        return ends + streams, client

    results, client = asyncio.run(calls())
    assert results == [("done", True)] * 3 + [1, 3, 5] and client.connections_opened == 1
    assert [c.path for c in upstream.drain()] == ["/kept/Unary", "/kept/Stream", "/kept/Unary"]
