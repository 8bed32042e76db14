"""Headless Chromium (Debian's package, installed by `make system-deps`) for tests of HTML reports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium_dom(page: Path) -> tuple[str, list[str]]:
    """The DOM headless Chromium rendered and the console messages it logged."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--user-data-dir=" + str(page.parent / "chromium-profile"), "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console
