"""Compile nginx (PCRE) regexes with Python's ``re``.

PCRE spells named groups ``(?<name>...)`` and ``(?'name'...)``; ``re`` wants ``(?P<name>...)``.
Patterns whose meaning differs between the engines in other ways (possessive and atomic forms,
``\\K``) are the parser issue's work (pcre2 bindings); they fail to compile here with a clear error.
"""

from __future__ import annotations

import re

_NAMED_GROUP = re.compile(r"(?<!\\)\(\?(?:<(?![=!])([A-Za-z_][A-Za-z0-9_]*)>|'([A-Za-z_][A-Za-z0-9_]*)')")


def to_python_syntax(pattern: str) -> str:
    return _NAMED_GROUP.sub(lambda m: f"(?P<{m.group(1) or m.group(2)}>", pattern)


def compile_regex(pattern: str, caseless: bool = False) -> re.Pattern[str]:
    """re.ASCII: nginx runs PCRE without UTF, so \\w, \\d, \\s, \\b and caseless matching only know
    ASCII (measured: "/w/%E9" does not match ``^/w/(\\w+)$`` in nginx 1.22)."""
    return re.compile(to_python_syntax(pattern), re.ASCII | (re.IGNORECASE if caseless else 0))
