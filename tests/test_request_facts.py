"""newproxy/engine/requestfacts.py without sockets: what the translator accepts, when the front ends are
asked to record requests (never for a config that reads none of these variables), and the parsing of
$upstream_http_NAME / $upstream_cookie_NAME. Their values against nginx: test_differential_request_facts.py."""

from __future__ import annotations

from pathlib import Path

from newproxy.engine.engine import Engine
from newproxy.engine.requestfacts import PREFIXED, fact_names, uses_upstream_answer
from newproxy.engine.types import Request
from newproxy.http.accesslog import open_access_logs
from nginx_parser import parse_config
from translator import translate


def _translate(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\naccess_log off;\n" + body + "\n}\n")
    return translate(parse_config(str(path)))


def test_the_variables_are_translated_and_turn_recording_on(tmp_path: Path) -> None:
    translation = _translate(tmp_path, """
        server { listen 80;
          location /r { return 200 "$connection $connection_requests $request_length $request_time $msec $pid"; }
          location /p { proxy_pass http://127.0.0.1:9; proxy_set_header X-Start "t=${msec}";
                        add_header X-Up "$upstream_addr $upstream_status $upstream_response_time"; }
          location /c { proxy_pass http://127.0.0.1:9; add_header X-C "$upstream_cookie_sid $upstream_http_x_a"; }
        }""")
    assert [o for o in translation.occurrences if o.level in ("unsupported", "unknown")] == []
    engine = Engine(translation.config)
    assert engine.request_facts
    assert open_access_logs(engine, None) is not None
    assert uses_upstream_answer(fact_names(translation.config))  # proxied answers keep the upstream's headers


def test_a_config_without_them_records_nothing(tmp_path: Path) -> None:
    translation = _translate(tmp_path, """
        server { listen 80; location / { proxy_pass http://127.0.0.1:9; add_header X-A "$host $uri"; } }""")
    engine = Engine(translation.config)
    assert not engine.request_facts
    assert open_access_logs(engine, None) is None  # no record per request: the front ends skip them
    assert not uses_upstream_answer(fact_names(translation.config))


def test_auth_request_set_keeps_reporting_the_subrequest_variables_it_lacks(tmp_path: Path) -> None:
    translation = _translate(tmp_path, """
        server { listen 80;
          location / { auth_request /auth; auth_request_set $who $upstream_addr; auth_request_set $s $upstream_status;
                       return 200 "$who"; }
          location = /auth { proxy_pass http://127.0.0.1:9; }
        }""")
    levels = {(o.directive, o.args[1]): o.level for o in translation.occurrences if o.directive == "auth_request_set"}
    assert levels == {("auth_request_set", "$upstream_addr"): "unsupported",
                      ("auth_request_set", "$upstream_status"): "exact"}


class _Ctx:
    """The one field the $upstream_http_/_cookie_ getters read."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None) -> None:
        self.upstream_answer = (200, headers) if headers is not None else None
        self.request = Request(b"GET", b"/", b"1.1", [], b"", ("127.0.0.1", 1), ("127.0.0.1", 80))


def test_upstream_header_and_cookie_are_read_as_nginx_parses_them() -> None:
    headers = [(b"X_Odd", b"underscored"), (b"X-Odd", b"dashed"), (b"Set-Cookie", b"sidx=1"),
               (b"set-cookie", b"SID =  v2 ; path=/"), (b"Set-Cookie", b"sid=v3"), (b"Set-Cookie", b"other")]
    http, cookie = PREFIXED["upstream_http_"], PREFIXED["upstream_cookie_"]
    ctx = _Ctx(headers)
    assert http("x_odd")(ctx) == "underscored"  # the first header whose name, "-" read as "_", matches
    assert http("set_cookie")(ctx) == "sidx=1"
    assert http("missing")(ctx) == ""
    # "sidx=1" is another cookie; the case is ignored, spaces after the name and "=" skipped, and the value
    # runs to ";" with its trailing space (ngx_http_parse_set_cookie_lines trims nothing there).
    assert cookie("sid")(ctx) == "v2 "
    assert cookie("sidx")(ctx) == "1"
    assert cookie("other")(ctx) == ""  # a line without "=" is skipped
    assert http("x_odd")(_Ctx(None)) == "" and cookie("sid")(_Ctx(None)) == ""  # no upstream answer
