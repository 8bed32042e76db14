"""Accepted differences as data: which header values to mask and which diff fields to forgive.

The built-in set (``shadow/data/accepted_builtin.yaml``: Date, the Server token) applies to every
run; a user adds their own with ``--accept FILE`` in the same format (documented in that file):
per header (masked on both sides before comparing) or per diff field (reported as a note, not
counted), optionally only for requests whose target matches a glob.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

BUILTIN = Path(__file__).parent / "data" / "accepted_builtin.yaml"


class AcceptedError(Exception):
    """A rules file that cannot be used: ``path: what is wrong``."""


@dataclass(frozen=True)
class Rule:
    reason: str
    header: str | None = None
    mask: str = "<accepted>"
    field: str | None = None
    target: str = "*"


@dataclass
class Accepted:
    rules: list[Rule] = field(default_factory=list)

    def masks(self) -> dict[str, str]:
        """Lower-case header name -> the value both sides' headers of that name get."""
        return {rule.header.lower(): rule.mask for rule in self.rules if rule.header is not None}

    def accepts(self, diff_field: str, target: str) -> Rule | None:
        for rule in self.rules:
            if rule.field is not None and fnmatch.fnmatchcase(diff_field, rule.field) \
                    and fnmatch.fnmatchcase(target, rule.target):
                return rule
        return None

    def __add__(self, other: Accepted) -> Accepted:
        return Accepted([*self.rules, *other.rules])


def load(path: str | Path) -> Accepted:
    """The rules of a YAML file; AcceptedError names the file and the entry that is wrong."""
    try:
        entries = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise AcceptedError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AcceptedError(f"{path}: not YAML: {exc}") from None
    if entries is None:
        return Accepted()
    if not isinstance(entries, list):
        raise AcceptedError(f"{path}: expected a list of rules")
    rules = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: rule {number}"
        if not isinstance(entry, dict) or not entry.get("reason"):
            raise AcceptedError(f"{where}: every rule needs a `reason`")
        if ("header" in entry) == ("field" in entry):
            raise AcceptedError(f"{where}: give either `header` or `field`")
        unknown = set(entry) - {"header", "mask", "field", "target", "reason"}
        if unknown:
            raise AcceptedError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if "header" in entry and "target" in entry:
            raise AcceptedError(f"{where}: a header rule applies to every request; use a `field` rule per target")
        rules.append(Rule(reason=str(entry["reason"]), header=entry.get("header"),
                          mask=str(entry.get("mask", "<accepted>")), field=entry.get("field"),
                          target=str(entry.get("target", "*"))))
    return Accepted(rules)


@cache
def builtin() -> Accepted:
    return load(BUILTIN)
