"""The strangler fallback in the sans-IO engine: the request handed to legacy is the client's, byte
for byte, and legacy's answer comes back as it is (only the hop is newproxy's).

The differential proof (nginx vs newproxy + legacy nginx) is tests/test_fallback_shadow.py.
"""

from __future__ import annotations

from newproxy.config import (
    ListenConfig,
    LocationConfig,
    NewproxyConfig,
    ProxyConfig,
    ReturnStep,
    ServerConfig,
    UpstreamConfig,
    UpstreamServerConfig,
)
from newproxy.engine.engine import Engine
from newproxy.engine.proxy import client_response_head
from newproxy.engine.types import ProxyPass, Request, Response


def _engine(legacy_port: int = 8080, listen_port: int = 80) -> Engine:
    fallback = ProxyConfig(upstream="legacy_nginx", proxy_host=f"127.0.0.9:{legacy_port}", headers=[],
                           pass_through=True, hide_headers=[])
    server = ServerConfig(
        listen=[ListenConfig(address="127.0.0.1", port=listen_port)], server_names=["example.com"],
        locations=[
            LocationConfig(match="prefix", path="/php/", proxy=fallback),
            LocationConfig(match="prefix", path="/", rewrite=[ReturnStep(status=200, text="newproxy")]),
        ])
    upstream = UpstreamConfig(name="legacy_nginx", servers=[UpstreamServerConfig(host="127.0.0.9", port=legacy_port)])
    return Engine(NewproxyConfig(servers=[server], upstreams=[upstream]))


def _request(target: bytes, headers: list[tuple[bytes, bytes]], version: bytes = b"1.1", method: bytes = b"GET",
             body: bytes = b"", port: int = 80) -> Request:
    return Request(method, target, version, headers, body, ("127.0.0.1", 4000), ("127.0.0.1", port))


def test_request_goes_to_legacy_as_received() -> None:
    headers = [(b"host", b"Example.COM:80"), (b"X-Dup", b"1"), (b"x-dup", b"2"), (b"Connection", b"keep-alive"),
               (b"X-Forwarded-For", b"10.0.0.1"), (b"Content-Length", b"3")]
    pp = _engine().handle(_request(b"/php/a%2Fb/../c.php?x=%41&y", headers, method=b"POST", body=b"abc"))
    assert isinstance(pp, ProxyPass)
    # The raw target (no normalising of %2F, "..", or the args), the client's version, every header
    # in its order and case, nothing added (no Host rewrite, no X-Forwarded-For, no Connection: close).
    assert pp.head == (b"POST /php/a%2Fb/../c.php?x=%41&y HTTP/1.1\r\nhost: Example.COM:80\r\nX-Dup: 1\r\n"
                       b"x-dup: 2\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\n\r\n")
    assert pp.body == b"abc"
    assert pp.upstream.name == "legacy_nginx"
    # A request for a translated location is not affected.
    assert isinstance(_engine().handle(_request(b"/other", [(b"Host", b"example.com")])), Response)


def test_http10_without_host_and_chunked_body() -> None:
    pp = _engine().handle(_request(b"/php/x", [], version=b"1.0"))
    assert isinstance(pp, ProxyPass) and pp.head == b"GET /php/x HTTP/1.0\r\n\r\n"
    chunked = [(b"Host", b"example.com"), (b"Transfer-Encoding", b"chunked")]
    pp = _engine().handle(_request(b"/php/x", chunked, method=b"POST", body=b"hello"))
    assert isinstance(pp, ProxyPass) and pp.body == b"5\r\nhello\r\n0\r\n\r\n"
    pp = _engine().handle(_request(b"/php/x", chunked, method=b"POST"))
    assert isinstance(pp, ProxyPass) and pp.body == b"0\r\n\r\n"


def test_no_auto_redirect_in_newproxy() -> None:
    # nginx's "/php" -> "/php/" redirect is legacy's to make (if its config makes it at all).
    pp = _engine().handle(_request(b"/php", [(b"Host", b"example.com")]))
    assert isinstance(pp, Response) and pp.status == 200  # no fallback match: the "/" location answers


def _relay(pp: ProxyPass, headers: list[tuple[bytes, bytes]], framing: str = "length",
           status: int = 301, reason: bytes = b"Moved Permanently") -> bytes:
    head, out = client_response_head(pp, status, reason, headers, framing)
    assert out == ("chunked" if framing == "chunked" and pp.request.version == b"1.1" else framing)
    return head


def test_response_relayed_as_is_with_location_prefix_fixed() -> None:
    legacy_head = [(b"Server", b"nginx/1.22.1"), (b"Date", b"Fri, 27 Nov 2026 07:00:00 GMT"),
                   (b"Content-Type", b"text/html"), (b"Content-Length", b"169"),
                   (b"Location", b"http://example.com:8080/php/"), (b"Connection", b"keep-alive"),
                   (b"X-Pad", b"avoid browser bug"), (b"X-Accel-Expires", b"0")]
    pp = _engine(legacy_port=8080, listen_port=80).handle(_request(b"/php/", [(b"Host", b"Example.com:80")]))
    assert isinstance(pp, ProxyPass)
    # Legacy's Server and Date, its order, headers nginx's proxy would hide: all kept. The
    # Location legacy made absolute with its own port becomes newproxy's (80: no port, as nginx).
    assert _relay(pp, legacy_head) == (
        b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 07:00:00 GMT\r\n"
        b"Content-Type: text/html\r\nContent-Length: 169\r\nLocation: http://example.com/php/\r\n"
        b"Connection: keep-alive\r\nX-Pad: avoid browser bug\r\nX-Accel-Expires: 0\r\n\r\n")
    assert pp.keepalive


def test_location_rewrite_only_for_legacy_own_authority() -> None:
    engine = _engine(legacy_port=8080, listen_port=8000)
    pp = engine.handle(_request(b"/php/", [(b"Host", b"example.com")], port=8000))
    assert isinstance(pp, ProxyPass)
    for location, expected in [
        (b"http://example.com:8080/a?b", b"http://example.com:8000/a?b"),
        (b"http://example.com:8080", b"http://example.com:8000"),
        (b"http://example.com:80801/a", b"http://example.com:80801/a"),  # another port
        (b"http://other.example:8080/a", b"http://other.example:8080/a"),  # another host
        (b"https://example.com:8080/a", b"https://example.com:8080/a"),
        (b"/relative", b"/relative"),
    ]:
        head = _relay(pp, [(b"Location", location), (b"Connection", b"keep-alive")])
        assert b"\r\nLocation: " + expected + b"\r\n" in head, location
    # server_name_in_redirect on in legacy: its server_name, whatever the Host was.
    pp = engine.handle(_request(b"/php/", [(b"Host", b"alias.example")], port=8000))
    assert isinstance(pp, ProxyPass)
    head = _relay(pp, [(b"Location", b"http://Example.com:8080/x"), (b"Connection", b"keep-alive")])
    assert b"\r\nLocation: http://example.com:8000/x\r\n" in head
    # Without a Host, legacy names the address newproxy connected to; newproxy names its own.
    pp = engine.handle(_request(b"/php/", [], version=b"1.0", port=8000))
    assert isinstance(pp, ProxyPass)
    head = _relay(pp, [(b"Location", b"http://127.0.0.9:8080/php/x"), (b"Connection", b"close")])
    assert b"\r\nLocation: http://127.0.0.1:8000/php/x\r\n" in head


def test_legacy_closing_closes_the_client_connection() -> None:
    pp = _engine().handle(_request(b"/php/", [(b"Host", b"example.com")]))
    assert isinstance(pp, ProxyPass) and pp.keepalive
    head = _relay(pp, [(b"Content-Length", b"0"), (b"Connection", b"close")], status=400, reason=b"Bad Request")
    assert b"\r\nConnection: close\r\n" in head and not pp.keepalive


def test_framing_is_the_hop_s() -> None:
    pp = _engine().handle(_request(b"/php/", [(b"Host", b"example.com")]))
    assert isinstance(pp, ProxyPass)
    head = _relay(pp, [(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", b"chunked"),
                       (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5")], framing="chunked",
                  status=200, reason=b"OK")
    assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                    b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n")
    pp10 = _engine().handle(_request(b"/php/", [(b"Host", b"example.com")], version=b"1.0"))
    assert isinstance(pp10, ProxyPass)
    head = _relay(pp10, [(b"Content-Type", b"text/plain"), (b"Connection", b"close")], framing="close",
                  status=200, reason=b"OK")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
