"""Error-log messages the engine's phases leave for the IO layer.

nginx's handlers write ``ngx_log_error(level, r->connection->log, ...)`` lines as they decide
(access forbidden by rule, open() failed, limiting requests...). The engine has no log and no
connection: a phase notes the message on the request (``note``), and the IO layer writes the
notes with the connection number and nginx's request context (``client: ..., server: ...,
request: "...", host: "..."``, newproxy/http/errorlog.py ``ErrorLog.request_errors``) when it
answers. Only error paths note anything: a request that succeeds costs nothing here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext

# nginx's NGX_LOG_* numbers: a message is written when its number is at most the log's level.
EMERG, ALERT, CRIT, ERR, WARN, NOTICE, INFO, DEBUG = range(1, 9)
CYCLE = 0x100  # or-ed with the level: a line of the main log without the request (ngx_cycle->log)
NAMES = {EMERG: "emerg", ALERT: "alert", CRIT: "crit", ERR: "error", WARN: "warn", NOTICE: "notice", INFO: "info",
         DEBUG: "debug"}


def note(ctx: RequestContext, level: int, message: str) -> None:
    errors = ctx.errors
    if errors is None:
        ctx.errors = [(level, message)]
    else:
        errors.append((level, message))


def os_error(exc: OSError) -> str:
    """``(2: No such file or directory)``, as ngx_log_error appends an errno."""
    return f"({exc.errno}: {os.strerror(exc.errno) if exc.errno else exc})"
