"""Recording upstreams: exact recording, deterministic echo, keep-alive, refuse mode."""

from __future__ import annotations

import json
import socket

import pytest

from shadow.upstreams import UpstreamPool


def _recv_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One Content-Length framed response: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


@pytest.fixture
def pool():
    with UpstreamPool() as p:
        yield p


def _connect(pool: UpstreamPool, name: str) -> socket.socket:
    host, port = pool.upstreams[name].address
    return socket.create_connection((host, port), timeout=5)


def test_records_raw_bytes_and_headers_in_order(pool: UpstreamPool) -> None:
    pool.add("backend:8080")
    raw = (
        b"POST /a/b?x=1%20y HTTP/1.1\r\nhost: Backend\r\nX-B: 2\r\nx-a: 1\r\nX-B: 3\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    with _connect(pool, "backend:8080") as s:
        s.sendall(raw)
        head, body = _recv_response(s)
    pool.settle()
    [rec] = pool.take()
    assert rec.raw == raw
    assert (rec.method, rec.uri, rec.version) == ("POST", "/a/b?x=1%20y", "1.1")
    assert rec.headers == [
        ("host", "Backend"),
        ("X-B", "2"),
        ("x-a", "1"),
        ("X-B", "3"),
        ("Content-Length", "5"),
        ("Connection", "close"),
    ]
    assert rec.body == b"hello"
    assert rec.upstream == "backend:8080"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: application/json" in head
    echo = json.loads(body)
    assert echo == {
        "upstream": "backend:8080",
        "method": "POST",
        "uri": "/a/b?x=1%20y",
        "version": "1.1",
        "headers": [list(h) for h in rec.headers],
        "body": "hello",
    }
    assert pool.take() == []


def test_chunked_body_is_decoded_and_raw_kept(pool: UpstreamPool) -> None:
    pool.add("u")
    raw = b"PUT / HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    with _connect(pool, "u") as s:
        s.sendall(raw)
        _recv_response(s)
    pool.settle()
    [rec] = pool.take()
    assert rec.body == b"abcde"
    assert rec.raw == raw


def test_keep_alive_for_http11_and_close_for_http10(pool: UpstreamPool) -> None:
    pool.add("u")
    with _connect(pool, "u") as s:
        for _ in range(3):
            s.sendall(b"GET /k HTTP/1.1\r\nHost: u\r\n\r\n")
            head, _ = _recv_response(s)
            assert b"Connection: close" not in head
    with _connect(pool, "u") as s:
        s.sendall(b"GET /c HTTP/1.0\r\n\r\n")
        head, _ = _recv_response(s)
        assert b"Connection: close" in head
        assert s.recv(1) == b""  # closed after an HTTP/1.0 request
    with _connect(pool, "u") as s:
        s.sendall(b"GET /c11 HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n")
        _recv_response(s)
        assert s.recv(1) == b""
    pool.settle()
    records = pool.take()
    assert [r.connection_seq for r in records] == [1, 2, 3, 1, 1]
    assert [r.uri for r in records] == ["/k", "/k", "/k", "/c", "/c11"]


def test_head_gets_no_body(pool: UpstreamPool) -> None:
    pool.add("u")
    with _connect(pool, "u") as s:
        s.sendall(b"HEAD /h HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: " in head and body == b""


def test_take_orders_across_upstreams(pool: UpstreamPool) -> None:
    pool.add("a")
    pool.add("b")
    for name in ("b", "a", "b"):
        with _connect(pool, name) as s:
            s.sendall(f"GET /{name} HTTP/1.0\r\n\r\n".encode())
            _recv_response(s)
    pool.settle()
    assert [r.upstream for r in pool.take()] == ["b", "a", "b"]


def test_refuse_mode(pool: UpstreamPool) -> None:
    upstream = pool.add("down", refuse=True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(upstream.address, timeout=5)


def test_add_after_start_and_by_address() -> None:
    with UpstreamPool() as pool:
        up = pool.add("late:80")
        assert pool.add("late:80") is up
        assert pool.by_address() == {up.hostport: "late:80"}
        with _connect(pool, "late:80") as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            _recv_response(s)


def test_status_marker_in_the_uri_sets_the_status(pool: UpstreamPool) -> None:
    pool.add("backend:8080")
    statuses = []
    for uri in (b"/a/__status/503/x", b"/__status/404", b"/__status/200", b"/__status/5030", b"/plain"):
        with _connect(pool, "backend:8080") as s:
            s.sendall(b"GET " + uri + b" HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            head, body = _recv_response(s)
        statuses.append(head.split(b" ")[1])
        assert json.loads(body)["uri"] == uri.decode()
    assert statuses == [b"503", b"404", b"200", b"200", b"200"]


def test_delay_marker_in_the_uri_delays_the_answer(pool: UpstreamPool) -> None:
    import time

    pool.add("backend:8080")
    elapsed = []
    for uri in (b"/a/__delay/150/x", b"/a/x"):
        with _connect(pool, "backend:8080") as s:
            start = time.monotonic()
            s.sendall(b"GET " + uri + b" HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            head, _ = _recv_response(s)
            elapsed.append(time.monotonic() - start)
        assert head.split(b" ")[1] == b"200"
    assert elapsed[0] >= 0.15 > elapsed[1], elapsed
