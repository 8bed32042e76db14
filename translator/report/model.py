"""The gap report: every directive occurrence of a config, classified, with where it is and what to do.

Built from the parsed tree (every occurrence, as ``nginx_parser.inventory`` counts them: include lines
and data-block entries too) and the translation (the level the translator gave each directive, its
notes included). The registry has the last word in one direction: an occurrence whose registry rule
is ``unsupported``/``unknown`` (no rule) is reported so even if a translator note said otherwise, so
the report can never claim ``exact`` for a directive nothing translates.

Units: each ``server`` and each ``location`` (nested ones are units of their own). A location counts
the directives written in it (its ``if`` blocks included, nested locations excluded); a server counts
everything in its block, its locations included: moving a server moves all of it.

Readiness of a unit = exact / scored, where scored are the directive occurrences at the levels
exact, caveat, unsupported and unknown (``ignored`` ones have no runtime meaning for newproxy;
include lines and data-block entries are not directives of their own). A unit with nothing scored
is ready (1.0).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from nginx_parser.build import location_modifier
from nginx_parser.directives import DATA_BLOCKS as ENTRY_BLOCKS
from nginx_parser.ir import Directive, NginxConfig
from translator.registry import Level, classify, suggestion
from translator.translate import DATA_BLOCKS as TRANSLATOR_DATA_BLOCKS
from translator.translate import Translation

LEVELS: tuple[Level, ...] = ("exact", "caveat", "ignored", "unsupported", "unknown")
SCORED: tuple[Level, ...] = ("exact", "caveat", "unsupported", "unknown")
GROUP_SEP = "›"  # the shadow harness's separator between a server's and a location's label
Kind = Literal["directive", "include", "entry"]


class Entry(BaseModel):
    """One directive occurrence."""

    file: str
    line: int
    context: str = Field(description="enclosing blocks, e.g. http > server[example.com:80] > location /api/")
    directive: str
    args: list[str]
    kind: Kind = Field(description="directive, include line, or entry of a data block (map/types/geo...)")
    level: Level
    reason: str
    suggestion: str
    server: str | None = Field(default=None, description="key of the server unit it is in")
    location: str | None = Field(default=None, description="key of the innermost location unit it is in")
    stub: str | None = Field(default=None, description="generated plugin stub for a *_by_lua* directive")
    phase: str | None = Field(default=None, description="newproxy phase a *_by_lua* directive maps to")

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Counts(BaseModel):
    occurrences: int = 0
    exact: int = 0
    caveat: int = 0
    ignored: int = 0
    unsupported: int = 0
    unknown: int = 0

    @property
    def scored(self) -> int:
        return self.exact + self.caveat + self.unsupported + self.unknown

    @property
    def readiness(self) -> float:
        return self.exact / self.scored if self.scored else 1.0

    def add(self, entry: Entry) -> None:
        self.occurrences += 1
        setattr(self, entry.level, getattr(self, entry.level) + 1)

    def percent(self, level: Level) -> float:
        return 100.0 * getattr(self, level) / self.occurrences if self.occurrences else 0.0


class Unit(BaseModel):
    """A server or a location, with what it takes to move it to newproxy."""

    key: str = Field(description="stable id: server/location label as the shadow harness names it")
    kind: Literal["server", "location"]
    label: str
    context: str
    file: str
    line: int
    server: str = Field(description="key of the server unit (itself for a server)")
    counts: Counts = Field(default_factory=Counts, description="directive occurrences (include lines and data entries excluded)")
    readiness: float = 1.0
    blockers: list[str] = Field(default_factory=list, description="file:line directive: reason, for each gap")
    fallback_candidate: bool = Field(
        default=False, description="has unsupported/unknown directives: keep it on nginx (strangler fallback)")
    shadow_verified: bool | None = Field(
        default=None, description="None: no shadow report given; else covered by shadow traffic with 0 differences")
    shadow_requests: int = 0


class Report(BaseModel):
    config: str
    entries: list[Entry]
    units: list[Unit]
    totals: Counts
    readiness: float
    shadow_report: str | None = None
    global_blockers: list[str] = Field(default_factory=list, description="gaps outside any server (main/http/upstream)")

    def count(self, *levels: Level) -> int:
        return sum(1 for e in self.entries if e.level in levels)


def _server_label(directive: Directive, names: list[str]) -> str:
    """As ``shadow.traffic.server_label`` names a server (a test keeps the two equal)."""
    shown = " ".join(n for n in names if n) or '""'
    return f"server {shown} ({os.path.basename(directive.file)}:{directive.line})"


def _location_label(directive: Directive) -> str:
    """As the shadow harness names a location: ``location [modifier ]path``."""
    modifier, path = location_modifier(directive)
    return f"location {modifier + ' ' if modifier else ''}{path}"


def _server_context(directive: Directive) -> tuple[list[str], str]:
    names: list[str] = []
    port = "80"
    for child in directive.children():
        if child.name == "server_name":
            names.extend(child.args)
        elif child.name == "listen" and port == "80" and child.args:
            address = child.args[0]
            tail = address.rsplit("]:", 1)[-1] if address.startswith("[") else address.rsplit(":", 1)[-1]
            port = tail if tail.isdigit() else address if address.isdigit() else port
    first = next((n for n in names if n), "_")
    return names, f"server[{first}:{port}]"


def _label(directive: Directive) -> str:
    if directive.name == "location":
        return _location_label(directive)
    if directive.name == "if":
        return f"if ({' '.join(directive.args)})"
    return " ".join([directive.name, *directive.args])


_LUA_PHASES = {
    "set": "rewrite (set)", "rewrite": "rewrite", "access": "access", "content": "content",
    "header_filter": "response header filter", "body_filter": "body filter", "log": "log",
    "init": "startup (init)", "init_worker": "worker startup (init_worker)", "balancer": "upstream peer selection",
    "ssl_certificate": "TLS handshake", "ssl_session_fetch": "TLS handshake", "ssl_session_store": "TLS handshake",
}


def lua_phase(name: str) -> str | None:
    """The newproxy phase a ``*_by_lua*`` directive runs in; None for other directives."""
    stem, sep, _ = name.partition("_by_lua")
    return _LUA_PHASES.get(stem, stem) if sep else None


class _Builder:
    def __init__(self, nginx: NginxConfig, translation: Translation) -> None:
        self.nginx = nginx
        self.translated = iter(translation.occurrences)
        self.entries: list[Entry] = []
        self.units: dict[str, Unit] = {}

    def _next_translated(self, directive: Directive) -> tuple[Level, str]:
        occurrence = next(self.translated, None)
        if occurrence is None or (occurrence.file, occurrence.line, occurrence.directive) != (
                directive.file, directive.line, directive.name):
            # The translator's walk and this one must agree; a mismatch is a bug, not a user error.
            raise AssertionError(f"report and translation disagree at {directive.where} ({directive.name}): "
                                 f"{occurrence!r}")
        return occurrence.level, occurrence.reason

    def walk(self, directives: list[Directive], path: list[str], server: str | None, location: str | None,
             in_upstream: bool = False, entry_of: Entry | None = None) -> None:
        for directive in directives:
            context = " > ".join(path) if path else "main"
            if directive.name == "include":
                if not directive.synthetic:
                    rule = classify("include")
                    self._add(directive, context, "include", rule.level, rule.reason, server, location)
                self.walk(directive.block or [], path, server, location, in_upstream, entry_of)
                continue
            if entry_of is not None:
                # An entry of a data block (a map pair, a mime type): it shares its block's fate.
                if entry_of.directive not in TRANSLATOR_DATA_BLOCKS:
                    self._next_translated(directive)  # the translator walked into this block as directives
                self._add(directive, context, "entry", entry_of.level,
                          f"entry of {entry_of.directive} at {entry_of.where}", server, location)
                if directive.block:
                    self.walk(directive.block, path, server, location, in_upstream, entry_of)
                continue
            level, reason = self._next_translated(directive)
            rule = classify(directive.name, in_upstream)
            if rule.level in ("unsupported", "unknown") and level not in ("unsupported", "unknown"):
                level, reason = rule.level, rule.reason  # no rule: never better than the registry says
            if "_by_lua" in directive.name and level not in ("unsupported", "unknown"):
                level = "unsupported"  # Lua is never run by newproxy: a stub is generated, nothing more
            inner_server, inner_location, label = server, location, _label(directive)
            if directive.name == "server" and not in_upstream:
                names, label = _server_context(directive)
                inner_server = self._unit(directive, "server", _server_label(directive, names),
                                          " > ".join([*path, label]), None)
                inner_location = None
            elif directive.name == "location" and server is not None:
                outer = self.units[location].label + " > " if location else ""
                inner_location = self._unit(directive, "location", outer + _location_label(directive),
                                            " > ".join([*path, label]), server)
            entry = None
            if not directive.synthetic:
                # a server/location directive belongs to the unit it opens
                entry = self._add(directive, context, "directive", level, reason, inner_server, inner_location)
            if directive.block is not None:
                if directive.name in ENTRY_BLOCKS and entry is not None:
                    self.walk(directive.block, [*path, label], inner_server, inner_location, in_upstream, entry)
                else:
                    self.walk(directive.block, [*path, label], inner_server, inner_location,
                              directive.name == "upstream")

    def _unit(self, directive: Directive, kind: Literal["server", "location"], label: str, context: str,
              server: str | None) -> str:
        key = label if server is None else f"{server} {GROUP_SEP} {label}"
        self.units[key] = Unit(key=key, kind=kind, label=label, context=context, file=directive.file,
                               line=directive.line, server=server or key)
        return key

    def _add(self, directive: Directive, context: str, kind: Kind, level: Level, reason: str,
             server: str | None, location: str | None) -> Entry:
        entry = Entry(file=directive.file, line=directive.line, context=context, directive=directive.name,
                      args=list(directive.args), kind=kind, level=level, reason=reason,
                      suggestion=suggestion(directive.name, level), server=server, location=location,
                      phase=lua_phase(directive.name) if kind == "directive" else None)
        self.entries.append(entry)
        return entry


def _units_of(entry: Entry) -> Iterator[str]:
    if entry.server is not None:
        yield entry.server
    if entry.location is not None:
        yield entry.location


def build_report(nginx: NginxConfig, translation: Translation, shadow: dict[str, Any] | None = None,
                 shadow_path: str | None = None) -> Report:
    """The report of one parsed and translated config; ``shadow`` is a ``nginx-migrate shadow --json``
    report (parsed), whose per server/location request counts set ``shadow_verified``."""
    builder = _Builder(nginx, translation)
    builder.walk(nginx.tree, [], None, None)
    units = builder.units
    totals = Counts()
    global_blockers = []
    for entry in builder.entries:
        gap = entry.level in ("caveat", "unsupported", "unknown")
        if entry.kind == "directive":
            totals.add(entry)
        if gap and entry.kind == "directive" and entry.server is None:
            global_blockers.append(f"{entry.where} {entry.directive}: {entry.reason}")
        for key in _units_of(entry):
            unit = units[key]
            if entry.kind == "directive":
                unit.counts.add(entry)
            if gap and entry.kind == "directive":
                unit.blockers.append(f"{entry.where} {entry.directive}: {entry.reason}")
                # a server is a candidate for what is written in it outside its locations; a location
                # that cannot move keeps only itself on nginx
                direct = unit.kind == "location" or entry.location is None
                unit.fallback_candidate |= direct and entry.level in ("unsupported", "unknown")
    for unit in units.values():
        unit.readiness = unit.counts.readiness
    if shadow is not None:
        _apply_shadow(units, shadow)
    return Report(config=nginx.main_file, entries=builder.entries, units=list(units.values()), totals=totals,
                  readiness=totals.readiness, shadow_report=shadow_path, global_blockers=global_blockers)


def _apply_shadow(units: dict[str, Unit], shadow: dict[str, Any]) -> None:
    """A unit is shadow-verified when the shadow traffic covered it (its group got requests) with no
    difference and no error. A server also needs every one of its locations verified."""
    groups: dict[str, dict[str, int]] = shadow.get("by_group", {})
    for unit in units.values():
        counts = groups.get(unit.key, {})
        unit.shadow_requests = int(counts.get("requests", 0))
        unit.shadow_verified = (unit.shadow_requests > 0 and not counts.get("different", 0)
                                and not counts.get("errors", 0))
    for unit in units.values():
        if unit.kind == "server" and unit.shadow_verified:
            unit.shadow_verified = all(u.shadow_verified for u in units.values()
                                       if u.kind == "location" and u.server == unit.key)
