"""Plugin stubs for legacy Lua (``*_by_lua``, ``*_by_lua_block``, ``*_by_lua_file``).

newproxy does not run Lua and has no plugin loader yet, so each stub is only a starting point for a
port: it carries the Lua source in its docstring and the newproxy phase the directive maps to, and
its hook raises ``NotImplementedError``. The occurrence stays ``unsupported`` in the report, which
links to the stub.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from translator.report.model import Entry, Report

PLUGIN_DIR = "plugins"


def lua_source(entry: Entry) -> str:
    """The Lua code of a directive: ``set_by_lua*`` has the variable first, the others the code."""
    args = entry.args
    index = 1 if entry.directive.startswith("set_by_lua") else 0
    code = args[index] if len(args) > index else ""
    if entry.directive.endswith("_by_lua_file"):
        return f"-- the Lua code is in the file {code} (not copied here)"
    return textwrap.dedent(code.strip("\n")).rstrip()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "root"


def stub_path(entry: Entry, report: Report) -> str:
    """``plugins/<server>_<location>_<line>.py``, relative to the output directory."""
    units = {unit.key: unit for unit in report.units}
    server = "http"
    if entry.server is not None:
        server = _slug(units[entry.server].context.rsplit(" > ", 1)[-1].removeprefix("server"))
    location = "server"
    if entry.location is not None:
        location = _slug(units[entry.location].label.rsplit(" > ", 1)[-1].removeprefix("location"))
    return f"{PLUGIN_DIR}/{server}_{location}_{entry.line}.py"


def stub_text(entry: Entry) -> str:
    source = lua_source(entry).replace('"""', '\\"\\"\\"')
    body = textwrap.indent(source, "    ") if source else "    (empty)"
    phase = entry.phase or "unknown"
    return f'''r"""NOT IMPLEMENTED: a port of the Lua code at {entry.where} ({entry.directive}) to newproxy.

nginx directive: {entry.directive} in {entry.context}
newproxy phase:  {phase}

Nothing here runs: newproxy does not execute Lua and does not load plugins yet. Port the Lua below to
Python in ``handle`` before moving this location off nginx; until then keep it on nginx.

Lua source:

{body}
"""

from __future__ import annotations

PHASE = {phase!r}
SOURCE = {entry.where!r}
DIRECTIVE = {entry.directive!r}


def handle(request: object) -> None:
    """The {phase} hook for this location. Not implemented: it refuses to run."""
    raise NotImplementedError("not implemented: port this Lua ({entry.where} {entry.directive}) to Python")
'''


def write_stubs(report: Report, out_dir: str | Path) -> list[Path]:
    """Write one stub per Lua directive under ``out_dir/plugins`` and link each entry to its stub."""
    written: list[Path] = []
    used: set[str] = set()
    for entry in report.entries:
        if entry.phase is None:
            continue
        relative = stub_path(entry, report)
        stem, n = relative.removesuffix(".py"), 2
        while relative in used:  # two Lua directives on one line
            relative, n = f"{stem}_{n}.py", n + 1
        used.add(relative)
        path = Path(out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(stub_text(entry))
        entry.stub = relative
        entry.reason = f"{entry.reason}; Lua not ported: plugin stub {relative} (phase {entry.phase})"
        written.append(path)
    return written
