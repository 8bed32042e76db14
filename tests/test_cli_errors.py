"""Bad configs get `file:line: what is wrong`, exit code 1 and no traceback, from every command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = "events {}\nhttp {\n    server {\n        listen 80\n    }\n"  # missing ";" and "}"
MISSING_INCLUDE = "events {}\nhttp {\n    include conf.d/nothere.conf;\n}\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("text", "line"), [(BROKEN, 5), (MISSING_INCLUDE, 3)])
@pytest.mark.parametrize("command", ["convert", "shadow", "newproxy-t"])
def test_config_errors_are_reported_with_file_and_line(tmp_path: Path, text: str, line: int, command: str) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    if command == "newproxy-t":
        result = run("newproxy", "-t", "-c", str(conf))
    else:
        result = run("shadow.cli", command, str(conf))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{conf}:{line}:" in output, output
    assert "Traceback" not in output


def test_nginx_agrees_on_the_line_of_the_error(tmp_path: Path) -> None:
    """The oracle: nginx -t reports the same file:line for the broken config."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(BROKEN)
    result = subprocess.run(["nginx", "-t", "-c", str(conf), "-e", str(tmp_path / "error.log")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{conf}:5" in result.stderr
