"""The rewrite phase in the sans-IO engine, with no sockets (the claims of equality with nginx are
made by tests/test_differential_rewrite.py against the binary)."""

from __future__ import annotations

from pathlib import Path

from newproxy.config import (
    BreakStep,
    HeaderSetting,
    IfCondition,
    IfStep,
    ListenConfig,
    LocationConfig,
    NewproxyConfig,
    ProxyConfig,
    ReturnStep,
    RewriteRuleStep,
    ServerConfig,
    SetStep,
    UpstreamConfig,
    UpstreamServerConfig,
)
from newproxy.engine.engine import Engine
from newproxy.engine.rewrite import escape_args, unescape_redirect
from newproxy.engine.types import ProxyPass, Request, Response


def probe(path: str, match: str = "prefix", steps: list | None = None) -> LocationConfig:
    return LocationConfig(match=match, path=path,  # type: ignore[arg-type]
                          rewrite=(steps or []) + [ReturnStep(status=200, text=f"{path} uri=$uri args=$args 1=$1")])


def proxied(path: str, steps: list, uri: str | None = None) -> LocationConfig:
    return LocationConfig(match="prefix", path=path, rewrite=steps, proxy=ProxyConfig(
        upstream="u", proxy_host="u", uri=uri, headers=[HeaderSetting(name="Host", value="$proxy_host")]))


def engine(locations: list[LocationConfig], server_steps: list | None = None) -> Engine:
    server = ServerConfig(listen=[ListenConfig(address="127.0.0.1", port=8080)], server_names=["a"],
                          rewrite=server_steps or [], locations=locations)
    upstream = UpstreamConfig(name="u", servers=[UpstreamServerConfig(host="127.0.0.1", port=9)])
    return Engine(NewproxyConfig(servers=[server], upstreams=[upstream]))


def get(e: Engine, target: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Response | ProxyPass:
    return e.handle(Request(b"GET", target, b"1.1", [(b"Host", b"a")] + (headers or []), b"",
                            ("127.0.0.1", 4000), ("127.0.0.1", 8080)))


def body(result: Response | ProxyPass) -> bytes:
    assert isinstance(result, Response), result
    return result.body


def location_header(result: Response | ProxyPass) -> bytes:
    assert isinstance(result, Response)
    return next(line for line in result.head.split(b"\r\n") if line.startswith(b"Location: "))[10:]


def upstream_line(result: Response | ProxyPass) -> bytes:
    assert isinstance(result, ProxyPass), result
    return result.head.split(b"\r\n")[0]


def rule(regex: str, replacement: str, flag: str = "none") -> RewriteRuleStep:
    return RewriteRuleStep(regex=regex, replacement=replacement, flag=flag)  # type: ignore[arg-type]


def test_rewrite_args_forms() -> None:
    e = engine([probe("/new/")], [
        rule("^/keep/(.*)$", "/new/$1", "last"),
        rule("^/replace/(.*)$", "/new/r?x=$1", "last"),
        rule("^/drop/(.*)$", "/new/$1?", "last"),
        rule("^/both/(.*)$", "/new/b?x=$1?", "last"),
    ])
    assert body(get(e, b"/keep/a?q=1")) == b"/new/ uri=/new/a args=q=1 1=a"
    assert body(get(e, b"/replace/a?q=1")) == b"/new/ uri=/new/r args=x=a&q=1 1=a"
    assert body(get(e, b"/drop/a?q=1")) == b"/new/ uri=/new/a args= 1=a"
    assert body(get(e, b"/both/a?q=1")) == b"/new/ uri=/new/b args=x=a 1=a"


def test_redirects() -> None:
    e = engine([probe("/")], [
        rule("^/ext/(.*)$", "https://example.org/$1"),
        rule("^/perm/(.*)$", "/new/$1", "permanent"),
        rule("^/tmp/(.*)$", "/new/$1?from=tmp", "redirect"),
    ])
    result = get(e, b"/ext/a?q=1")
    assert isinstance(result, Response) and result.status == 302
    assert location_header(result) == b"https://example.org/a?q=1"
    result = get(e, b"/perm/a")
    assert isinstance(result, Response) and result.status == 301
    assert location_header(result) == b"http://a:8080/new/a"
    assert location_header(get(e, b"/tmp/a?q=1")) == b"http://a:8080/new/a?from=tmp&q=1"


def test_quoted_captures_in_args_and_redirects() -> None:
    e = engine([probe("/new/")], [rule("^/r/(.*)$", "/new/x?v=$1", "last"), rule("^/e/(.*)$", "http://h/$1")])
    assert body(get(e, b"/r/a%20b")) == b"/new/ uri=/new/x args=v=a%20b 1=a b"
    assert body(get(e, b"/r/a b")) == b"/new/ uri=/new/x args=v=a b 1=a b"  # no "%" or "+" in the URI: as is
    assert location_header(get(e, b"/e/a%20b")) == b"http://h/a%20b"
    assert escape_args("a&b c") == "a%26b%20c"
    assert unescape_redirect("/a%2Fb%20c?d%2F") == "/a/b%20c?d%2F"


def test_no_flag_goes_on_then_searches_again() -> None:
    chain = LocationConfig(match="prefix", path="/chain/", rewrite=[rule("^/chain/(.*)$", "/chain2/$1"),
                                                                   rule("^/chain2/(.*)$", "/new/$1")])
    e = engine([probe("/new/"), chain])
    assert body(get(e, b"/chain/z")) == b"/new/ uri=/new/z args= 1=z"
    # A return later in the same phase still answers, with the rewritten $uri.
    e = engine([probe("/new/"), probe("/chain/", steps=chain.rewrite)])
    assert body(get(e, b"/chain/z")) == b"/chain/ uri=/new/z args= 1=z"


def test_break_stays_and_proxy_sends_the_whole_rewritten_uri() -> None:
    e = engine([proxied("/p/", [rule("^/p/(.*)$", "/p/b/$1", "break")], uri="/base/"),
                proxied("/q/", [rule("^/q/(.*)$", "/new/$1", "last")]),
                proxied("/new/", [], uri="/base/"),
                proxied("/s/", [SetStep(variable="args", value="a=1")])])
    assert upstream_line(get(e, b"/p/x%20y?k")) == b"GET /p/b/x%20y?k HTTP/1.0"
    assert upstream_line(get(e, b"/q/x?k")) == b"GET /base/x?k HTTP/1.0"
    assert upstream_line(get(e, b"/s/x?k")) == b"GET /s/x?a=1 HTTP/1.0"
    assert upstream_line(get(e, b"/new/%7e")) == b"GET /base/~ HTTP/1.0"


def test_cycle_is_a_500_after_ten_changes() -> None:
    e = engine([probe("/c/", steps=[rule("^/c/x(.*)$", "/c/$1", "last")])])
    assert body(get(e, b"/c/" + b"x" * 10 + b"end")).startswith(b"/c/ uri=/c/end")
    result = get(e, b"/c/" + b"x" * 11 + b"end")
    assert isinstance(result, Response) and result.status == 500


def test_empty_rewritten_uri_is_a_500() -> None:
    e = engine([probe("/", steps=[rule("^/empty$", "")])])
    result = get(e, b"/empty")
    assert isinstance(result, Response) and result.status == 500


def test_set_break_and_conditions(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    def cond(operator: str, value: str, operand: str | None = None, text: str = "") -> IfStep:
        return IfStep(condition=IfCondition(operator=operator, value=value, operand=operand),  # type: ignore[arg-type]
                      steps=[ReturnStep(status=200, text=text or f"{operator} hit 1=$1 w=$w")])

    e = engine([LocationConfig(match="prefix", path="/", root=str(tmp_path / "missing"), rewrite=[
        SetStep(variable="v", value="<$arg_v>"),
        IfStep(condition=IfCondition(operator="=", value="$arg_stop", operand="1"), steps=[BreakStep()]),
        cond("true", "$http_x_flag"),
        cond("~*", "$http_user_agent", r"^curl/(?<w>\d+)"),
        cond("!~", "$arg_neg", "^keep$", "negated"),
        cond("-f", f"{tmp_path}/$arg_f", text="file"),
        cond("-d", "$arg_d", text="dir"),
        ReturnStep(status=200, text="end v=$v"),
    ])])
    assert body(get(e, b"/?neg=keep&v=1")) == b"end v=<1>"
    assert body(get(e, b"/?neg=keep", [(b"X-Flag", b"0")])) == b"end v=<>"
    assert body(get(e, b"/?neg=keep", [(b"X-Flag", b"yes")])) == b"true hit 1= w="
    assert body(get(e, b"/?neg=keep", [(b"User-Agent", b"CURL/8")])) == b"~* hit 1=8 w=8"
    assert body(get(e, b"/")) == b"negated"
    assert body(get(e, b"/?neg=keep&f=file")) == b"file"
    assert body(get(e, b"/?neg=keep&f=nofile&d=/")) == b"dir"
    result = get(e, b"/?stop=1")  # break: the static handler, under a root that does not exist
    assert isinstance(result, Response) and result.status == 404


def test_if_block_config_takes_over_the_content_handler() -> None:
    inner = LocationConfig(match="prefix", path="/", proxy=ProxyConfig(
        upstream="u", proxy_host="if-host", headers=[HeaderSetting(name="Host", value="$proxy_host")]))
    e = engine([LocationConfig(match="prefix", path="/", rewrite=[
        IfStep(condition=IfCondition(operator="true", value="$arg_up"), location=inner),
    ])])
    assert isinstance(get(e, b"/x?up=1"), ProxyPass)
    result = get(e, b"/x")
    assert isinstance(result, Response) and result.status == 404


def test_server_phase_runs_once_before_the_location_search() -> None:
    e = engine([probe("/a/"), probe("/b/", steps=[rule("^/b/(.*)$", "/a/$1", "last")])],
               [rule("^/start/(.*)$", "/b/$1")])
    assert body(get(e, b"/start/x")) == b"/a/ uri=/a/x args= 1=x"


def test_variables_that_differ_per_run_have_nginx_shape() -> None:
    import re
    import socket

    e = engine([LocationConfig(match="prefix", path="/", rewrite=[
        ReturnStep(status=200, text="$request_id $request_id|$hostname|$msec|$time_iso8601|$time_local")])])
    first = body(get(e, b"/")).decode()
    ids, hostname, msec, iso, local = first.split("|")
    one, two = ids.split(" ")
    assert re.fullmatch(r"[0-9a-f]{32}", one) and one == two  # one id per request
    assert hostname == socket.gethostname()
    assert re.fullmatch(r"\d{10}\.\d{3}", msec)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", iso)
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", local)
    assert body(get(e, b"/")).decode().split(" ")[0] != one  # a new id for the next request


def test_uri_corners_measured_against_nginx() -> None:
    from newproxy.engine.uri import BadRequest, parse_target
    import pytest

    assert (parse_target(b"/a#b?c=d").uri, parse_target(b"/a#b?c=d").args) == ("/a", "")
    assert parse_target(b"/a?b#c").args == "b"
    assert parse_target(b"/a#b").request_uri == "/a#b"
    assert parse_target(b"ftp://h/x").uri == "/x"
    with pytest.raises(BadRequest):
        parse_target(b"http://user@h/x")
    assert parse_target(b"/a//b", merge_slashes=False).uri == "/a//b"
    assert parse_target(b"/a//b/../c", merge_slashes=False).uri == "/a//c"
    assert parse_target(b"/a//b").uri == "/a/b"


def test_computed_variables_without_sockets() -> None:
    from newproxy.config import GeoConfig, GeoEntryConfig, MapConfig, MapEntryConfig, SplitBucketConfig, SplitClientsConfig
    from newproxy.engine.computed import murmur_hash2, split_bounds

    variables = [
        MapConfig(variable="site", source_value="$host", hostnames=True, default="other", entries=[
            MapEntryConfig(kind="hostname", key=".example.org", value="org"),
            MapEntryConfig(kind="hostname", key="www.example.*", value="tail"),
            MapEntryConfig(kind="regex", key=r"^(?<first>[a-z]+)\.test$", value="re-$first"),
        ]),
        GeoConfig(variable="zone", source_value="$arg_ip", default="world",
                  entries=[GeoEntryConfig(network="10.0.0.0/8", value="ten"),
                           GeoEntryConfig(network="10.1.2.3/32", value="host")]),
        SplitClientsConfig(variable="half", source_value="$arg_id",
                           buckets=[SplitBucketConfig(percent=50, value="a"), SplitBucketConfig(value="b")]),
    ]
    server = ServerConfig(listen=[ListenConfig(address="127.0.0.1", port=8080)], server_names=[""], locations=[
        LocationConfig(match="prefix", path="/", rewrite=[ReturnStep(status=200, text="$site $zone $half")])])
    e = Engine(NewproxyConfig(servers=[server], variables=variables))

    def answer(host: bytes, target: bytes = b"/") -> bytes:
        return body(e.handle(Request(b"GET", target, b"1.1", [(b"Host", host)], b"", ("127.0.0.1", 1),
                                     ("127.0.0.1", 8080))))

    assert answer(b"example.org").split()[0] == b"org"
    assert answer(b"a.example.org").split()[0] == b"org"
    assert answer(b"www.example.co.uk").split()[0] == b"tail"
    assert answer(b"abc.test").split()[0] == b"re-abc"
    assert answer(b"x", b"/?ip=010.1.2.3").split()[1] == b"host"  # nginx reads leading zeros as decimal
    assert answer(b"x", b"/?ip=10.9.9.9").split()[1] == b"ten"
    assert answer(b"x", b"/?ip=nonsense").split()[1] == b"world"
    assert murmur_hash2(b"") == 0 and murmur_hash2(b"abc") != murmur_hash2(b"abd")
    assert split_bounds([50, None]) == [0xFFFFFFFF * 5000 // 10000, 0]
    halves = {answer(b"x", b"/?id=%d" % i).split()[2] for i in range(40)}
    assert halves == {b"a", b"b"}
