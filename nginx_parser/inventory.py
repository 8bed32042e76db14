"""Every directive occurrence of a parsed config, classified against the directive table, with file:line.

Counting rule (the same one the corpus test applies to crossplane's raw payload): every statement
crossplane reports is one occurrence, ``include`` lines and the entries of data blocks (``map``,
``types``, ``geo``, ``split_clients``, ``charset_map``, ``match``, ``geoip2``) included (a
``*_by_lua_block`` body is one argument, as crossplane's Lua lexer gives it); comments are not occurrences. Data entries are classified by the block that holds
them (``entry=True``): a ``types`` entry is "core", a ``geoip2`` entry "third-party". Synthetic
wrapper blocks (a snippet parsed in a context) are not occurrences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from nginx_parser.directives import DATA_BLOCKS, classify
from nginx_parser.ir import Directive, NginxConfig

Kind = Literal["core", "third-party", "unknown"]


@dataclass(frozen=True, slots=True)
class Occurrence:
    name: str
    file: str
    line: int
    kind: Kind
    entry: bool  # a data-block entry (map/types/... line), classified by its block
    end_line: int  # where its ";" or "{" is: the line nginx names in errors

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _walk(directives: list[Directive], entry_kind: Kind | None) -> Iterator[Occurrence]:
    for directive in directives:
        if directive.synthetic:
            yield from _walk(directive.block or [], None)
            continue
        if entry_kind is not None and directive.name != "include":
            kind: Kind = entry_kind
        else:
            kind = classify(directive.name)
        yield Occurrence(
            directive.name, directive.file, directive.line, kind, entry_kind is not None, directive.error_line
        )
        if directive.block:
            if directive.name == "include":
                inner = entry_kind
            elif directive.name in DATA_BLOCKS:
                inner = kind
            else:
                inner = entry_kind
            yield from _walk(directive.block, inner)


def occurrences(config: NginxConfig) -> list[Occurrence]:
    """All occurrences, depth first in file order, includes expanded where they are written."""
    return list(_walk(config.tree, None))
