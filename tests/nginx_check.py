"""The same config to ``nginx -t`` and to the translator: both accept it, or both refuse it with the
same message at the same line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from nginx_parser import ConfigError, parse_config
from translator import translate

_EMERG = re.compile(r"\[emerg\] (?:\d+#\d+: )?(?P<message>.*?) in (?P<file>\S+):(?P<line>\d+)$", re.MULTILINE)


def assert_same_verdict_as_nginx_t(conf: Path, prefix: Path, our_line: int | None = None) -> None:
    """``our_line``: the line the translator names instead of nginx's, for the checks nginx runs when
    it merges a block (it names where the http block ends; the translator, the directive at fault)."""
    run = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(prefix), "-c", str(conf), "-e",
                          str(prefix / "error.log"), "-g", f"pid {prefix}/nginx.pid; user root;"],
                         check=False, capture_output=True, text=True, timeout=20)
    try:
        translate(parse_config(str(conf)))
        ours = None
    except ConfigError as exc:
        ours = str(exc)
    if run.returncode == 0:
        assert ours is None, ours
    else:
        emerg = _EMERG.search(run.stderr)
        assert emerg is not None, run.stderr
        line = emerg["line"] if our_line is None else our_line
        assert ours == f"{conf}:{line}: {emerg['message']}", (ours, run.stderr)
