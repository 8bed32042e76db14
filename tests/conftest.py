"""The suite runs in several processes (pytest-xdist, Makefile): each picks its servers' ports from a
range of its own (shadow.runner.free_ports), so that two processes never pick the same port before
one of them binds it. Ports stay below the kernel's ephemeral range either way."""

from __future__ import annotations

import os

from shadow.runner import PORTS_VARIABLE

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... (unset without xdist)
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _low = 10000 + 4000 * (int(_WORKER[2:]) % 5)
    os.environ[PORTS_VARIABLE] = f"{_low}-{_low + 3999}"
