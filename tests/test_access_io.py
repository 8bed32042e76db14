"""auth_request through the real IO layer: the subrequest goes through the upstream client (keep-alive
pool, chunked and slow answers, a refused peer) and pipelined requests wait their turn behind it;
auth_delay holds a 401 back without holding anything else up.
What the answers are is compared with nginx in tests/test_differential_access.py; this checks the
front end's ordering and state around the AuthSubrequest round trip."""

from __future__ import annotations

import time
from pathlib import Path

from newproxy.config import (
    AccessConfig,
    ListenConfig,
    LocationConfig,
    NewproxyConfig,
    ProxyConfig,
    ReturnStep,
    ServerConfig,
    UpstreamConfig,
    UpstreamServerConfig,
)
from tests.io_upstream import FakeUpstream, free_port
from tests.test_newproxy_io import Client, _headers, get, newproxy


def _proxy(upstream: str, uri: str | None = None) -> ProxyConfig:
    return ProxyConfig(upstream=upstream, proxy_host=upstream, uri=uri, http_version="1.1",
                       headers=_headers("1.1"))


def _config(port: int, peer: int, refused: int, tmp: Path) -> NewproxyConfig:
    def guarded(path: str, auth: str) -> LocationConfig:
        return LocationConfig(match="prefix", path=path, proxy=_proxy("backend"),
                              access=AccessConfig(auth_request=auth))

    return NewproxyConfig(
        pid=str(tmp / "newproxy.pid"),
        servers=[ServerConfig(
            listen=[ListenConfig(address="127.0.0.1", port=port)],
            locations=[
                guarded("/p/", "/auth"),
                guarded("/q/", "/auth-slow"),
                guarded("/r/", "/auth-refused"),
                LocationConfig(match="exact", path="/auth", proxy=_proxy("backend", "/chunked")),
                LocationConfig(match="exact", path="/auth-slow", proxy=_proxy("backend", "/slow")),
                LocationConfig(match="exact", path="/auth-refused", proxy=_proxy("refused", "/x")),
                LocationConfig(match="exact", path="/ret", rewrite=[ReturnStep(status=200, text="returned\n")]),
                LocationConfig(match="prefix", path="/slowly/", proxy=_proxy("backend"), access=AccessConfig(
                    auth_basic="R", auth_basic_user_file=str(tmp / "users"), auth_delay=0.4)),
            ],
        )],
        upstreams=[
            UpstreamConfig(name="backend", servers=[UpstreamServerConfig(host="127.0.0.1", port=peer)], keepalive=4),
            UpstreamConfig(name="refused", servers=[UpstreamServerConfig(host="127.0.0.1", port=refused)]),
        ],
    )


def test_pipelined_requests_wait_for_auth_subrequests(tmp_path: Path) -> None:
    with FakeUpstream(delay=0.3) as upstream, \
            newproxy(_config(free_port(), upstream.port, free_port(), tmp_path), tmp_path) as proxy:
        client = Client(proxy.port)
        client.send(
            b"GET /p/1 HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /ret HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /q/2 HTTP/1.1\r\nHost: test\r\n\r\n"
            b"HEAD /p/3 HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /r/4 HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        first, second, third = client.read(), client.read(), client.read()
        fourth = client.read(head_request=True)
        fifth = client.read()
        assert (first.status, first.body) == (200, b"hello from upstream\n")
        assert (second.status, second.body) == (200, b"returned\n")
        assert (third.status, third.body) == (200, b"hello from upstream\n")
        assert fourth.status == 200 and fourth.body == b""
        assert fifth.status == 500 and fifth.header("Connection") == "close"  # the auth peer refused
        assert client.at_eof()
        client.close()
        paths = [h.split(b" ")[:2] for h in upstream.requests]
        # Each subrequest is a GET (also for the HEAD request), before the request it guards.
        assert paths == [[b"GET", b"/chunked"], [b"GET", b"/p/1"], [b"GET", b"/slow"], [b"GET", b"/q/2"],
                         [b"GET", b"/chunked"], [b"HEAD", b"/p/3"]]
    assert "Traceback" not in proxy.errors()


def test_auth_delay_holds_back_a_401_only(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("u:{PLAIN}p\n")
    with FakeUpstream() as upstream, \
            newproxy(_config(free_port(), upstream.port, free_port(), tmp_path), tmp_path) as proxy:
        start = time.monotonic()
        refused = get(proxy.port, "/slowly/a")
        delayed = time.monotonic() - start
        other = Client(proxy.port)  # the delay blocks nothing else meanwhile
        start = time.monotonic()
        allowed = get(proxy.port, "/slowly/a", b"Authorization: Basic dTpw\r\n")
        quick = time.monotonic() - start
        other.close()
        assert refused.status == 401 and refused.header("WWW-Authenticate") == 'Basic realm="R"'
        assert allowed.status == 200
        assert delayed >= 0.4 and quick < 0.4, (delayed, quick)
