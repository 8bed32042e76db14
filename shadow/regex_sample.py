"""A small deterministic sampler of strings matching a regex (nginx locations, server names).

Walks the parse tree of Python's own regex parser and emits one choice per node from a
``random.Random`` seeded by the caller, so the same config always yields the same traffic (hypothesis'
``from_regex`` is not deterministic outside a test). Lookarounds and anchors are not enforced while
generating; every candidate is checked with ``re.search`` afterwards and dropped if it does not match.
PCRE-only syntax nginx accepts (``(?<name>...)``) is rewritten to Python's first.
"""

from __future__ import annotations

import random
import re
import re._constants as C  # noqa: N812 - the parser's opcode names
import re._parser as P  # noqa: N812
from typing import Any

# Characters tried first: harmless in a URI path and readable in a report.
_PREFERRED = "abcxyz0129-_.~ABCXYZ/"
_PRINTABLE = "".join(chr(c) for c in range(33, 127))


def pcre_to_python(pattern: str) -> str:
    """Rewrite the PCRE spellings nginx configs use that Python's ``re`` spells differently."""
    pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)  # (?<name>...) but not (?<= / (?<!
    pattern = re.sub(r"\(\?'([A-Za-z_]\w*)'", r"(?P<\1>", pattern)
    pattern = re.sub(r"\(\?P=(\w+)\)", r"(?P=\1)", pattern)
    return pattern


def _category(cat: Any, ch: str) -> bool:
    if cat is C.CATEGORY_DIGIT:
        return ch.isdigit()
    if cat is C.CATEGORY_NOT_DIGIT:
        return not ch.isdigit()
    if cat is C.CATEGORY_SPACE:
        return ch in " \t\n\r\f\v"
    if cat is C.CATEGORY_NOT_SPACE:
        return ch not in " \t\n\r\f\v"
    if cat is C.CATEGORY_WORD:
        return ch.isalnum() or ch == "_"
    if cat is C.CATEGORY_NOT_WORD:
        return not (ch.isalnum() or ch == "_")
    return False


def _in_set(items: list[tuple[Any, Any]], ch: str) -> bool:
    negate = bool(items) and items[0][0] is C.NEGATE
    hit = False
    for op, av in items:
        if op is C.LITERAL:
            hit = ord(ch) == av
        elif op is C.RANGE:
            hit = av[0] <= ord(ch) <= av[1]
        elif op is C.CATEGORY:
            hit = _category(av, ch)
        else:
            continue
        if hit:
            break
    return hit != negate


class _Sampler:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.groups: dict[int, str] = {}

    def pick(self, candidates: str) -> str:
        # Choose among the first few acceptable characters: varied but still readable.
        return self.rng.choice(candidates[:4])

    def emit(self, tree: Any) -> str:
        return "".join(self.node(op, av) for op, av in tree)

    def node(self, op: Any, av: Any) -> str:
        if op is C.LITERAL:
            return chr(av)
        if op is C.NOT_LITERAL:
            return self.pick("".join(c for c in _PREFERRED if ord(c) != av))
        if op is C.ANY:
            return self.pick("abxz")
        if op is C.IN:
            ok = [c for c in _PREFERRED + _PRINTABLE if _in_set(av, c)]
            if not ok:
                ranges = [chr(a[0]) for o, a in av if o is C.RANGE] + [chr(a) for o, a in av if o is C.LITERAL]
                ok = ranges or ["a"]
            return self.pick("".join(dict.fromkeys(ok)))
        if op is C.BRANCH:
            return self.emit(self.rng.choice(av[1]))
        if op is C.SUBPATTERN:
            group, _add, _del, sub = av
            text = self.emit(sub)
            if group is not None:
                self.groups[group] = text
            return text
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            count = self.rng.randint(low, min(high, low + 2))
            return "".join(self.emit(sub) for _ in range(count))
        if op is C.ATOMIC_GROUP:
            return self.emit(av)
        if op is C.GROUPREF:
            return self.groups.get(av, "")
        if op is C.GROUPREF_EXISTS:
            group, yes, no = av
            return self.emit(yes if group in self.groups else (no or []))
        # AT (anchors), ASSERT, ASSERT_NOT: checked after generation, not generated.
        return ""


def compile_pcre(pattern: str, caseless: bool = False) -> re.Pattern[str] | None:
    try:
        return re.compile(pcre_to_python(pattern), re.IGNORECASE if caseless else 0)
    except re.error:
        return None


def sample(pattern: str, count: int, seed: int | str, *, caseless: bool = False, prefix: str = "") -> list[str]:
    """Up to ``count`` distinct strings that ``pattern`` finds a match in, each starting with ``prefix``.

    Deterministic for a given (pattern, seed). Returns fewer (possibly none) when the pattern uses
    syntax Python cannot parse or the candidates keep failing the final check.
    """
    compiled = compile_pcre(pattern, caseless)
    if compiled is None:
        return []
    tree = P.parse(compiled.pattern, compiled.flags)
    rng = random.Random(f"{seed}:{pattern}")
    found: list[str] = []
    for _attempt in range(count * 10):
        text = _Sampler(rng).emit(tree)
        # An unanchored pattern may match later in the string: a filler in front varies the samples.
        filler = rng.choice(["", "a", "dir/", "a/b/"])
        for candidate in (text, prefix + filler + text, prefix + text):
            if candidate.startswith(prefix) and compiled.search(candidate):
                if candidate not in found:
                    found.append(candidate)
                break
        if len(found) >= count:
            break
    return found
