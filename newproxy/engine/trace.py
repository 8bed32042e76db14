"""An optional observer of the engine's decisions, for coverage (shadow/coverage.py), off by default.

When ``tracer`` is set, the engine reports what a request went through, by the ``source``
(file:line) of the nginx directive each thing came from:
- ``("server", source, None)``: the server chosen for the request;
- ``("location", source, None)``: every location found (internal redirects find several);
- ``("rewrite", source, matched)``, ``("if", source, taken)``, ``("return", source, None)``,
  ``("set", source, None)``, ``("break", source, None)``: rewrite-phase steps as they run;
- ``("map", source, entry_source)``: a map looked up (``entry_source`` None: its default).
  Maps are compiled traced or not: set the tracer before building the ``Engine``.

Production never sets it: each hook is one global read, and maps pay nothing unless compiled traced.
"""

from __future__ import annotations

from typing import Callable

Tracer = Callable[[str, "str | None", object], None]

tracer: Tracer | None = None
