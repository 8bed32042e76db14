"""A minimal nginx-style error log.

Only error paths write here (a refused upstream, a timeout, a bad request), so formatting cost is
paid off the hot path; a message below the configured level is dropped before it is formatted.
The line format follows nginx: ``2024/01/31 12:00:00 [error] 1234#1234: *5 message``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

LEVELS: dict[str, int] = {"debug": 8, "info": 7, "notice": 6, "warn": 5, "error": 4, "crit": 3, "alert": 2, "emerg": 1}


class ErrorLog:
    """Where runtime errors go. ``target`` is a path, ``stderr``, or ``path level`` as in nginx."""

    __slots__ = ("_pid", "_stream", "level", "path")

    def __init__(self, target: str | None = None, prefix: str | None = None) -> None:
        path, level = "stderr", "error"
        if target:
            parts = target.split()
            path = parts[0]
            if len(parts) > 1 and parts[1] in LEVELS:
                level = parts[1]
        if path not in ("stderr", "/dev/stderr") and prefix and not os.path.isabs(path):
            path = os.path.join(prefix, path)
        self.path = path
        self.level = LEVELS[level]
        self._stream: TextIO | None = None
        self._pid = os.getpid()

    def open(self) -> None:
        """Open (or reopen, on SIGUSR1) the log file. Raises OSError when it cannot be opened."""
        if self.path in ("stderr", "/dev/stderr"):
            self._stream = sys.stderr
            return
        old = self._stream
        self._stream = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept open until close()
        if old is not None and old is not sys.stderr:
            old.close()

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
        self._stream = None

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.level

    def log(self, level: str, message: str, conn_id: int = 0) -> None:
        if LEVELS[level] > self.level:
            return
        stream = self._stream or sys.stderr
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        conn = f"*{conn_id} " if conn_id else ""
        try:
            stream.write(f"{stamp} [{level}] {self._pid}#{self._pid}: {conn}{message}\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a full disk or closed stream must never take the proxy down

    def error(self, message: str, conn_id: int = 0) -> None:
        self.log("error", message, conn_id)
