"""The compiled hot path: mypyc builds of the HTTP/1 modules, used only when they match the sources.

``newproxy/native_build.py`` compiles the modules of :data:`COMPILED` with mypyc into
``newproxy/_native/`` and writes a manifest holding a digest of every ``.py`` file of the package.
At import, :func:`install` puts a finder first on ``sys.meta_path`` that loads those extension
modules instead of their sources, but only when the digest still matches: a compiled module was
checked against the types of the modules it calls, so an edit anywhere in the package (not only in
a compiled file) makes the whole build stale, and newproxy then runs interpreted, as it would with
no build at all. The sources never sit beside a ``.so`` of the same name, so a stale build can
never shadow an edited file.

``NEWPROXY_NATIVE=0`` in the environment forces the interpreted path (the suite runs part of
itself that way, so both stay tested). :data:`STATUS` says which path this process took and why;
``newproxy -V`` and the benchmarks print it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

# The modules a proxied HTTP/1 request runs through (benchmarks/h1_micro.py): the front end, the engine and
# the upstream client in the order a request meets them, then the engine's per-request objects, its
# lookups and the compiled config they read, then what every request calls once or twice (the timer
# wheel, the counters, the Date line, the static memo's check): from compiled code, a call into an
# interpreted function costs ~1,000 instructions. newproxy/engine/peer.py stays out on purpose (its docstring).
COMPILED = (
    "newproxy.http.h1parse",
    "newproxy.http.h1",
    "newproxy.engine.engine",
    "newproxy.engine.variables",
    "newproxy.engine.proxy",
    "newproxy.http.exchange_core",
    "newproxy.http.upstream",
    "newproxy.http.authrequest",  # its AuthExchange subclasses upstream's Exchange
    "newproxy.http.outbox",
    "newproxy.http.keepalive",
    "newproxy.engine.types",
    "newproxy.engine.context",
    "newproxy.engine.locations",
    "newproxy.engine.servers",
    "newproxy.engine.uri",
    "newproxy.engine.upstreams",
    "newproxy.engine.compiled",
    "newproxy.http.timerwheel",
    "newproxy.stats",
    "newproxy.engine.responses",
    "newproxy.engine.memo",
)
# Checked by the build's mypy with them, not compiled: interpreted subclasses of compiled classes
# (GrpcExchange of ExchangeCore), whose overrides compiled callers check at run time.
CHECKED_ONLY = ("newproxy.http.grpc_upstream",)
GROUP = "newproxy_native"  # mypyc's shared library is the top-level module GROUP + "__mypyc"
PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_DIR = PACKAGE_DIR / "_native"
MANIFEST = NATIVE_DIR / "manifest.json"

STATUS = "interpreted: not installed yet"
# A checkout builds with make; an installed package (pip) with the module itself.
_BUILD_HINT: Final = "run `make native`, or `python -m newproxy.native_build` where newproxy is installed"


def source_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over every ``.py`` file of the package, by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if relative.parts[0].startswith("_native"):  # the build (and one being staged: native_build.py)
            continue
        digest.update(str(relative).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def build_tag() -> str:
    """The interpreter an extension module is built for, and its file suffix."""
    return sys.implementation.cache_tag + "/" + importlib.machinery.EXTENSION_SUFFIXES[0]


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and mypyc's shared library) by full name."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def _files_of(manifest: dict[str, object]) -> dict[str, Path] | str:
    """The manifest's module files, or why they cannot be used."""
    if manifest.get("soabi") != build_tag():
        return "built for another Python"
    modules = manifest.get("modules")
    if not isinstance(modules, dict) or sorted(modules) != sorted((*COMPILED, GROUP + "__mypyc")):
        return "built for another module list"
    if manifest.get("sources") != source_digest():
        return f"stale build (the sources changed since; {_BUILD_HINT})"
    files = {name: NATIVE_DIR / str(relative) for name, relative in modules.items()}
    if not all(file.is_file() for file in files.values()):
        return "incomplete build"
    return files


def install() -> None:
    """Load the compiled modules from now on, when a build matches the sources; set :data:`STATUS`."""
    global STATUS
    if any(name in sys.modules for name in COMPILED):
        STATUS = "interpreted: compiled modules imported before newproxy"
        return
    if os.environ.get("NEWPROXY_NATIVE") == "0":
        STATUS = "interpreted: NEWPROXY_NATIVE=0"
        return
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        STATUS = f"interpreted: no compiled build ({_BUILD_HINT})"
        return
    except (OSError, ValueError) as exc:
        STATUS = f"interpreted: unreadable {MANIFEST}: {exc}"
        return
    files = _files_of(manifest)
    if isinstance(files, str):
        STATUS = "interpreted: " + files
        return
    sys.meta_path.insert(0, _NativeFinder(files))
    STATUS = "compiled (mypyc)"


def is_compiled() -> bool:
    """Whether this process runs the compiled modules (imported or to be)."""
    return STATUS.startswith("compiled")
