"""translator and engine units for the headers filter: expires parsed as nginx parses it (every
form, and nginx's error messages), add_header/add_trailer inheritance (the innermost level with any
replaces the inherited list, in if blocks too), what is reported, and the compiled program's
arithmetic (Expires/Cache-Control per mode, the status filter, in-place replacement)."""

from __future__ import annotations

from pathlib import Path

import pytest

from newproxy.engine.headers import (
    ADD,
    REPLACE,
    SAFE_STATUSES,
    AddHeader,
    ExpiresRule,
    HeaderProgram,
    http_time,
    parse_expires,
    parse_time,
)
from newproxy.engine.variables import Template
from nginx_parser import ConfigError, parse_config
from translator.translate import translate


def conf(tmp_path: Path, http_body: str) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def names(headers: object) -> list[tuple[str, str, bool]]:
    assert headers is not None
    return [(h.name, h.value, h.always) for h in headers.add]  # type: ignore[attr-defined]


def test_add_header_inheritance_is_replaced_whole(tmp_path: Path) -> None:
    path = conf(tmp_path, """add_header X-Http h; expires 1h;
    server { listen 80;
        location /inherit/ { }
        location /own/ { add_header X-Own o always; add_header X-Two "$uri t";
            location /own/nested/ { expires off; }
            if ($arg_x) { add_header X-If i; }
            if ($arg_y) { expires epoch; } }
    }
    server { listen 81; add_header X-Server s; expires modified -1d; location / { add_trailer X-T t always; } }""")
    translation = translate(parse_config(str(path)))
    first, second = translation.config.servers
    assert names(first.headers) == [("X-Http", "h", False)]
    assert first.headers is not None and first.headers.expires is not None
    assert (first.headers.expires.mode, first.headers.expires.seconds) == ("access", 3600)
    inherit, own = first.locations
    assert names(inherit.headers) == [("X-Http", "h", False)]
    assert names(own.headers) == [("X-Own", "o", True), ("X-Two", "$uri t", False)]
    nested = own.locations[0]
    assert names(nested.headers) == names(own.headers) and nested.headers is not None
    assert nested.headers.expires is None  # expires off
    if_x, if_y = (step.location for step in own.rewrite)  # type: ignore[union-attr]
    assert if_x is not None and names(if_x.headers) == [("X-If", "i", False)]
    assert if_y is not None and names(if_y.headers) == names(own.headers)
    assert if_y.headers is not None and if_y.headers.expires is not None and if_y.headers.expires.mode == "epoch"
    assert names(second.headers) == [("X-Server", "s", False)]
    location = second.locations[0]
    assert location.headers is not None and location.headers.expires is not None
    assert (location.headers.expires.mode, location.headers.expires.seconds) == ("modified", -86400)
    assert [(t.name, t.always) for t in location.headers.trailers] == [("X-T", True)]
    assert not [g for g in translation.gaps if g.directive in ("add_header", "expires", "add_trailer")]


def test_no_headers_config_when_nothing_is_set(tmp_path: Path) -> None:
    path = conf(tmp_path, "expires off; server { listen 80; location / { } }")
    server = translate(parse_config(str(path))).config.servers[0]
    assert server.headers is None and server.locations[0].headers is None


@pytest.mark.parametrize(("args", "expected"), [
    ("epoch", ("epoch", 0, None)), ("max", ("max", 0, None)), ("1h", ("access", 3600, None)),
    ("-1", ("access", -1, None)), ("+2d", ("access", 172800, None)), ("0", ("access", 0, None)),
    ("1d12h", ("access", 129600, None)), ("@15h30m", ("daily", 55800, None)), ("modified 1h", ("modified", 3600, None)),
    ("modified -5m", ("modified", -300, None)), ("$arg_e", ("access", 0, "$arg_e")),
    ("modified $arg_e", ("modified", 0, "$arg_e")),
])
def test_expires_forms(tmp_path: Path, args: str, expected: tuple[str, int, str | None]) -> None:
    path = conf(tmp_path, f"server {{ listen 80; expires {args}; }}")
    headers = translate(parse_config(str(path))).config.servers[0].headers
    assert headers is not None and headers.expires is not None
    assert (headers.expires.mode, headers.expires.seconds, headers.expires.value) == expected


@pytest.mark.parametrize(("directive", "message"), [
    ("expires 1x;", '"expires" directive invalid value'),
    ("expires 5ms;", '"expires" directive invalid value'),
    ("expires @25h;", '"expires" directive daily time value must be less than 24 hours'),
    ("expires modified @1h;", '"expires" directive daily time cannot be used with "modified" parameter'),
    ("expires access 1h;", '"expires" directive invalid value'),
    ("expires 1h; expires 2h;", '"expires" directive is duplicate'),
    ("add_header X-A b sometimes;", 'invalid parameter "sometimes"'),
])
def test_bad_values_are_config_errors(tmp_path: Path, directive: str, message: str) -> None:
    path = conf(tmp_path, f"server {{ listen 80; location / {{ {directive} }} }}")
    with pytest.raises(ConfigError) as caught:
        translate(parse_config(str(path)))
    assert message in str(caught.value) and caught.value.line == 3


def test_unknown_variables_are_reported_not_translated(tmp_path: Path) -> None:
    path = conf(tmp_path, "server { listen 80; add_header X-S $status; add_header X-Ok $uri; expires $no_such; }")
    translation = translate(parse_config(str(path)))
    headers = translation.config.servers[0].headers
    assert headers is not None and names(headers) == [("X-Ok", "$uri", False)] and headers.expires is None
    reported = {g.directive for g in translation.gaps if g.level == "unsupported"}
    assert {"add_header", "expires"} <= reported


@pytest.mark.parametrize(("value", "server_tokens"), [("on", True), ("off", False), ("build", True)])
def test_server_tokens(tmp_path: Path, value: str, server_tokens: bool) -> None:
    path = conf(tmp_path, f"server_tokens {value}; server {{ listen 80; }}")
    assert translate(parse_config(str(path))).config.server_tokens is server_tokens


def test_parse_time_is_nginx_s() -> None:
    assert parse_time("1y2M3w4d5h6m7s") == 31536000 + 2 * 2592000 + 3 * 604800 + 4 * 86400 + 5 * 3600 + 6 * 60 + 7
    assert parse_time("1h 30") == 3630 and parse_time("90") == 90
    for bad in ("", "h", "1h1d", "1s1m", "1ms", "1x", "1 1 1", "1d1d"):
        assert parse_time(bad) is None, bad
    assert parse_expires("off", modified=False) == ("off", 0)
    assert parse_expires("off", modified=True) == "invalid value"  # no keywords after "modified"


def _program(expires: ExpiresRule | None, *headers: AddHeader) -> HeaderProgram:
    return HeaderProgram(expires, list(headers), [], any(h.always for h in headers))


HEAD = b"HTTP/1.1 200 OK\r\nServer: x\r\nCache-Control: private\r\nExpires: 0\r\nX-Up: 1\r\nCache-Control: b\r\n\r\n"


def test_program_expires_values() -> None:
    now = 1_800_000_000
    assert ExpiresRule("epoch", 0).values(None, now, -1) == (b"Thu, 01 Jan 1970 00:00:01 GMT", b"no-cache")
    assert ExpiresRule("max", 0).values(None, now, -1) == (b"Thu, 31 Dec 2037 23:55:55 GMT", b"max-age=315360000")
    assert ExpiresRule("access", 60).values(None, now, -1) == (http_time(now + 60), b"max-age=60")
    assert ExpiresRule("access", -60).values(None, now, -1) == (http_time(now - 60), b"no-cache")
    assert ExpiresRule("access", 0).values(None, now, -1) == (http_time(now), b"max-age=0")
    assert ExpiresRule("modified", 60).values(None, now, now - 10) == (http_time(now + 50), b"max-age=50")
    assert ExpiresRule("modified", 60).values(None, now, now - 100) == (http_time(now - 40), b"no-cache")
    assert ExpiresRule("modified", 60).values(None, now, -1) == (http_time(now + 60), b"max-age=60")  # no file
    daily = ExpiresRule("daily", 3600).values(None, now, -1)
    assert daily is not None and daily[1].startswith(b"max-age=")
    assert 0 < int(daily[1][8:]) <= 86400


def test_program_replaces_in_place_and_filters_statuses() -> None:
    program = _program(ExpiresRule("epoch", 0), AddHeader(b"X-A", b"x-a", Template("a"), False, ADD),
                       AddHeader(b"X-B", b"x-b", Template("b"), True, ADD),
                       AddHeader(b"X-Empty", b"x-empty", Template(""), True, ADD),
                       AddHeader(b"ETag", b"etag", Template('"e"'), False, REPLACE))
    out = program.apply(HEAD, 200, None, 0)
    assert out == (b"HTTP/1.1 200 OK\r\nServer: x\r\nCache-Control: no-cache\r\n"
                   b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\nX-Up: 1\r\nX-A: a\r\nX-B: b\r\nETag: \"e\"\r\n\r\n")
    assert program.apply(HEAD, 404, None, 0) == HEAD[:-2] + b"X-B: b\r\n\r\n"
    assert 206 in SAFE_STATUSES and 304 in SAFE_STATUSES and 202 not in SAFE_STATUSES
    quiet = _program(None, AddHeader(b"X-A", b"x-a", Template("a"), False, ADD))
    assert quiet.apply(HEAD, 500, None, 0) is HEAD  # nothing applies: the head is not touched
