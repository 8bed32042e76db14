"""newproxy/http/h1parse.py: nginx's request parser, fed with bytes.

The decisions themselves are checked against the real nginx by the raw corpus
(tests/test_h1_raw_corpus.py); these tests check the parser as a state machine: the same events
whatever way the input is cut (one buffer, byte by byte, random pieces), the fast path and the
byte-wise path agreeing, and nginx's buffer arithmetic (client_header_buffer_size,
large_client_header_buffers) on small buffers where its edges are easy to reach.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from newproxy.http.h1parse import MAX_HEADERS, ParseError, RequestParser, UpgradeRequest, drop_below


class Recorder:
    """The parser's callbacks as a list of events; body pieces are merged (their cut is free)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.parser: RequestParser | None = None

    def on_message_begin(self) -> None:
        self.events.append("begin")

    def on_headers_complete(self) -> None:
        p = self.parser
        assert p is not None
        self.events.append(("head", p.method, p.target, p.version, p.http_version, list(p.headers), p.host,
                            p.content_length, p.te, p.keepalive, p.expect, p.upgrade, p.head_length))

    def on_body(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + bytes(data))
        else:
            self.events.append(("body", bytes(data)))

    def on_chunk(self, size: int) -> None:
        self.events.append(("chunk", size))

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.events.append(("done", self.parser.body_bytes))


def run(pieces: list[bytes], *, sizes: tuple[int, int, int] = (1024, 8192, 4), fast: bool = True,
        rules: tuple[int, Callable[[bytes], int] | None] | None = None,
        parser_class: type[RequestParser] | None = None) -> list[Any]:
    """Feed ``pieces`` in order, as h1.py does: after an upgrade request, what follows is fed again.
    ``rules``: the header-name settings (RequestParser.header_rules) of the connection; ``fast``:
    False for the byte-wise parser alone; ``parser_class``: another parser."""
    rec = Recorder()
    if parser_class is None:
        parser_class = RequestParser if fast else SlowParser
    parser = rec.parser = parser_class(rec, *sizes)
    if rules is not None:
        parser.header_rules(*rules)
    pending = b""
    try:
        for piece in pieces:
            data = pending + piece
            pending = b""
            while True:
                try:
                    parser.feed_data(data)
                    break
                except UpgradeRequest as upgrade:
                    rec.events.append("upgrade")
                    data = upgrade.rest
                    if not data:
                        break
    except ParseError as error:
        rec.events.append(("error", error.status, error.head_only, error.v09))
    return rec.events


class SlowParser(RequestParser):
    """The byte-wise state machine alone."""

    def _fast(self) -> bool:
        return False


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


# -- generated requests: mostly well-formed (the fast path's kind), with nginx's edge cases mixed in --
def _mostly(common: list[bytes], odd: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(common), st.sampled_from(common), st.sampled_from(common), st.sampled_from(odd))


_LEADS = _mostly([b""], [b"\r\n", b"\n", b"\r\n" * 6])
_METHODS = _mostly([b"GET", b"POST", b"HEAD", b"PUT"], [b"get", b"G_T", b"CONNECT", b"TRACE", b"", b"GE\x00"])
_SEPS = _mostly([b" "], [b"  ", b"\t"])
_TARGETS = _mostly([b"/", b"/a?b=c", b"/x/y.html", b"/caf\xe9"],
                   [b"/a b", b"/%zz", b"/a\x01", b"http://h/x", b"http://h", b"http://h:8/x", b"http://[::1]/x",
                    b"http://h?q", b"http:/h", b"*", b"/a#f", b""])
_VERSIONS = _mostly([b" HTTP/1.1", b" HTTP/1.0"], [b" HTTP/1.10", b" HTTP/2.0", b" HTTP/1.1 ", b" HTTP/1", b" http/1.1",
                                                 b" HTTP/01.1", b""])
_EOLS = _mostly([b"\r\n"], [b"\n", b"\r", b"\r\r\n", b" \r\n"])
_NAMES = _mostly([b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"X-A",
                  b"User-Agent", b"Authorization"],
                 [b"Upgrade", b"X_A", b"X.A", b"If-Match", b" X", b"X ", b"", b"X\x01", b"\xe9"])
_VALUES = st.one_of(
    _mostly([b"h", b" h ", b"", b"5", b"0", b"chunked", b"close", b"keep-alive", b"100-continue", b"a  b "],
            [b"-1", b"Chunked", b" chunked", b"\tchunked", b"upgrade", b"a\x00b", b"a\x7fb", b"1 0"]),
    st.integers(0, 40).map(lambda n: b" " + b"v" * n))
_COLONS = _mostly([b":", b": "], [b""])
_BODIES = _mostly([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"],
                  [b"5;x\nhello\n0\nT: 1\n\n", b"FFFFFFFFFFFFFFFF0\r\n", b"3\r\nab\r\n", b"0\r\n\r\n", b"zz"])


@st.composite
def requests(draw: st.DrawFn, most: int = 3, trailer: bool = True) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(1, most))):
        out += draw(_LEADS)
        out += draw(_METHODS) + draw(_SEPS) + draw(_TARGETS) + draw(_VERSIONS) + draw(_EOLS)
        for _ in range(draw(st.integers(0, 5))):
            out += draw(_NAMES) + draw(_COLONS) + draw(_VALUES) + draw(_EOLS)
        out += draw(_EOLS) + (draw(_BODIES) if trailer else b"")
    if trailer and draw(st.booleans()):
        out += draw(st.binary(max_size=12))
    return bytes(out)


_SMALL = (8, 24, 3)  # buffers small enough for the generated heads to reach every edge
_ANY = st.one_of(requests(), st.binary(max_size=80))
_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_ANY, st.lists(st.integers(0, 400), max_size=6))
def test_any_cut_gives_the_same_events(data: bytes, points: list[int]) -> None:
    # nginx's default buffers: the generated input fits in the first one. (With smaller buffers
    # the cut matters, as it does to nginx: a pipelined request read with the previous head
    # continues in its buffer, one read later starts in a fresh one; see the buffer tests below.)
    whole = run([data])
    assert run(bytewise(data)) == whole
    assert run(cut(data, points)) == whole


@_SETTINGS
@given(requests(most=1, trailer=False), st.lists(st.integers(0, 400), max_size=6))
def test_any_cut_of_one_head_gives_the_same_events_with_small_buffers(data: bytes, points: list[int]) -> None:
    whole = run([data], sizes=_SMALL)
    assume(whole.count("begin") <= 1)  # a malformed line may end the head early: then two requests
    assert run(bytewise(data), sizes=_SMALL) == whole
    assert run(cut(data, points), sizes=_SMALL) == whole


@_SETTINGS
@given(_ANY, st.sampled_from([(1024, 8192, 4), _SMALL, (30, 40, 2)]))
def test_fast_path_agrees_with_the_state_machine(data: bytes, sizes: tuple[int, int, int]) -> None:
    assert run([data], sizes=sizes) == run([data], sizes=sizes, fast=False)


class FastOnlyParser(RequestParser):
    """The fast path alone: the byte-wise parser may not run."""

    def _slow(self) -> bool:
        raise AssertionError("the byte-wise parser ran")


def test_common_requests_take_the_fast_path() -> None:
    pipeline = (b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nX_Dropped: 1\r\n\r\n"
                b"POST /p HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    events = run([pipeline], parser_class=FastOnlyParser)
    assert [e[0] if isinstance(e, tuple) else e for e in events] == \
        ["begin", "head", "done", "begin", "head", "body", "done"]


# -- nginx's decisions, one by one -------------------------------------------------------------------
def head(events: list[Any], index: int = 0) -> tuple[Any, ...]:
    return [e for e in events if isinstance(e, tuple) and e[0] == "head"][index]


def error(events: list[Any]) -> tuple[Any, ...] | None:
    return events[-1] if isinstance(events[-1], tuple) and events[-1][0] == "error" else None


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400),  # obs-fold
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # space before the colon
    (b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 400),  # a bare CR ends nothing
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/11.1\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 400),
    (b"GET / HTTP/1.1000\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\n\r\n", 400),
    (b"GET http://a/b/ HTTP/1.1\r\n", None),  # incomplete, not refused
    (b"GET http://a_b/ HTTP/1.1\r\n\r\n", 400),
    (b"\x16\x03\x01", 400),  # a TLS hello: refused at its first byte
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7FFFFFFFFFFFFFFF\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX", 400),
])
def test_refusals(data: bytes, status: int | None) -> None:
    events = run([data])
    found = error(events)
    assert (found[1] if found else None) == status
    assert run(bytewise(data)) == events


def test_what_nginx_accepts_and_how_it_reads_it() -> None:
    events = run([b"\r\nGET /x HTTP/1.1\nHost: a\nX-A:   v  w  \r\r\nNoColon\r\nX_U: 1\r\nX-B:\tt\r\n\n"])
    _, method, target, version, number, headers, host, *_ = head(events)
    assert (method, target, version, number, host) == (b"GET", b"/x", b"1.1", 1001, b"a")
    # spaces (not tabs) around a value go; a line without a colon is a header with no value;
    # a name with "_" is dropped.
    assert headers == [(b"Host", b"a"), (b"X-A", b"v  w"), (b"NoColon", b""), (b"X-B", b"\tt")]


def test_versions_keepalive_and_http09() -> None:
    assert head(run([b"GET / HTTP/1.12\r\nHost: a\r\n\r\n"]))[3:5] == (b"1.1", 1012)
    assert head(run([b"GET / HTTP/1.0\r\nConnection: x, Keep-Alive\r\n\r\n"]))[9] is True
    assert head(run([b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"]))[9] is False
    events = run([b"GET /nine\r\nignored"])
    assert head(events)[2:5] == (b"/nine", b"0.9", 9) and head(events)[9] is False
    assert error(run([b"POST /\r\n"])) == ("error", 400, False, True)  # 0.9 is GET only, answered headless
    assert error(run([b"HEAD / HTTP/1.1\r\nX: \x00\r\n\r\n"])) == ("error", 400, True, False)


def test_chunked_body_framing() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\r\nhello\r\n0006\n world\n0\r\nT: x\r\n\r\nGET"
    events = run([data])
    assert events[2:6] == [("chunk", 5), ("body", b"hello"), ("chunk", 6), ("body", b" world")]
    done = next(e for e in events if isinstance(e, tuple) and e[0] == "done")
    assert done[1] == len(data) - data.index(b"\r\n\r\n") - 4 - 3  # the body as received
    assert events[-1] == "begin"  # the next request has begun
    # Content-Length with Transfer-Encoding, a bad Content-Length: facts for h1.py, which answers.
    assert head(run([b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n"]))[7] == b"0x5"


def test_upgrade_pauses_with_the_rest() -> None:
    rec = Recorder()
    parser = rec.parser = RequestParser(rec)
    with pytest.raises(UpgradeRequest) as raised:
        parser.feed_data(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes")
    assert raised.value.rest == b"frames"
    parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # not a tunnel: the parser goes on
    assert [e for e in rec.events if e == "begin"] == ["begin", "begin"]


def test_max_headers() -> None:
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS))
    assert error(run([b"GET / HTTP/1.1\r\n" + lines + b"\r\n"])) is None
    assert error(run([b"GET / HTTP/1.1\r\n" + lines + b"X: 1\r\n\r\n"]))[1] == 494  # type: ignore[index]
    assert error(run([b"GET / HTTP/1.1\r\n" + lines + b"X_U: dropped lines do not count\r\n\r\n"])) is None


# -- the header buffers (ngx_http_alloc_large_header_buffer) ------------------------------------------
# With client_header_buffer_size 16 and large_client_header_buffers 2 32:
@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 16 + b" HTTP/1.1\r\n\r\n", None),  # request line of 32 bytes: one large buffer
    (b"GET /" + b"a" * 17 + b" HTTP/1.1\r\n\r\n", 414),  # 33: longer than a large buffer
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 27 + b"\r\n\r\n", None),  # header line of 32 bytes
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 28 + b"\r\n\r\n", 494),
    # Request line in the first buffer, one header line per large buffer, then no buffer left
    # for the blank line: "too large request".
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 26 + b"\r\nY: " + b"b" * 27 + b"\r\n\r\n", 494),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 26 + b"\r\nY: " + b"b" * 25 + b"\r\n\r\n", None),
    (b"\r\n" * 60 + b"GET / HTTP/1.1\r\n\r\n", None),  # CRLFs before a request reuse the first buffer
])
def test_header_buffers(data: bytes, status: int | None) -> None:
    sizes = (16, 32, 2)
    events = run([data], sizes=sizes)
    found = error(events)
    assert (found[1] if found else None) == status
    assert run(bytewise(data), sizes=sizes) == events
    assert run([data], sizes=sizes, fast=False) == events


def test_a_pipelined_request_continues_in_the_buffer_it_was_read_into() -> None:
    sizes = (64, 32, 1)
    first = b"GET /1 HTTP/1.1\r\n\r\n"  # 19 bytes of the 64-byte first buffer
    # The first two requests fill the first buffer but for one byte. Read with them, the third
    # starts there: its request line moves to the one large buffer, its header line crosses that
    # one's end and finds no buffer left (494). Read later, it starts in a fresh first buffer.
    second = b"GET /2 HTTP/1.1\r\nX: " + b"a" * 20 + b"\r\n\r\n"
    third = b"GET /3 HTTP/1.1\r\nY: " + b"b" * 20 + b"\r\n\r\n"
    together = run([first + second + third], sizes=sizes)
    assert error(together) is not None and error(together)[1] == 494  # type: ignore[index]
    apart = run([first + second, third], sizes=sizes)
    assert error(apart) is None and len([e for e in apart if e == "begin"]) == 3


# -- header names: underscores_in_headers / ignore_invalid_headers (tests/test_differential_header_names.py
# compares the decisions with nginx) --------------------------------------------------------------------
def _by_host(host: bytes) -> int:
    """A listen whose servers differ: "h" keeps every invalid name, any other host names with '_'."""
    return drop_below(False, False) if host == b"h" else drop_below(True, True)


_RULES = st.sampled_from([(drop_below(True, True), None), (drop_below(False, False), None), (0, _by_host),
                          (drop_below(False, False), _by_host)])


@_SETTINGS
@given(_ANY, st.lists(st.integers(0, 400), max_size=6), _RULES)
def test_header_rules_any_cut_and_both_paths_agree(data: bytes, points: list[int],
                                                   rules: tuple[int, Callable[[bytes], int] | None]) -> None:
    whole = run([data], rules=rules)
    assert run(bytewise(data), rules=rules) == whole
    assert run(cut(data, points), rules=rules) == whole
    assert run([data], rules=rules, fast=False) == whole


def test_header_rules_switch_at_the_host_that_chooses_the_server() -> None:
    odd = b"X_U: 1\r\nX.A: 2\r\n"
    names = [[n for n, _ in head(run([data], rules=rules))[5]] for data, rules in [
        (b"GET / HTTP/1.1\r\n" + odd + b"Host: h\r\n" + odd + b"\r\n", (0, _by_host)),
        (b"GET / HTTP/1.1\r\nHost: o\r\n" + odd + b"\r\n", (0, _by_host)),
        (b"GET http://h/ HTTP/1.1\r\nHost: o\r\n" + odd + b"\r\n", (0, _by_host)),  # the line's host wins
        (b"GET / HTTP/1.1\r\n" + odd + b"\r\n", (drop_below(True, True), None)),
        (b"GET / HTTP/1.1\r\n" + odd + b"\r\n", (drop_below(False, False), None)),
    ]]
    assert names == [[b"Host", b"X_U", b"X.A"], [b"Host", b"X_U"], [b"Host", b"X_U", b"X.A"], [b"X_U"],
                     [b"X_U", b"X.A"]]
    # The next request on the connection starts again with the listen's own setting.
    events = run([b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n" + odd + b"\r\n"], rules=(0, _by_host))
    assert [n for n, _ in head(events, 1)[5]] == []


@pytest.mark.parametrize("data, line, protocol, length", [
    (b"", b"", False, 0),
    (b"\r\n\r\n", b"", False, 0),
    (b"GE", b"GE", False, 0),
    (b"GET /a?b HTTP/1.", b"GET /a?b HTTP/1.", True, 0),
    (b"GET /a HTTP/1.1\r", b"GET /a HTTP/1.1", True, 0),
    (b"GET /a\r", b"GET /a", False, 0),
    (b"\r\nGET /a HTTP/1.1\r\n", None, True, 17),
    (b"GET /a HTTP/1.1\r\nHost: h\r\nX-Y: 1", None, True, 26),
    (b"GET /a HTTP/1.1\r\nHost: h\r\nX_U: 1\r\n", None, True, 34),
    (b"GET /a HTTP/1.1\r\nHost: h\r\n\r", None, True, 26),
])
def test_cut_head_is_what_nginx_logs_of_a_timed_out_head(data: bytes, line: bytes | None, protocol: bool,
                                                         length: int) -> None:
    rec = Recorder()
    parser = rec.parser = RequestParser(rec)
    for i in range(len(data)):  # as it trickles in, and in one piece
        parser.feed_data(data[i:i + 1])
    assert parser.cut_head() == (line, protocol, length)
    rec = Recorder()
    parser = rec.parser = RequestParser(rec)
    parser.feed_data(data)
    assert parser.cut_head() == (line, protocol, length)


# -- idle(): what parking a connection relies on (newproxy/http/parking.py) ----------------------------
@_SETTINGS
@given(_ANY, st.lists(st.integers(0, 400), max_size=6), st.sampled_from([(1024, 8192, 4), _SMALL]))
def test_an_idle_parser_reads_the_rest_as_a_fresh_one(data: bytes, points: list[int],
                                                      sizes: tuple[int, int, int]) -> None:
    """Wherever a parser says it is idle between two reads, a fresh parser given what follows makes
    the same events (a parked connection resumes with a new parser and a new protocol)."""
    pieces = cut(data, points)
    rec = Recorder()
    parser = rec.parser = RequestParser(rec, *sizes)
    for index, piece in enumerate(pieces):
        try:
            parser.feed_data(piece)
        except (ParseError, UpgradeRequest):
            return  # the connection is answered or handed on here: never parked after it
        if parser.idle():
            rest = pieces[index + 1:]
            assert run(rest, sizes=sizes) == run(pieces, sizes=sizes)[len(rec.events):], (pieces, index)


def test_idle_only_between_requests() -> None:
    rec = Recorder()
    parser = rec.parser = RequestParser(rec)
    assert parser.idle()
    parser.feed_data(b"GET / HTTP/1.1\r\nHost: h\r\n")
    assert not parser.idle()  # in a head
    parser.feed_data(b"\r\n")
    assert parser.idle()
    parser.feed_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab")
    assert not parser.idle()  # in a body
    parser.feed_data(b"c" + b"GET /")
    assert not parser.idle()  # a pipelined head begun
