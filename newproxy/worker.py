"""A worker process: the event loop that serves the listening sockets its master opened.

Forked by the master (newproxy/process.py) with the engine already built, so a worker starts in
milliseconds and shares the compiled config pages with its siblings (copy on write). Signals, as an
nginx worker takes them from its master:

- QUIT: graceful stop. Stop accepting, close idle keep-alive connections now, let requests in flight
  finish (their responses say ``Connection: close``), bounded by ``worker_shutdown_timeout``.
- WINCH (newproxy's own, sent by the master on reload): the same, except that idle keep-alive
  connections get ``DRAIN_IDLE_GRACE`` to send one more request (answered with ``Connection:
  close``) before they are closed. nginx closes them at once, which resets a request the client
  sent on the connection just as it closed; the grace makes a reload lose no request of a busy
  client. A connection idle for the whole grace is closed, as nginx would.
- TERM, INT: fast stop (every connection is aborted). USR1: reopen the error and access logs.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import random
import resource
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.http.errorlog import ErrorLog

if TYPE_CHECKING:
    import socket

    from newproxy.engine.engine import Engine
    from newproxy.http.server import Server

DRAIN_IDLE_GRACE = 1.0  # seconds an idle keep-alive connection may still send a request on reload
PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_FATAL = 2  # the worker cannot start (a certificate or log it cannot open): do not respawn it
WORKER_SIGNALS = (signal.SIGQUIT, signal.SIGWINCH, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is forked with: one generation's engine and listening sockets."""

    engine: Engine
    listeners: list[tuple[tuple[str, int], socket.socket]]
    error_log: str | list[str] | None  # the main error_log target(s)
    prefix: str | None
    worker_connections: int
    rlimit_nofile: int | None
    shutdown_timeout: float | None


def worker_main(spec: WorkerSpec, master: int) -> int:
    """Run in the forked child until stopped; returns the exit code (the caller os._exit()s)."""
    import uvloop

    from newproxy.http.server import BindError, Server

    _die_with_master(master)
    for sig in WORKER_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # still blocked (the master's mask) until the loop handles them
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    random.seed()  # siblings must not draw the same "random" peers
    log = ErrorLog(spec.error_log, spec.prefix)
    try:
        log.open()
    except OSError as exc:
        sys.stderr.write(f'newproxy: open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})\n')
        return EXIT_FATAL
    log.open_scoped(spec.engine.config)  # http/server/location error_log files
    if spec.rlimit_nofile is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (spec.rlimit_nofile, spec.rlimit_nofile))
        except (OSError, ValueError) as exc:  # nginx logs it and goes on with the limit it has
            log.log("alert", f"setrlimit(RLIMIT_NOFILE, {spec.rlimit_nofile}) failed ({exc})")
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(spec.engine, loop, log)
    server.max_connections = spec.worker_connections
    try:
        server.adopt(spec.listeners)
    except BindError as exc:
        sys.stderr.write(f"newproxy: {exc}\n")
        log.log("emerg", str(exc))
        return EXIT_FATAL
    gc.collect()
    gc.freeze()
    try:
        return loop.run_until_complete(_serve(server, spec, log))
    finally:
        for sig in WORKER_SIGNALS:
            loop.remove_signal_handler(sig)
        close_loop(loop)
        log.close()


async def _serve(server: Server, spec: WorkerSpec, log: ErrorLog) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def request_stop(how: str) -> None:
        if not stop.done():
            stop.set_result(how)
        elif how == "fast":
            server.terminate()  # a TERM during a graceful stop: stop now

    def reopen() -> None:
        try:
            log.open()
        except OSError as exc:
            sys.stderr.write(f'newproxy: open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})\n')
        server.reopen_logs()

    # Installed from inside the running loop, then unblocked: a signal the master sent while the
    # worker was starting has waited, blocked, and is handled now.
    loop.add_signal_handler(signal.SIGQUIT, request_stop, "quit")
    loop.add_signal_handler(signal.SIGWINCH, request_stop, "drain")
    loop.add_signal_handler(signal.SIGTERM, request_stop, "fast")
    loop.add_signal_handler(signal.SIGINT, request_stop, "fast")
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the master reloads; a worker has nothing to do
    await server.start()
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # and SIGCHLD, which the master's mask also held
    how = await stop
    if how == "fast":
        server.terminate()
        return 0
    log.log("notice", "gracefully shutting down")
    await drain(server, DRAIN_IDLE_GRACE if how == "drain" else 0.0, spec.shutdown_timeout, log)
    return 0


async def drain(server: Server, idle_grace: float, timeout: float | None, log: ErrorLog, poll: float = 0.02) -> None:
    """Stop accepting and let the connections finish, then close what is left at ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    server.stop_accepting()
    server.ctx.closing = True  # every request from now on is answered with "Connection: close"
    server.ctx.draining = idle_grace > 0
    if idle_grace > 0:
        await _wait_closed(server, loop.time() + idle_grace if deadline is None else min(deadline, loop.time() + idle_grace), poll)
    for conn in list(server.connections):
        conn.shutdown()  # idle: closed now; busy: closed after the response in flight
    server.upstream.close_idle()
    await _wait_closed(server, deadline, poll)
    if server.connections:
        log.log("notice", f"worker_shutdown_timeout: closing {len(server.connections)} connection(s) still open")
        server.terminate()
        return
    server.parking.close_all()
    server.upstream.close_idle()
    server.close_logs()


async def _wait_closed(server: Server, deadline: float | None, poll: float) -> None:
    loop = asyncio.get_running_loop()
    while (server.connections or server.quic_open()) and (deadline is None or loop.time() < deadline):
        await asyncio.sleep(poll)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left (connect tasks of aborted exchanges) and close the loop quietly."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(asyncio.sleep(0))  # let aborted transports report connection_lost
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _die_with_master(master: int) -> None:
    """A worker gets TERM (a fast stop) when its master dies, even by SIGKILL: an orphaned worker
    would hold the ports with nobody to reload or stop it. (nginx's workers outlive a killed master.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the master's stop still reaches the workers
    if os.getppid() != master:  # the master died before prctl: it cannot deliver it any more
        os.kill(os.getpid(), signal.SIGTERM)


def child_exit(code: int) -> None:
    """Leave a forked child without running the parent's atexit handlers or finally blocks."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
