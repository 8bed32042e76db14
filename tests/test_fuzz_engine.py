"""Fuzzing the sans-IO engine: random requests through compiled configs (every real-world corpus file
that translates, and examples/) never raise. Each answer is taken as far as the engine goes without
sockets: a limit_req delay or an auth subrequest is resumed, a proxied request also gets an upstream
answer's head built and the 502 path (Engine.upstream_failed), an error page is made for the request.

Requests mix the config's own words (location paths, server names, variable-looking pieces) with
hostile ones (%-escapes, dot segments, controls, bytes >= 0x80, huge numbers) in the target, the
Host and the usual headers the engine reads (Range, If-*, Accept-Encoding, Cookie, Authorization,
X-Forwarded-For...). Deterministic (derandomized); ``FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newproxy.engine.engine import Engine
from newproxy.engine.proxy import client_response_head
from newproxy.engine.types import (
    AuthSubrequest,
    Delayed,
    FileResponse,
    ProxyPass,
    Request,
    Response,
)
from newproxy.http.sendfile import close as close_file
from nginx_parser import ConfigError, parse_config
from tests.test_fuzz_config import _SYSROOT
from tests.test_parser_corpus import CONTEXTS, CORPUS, PARSING, include_dir
from translator.translate import translate

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
ROOT = Path(__file__).parents[1]


Case = tuple[str, Engine, list[bytes], list[bytes], list[tuple[str, int]]]


def _engines() -> tuple[list[Case], dict[str, str]]:
    """(name, engine, paths and names found in its config text, its listen addresses) for every config
    that translates and has a server (no server: nothing listens, no request comes), and
    the configs that translate but do not compile (name -> the error: a bug, see the test below)."""
    found = []
    broken: dict[str, str] = {}
    sources = [(CORPUS / name, include_dir(name, _SYSROOT), CONTEXTS[name]) for name in PARSING]
    sources += [(path, None, "main") for path in sorted((ROOT / "examples").glob("*/nginx.conf"))]
    for path, prefix, context in sources:
        try:
            config = translate(parse_config(str(path), prefix=prefix, context=context, sysroot=str(_SYSROOT))).config
        except ConfigError:
            continue
        listens = sorted({("127.0.0.1" if l.address in ("0.0.0.0", "::") else l.address, l.port)
                          for server in config.servers for l in server.listen})
        if not listens:
            continue
        text = path.read_bytes()
        paths = sorted(set(re.findall(rb"location\s+(?:[=^~*]+\s+)?([^\s{]+)", text)))[:40] or [b"/"]
        names = sorted(set(re.findall(rb"server_name\s+([^;]+);", text)))
        hosts = [h for line in names for h in line.split()][:20] or [b"localhost"]
        try:
            engine = Engine(config)
        except Exception as exc:  # noqa: BLE001 - reported by test_every_translation_compiles
            broken[path.name] = repr(exc)
            continue
        found.append((path.name, engine, paths, hosts, listens))
    return found, broken


ENGINES, BROKEN = _engines()
PIECES = [b"/", b"//", b"/./", b"/../", b"%2F", b"%2e%2E", b"%00", b"%", b"%zz", b"?", b"?a=1&b=%20", b"#frag",
          b"\x7f", b"\xc3\xa9", b"\xff", b" ", b"\t", b"index.html", b"a.php", b"~", b"$uri", b"a" * 300,
          b"/static/", b"/api/", b".well-known/", b"*", b"\\", b";x=1", b"9" * 30]
HEADER_NAMES = [b"Host", b"Range", b"If-Modified-Since", b"If-None-Match", b"If-Range", b"Accept-Encoding",
                b"Cookie", b"Authorization", b"X-Forwarded-For", b"X-Real-IP", b"Content-Length", b"Content-Type",
                b"Connection", b"Upgrade", b"User-Agent", b"Referer", b"Accept", b"X-Accel-Redirect", b"Expect",
                b"Transfer-Encoding", b"If-Match", b"If-Unmodified-Since", b"Origin"]
HEADER_VALUES = [b"", b"bytes=0-1", b"bytes=-5", b"bytes=5-", b"bytes=1-0,2-3", b"bytes=99999999999999999999-",
                 b"gzip", b"gzip;q=0", b"*", b"W/\"x\"", b"Thu, 01 Jan 1970 00:00:00 GMT", b"garbage date",
                 b"Basic Zm9vOmJhcg==", b"Basic !!!", b"1.2.3.4, 5.6.7.8", b"::1", b"999.1.1.1", b"-1", b"0",
                 b"a=b; c=d", b"\xff\xfe", b"upgrade", b"websocket", b"close", b"100-continue", b"x" * 500]
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"PROPFIND", b"get", b"X-Y"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[Engine, Request]:
    _, engine, paths, hosts, listens = draw(st.sampled_from(ENGINES))
    word = st.sampled_from(paths) | st.sampled_from(PIECES) | st.binary(max_size=12)
    target = b"".join(draw(st.lists(word, min_size=1, max_size=5)))
    if draw(st.booleans()):
        target = b"/" + target.lstrip(b"/")
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 9)):
        headers.append((b"Host", draw(st.sampled_from(hosts) | st.sampled_from([b"", b"a..b", b"[::1]:80", b"x:99999"]))))
    for _ in range(draw(st.integers(0, 5))):
        headers.append((draw(st.sampled_from(HEADER_NAMES)),
                        draw(st.sampled_from(HEADER_VALUES) | st.binary(max_size=20))))
    method = draw(st.sampled_from(METHODS))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    body = draw(st.sampled_from([b"", b"x=1", b"\x00" * 100]))
    client = draw(st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "192.168.0.7"]))
    local = draw(st.sampled_from(listens))
    return engine, Request(method, target, version, headers, body, (client, 40000), local,
                           draw(st.sampled_from(["http", "https"])), draw(st.booleans()))


def _finish(engine: Engine, result: object, request: Request, depth: int = 0) -> None:
    """Take a result as far as the engine goes without IO."""
    assert isinstance(result, (Response, FileResponse, ProxyPass, Delayed, AuthSubrequest)), result
    if depth > 4:
        return
    if isinstance(result, Delayed):
        _finish(engine, result.resume(), request, depth + 1)
    elif isinstance(result, AuthSubrequest):
        _finish(engine, result.resume(200, [(b"X-Auth", b"1")]), request, depth + 1)
        _finish(engine, result.resume(401, []), request, depth + 1)
    elif isinstance(result, ProxyPass):
        assert result.head.endswith(b"\r\n\r\n")
        for framing in ("length", "chunked", "close"):
            client_response_head(result, 200, b"OK", [(b"Content-Type", b"text/plain"), (b"Location", b"/x"),
                                                      (b"Set-Cookie", b"a=b; path=/; domain=x")], framing)
        _finish(engine, engine.upstream_failed(result, 502), request, depth + 1)
    elif isinstance(result, FileResponse):  # ours to close (the IO layer's job)
        if result.release is not None:
            result.release()
        close_file(result)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests())
def test_random_requests_never_raise_in_the_engine(case: tuple[Engine, Request]) -> None:
    engine, request = case
    _finish(engine, engine.handle(request), request)
    engine.max_body_size(request)
    for status in (400, 404, 413, 500):
        engine.error_response(status, request, False, request.local_addr)


def test_every_translation_compiles() -> None:
    assert BROKEN == {}
    assert len(ENGINES) >= 20  # the corpus configs that translate, and the examples
