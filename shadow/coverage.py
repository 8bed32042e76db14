"""Coverage: which parts of the config the traffic of a shadow run exercised.

The parts are the config's servers, locations (named ones included), rewrite-phase steps (a
``rewrite`` counts when its regex matched; an ``if`` has two sides, taken and not taken;
``return``/``set``/``break`` when they ran), and map entries (each entry, and each map's default).
Each is named by the ``file:line`` of its directive.

Which part a request went through is what nginx decides; newproxy's sans-IO engine decides the same
(that is what the shadow runs prove), so coverage replays every request through the engine, built
from the translation of the *original* config with the tracer of ``newproxy.engine.trace`` on: no
socket, no process, no change to what either target answered. Parts the translation does not carry
(untranslated directives) are not counted either way; the gap report lists those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from nginx_parser import NginxConfig
from shadow.traffic import Request

# The kinds counted, in report order; an if counts once per side.
KINDS = ("server", "location", "rewrite", "if", "return", "set", "break", "map")


@dataclass(frozen=True)
class Part:
    kind: str  # one of KINDS
    source: str  # file:line of the directive
    detail: str  # what it is, for people: "location /api/", "if taken", "map $x default"...
    # The source of the server or location it sits in: requests that reach the anchor are where a
    # search for a request that reaches the part starts (shadow/guided.py). "" for map entries.
    anchor: str = field(default="", compare=False)


@dataclass
class Coverage:
    parts: list[Part]
    hits: dict[Part, int] = field(default_factory=dict)
    replay_errors: list[str] = field(default_factory=list)  # requests the engine could not replay

    @property
    def covered(self) -> list[Part]:
        return [part for part in self.parts if self.hits.get(part)]

    @property
    def uncovered(self) -> list[Part]:
        return [part for part in self.parts if not self.hits.get(part)]

    def percent(self, kind: str | None = None) -> float:
        parts = [p for p in self.parts if kind is None or p.kind == kind]
        if not parts:
            return 100.0
        return 100.0 * sum(1 for p in parts if self.hits.get(p)) / len(parts)

    def to_json(self) -> dict[str, Any]:
        by_kind = {}
        for kind in KINDS:
            parts = [p for p in self.parts if p.kind == kind]
            if parts:
                by_kind[kind] = {"total": len(parts), "covered": sum(1 for p in parts if self.hits.get(p)),
                                 "percent": round(self.percent(kind), 1)}
        return {
            "percent": round(self.percent(), 1),
            "total": len(self.parts),
            "covered": len(self.covered),
            "by_kind": by_kind,
            "uncovered": [{"kind": p.kind, "source": p.source, "what": p.detail} for p in self.uncovered],
            "replay_errors": self.replay_errors[:20],
        }


def _steps(steps: Iterable[Any], where: str, anchor: str) -> Iterator[Part]:
    for step in steps:
        if step.source is None:
            continue
        if step.kind == "if":
            yield Part("if", step.source, f"if (...) taken, in {where}", anchor)
            yield Part("if", step.source + "#not-taken", f"if (...) not taken, in {where}", anchor)
            yield from _steps(step.steps, where, step.source)  # reached through the if, taken
        elif step.kind in ("rewrite", "return", "set", "break"):
            yield Part(step.kind, step.source, f"{step.kind} in {where}", anchor)


# How nginx spells each kind of location match.
_MODIFIERS = {"exact": "=", "regex": "~", "regex_caseless": "~*", "prefix_priority": "^~"}


def _locations(locations: Iterable[Any], anchor: str) -> Iterator[Part]:
    for location in locations:
        modifier = _MODIFIERS.get(location.match, "")
        name = f"location {modifier + ' ' if modifier else ''}{location.path}"
        here = location.source or anchor
        if location.source is not None:
            yield Part("location", location.source, name, anchor)
        yield from _steps(location.rewrite, name, here)
        yield from _locations(location.locations, here)


def parts_of(config: Any) -> list[Part]:
    """Every countable part of a newproxy config, in config order."""
    parts: list[Part] = []
    for server in config.servers:
        name = f"server {' '.join(n for n in server.server_names if n) or '(no name)'}"
        anchor = server.source or ""
        if server.source is not None:
            parts.append(Part("server", server.source, name))
        parts.extend(_steps(server.rewrite, name, anchor))
        parts.extend(_locations(server.locations, anchor))
    for http_map in config.variables:
        if http_map.kind != "map":
            continue
        for entry in http_map.entries:
            if entry.source is not None:
                key = {"regex": "~", "regex_caseless": "~*"}.get(entry.kind, "") + entry.key
                parts.append(Part("map", entry.source, f"map ${http_map.variable} entry {key!r}"))
        if http_map.source is not None:
            parts.append(Part("map", http_map.source + "#default", f"map ${http_map.variable} default"))
    seen: set[tuple[str, str]] = set()
    unique = []
    for part in parts:  # an if's steps are listed once even when shared by nested blocks
        if (part.kind, part.source) not in seen:
            seen.add((part.kind, part.source))
            unique.append(part)
    return unique


def _local_addr(listen: str) -> tuple[str, int]:
    """The address a request arrives on, for a logical listen name ("*:80", "[::]:8080", "127.0.0.1:81")."""
    host, _, port = listen.rpartition(":")
    host = {"*": "127.0.0.1", "[::]": "::1", "": "127.0.0.1"}.get(host, host.strip("[]"))
    return host, int(port)


class Replayer:
    """newproxy's engine on the translation of ``config``, traced: which parts one request goes through."""

    def __init__(self, config: NginxConfig) -> None:
        from newproxy.engine import trace
        from newproxy.engine.engine import Engine
        from translator import translate

        translated = translate(config).config
        self.parts = parts_of(translated)
        self._by_key = {(p.kind, p.source): p for p in self.parts}
        self._current: set[Part] = set()
        self.errors: list[str] = []
        previous = trace.tracer
        trace.tracer = self._record
        try:
            self._engine = Engine(translated)  # maps compile traced while the tracer is set
        finally:
            trace.tracer = previous
        self._engine.memo = None  # every request takes the phases: a remembered answer traces nothing

    def _record(self, kind: str, source: str | None, outcome: object) -> None:
        if source is None or kind == "rewrite" and not outcome:
            return  # a rewrite whose regex did not match has not been exercised
        if kind == "if" and not outcome:
            source += "#not-taken"
        elif kind == "map":
            source = outcome if isinstance(outcome, str) else source + "#default"
        part = self._by_key.get((kind, source))
        if part is not None:
            self._current.add(part)

    def trace(self, request: Request) -> set[Part]:
        """The parts ``request`` goes through (empty for a unix-socket listen, or a request the engine
        could not replay, noted in ``errors``)."""
        from newproxy.engine import trace
        from newproxy.engine.types import Request as EngineRequest

        if request.listen.startswith("unix:"):
            return set()
        engine_request = EngineRequest(
            method=request.method.encode("latin-1"),
            target=request.target.encode("latin-1"),
            version=request.version.encode("latin-1"),
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in request.headers],
            body=b"",
            client_addr=(request.source or "127.0.0.1", 40000),
            local_addr=_local_addr(request.listen),
        )
        self._current = set()
        previous = trace.tracer
        trace.tracer = self._record
        try:
            answer = self._engine.handle(engine_request)
        except Exception as exc:  # noqa: BLE001 - coverage must not fail a run the targets answered
            self.errors.append(f"{request.method} {request.target}: {type(exc).__name__}: {exc}")
            return set()
        finally:
            trace.tracer = previous
        fd = getattr(answer, "fd", -1)
        if isinstance(fd, int) and fd >= 0:
            os.close(fd)  # a file answer owns an open file; nothing is sent here
        return self._current


def measure(config: NginxConfig, requests: Iterable[Request]) -> Coverage:
    """Replay ``requests`` through newproxy's engine on the translation of ``config`` and count the
    parts each went through."""
    replayer = Replayer(config)
    coverage = Coverage(replayer.parts, {})
    for request in requests:
        for part in replayer.trace(request):
            coverage.hits[part] = coverage.hits.get(part, 0) + 1
    coverage.replay_errors = replayer.errors
    return coverage
