"""Build the compiled hot path (``python -m newproxy.native_build``; ``make native`` runs it; in an
installed newproxy, ``pip install 'nginx-migrate[native]'`` first).

Compiles :data:`newproxy.native.COMPILED` with mypyc into a scratch directory, then replaces
``newproxy/_native/`` with the result and its manifest (see ``newproxy/native.py``). The type
check is mypy's, strict about the compiled modules and the interpreted subclasses of their classes
(:data:`~newproxy.native.CHECKED_ONLY`): a compiled module checks its annotations at run time, so
one that lies would become a TypeError on some request instead of a wrong guess.
Exit status 0 on success; on failure (no C compiler, no Python headers, a type error) it says why,
removes any older build, and exits 1: newproxy then runs interpreted.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

from newproxy.native import CHECKED_ONLY, COMPILED, GROUP, MANIFEST, NATIVE_DIR, PACKAGE_DIR, build_tag, source_digest

ROOT = PACKAGE_DIR.parent

_SETUP = textwrap.dedent("""\
    import sys
    from setuptools import setup
    from mypyc.build import mypycify

    compiled = {compiled!r}
    setup(name="newproxy-native", ext_modules=mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *compiled, *{checked_only!r}],
        only_compile_paths=compiled, opt_level="3", group_name={group!r}, target_dir={target!r}))
""")


def _paths(modules: tuple[str, ...]) -> list[str]:
    return [str(Path(*name.split(".")).with_suffix(".py")) for name in modules]


def _missing_prerequisite() -> str | None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]  # what setuptools will run
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}; install gcc)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python headers in {include} (install python3-dev)"
    if importlib.util.find_spec("mypyc") is None:
        return "mypy is not installed (pip install -e '.[native]')"
    return None


def package_sources(scratch_dir: Path) -> Path:
    """A copy of the package's sources alone, under ``scratch_dir / "src"`` (returned), for mypy to
    read: from where the package is installed (site-packages) it would take every other module there
    for the project's own and refuse to build ("mypy_extensions.py shadows library module");
    third-party imports still resolve as installed."""
    src = scratch_dir / "src"
    shutil.copytree(PACKAGE_DIR, src / PACKAGE_DIR.name,
                    ignore=shutil.ignore_patterns("_native*", "__pycache__", "*.so", "*.pyc"))
    return src


def build() -> str | None:
    """Compile into ``newproxy/_native/``; None on success, else why it failed."""
    missing = _missing_prerequisite()
    if missing is not None:
        return missing
    sources = source_digest()
    with tempfile.TemporaryDirectory(prefix="newproxy-native-") as scratch:
        scratch_dir = Path(scratch)
        src = package_sources(scratch_dir)
        setup_py = scratch_dir / "setup.py"
        setup_py.write_text(_SETUP.format(compiled=_paths(COMPILED), checked_only=_paths(CHECKED_ONLY), group=GROUP,
                                          target=str(scratch_dir / "c")))
        out = scratch_dir / "out"
        command = [sys.executable, str(setup_py), "build_ext", "--build-lib", str(out),
                   "--build-temp", str(scratch_dir / "tmp")]
        env = dict(os.environ, NEWPROXY_NATIVE="0", PYTHONPATH=str(src))
        try:  # (about a minute on a 2-core machine)
            done = subprocess.run(command, cwd=src, env=env, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            return "mypyc ran for 30 minutes without finishing"
        if done.returncode != 0:
            return "mypyc failed:\n" + (done.stdout[-4000:] + done.stderr[-4000:]).strip()
        if source_digest() != sources:
            return "the sources changed while they were being compiled"
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        modules = {name: str(Path(*name.split(".")).with_suffix(suffix)) for name in COMPILED}
        modules[GROUP + "__mypyc"] = GROUP + "__mypyc" + suffix
        for relative in modules.values():
            if not (out / relative).is_file():
                return f"mypyc made no {relative}"
        manifest = {"sources": sources, "modules": modules, "soabi": build_tag()}
        (out / MANIFEST.name).write_text(json.dumps(manifest, indent=1) + "\n")
        # Whole or not at all: a newproxy starting meanwhile finds the old build, none, or the new.
        staged = NATIVE_DIR.with_name(NATIVE_DIR.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(out, staged, ignore=shutil.ignore_patterns("*.c", "*.o"))
        shutil.rmtree(NATIVE_DIR, ignore_errors=True)
        staged.rename(NATIVE_DIR)
    return None


def main() -> int:
    failure = build()
    if failure is None:
        print(f"newproxy: compiled {len(COMPILED)} modules into {NATIVE_DIR.relative_to(ROOT)}")
        return 0
    shutil.rmtree(NATIVE_DIR, ignore_errors=True)
    print(f"newproxy: no compiled build, newproxy runs interpreted: {failure}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
