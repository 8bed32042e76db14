"""nginx_parser.expr and nginx_parser.regex: complex values, if conditions, and the re/pcre2 choice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nginx_parser.expr import (
    Capture,
    Compare,
    ExpressionError,
    FileCheck,
    RegexMatch,
    Text,
    Truthy,
    Var,
    parse_condition,
    parse_value,
)
from nginx_parser.regex import compile_regex


def test_complex_value_parts() -> None:
    assert parse_value("$scheme://$host$request_uri").parts == (
        Var("scheme"), Text("://"), Var("host"), Var("request_uri")
    )
    assert parse_value("${a}b/$12").parts == (Var("a"), Text("b/"), Capture(1), Text("2"))
    assert parse_value("plain").is_static and parse_value("").parts == ()


@pytest.mark.parametrize(("value", "message"), [
    ("a$", 'invalid variable name in "a$"'),
    ("x$-y", 'invalid variable name in "x$-y"'),
    ("${host", 'the closing bracket in "${host" variable is missing'),
])
def test_bad_variables_are_errors(value: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_value(value)
    assert str(info.value) == message


def test_if_conditions() -> None:
    assert parse_condition(["$slow"]) == Truthy("slow")
    assert parse_condition(["$request_method", "=", "POST"]) == Compare("request_method", False, parse_value("POST"))
    assert parse_condition(["$a", "!=", "$b"]) == Compare("a", True, parse_value("$b"))
    assert parse_condition(["!-f", "$request_filename"]) == FileCheck("!-f", parse_value("$request_filename"))
    assert parse_condition(["-x", "/bin/sh"]) == FileCheck("-x", parse_value("/bin/sh"))
    match = parse_condition(["$http_user_agent", "~*", "(?<bot>bot|crawler)"])
    assert isinstance(match, RegexMatch) and match.op == "~*" and match.variable == "http_user_agent"
    assert match.regex.names == {"bot": 1} and match.regex.search(b"GoogleBOT") is not None


@pytest.mark.parametrize("args", [["a", "b"], ["$a", "=="], ["-q", "/x"], ["$a", "~", "("], []])
def test_bad_conditions_are_errors(args: list[str]) -> None:
    with pytest.raises(ExpressionError):
        parse_condition(args)


@pytest.mark.parametrize(("pattern", "engine"), [
    (r"\.php$", "re"),
    (r"^/api/(v\d+)/(?<rest>.*)$", "re"),
    (r"(?i)^/static/", "re"),
    (r"^/(a|b){2,3}x*?$", "re"),
    (r"a++b", "pcre2"),
    (r"(?>a|ab)c", "pcre2"),
    (r"^/foo\Kbar", "pcre2"),
    (r"[[:alpha:]]+", "pcre2"),
    (r"x{,3}", "pcre2"),
    (r"\h+", "pcre2"),
    (r"\Qa.b\E", "pcre2"),
    (r"\v", "pcre2"),
    (r"a(?i)b", "pcre2"),
])
def test_engine_choice(pattern: str, engine: str) -> None:
    assert compile_regex(pattern).engine == engine


def test_named_captures_are_read_alike() -> None:
    regex = compile_regex(r"^/u/(?<user>[^/]+)/(\d+)$")
    match = regex.search(b"/u/alice/42")
    assert match is not None and match.groupdict() == {"user": b"alice"} and match.groups() == (b"alice", b"42")


# ---- property: where re is chosen, it agrees with PCRE2 -----------------------------------------

_ATOMS = st.sampled_from([
    "a", "b", "ab", ".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\.", "/", "-", "[ab]", "[^a]", "[a-c]",
    "[]a]", r"[\d_]", r"\x41", "A", "é", r"\v", r"\h", "[[:digit:]]",
])
_ASSERTIONS = st.sampled_from([r"\b", "^", "$", r"\A", r"\B", r"\Z", r"\z"])
_QUANT = st.sampled_from(["", "*", "+", "?", "*?", "+?", "{2}", "{1,2}", "{2,}", "{,2}", "++", "{1,2}+"])


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["atom", "atom", "assert", "group", "alt"] if depth < 2 else ["atom", "assert"]))
        if kind == "assert":
            pieces.append(draw(_ASSERTIONS))  # assertions take no quantifier
            continue
        if kind == "atom":
            piece = draw(_ATOMS)
        elif kind == "group":
            opener = draw(st.sampled_from(["(", "(?:", f"(?<n{draw(st.integers(0, 10**9))}>", "(?=", "(?!", "(?>"]))
            piece = opener + draw(patterns(depth + 1)) + ")"
        else:
            piece = "(" + draw(patterns(depth + 1)) + "|" + draw(patterns(depth + 1)) + ")"
        pieces.append(piece + draw(_QUANT))
    return "".join(pieces)


@settings(max_examples=1000, deadline=None)
@given(pattern=patterns(), subject=st.binary(max_size=12).map(lambda b: b.translate(bytes(range(256))))
       | st.text(alphabet="abAB01_./-é \n", max_size=12).map(str.encode), caseless=st.booleans())
def test_re_and_pcre2_agree_where_re_is_chosen(pattern: str, subject: bytes, caseless: bool) -> None:
    try:
        exact = compile_regex(pattern, caseless, engine="pcre2")
    except ValueError:
        return  # not a valid PCRE2 pattern: nothing to compare
    chosen = compile_regex(pattern, caseless)
    if chosen.engine != "re":
        return
    assert chosen.groups == exact.groups and chosen.names == exact.names
    fast, truth = chosen.search(subject), exact.search(subject)
    assert (fast is None) == (truth is None), (pattern, subject)
    if fast is not None and truth is not None:
        assert fast.span() == truth.span(), (pattern, subject)
        assert fast.groups() == truth.groups(), (pattern, subject)
