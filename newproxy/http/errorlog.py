"""nginx's error log: ``error_log FILE [LEVEL]`` at main level, and at http/server/location level
for the messages about a request (``for_context``: the location's log, else the server's, else the
main one; inheritance is resolved by the translator).

Only error paths write here (a refused upstream, a timeout, a bad request, the engine's notes:
newproxy/engine/errors.py), so formatting cost is paid off the hot path; a message below the log's
level is dropped before it is formatted. The line format is nginx's:
``2024/01/31 12:00:00 [error] 1234#1234: *5 message, client: ..., server: ..., request: "...",
upstream: "...", host: "...", referrer: "..."`` (``request_context``: ngx_http_log_error_handler).

Several ``error_log`` in one block are several targets of one log (the config gives a list): as
nginx's chain of logs (ngx_log_error_core), a message goes to every target whose level admits it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from newproxy.engine.types import Request

LEVELS: dict[str, int] = {"debug": 8, "info": 7, "notice": 6, "warn": 5, "error": 4, "crit": 3, "alert": 2, "emerg": 1}

Targets = str | Sequence[str] | None  # one "FILE [LEVEL]", several (one per error_log line), or none


def targets_of(target: Targets) -> tuple[str, ...]:
    """The config's error_log value as a tuple of "FILE [LEVEL]" (a single string is one target)."""
    if target is None:
        return ()
    if isinstance(target, str):
        return (target,)
    return tuple(target)


class ErrorLog:
    """Where runtime errors go. Each target is a path, ``stderr``, or ``path level`` as in nginx; the
    first is this object's own file, the others are ``more`` logs that every message is offered to.
    ``level`` is the most verbose of them all (a message above it is dropped unformatted), ``own``
    this file's."""

    __slots__ = ("_pid", "_scoped", "_stream", "level", "more", "own", "path", "prefix")

    def __init__(self, target: Targets = None, prefix: str | None = None) -> None:
        targets = targets_of(target)
        self.more = tuple(ErrorLog(other, prefix) for other in targets[1:])
        path, level = "stderr", "error"
        if targets:
            parts = targets[0].split()
            path = parts[0]
            if len(parts) > 1 and parts[1] in LEVELS:
                level = parts[1]
        if path not in ("stderr", "/dev/stderr") and prefix and not os.path.isabs(path):
            path = os.path.join(prefix, path)
        self.path = path
        self.prefix = prefix
        self.own = LEVELS[level]
        self.level = max([self.own] + [other.level for other in self.more])
        self._stream: TextIO | None = None
        self._pid = os.getpid()
        # http/server/location error_log targets (their "FILE LEVEL" strings), opened when first written to
        self._scoped: dict[tuple[str, ...], ErrorLog] = {}

    def open(self) -> None:
        """Open (or reopen, on SIGUSR1) the log files. Raises OSError (its ``filename`` the file) when
        one cannot be opened."""
        for other in self.more:
            other.open()
        if self.path in ("stderr", "/dev/stderr"):
            self._stream = sys.stderr
            return
        old = self._stream
        # latin-1: a message's text is nginx's bytes (see _raw), one character each.
        self._stream = open(self.path, "a", buffering=1, encoding="latin-1")  # noqa: SIM115 - kept open until close()
        if old is not None and old is not sys.stderr:
            old.close()
        self._pid = os.getpid()
        for log in self._scoped.values():
            if log is not self:
                try:
                    log.open()
                except OSError:
                    pass  # it keeps writing to the file it had open

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
        self._stream = None
        for other in self.more:
            other.close()
        for log in self._scoped.values():
            if log is not self:
                log.close()
        self._scoped.clear()

    def open_scoped(self, config: object) -> None:
        """Open the http/server/location error_log files of ``config`` (a NewproxyConfig) now, as
        nginx opens them with its config: they exist from the start. One that cannot be opened is
        logged; its messages go to this log."""
        targets: list[Targets] = []

        def walk(locations: list) -> None:  # type: ignore[type-arg]
            for location in locations:
                if location.error_log is not None:
                    targets.append(location.error_log)
                walk(location.locations)

        for server in config.servers:  # type: ignore[attr-defined]
            if server.error_log is not None:
                targets.append(server.error_log)
            walk(server.locations)
        for target in targets:
            self._scoped_log(target)

    def for_context(self, ctx: object) -> ErrorLog:
        """The log for messages about a request: its location's (or server's) error_log, else this."""
        location = ctx.location  # type: ignore[attr-defined]
        where = location if location is not None else ctx.server  # type: ignore[attr-defined]
        target = where.config.error_log
        if target is None:
            return self
        return self._scoped_log(target)

    def _scoped_log(self, target: Targets) -> ErrorLog:
        """The log of a block's error_log targets, opened on first use; if one cannot be opened, that
        is logged here and the block's messages go to this log."""
        key = targets_of(target)
        log = self._scoped.get(key)
        if log is None:
            log = ErrorLog(key, self.prefix)
            try:
                log.open()
            except OSError as exc:
                self.log("alert", f'open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})')
                log.close()
                log = self
            self._scoped[key] = log
        return log

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.level

    def log(self, level: str, message: str, conn_id: int = 0) -> None:
        number = LEVELS[level]
        if number > self.level:
            return
        for other in self.more:
            other.log(level, message, conn_id)
        if number > self.own:
            return
        stream = self._stream or sys.stderr
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        conn = f"*{conn_id} " if conn_id else ""
        line = f"{stamp} [{level}] {self._pid}#{self._pid}: {conn}{message}"
        if stream is not sys.stderr and not line.isascii():
            line = _raw(line)
        if len(line) > _MAX_LINE:
            line = line[:_MAX_LINE]
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a full disk or closed stream must never take the proxy down

    def error(self, message: str, conn_id: int = 0) -> None:
        self.log("error", message, conn_id)

    def request_errors(self, ctx: object, conn_id: int) -> None:
        """Write the messages the engine's phases noted for a request (newproxy/engine/errors.py),
        with nginx's request context; the notes are taken off the request."""
        from newproxy.engine.errors import CYCLE, NAMES

        notes = ctx.errors  # type: ignore[attr-defined]
        ctx.errors = None  # type: ignore[attr-defined]
        log = self.for_context(ctx)
        for level, message in notes:
            if level & CYCLE:
                self.log(NAMES[level & 0xFF], message)
            elif level <= log.level:
                server = ctx.server.primary_name  # type: ignore[attr-defined]
                log.log(NAMES[level], message + request_context(ctx.request, server), conn_id)  # type: ignore[attr-defined]


# ngx_log_error_core formats a line into NGX_MAX_ERROR_STR (2048) bytes, its linefeed included:
# what is longer is cut (a long quoted header, request line or URI).
_MAX_LINE = 2047


def _raw(line: str) -> str:
    """The bytes nginx writes, as latin-1 text for the log file: messages carry what peers and
    clients sent decoded as latin-1 (written back byte for byte); text that cannot be latin-1 (a
    file name from the config) is written as UTF-8, as nginx writes the config's bytes."""
    try:
        line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8").decode("latin-1")
    return line


def error_reason(err: OSError | None) -> str:
    """An error's part of nginx's line: `` (104: Connection reset by peer)``; "" for none."""
    return f" ({err.errno}: {err.strerror})" if err is not None and err.errno is not None else ""


def address_text(address: tuple[str, int]) -> str:
    """A listening address as nginx's log context names it (``server: 127.0.0.1:80``, ``[::1]:80``)."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_context(req: Request, server: str, upstream: str = "", subrequest: str | None = None) -> str:
    """ngx_http_log_error_handler's tail: ``, client: A, server: S, request: "LINE"[, subrequest:
    "URI"][, upstream: "U"], host: "H"[, referrer: "R"]``; ``subrequest``: the URI of the
    subrequest (auth_request's) the line is about."""
    host = referer = None
    for name, value in req.headers:
        lower = name.lower()
        if lower == b"host" and host is None:
            host = value
        elif lower == b"referer" and referer is None:
            referer = value
    out = (f', client: {req.client_addr[0]}, server: {server}, request: "{req.method.decode("latin-1")} '
           f'{req.target.decode("latin-1")} HTTP/{req.version.decode("latin-1")}"')
    if subrequest is not None:
        out += f', subrequest: "{subrequest}"'
    if upstream:
        out += f', upstream: "{upstream}"'
    if host is not None:
        out += f', host: "{host.decode("latin-1")}"'
    if referer is not None:
        out += f', referrer: "{referer.decode("latin-1")}"'
    return out


def log_for_request(log: ErrorLog, req: Request | None, level: str, message: str, conn_id: int) -> None:
    """A message about a request still being read (its body): in its location's error_log (the one
    found at its head), with nginx's request context."""
    ctx = req.context if req is not None else None
    if req is None or ctx is None:
        log.log(level, message, conn_id)
        return
    log.for_context(ctx).log(level, message + request_context(req, ctx.server.primary_name), conn_id)  # type: ignore[attr-defined]
