"""The raw client: framing by length, chunked and close; bodiless answers; the connection's fate."""

from __future__ import annotations

import asyncio
import socket

from shadow.client import Response, send


async def _serve(reply: bytes, close: bool, **kw: float) -> Response:
    """Answer one request with ``reply`` (then close, or keep the connection open) and send it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        if close:
            writer.close()
        else:
            await asyncio.sleep(3)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        method = str(kw.pop("method", "GET"))
        return await send(f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode(), port, method, **kw)
    finally:
        server.close()


def run(reply: bytes, close: bool = False, **kw: object) -> Response:
    return asyncio.run(asyncio.wait_for(_serve(reply, close, **kw), 10))


def test_content_length_and_keep_alive() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhello")
    assert (r.outcome, r.status, r.reason, r.version) == ("response", 200, "OK", "1.1")
    assert r.headers == [("X-A", "1"), ("x-a", "2"), ("Content-Length", "5")]
    assert r.body == b"hello"
    assert r.connection == "keep-alive"


def test_content_length_then_close() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", close=True)
    assert r.body == b"ok" and r.connection == "closed"


def test_close_without_announcing_it() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)
    assert r.connection == "closed"


def test_chunked() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n")
    assert r.body == b"abcd"
    assert r.raw_body == b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"
    assert r.connection == "keep-alive"


def test_body_until_close() -> None:
    r = run(b"HTTP/1.0 200 OK\r\n\r\nall of it", close=True)
    assert r.body == b"all of it" and r.connection == "closed"


def test_head_has_no_body_even_with_length() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", method="HEAD")
    assert r.status == 200 and r.body == b"" and r.connection == "keep-alive"


def test_204_and_304_have_no_body() -> None:
    for status in (204, 304):
        r = run(f"HTTP/1.1 {status} X\r\n\r\n".encode())
        assert r.status == status and r.body == b"" and r.outcome == "response"


def test_interim_100_is_skipped() -> None:
    r = run(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert r.status == 201 and r.interim == [100]


def test_closed_without_response() -> None:
    r = run(b"", close=True)
    assert r.outcome == "no-response" and r.connection == "closed"


def test_truncated_body() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True)
    assert r.outcome == "truncated"


def test_timeout_is_a_result() -> None:
    r = run(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", timeout=0.3)
    assert r.outcome == "timeout" and r.error


def test_refused_is_a_result() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
    port = s.getsockname()[1]
    try:
        r = asyncio.run(send(b"GET / HTTP/1.0\r\n\r\n", port, "GET", timeout=2))
    finally:
        s.close()
    assert r.outcome == "refused"


def test_garbage_is_a_result() -> None:
    r = run(b"SSH-2.0-OpenSSH\r\n\r\n", close=True)
    assert r.outcome == "bad-response"
