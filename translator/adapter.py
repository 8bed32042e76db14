"""The ``nginx`` config adapter newproxy finds by entry point: ``newproxy -c nginx.conf``."""

from __future__ import annotations

import os

from newproxy.config import NewproxyConfig
from nginx_parser import ConfigError, parse_config
from translator.translate import translate


def _apply_globals(config: NewproxyConfig, global_directives: str) -> None:
    """Apply the -g directives newproxy understands (pid, worker_processes, master_process); others are ignored, as for YAML."""
    for statement in global_directives.split(";"):
        words = statement.split()
        if len(words) == 2 and words[0] == "pid":
            config.pid = words[1]
        elif len(words) == 2 and words[0] == "worker_processes" and (words[1].isdigit() or words[1] == "auto"):
            config.worker_processes = int(words[1]) if words[1].isdigit() else "auto"
        elif len(words) == 2 and words[0] == "master_process" and words[1] in ("on", "off"):
            config.master_process = words[1] == "on"


def load_nginx_config(path: str, prefix: str | None = None, global_directives: str | None = None) -> NewproxyConfig:
    """Parse and translate an nginx config. Raises ConfigError (``file:line: message``)."""
    nginx = parse_config(path)
    config = translate(nginx, prefix=os.path.abspath(prefix) if prefix else None).config
    if global_directives:
        _apply_globals(config, global_directives)
    if prefix and config.pid and not config.pid.startswith("/"):
        config.pid = f"{prefix.rstrip('/')}/{config.pid}"
    return config


__all__ = ["ConfigError", "load_nginx_config"]
