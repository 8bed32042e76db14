"""Main- and events-level directives of nginx's process model, for newproxy/process.py.

``worker_processes``, ``master_process``, ``worker_rlimit_nofile``, ``worker_shutdown_timeout`` (main)
and ``worker_connections`` (events). The parser has checked their argument counts; values are
checked here as nginx checks them, with ``file:line`` errors.
"""

from __future__ import annotations

from newproxy.config import NewproxyConfig
from nginx_parser import ConfigError, Directive, NginxConfig, parse_time
from nginx_parser.ir import iter_spliced


def _number(directive: Directive) -> int:
    value = directive.args[0]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f'invalid value "{value}" in "{directive.name}" directive', directive.file, directive.error_line)
    return int(value)


def apply_process_settings(config: NewproxyConfig, nginx: NginxConfig) -> None:
    """Set the process settings on ``config`` from the last occurrence of each directive."""
    main = {d.name: d for d in nginx.main_directives()}
    events = [d for d in iter_spliced(nginx.tree) if d.name == "events"]
    for block in events:
        for directive in block.children():
            if directive.name == "worker_connections":
                main["worker_connections"] = directive
    if (workers := main.get("worker_processes")) is not None:
        config.worker_processes = "auto" if workers.args[0] == "auto" else _number(workers)
    if (master := main.get("master_process")) is not None:
        config.master_process = master.args[0] == "on"
    if (connections := main.get("worker_connections")) is not None:
        config.worker_connections = _number(connections)
    if (nofile := main.get("worker_rlimit_nofile")) is not None:
        config.worker_rlimit_nofile = _number(nofile)
    if (timeout := main.get("worker_shutdown_timeout")) is not None:
        seconds = parse_time(timeout.args[0], timeout)
        config.worker_shutdown_timeout = seconds or None
