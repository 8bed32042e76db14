"""The malformed-request corpus for the raw mode: hand-written cases plus deterministic mutations.

``shadow/data/h1_corpus.yaml`` holds the hand-written cases (families: CL/TE, chunked framing,
line endings, control bytes, methods, versions, targets, Host, sizes, pipelining, Expect,
keep-alive, incomplete input). ``corpus()`` adds mutations of the well-formed ones (family "base"),
each operator applied at every position it fits: line endings swapped one line at a time,
whitespace before a colon, a header line duplicated or re-cased, one odd byte put in a header
value or in the target, the request-line separators and version changed. No randomness: the same
corpus on every run, so a difference is reproducible by name.
"""

from __future__ import annotations

import codecs
import re
from functools import cache
from pathlib import Path

import yaml

from shadow.raw import RawCase

CORPUS_FILE = Path(__file__).parent / "data" / "h1_corpus.yaml"

_ODD_BYTES = (b"\x00", b"\x01", b"\x09", b"\x0b", b"\x0c", b"\x1f", b"\x7f", b"\x80", b"\xff", b" ", b'"')
_LINE_ENDINGS = (b"\n", b"\r", b"\n\r", b"\r\r\n", b" \r\n")
_VERSIONS = (b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.01", b"HTTP/1.1x", b"HTTP/ 1.1", b"HTTP1.1", b"http/1.1",
             b"HTTP/1.1 extra")
_SEPARATORS = (b"  ", b"\t", b"\x0b", b"\x0c", b"\r")


def _decode(text: str) -> bytes:
    return codecs.escape_decode(text.encode("latin-1"))[0]  # type: ignore[no-any-return]


_REPEAT = re.compile(rb"\{([a-z])\*(\d+)\}")  # {a*1000}: 1000 times "a" (sizes at nginx's buffer edges)


def _fill(data: bytes, host: str) -> bytes:
    long7k = b"a" * 7000
    long9k = b"b" * 9000
    many = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(120))
    data = _REPEAT.sub(lambda m: m.group(1) * int(m.group(2)), data)
    return (data.replace(b"{host}", host.encode()).replace(b"{long7k}", long7k).replace(b"{long9k}", long9k)
            .replace(b"{many_headers}", many))


@cache
def hand_written(host: str = "raw.test") -> tuple[RawCase, ...]:
    entries = yaml.safe_load(CORPUS_FILE.read_text())
    cases = []
    for entry in entries:
        data = _fill(_decode(entry["data"]), host)
        cases.append(RawCase(name=entry["name"], data=data, head_only=bool(entry.get("head_only")),
                             family=entry["family"]))
    return tuple(cases)


def _split_head(data: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "base cases end their head with CRLF CRLF"
    return head.split(b"\r\n"), body


def _join(lines: list[bytes], body: bytes, endings: list[bytes] | None = None) -> bytes:
    if endings is None:
        return b"\r\n".join(lines) + b"\r\n\r\n" + body
    out = bytearray()
    for line, ending in zip(lines, endings, strict=True):
        out += line + ending
    return bytes(out) + b"\r\n" + body


def mutations(base: RawCase) -> list[RawCase]:
    lines, body = _split_head(base.data)
    out: list[tuple[str, bytes]] = []
    # Line endings, one line at a time (the last entry is the blank line's own ending).
    for i in range(len(lines)):
        for ending in _LINE_ENDINGS:
            endings = [b"\r\n"] * len(lines)
            endings[i] = ending
            out.append((f"eol{i}-{ending!r}", _join(lines, body, endings)))
    for ending in (b"\n", b"\r"):
        out.append((f"all-eol-{ending!r}", ending.join(lines) + ending + ending + body))
    for i, line in enumerate(lines[1:], start=1):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        for space in (b" ", b"\t"):
            out.append((f"ws-before-colon{i}-{space!r}", _join([*lines[:i], name + space + b":" + value, *lines[i + 1:]], body)))
        out.append((f"dup{i}", _join([*lines[: i + 1], line, *lines[i + 1:]], body)))
        out.append((f"upper{i}", _join([*lines[:i], name.upper() + b":" + value, *lines[i + 1:]], body)))
        out.append((f"no-value{i}", _join([*lines[:i], name + b":", *lines[i + 1:]], body)))
        out.append((f"fold{i}", _join([*lines[:i], name + b":" + value[:2], b" " + value[2:], *lines[i + 1:]], body)))
        for odd in _ODD_BYTES:
            out.append((f"value-byte{i}-{odd!r}", _join([*lines[:i], line + odd + b"x", *lines[i + 1:]], body)))
        for odd in _ODD_BYTES[:7]:
            out.append((f"name-byte{i}-{odd!r}", _join([*lines[:i], name[:1] + odd + name[1:] + b":" + value,
                                                         *lines[i + 1:]], body)))
    method, _, rest = lines[0].partition(b" ")
    target, _, version = rest.rpartition(b" ")
    for odd in _ODD_BYTES:
        out.append((f"target-byte-{odd!r}", _join([method + b" " + target + odd + b"x " + version, *lines[1:]], body)))
    for sep in _SEPARATORS:
        out.append((f"separator-{sep!r}", _join([method + sep + target + b" " + version, *lines[1:]], body)))
        out.append((f"separator2-{sep!r}", _join([method + b" " + target + sep + version, *lines[1:]], body)))
    for other in _VERSIONS:
        out.append((f"version-{other.decode()}", _join([method + b" " + target + b" " + other, *lines[1:]], body)))
    return [RawCase(name=f"{base.name}/{label}", data=data, head_only=base.head_only, family=f"mutated-{base.family}")
            for label, data in out]


@cache
def corpus(host: str = "raw.test") -> tuple[RawCase, ...]:
    """Every case, hand-written first, then the mutations of each base case; names are unique."""
    cases = list(hand_written(host))
    for base in [case for case in cases if case.family == "base"]:
        cases.extend(mutations(base))
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return tuple(cases)
