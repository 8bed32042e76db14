"""Access logs: the files, and the log phase of each request.

The formats and which logs apply where are compiled by the engine (newproxy/engine/logformat.py);
this module owns the file descriptors. Files are opened once, when the server starts (as nginx
opens them while reading its config), each path once however many access_log lines name it, in
append mode so that several writers never overwrite each other's lines.

Buffering (``buffer=SIZE``): lines are kept in memory and written when the next one would not fit,
when ``flush=TIME`` has passed since the first line waiting, and on shutdown — nginx's rules,
without gzip. ``reopen()`` closes and reopens every file (what USR1 asks for).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from newproxy.engine.logformat import LogRecord

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine
    from newproxy.engine.logformat import LogPlan

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class LogFile:
    """One access-log file; ``buffer`` 0 writes each line with one write()."""

    __slots__ = ("_pending", "_size", "_timer", "buffer", "fd", "flush_after", "loop", "path")

    def __init__(self, path: str, buffer: int, flush_after: float, loop: asyncio.AbstractEventLoop | None) -> None:
        self.path = path
        self.buffer = buffer
        self.flush_after = flush_after
        self.loop = loop
        self.fd = -1
        self._pending: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self.open()

    def open(self) -> None:
        self.fd = os.open(self.path, _FLAGS, 0o644)

    def write(self, line: bytes) -> None:
        if not self.buffer:
            self._write(line)
            return
        if self._size + len(line) > self.buffer:
            self.flush()
            if len(line) > self.buffer:  # nginx writes a line bigger than the buffer directly
                self._write(line)
                return
        self._pending.append(line)
        self._size += len(line)
        if self.flush_after and self._timer is None and self.loop is not None:
            self._timer = self.loop.call_later(self.flush_after, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.fd < 0:
            return
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            pass  # a full disk must not take requests down; nginx logs it to the error log and goes on

    def reopen(self) -> None:
        """USR1: write what is buffered, then start a new file at the same path (after rotation)."""
        self.flush()
        old = self.fd
        self.open()
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AccessLogs:
    """The log phase for one engine: which logs apply to a finished request, and the files."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop | None) -> None:
        self.engine = engine
        self.plan: LogPlan = engine.log_plan
        self.metrics = getattr(engine, "request_metrics", None)  # newproxy/reqmetrics.py, counted here too
        # False: made only so that the front ends record requests for $connection, $upstream_*...
        self.writes = self.plan.enabled or self.metrics is not None
        self.files: dict[str, LogFile] = {}
        # One file per path; as in nginx, a path is buffered when any access_log naming it has a
        # buffer (nginx refuses two different buffer settings for one path).
        settings: dict[str, tuple[int, float]] = {}
        for spec in self.plan.specs:
            buffer, flush = settings.get(spec.path, (0, 0.0))
            settings[spec.path] = (max(buffer, spec.buffer), max(flush, spec.flush))
        try:
            for path, (buffer, flush) in settings.items():
                self.files[path] = LogFile(path, buffer, flush, loop)
        except OSError:
            self.close()
            raise

    def record(self, conn_id: int, client_addr: tuple[str, int], local_addr: tuple[str, int]) -> LogRecord:
        return LogRecord(conn_id, client_addr, local_addr)

    def log(self, rec: LogRecord) -> None:
        """The request is over (answered, or the client went away): write its lines."""
        if not self.writes:
            return
        request = rec.request
        ctx = request.context if request is not None else None
        server = None
        if ctx is None:  # answered by the front end (400, 414...), or unparsable: nginx's default server
            ctx, server, rec.line_only = self.engine.log_context(request, rec.local_addr)
        rec.ctx = ctx  # type: ignore[assignment]
        if self.metrics is not None:
            self.metrics.observe(rec)
        specs = self.plan.for_context(ctx, server)  # type: ignore[arg-type]
        files = self.files
        for spec in specs:
            if spec.wanted(rec):
                files[spec.path].write(spec.program.render(rec))

    def flush(self) -> None:
        for file in self.files.values():
            file.flush()

    def reopen(self) -> None:
        for file in self.files.values():
            file.reopen()

    def close(self) -> None:
        for file in self.files.values():
            file.close()  # kept in the table: a late connection_lost writes nowhere, not a KeyError


def open_access_logs(engine: Engine, loop: asyncio.AbstractEventLoop | None) -> AccessLogs | None:
    """The access logs of ``engine``'s config, opened; None when it has none, no /metrics counts
    requests and no variable reads the request's record ($connection, $upstream_addr...: the front
    ends make records only when this is not None): no per-request cost."""
    if not engine.log_plan.enabled and getattr(engine, "request_metrics", None) is None \
            and not getattr(engine, "request_facts", False):
        return None
    return AccessLogs(engine, loop)
