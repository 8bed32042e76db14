"""The compiled hot path (newproxy/native.py): used only while it matches every source, never
shadowing an edited file, and switched off by NEWPROXY_NATIVE=0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import newproxy
from newproxy import native

_PROBE = "import newproxy.native as n, newproxy.http.h1 as h1; print(n.STATUS); print(h1.__file__)"


def _probe(package_parent: Path, script: str = _PROBE, **env: str) -> list[str]:
    """What ``script`` prints (by default STATUS and h1's file), in a fresh interpreter importing
    newproxy from ``package_parent``."""
    environment = {k: v for k, v in os.environ.items() if k != "NEWPROXY_NATIVE"}
    environment.update(env, PYTHONPATH=str(package_parent))
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=60, cwd=package_parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_digest_follows_every_source_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "_native").mkdir()
    first = native.source_digest(tmp_path)
    (tmp_path / "_native" / "c.py").write_text("ignored = True\n")  # the build's own tree is not a source
    (tmp_path / "_native.new").mkdir()
    (tmp_path / "_native.new" / "d.py").write_text("ignored = True\n")  # nor one being staged
    assert native.source_digest(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert native.source_digest(tmp_path) != first
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    assert native.source_digest(tmp_path) == first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "b2.py")
    assert native.source_digest(tmp_path) != first


def test_forced_interpreted() -> None:
    status, file = _probe(Path(newproxy.__file__).parent.parent, NEWPROXY_NATIVE="0")
    assert status == "interpreted: NEWPROXY_NATIVE=0"
    assert file.endswith("newproxy/http/h1.py")


def test_this_checkout_runs_the_build_it_has() -> None:
    """With a build matching the sources, the compiled modules are the ones imported; without one,
    the sources, and STATUS says why. CI builds first (.ci/run) and insists on the compiled path."""
    status, file = _probe(Path(newproxy.__file__).parent.parent)
    if native.MANIFEST.is_file() and json.loads(native.MANIFEST.read_text())["sources"] == native.source_digest():
        assert status == "compiled (mypyc)"
        assert file.startswith(str(native.NATIVE_DIR)) and file.endswith(".so")
    else:
        assert status.startswith("interpreted: ")
        assert file.endswith("newproxy/http/h1.py")
    if os.environ.get("NEWPROXY_EXPECT_NATIVE") == "1":
        assert status == "compiled (mypyc)", status


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    """A copy of the package with a build manifest matching it, then one source edited: the
    build is left alone and the edited file is what runs. (The build's files are stand-ins: a
    status of "compiled" is all the first probe asks, and the second must not load them.)"""
    package = tmp_path / "newproxy"
    shutil.copytree(Path(newproxy.__file__).parent, package,
                    ignore=shutil.ignore_patterns("_native", "__pycache__"))
    native_dir = package / "_native"
    suffix = ".cpython-stand-in.so"
    modules = {name: name.replace(".", "/") + suffix for name in native.COMPILED}
    modules[native.GROUP + "__mypyc"] = native.GROUP + "__mypyc" + suffix
    for relative in modules.values():
        (native_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (native_dir / relative).write_bytes(b"not a library")
    manifest = {"sources": native.source_digest(package), "modules": modules,
                "soabi": native.build_tag()}
    (native_dir / "manifest.json").write_text(json.dumps(manifest))
    assert _probe(tmp_path, "import newproxy.native as n; print(n.STATUS)") == ["compiled (mypyc)"]

    h1 = package / "http" / "h1.py"
    h1.write_text(h1.read_text() + "\nEDITED = True\n")
    status, file = _probe(tmp_path)
    assert status == "interpreted: stale build (the sources changed since; run `make native`, or " \
                     "`python -m newproxy.native_build` where newproxy is installed)"
    assert file == str(h1)


def test_a_build_for_another_python_is_not_used(tmp_path: Path) -> None:
    manifest = {"sources": native.source_digest(), "soabi": "cpython-27/.so",
                "modules": {name: "x.so" for name in (*native.COMPILED, native.GROUP + "__mypyc")}}
    assert native._files_of(manifest) == "built for another Python"
    manifest["soabi"] = native.build_tag()
    manifest["modules"] = {"newproxy.http.h1": "x.so"}
    assert native._files_of(manifest) == "built for another module list"


def test_the_build_reads_a_copy_of_the_package_alone(tmp_path: Path) -> None:
    """mypy reads the package from a copy holding it alone: where newproxy is installed, beside
    every other package of site-packages, it would refuse to build. The copy is exactly the
    sources the manifest's digest covers (no build, no bytecode)."""
    from newproxy.native_build import package_sources

    src = package_sources(tmp_path)
    assert [path.name for path in src.iterdir()] == ["newproxy"]
    copy = src / "newproxy"
    assert (copy / "native_build.py").is_file() and not (copy / "_native").exists()
    assert not list(copy.rglob("*.so")) and not list(copy.rglob("__pycache__"))
    assert native.source_digest(copy) == native.source_digest()
