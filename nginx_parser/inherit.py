"""What a location ends up with after nginx merges the enclosing levels into it (the merge_loc_conf step).

Per directive, by the table's ``inherit`` kind:
- ``scalar``: the innermost level that sets it wins (within one level, the last occurrence);
- ``array`` (add_header, proxy_set_header, ...): the innermost level that has *any* occurrence gives the
  whole list; outer occurrences are not added to it;
- ``none`` and unknown directives: only what the location itself says.
Directives inside ``if`` blocks are not part of the location's own set and are left out.
"""

from __future__ import annotations

from nginx_parser.directives import lookup
from nginx_parser.ir import Directive, Location

Effective = dict[str, list[Directive]]


def _own(block: Directive) -> Effective:
    own: Effective = {}
    for child in block.children():
        if child.name in ("location", "if", "server", "upstream", "limit_except"):
            continue
        own.setdefault(child.name, []).append(child)
    return own


def effective(location: Location) -> Effective:
    """Name -> the directive occurrences that apply in ``location`` (in file order for arrays)."""
    result: Effective = {}
    levels = [*location.ancestors, location.directive]
    for depth, level in enumerate(levels):
        innermost = depth == len(levels) - 1
        for name, occurrences in _own(level).items():
            spec = lookup(name)
            kind = spec.inherit if spec is not None else "none"
            if kind == "none" and not innermost:
                continue
            result[name] = occurrences if kind != "scalar" else occurrences[-1:]
    return result
