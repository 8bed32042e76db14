"""The sans-IO engine: routing, returns and upstream requests, with no sockets.

These pin the engine's own logic; the claims of equality with nginx are made by the differential
tests (test_differential_*.py), which run the same requests through the real binary.
"""

from __future__ import annotations

import pytest

from newproxy.config import (
    HeaderSetting,
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
from newproxy.engine.types import ProxyPass, Request, Response
from newproxy.engine.upstreams import UpstreamGroup
from newproxy.engine.uri import BadRequest, parse_target


def probe(match: str, path: str, nested: list[LocationConfig] | None = None) -> LocationConfig:
    return LocationConfig(match=match, path=path, rewrite=[ReturnStep(status=200, text=f"{match} {path}")],
                          locations=nested or [])


def engine(locations: list[LocationConfig], names: list[str] | None = None) -> Engine:
    server = ServerConfig(listen=[ListenConfig(address="127.0.0.1", port=8080)], server_names=names or ["a"],
                          locations=locations)
    return Engine(NewproxyConfig(servers=[server]))


def get(e: Engine, target: bytes, host: bytes = b"a", method: bytes = b"GET") -> Response | ProxyPass:
    return e.handle(Request(method, target, b"1.1", [(b"Host", host)], b"", ("127.0.0.1", 4000), ("127.0.0.1", 8080)))


def body(result: Response | ProxyPass) -> bytes:
    assert isinstance(result, Response)
    return result.body


def test_location_precedence() -> None:
    e = engine([
        probe("prefix", "/"),
        probe("prefix", "/images/"),
        probe("prefix_priority", "/static/"),
        probe("exact", "/exact"),
        probe("regex", r"\.png$"),
        probe("regex_caseless", r"\.JPG$"),
    ])
    assert body(get(e, b"/exact")) == b"exact /exact"
    assert body(get(e, b"/exact/more")) == b"prefix /"
    assert body(get(e, b"/images/a.png")) == b"regex \\.png$"  # a regex beats a plain prefix
    assert body(get(e, b"/static/a.png")) == b"prefix_priority /static/"  # ^~ stops the regex search
    assert body(get(e, b"/x/a.jpg")) == b"regex_caseless \\.JPG$"
    assert body(get(e, b"/images/a.gif")) == b"prefix /images/"


def test_nested_regex_wins_over_outer_regex() -> None:
    e = engine([
        probe("prefix", "/app/", nested=[probe("regex", r"\.php$")]),
        probe("regex", r"\.php$"),
    ])
    assert body(get(e, b"/app/x.php")).startswith(b"regex")
    assert body(get(e, b"/app/x.html")) == b"prefix /app/"


def test_server_selection_by_name_and_default() -> None:
    servers = [
        ServerConfig(listen=[ListenConfig(port=8080)], server_names=["first"],
                     rewrite=[ReturnStep(status=200, text="first")]),
        ServerConfig(listen=[ListenConfig(port=8080, default_server=True)], server_names=["default"],
                     rewrite=[ReturnStep(status=200, text="default")]),
        ServerConfig(listen=[ListenConfig(port=8080)], server_names=["*.example.com", "www.example.*"],
                     rewrite=[ReturnStep(status=200, text="wild")]),
        ServerConfig(listen=[ListenConfig(port=8080)], server_names=["~^api\\d+\\.test$"],
                     rewrite=[ReturnStep(status=200, text="regex")]),
    ]
    e = Engine(NewproxyConfig(servers=servers))
    assert body(get(e, b"/", b"FIRST:8080")) == b"first"
    assert body(get(e, b"/", b"nobody")) == b"default"
    assert body(get(e, b"/", b"a.example.com")) == b"wild"
    assert body(get(e, b"/", b"www.example.org")) == b"wild"
    assert body(get(e, b"/", b"api7.test")) == b"regex"
    assert e.listen_addresses == [("0.0.0.0", 8080, True)]


def test_bad_requests_get_400() -> None:
    e = engine([probe("prefix", "/")])
    for target in (b"/../x", b"/%zz", b"nothing"):
        result = get(e, target)
        assert isinstance(result, Response) and result.status == 400 and not result.keepalive
    with pytest.raises(BadRequest):
        parse_target(b"/a/../../b")
    assert parse_target(b"/a//b/./c/../d?x=1").uri == "/a/b/d"


def test_proxy_request_with_uri_part_and_default_headers() -> None:
    headers = [HeaderSetting(name="Host", value="$proxy_host"), HeaderSetting(name="Connection", value="close"),
               HeaderSetting(name="TE", value="")]
    location = LocationConfig(match="prefix", path="/api/", proxy=ProxyConfig(
        upstream="u", proxy_host="u", uri="/v1/", headers=headers))
    server = ServerConfig(listen=[ListenConfig(port=8080)], locations=[location])
    upstream = UpstreamConfig(name="u", servers=[UpstreamServerConfig(host="127.0.0.1", port=9)])
    e = Engine(NewproxyConfig(servers=[server], upstreams=[upstream]))
    request = Request(b"GET", b"/api/a%20b?q=1", b"1.1", [(b"Host", b"x"), (b"TE", b"t"), (b"X-Y", b"z")], b"",
                      ("127.0.0.1", 1), ("127.0.0.1", 8080))
    result = e.handle(request)
    assert isinstance(result, ProxyPass)
    assert result.head == b"GET /v1/a%20b?q=1 HTTP/1.0\r\nHost: u\r\nConnection: close\r\nX-Y: z\r\n\r\n"
    redirect = get(e, b"/api?x=1", host=b"x")
    assert isinstance(redirect, Response) and redirect.status == 301
    assert b"Location: http://x:8080/api/?x=1\r\n" in redirect.head


def test_smooth_weighted_round_robin_order() -> None:
    group = UpstreamGroup(UpstreamConfig(name="g", servers=[
        UpstreamServerConfig(host="a", port=1, weight=5),
        UpstreamServerConfig(host="b", port=1, weight=1),
        UpstreamServerConfig(host="c", port=1, weight=1),
    ]))
    order = []
    for _ in range(7):
        selection = group.begin()
        peer = selection.next()
        assert peer is not None
        selection.succeeded(peer)
        order.append(peer.host)
    # nginx's documented sequence for weights 5, 1, 1.
    assert order == ["a", "a", "b", "a", "c", "a", "a"]


def test_failed_peer_is_skipped_until_fail_timeout() -> None:
    now = [100.0]
    group = UpstreamGroup(UpstreamConfig(name="g", servers=[
        UpstreamServerConfig(host="a", port=1), UpstreamServerConfig(host="b", port=1)]), clock=lambda: now[0])
    selection = group.begin()
    first = selection.next()
    assert first is not None
    selection.failed(first)
    second = selection.next()
    assert second is not None and second is not first
    selection.succeeded(second)
    assert selection.next() is None  # each peer is tried once per request
    for _ in range(3):
        s = group.begin()
        peer = s.next()
        assert peer is second
        s.succeeded(peer)
    now[0] += 11
    # Back in rotation after fail_timeout, at a reduced effective weight that recovers step by step.
    chosen = {group.begin().next().host for _ in range(4)}  # type: ignore[union-attr]
    assert first.host in chosen


def test_server_name_conflicts_keep_the_first_as_nginx_does() -> None:
    from newproxy.engine.compiled import primary_name
    from newproxy.engine.servers import NameTable

    table: NameTable[str] = NameTable(default="default")
    for name, server in [("exact.test", "first"), ("*.star.test", "first"), (".exact.test", "dots"),
                         (".star.test", "dots"), ("star.test", "late"), ("~^\\D+\\.nd$", "regex")]:
        table.add(name, server)
    # ".exact.test" is refused whole (exact.test is taken); ".star.test" takes star.test, then its
    # wildcard half is refused (*.star.test is taken), so star.test belongs to nobody.
    assert [table.find(h)[0] for h in ("exact.test", "a.exact.test", "a.star.test", ".star.test", "star.test")] == \
        ["first", "default", "first", "first", "default"]
    assert table.find("x.nd")[0] == "regex" and table.find("x1.nd")[0] == "default"  # \D is not lower-cased
    assert [primary_name(n) for n in (["A.Test"], [".Dot.test"], ["~^A\\d"], [])] == ["a.test", "dot.test", "~^A\\d", ""]


def test_remembered_targets_parse_as_fresh_ones() -> None:
    """parse_target's cache: the same answers as parsing afresh, refusals never remembered, long
    targets not kept."""
    from newproxy.engine import uri

    targets = [b"/", b"/a//b/./c/../d?x=1", b"/%41b?q", b"http://h.example:8080/p?x", b"/a#frag", b"/x" * 200]
    for merge in (True, False):
        for target in targets:
            first, second = uri.parse_target(target, merge), uri.parse_target(target, merge)
            assert first == second == uri.parse_uncached(target, merge)
    assert (b"/x" * 200, True) not in uri._KNOWN_TARGETS
    assert uri.parse_target(b"/a//b", False).uri == "/a//b" and uri.parse_target(b"/a//b", True).uri == "/a/b"
    for _ in range(2):
        with pytest.raises(BadRequest):
            uri.parse_target(b"/a/../../b")
    assert (b"/a/../../b", True) not in uri._KNOWN_TARGETS
