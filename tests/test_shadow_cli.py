"""``nginx-migrate``'s exit codes and messages that need no running proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadow.cli import main

CONF = Path(__file__).parent / "data" / "shadow" / "small.conf"


def test_config_error_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp {\n    server {\n        listen 80;\n")
    assert main(["shadow", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:") and "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_unknown_refused_upstream_is_a_harness_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shadow", str(CONF), "--against", "nginx", "--refuse", "nope:1"]) == 2
    assert "nope:1" in capsys.readouterr().err


def test_convert_writes_yaml(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    assert main(["convert", str(CONF), "-o", str(out)]) == 0
    assert out.read_text().startswith("version:")
