"""nginx regexes with nginx's semantics: PCRE2 on bytes, no UTF mode, ASCII case folding.

Self-contained on purpose (standard library + the ``pcre2`` binding, nothing else from this package):
newproxy may copy this file as is, since newproxy must not import nginx_parser.

Python's ``re`` runs a match ~7x faster than the pcre2 binding, so a pattern goes to ``re`` when it is
in the subset that both engines read alike, and to pcre2 otherwise. The subset (checked by ``_re_subset``,
conservative: when in doubt, pcre2):

- literals, ``.``, ``^``, ``$``, ``|``, groups ``( )``, ``(?: )``, lookarounds, ``(?P<n> )``, and
  ``(?<n> )`` rewritten to ``(?P<n> )``; quantifiers ``* + ? {n} {n,} {n,m}`` and their lazy ``?`` forms;
- escapes ``\\d \\D \\w \\W \\s \\S \\b \\A``, ``\\xHH``, ``\\n \\t \\r \\f``,
  ``\\1``–``\\9`` back references, and any escaped non-alphanumeric character;
- character classes without nested ``[`` (so no POSIX ``[:alpha:]``).

Everything else goes to pcre2: possessive quantifiers and atomic groups, ``\\K``, ``\\Q…\\E``, ``\\z \\Z \\G``,
``\\h \\R \\X \\p``, ``\\g``/``\\k`` references, ``(?|``, recursion, callouts, verbs ``(*…)``, comments,
``{,n}`` (a quantifier in re, a literal in PCRE2 < 10.43), inline flags re refuses mid-pattern, octal.
Both engines are used on bytes: ``re`` with bytes is ASCII-only for ``\\d \\w \\s`` and case folding,
which is what PCRE2 does without ``PCRE2_UTF`` (nginx compiles without it unless the pattern asks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

import pcre2  # type: ignore[import-untyped]

Engine = Literal["re", "pcre2"]

# not "B": Python's \B never matches an empty subject, PCRE2's does.
_RE_ESCAPES = set("dDwWsSbA")
# not "v": PCRE2 reads \v as the vertical-space class, re as the VT character.
_CONTROL_ESCAPES = set("ntrf")


class MatchLike(Protocol):
    def group(self, *index: int | str) -> bytes | None | tuple[bytes | None, ...]: ...

    def groups(self) -> tuple[bytes | None, ...]: ...

    def groupdict(self) -> dict[str, bytes | None]: ...

    def span(self, group: int = ...) -> tuple[int, int]: ...


class RegexError(ValueError):
    """The pattern does not compile (nginx: ``pcre2_compile() failed``)."""


def _shared_escape(pattern: str, i: int, in_class: bool) -> bool:
    """Whether the letter/digit escape at ``pattern[i]`` means the same to re and PCRE2."""
    nxt = pattern[i + 1]
    if nxt in "dDwWsS" or nxt in _CONTROL_ESCAPES:
        return True
    if nxt in _RE_ESCAPES:
        return not in_class  # \b is a backspace inside a class, \A an error
    if nxt == "x":
        return re.fullmatch(r"[0-9A-Fa-f]{2}", pattern[i + 2:i + 4]) is not None
    # a single-digit back reference; \10 and up are read differently
    return nxt in "123456789" and not in_class and not pattern[i + 2:i + 3].isdigit()


def _re_subset(pattern: str) -> str | None:
    """The pattern rewritten for Python's ``re`` when it is in the common subset, else None."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            if nxt.isalnum() and not _shared_escape(pattern, i, in_class):
                return None
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if char == "[":
                return None
            if char == "]" and not (pattern[i - 1] == "[" or pattern[i - 2:i] == "[^"):
                in_class = False
            out.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            i += 1
            continue
        if char == "(":
            rest = pattern[i + 1:i + 4]
            if rest.startswith("*"):
                return None  # (*VERB)
            if rest.startswith("?"):
                if rest.startswith(("?:", "?=", "?!", "?<=", "?<!", "?P<")):
                    pass
                elif rest.startswith("?<") and re.match(r"\?<[A-Za-z_]\w*>", pattern[i + 1:]):
                    out.append("(?P")
                    i += 2
                    continue
                elif re.match(r"\?[ims]+\)", pattern[i + 1:]) and not out:
                    pass  # leading inline flags: read alike
                else:
                    return None
        if char == "{":
            quant = re.match(r"\{(\d*)(,?)(\d*)\}", pattern[i:])
            if quant and quant.group(1) == "" and quant.group(2):
                return None  # {,n}: re quantifier, PCRE2 literal
            if quant and quant.group(1):
                after = pattern[i + quant.end():i + quant.end() + 1]
                if after == "+":
                    return None
        if char in "*+?}" and pattern[i + 1:i + 2] == "+":
            return None  # possessive
        out.append(char)
        i += 1
    if in_class:
        return None
    return "".join(out)


@dataclass(frozen=True)
class Regex:
    """A compiled nginx regex. ``search`` takes the subject as bytes, like nginx matches raw bytes."""

    pattern: str
    caseless: bool
    engine: Engine
    groups: int
    names: dict[str, int] = field(default_factory=dict)
    _compiled: object = field(default=None, repr=False, compare=False)

    def search(self, subject: bytes) -> MatchLike | None:
        return self._compiled.search(subject)  # type: ignore[attr-defined, no-any-return]


def compile_regex(pattern: str, caseless: bool = False, engine: Engine | None = None) -> Regex:
    """Compile ``pattern`` as nginx would (``~`` or, with ``caseless``, ``~*``); choose the engine unless given."""
    raw = pattern.encode("utf-8", "surrogateescape")
    translated = _re_subset(pattern) if engine != "pcre2" else None
    if translated is not None:
        try:
            flags = re.IGNORECASE if caseless else 0
            compiled_re = re.compile(translated.encode("utf-8", "surrogateescape"), flags)
        except re.error:
            compiled_re = None
        if compiled_re is not None:
            return Regex(pattern, caseless, "re", compiled_re.groups, dict(compiled_re.groupindex), compiled_re)
    if engine == "re":
        raise RegexError(f'pattern "{pattern}" is outside the subset Python\'s re reads like PCRE2')
    try:
        compiled = pcre2.compile(raw, flags=pcre2.I if caseless else 0)
    except Exception as exc:  # noqa: BLE001 - pcre2 raises several error types; nginx reports them alike
        raise RegexError(f'pcre2_compile() failed: {exc} in "{pattern}"') from None
    return Regex(pattern, caseless, "pcre2", compiled.groups, dict(compiled.groupindex), compiled)
