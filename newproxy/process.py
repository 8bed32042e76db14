"""The master process: nginx's process model for newproxy.

The master binds every listening socket once and forks ``worker_processes`` workers
(newproxy/worker.py) that inherit them: all workers accept from the same kernel queue, so a
connection waiting in the queue is never lost when a worker stops (it is accepted by another one),
which SO_REUSEPORT sockets (one queue per socket) would not guarantee. The master serves no request;
it waits for signals (``sigtimedwait``, no event loop, so forking is safe) and:

- HUP: load and check the new config (an nginx.conf through the adapter). A bad one is logged at
  ``emerg`` with its ``file:line`` and the old workers keep serving. Otherwise new listen addresses
  are bound (a bind error also keeps the old config), new workers start on the sockets, old workers
  are told to drain (SIGWINCH, see newproxy/worker.py), and sockets no longer listened on are closed.
- QUIT: graceful stop (workers drain, bounded by ``worker_shutdown_timeout``); TERM, INT: fast stop
  (workers abort their connections; SIGKILL after ``KILL_AFTER``). The pid file goes when all is done.
- USR1: reopen the error log, and tell the workers to reopen theirs and the access logs.
- CHLD: a worker of the current generation that dies is restarted, with an ``alert`` line.

Shared between workers, as nginx shares them: limit_req/limit_conn zones and the peer state of
upstream groups with ``zone`` (newproxy/zones.py: the master gives limit zones shared memory and a
lock before it forks each generation, whatever its worker count, so that a reload keeps an unchanged
zone's state as nginx's does; zoned upstream peers only for more than one worker; it frees a lock a
dead worker held); the
connection counter behind $connection and the error log's *N (newproxy/connnum.py: made once, kept
over reloads, locked only while more than one worker is alive); the
stub_status and /metrics counters (newproxy/stats.py), an anonymous shared mmap
created before the first fork, one slot per worker that the master hands out at fork
(``stats.claim``) and takes back when it reaps the worker (``stats.release``).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy import connnum, reqmetrics, stats
from newproxy.http.errorlog import ErrorLog
from newproxy.http.server import BindError, open_listener
from newproxy.worker import EXIT_FATAL, WorkerSpec, child_exit, worker_main
from newproxy.zones import SharedState

if TYPE_CHECKING:
    from newproxy.config import NewproxyConfig
    from newproxy.engine.engine import Engine

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD)
KILL_AFTER = 1.0  # seconds after a fast stop's TERM before the workers left are killed, as nginx does
ListenKey = tuple[str, int, bool]  # address, port, ipv6only


def worker_count(config: NewproxyConfig) -> int:
    if config.worker_processes == "auto":
        return len(os.sched_getaffinity(0)) or 1
    return max(1, config.worker_processes)


@dataclass
class Worker:
    pid: int
    generation: int
    spec: WorkerSpec
    slot: int  # its counters in newproxy/stats.py's shared block
    lane: int = 0  # its lane in the engine's request metrics (newproxy/reqmetrics.py), kept by a respawn


class Master:
    """Owns the listening sockets and the workers of every generation still alive."""

    def __init__(self, config: NewproxyConfig, engine: Engine, log: ErrorLog, prefix: str | None,
                 error_log: str | None, reload_config: Callable[[], tuple[NewproxyConfig, Engine]]) -> None:
        self.config = config
        self.engine = engine
        self.log = log
        self.prefix = prefix
        self.error_log = error_log  # -e wins over the config's error_log, as at start
        self.reload_config = reload_config
        self.listeners: dict[ListenKey, socket.socket] = {}
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.spec: WorkerSpec | None = None
        self.stopping: str | None = None  # "graceful" or "fast" once a stop began
        self.failed = False  # a worker could not start: stop, exit 1
        self.shared = SharedState()  # zones in shared memory (newproxy/zones.py), kept over reloads
        # $connection numbers: one counter for every worker of every generation, as nginx's
        # ngx_connection_counter (newproxy/connnum.py); the workers inherit it at fork.
        self.counter = connnum.SharedCounter()
        connnum.install(self.counter)

    # -- sockets --------------------------------------------------------------------------------
    def bind(self, engine: Engine) -> dict[ListenKey, socket.socket]:
        """The sockets ``engine`` listens on: kept ones reused, new ones bound. All or nothing."""
        wanted: dict[ListenKey, socket.socket] = {}
        opened: list[socket.socket] = []
        try:
            for address, port, ipv6only in engine.listen_addresses:
                key = (address, port, ipv6only)
                sock = self.listeners.get(key)
                if sock is None:
                    sock = open_listener(address, port, ipv6only)
                    opened.append(sock)
                wanted[key] = sock
        except BindError:
            for sock in opened:
                sock.close()
            raise
        return wanted

    def close_listeners(self) -> None:
        for sock in self.listeners.values():
            sock.close()
        self.listeners = {}

    # -- workers --------------------------------------------------------------------------------
    def make_spec(self, config: NewproxyConfig, engine: Engine) -> WorkerSpec:
        return WorkerSpec(
            engine=engine,
            listeners=[((key[0], key[1]), sock) for key, sock in self.listeners.items()],
            error_log=self.error_log or config.error_log,
            prefix=self.prefix,
            worker_connections=config.worker_connections,
            rlimit_nofile=config.worker_rlimit_nofile,
            shutdown_timeout=config.worker_shutdown_timeout,
        )

    def spawn(self, spec: WorkerSpec, lane: int = 0) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        master = os.getpid()
        slot = stats.claim()  # the worker's counters in the shared block (newproxy/stats.py)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the master's code
            code = 1
            try:
                stats.own(slot)
                reqmetrics.own(lane)
                code = worker_main(spec, master)
            except BaseException as exc:  # noqa: BLE001 - a worker must exit, whatever happened
                sys.stderr.write(f"newproxy: worker process failed: {exc!r}\n")
            child_exit(code)
        self.workers[pid] = Worker(pid, self.generation, spec, slot, lane)
        self.log.log("notice", f"start worker process {pid}")

    def start_generation(self, config: NewproxyConfig, engine: Engine) -> None:
        self.generation += 1
        self.spec = self.make_spec(config, engine)
        # Limit zones always: the master keeps their state over a reload, even for one worker.
        # Upstream peers start afresh each generation, so one worker keeps them lock-free.
        self.shared.share(engine, peers=worker_count(config) > 1)
        self.shared.forget_locks([engine] + [w.spec.engine for w in self.workers.values()])
        # Before any fork: with more than one worker alive, connection numbers are taken under the lock.
        self.counter.set_users(len(self.workers) + worker_count(config))
        for lane in range(worker_count(config)):
            self.spawn(self.spec, lane)

    def signal_workers(self, sig: int, generation: int | None = None) -> None:
        for worker in list(self.workers.values()):
            if generation is None or worker.generation == generation:
                try:
                    os.kill(worker.pid, sig)
                except ProcessLookupError:
                    pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            stats.release(worker.slot)
            self.counter.set_users(len(self.workers))
            if self.counter.lock.force_unlock(pid):
                self.log.log("alert", f"shared memory zone was locked by {pid}")
            for _ in self.shared.force_unlock(pid):  # nginx: "shared memory zone ... was locked by PID"
                self.log.log("alert", f"shared memory zone was locked by {pid}")
            if os.WIFSIGNALED(status):
                how, level = f"exited on signal {os.WTERMSIG(status)}", "alert"
            else:
                code = os.waitstatus_to_exitcode(status)
                how, level = f"exited with code {code}", "alert" if code else "notice"
                if code == EXIT_FATAL:  # not respawned; at start, newproxy gives up (the error is on stderr)
                    how, level = f"exited with fatal code {code} and cannot be respawned", "alert"
                    self.failed = worker.generation == 1 and not any(w.generation == 1 for w in self.workers.values())
                    worker.generation = 0
            self.log.log(level, f"worker process {pid} {how}")
            current = worker.generation == self.generation and self.spec is not None
            if current and self.stopping is None and not self.failed:
                self.counter.set_users(len(self.workers) + 1)
                self.spawn(self.spec, worker.lane)  # type: ignore[arg-type]

    # -- signals --------------------------------------------------------------------------------
    def reload(self) -> None:
        try:
            config, engine = self.reload_config()
        except Exception as exc:  # noqa: BLE001 - ConfigError: "file:line: message"
            self.log.log("emerg", f"reload failed, keeping the old configuration: {exc}")
            return
        conflict = self.shared.key_conflict(engine)
        if conflict is not None:  # nginx's words; its reload fails and the old workers go on too
            self.log.log("emerg", conflict)
            return
        try:
            preflight(engine)
            wanted = self.bind(engine)
        except BindError as exc:
            self.log.log("emerg", f"reload failed, keeping the old configuration: {exc}")
            return
        for key, sock in self.listeners.items():
            if key not in wanted:  # closed before the fork, so new workers do not hold it open
                sock.close()  # the old workers close their copies as they drain
        self.listeners = wanted
        old = self.generation
        self.log.log("notice", "reconfiguring")
        self.config, self.engine = config, engine
        self.start_generation(config, engine)
        for gen in range(1, old + 1):  # older generations still draining ignore it
            self.signal_workers(signal.SIGWINCH, gen)

    def reopen(self) -> None:
        try:
            self.log.open()
        except OSError as exc:
            self.log.log("alert", f'open() "{exc.filename or self.log.path}" failed ({exc.errno}: {exc.strerror})')
        self.signal_workers(signal.SIGUSR1)

    def stop(self, how: str) -> None:
        if self.stopping == how or self.stopping == "fast":
            return
        self.stopping = how
        self.log.log("notice", "gracefully shutting down" if how == "graceful" else "exiting")
        self.signal_workers(signal.SIGQUIT if how == "graceful" else signal.SIGTERM)
        self.close_listeners()  # nothing new is queued for the workers that are leaving

    def run(self) -> int:
        """Until every worker is gone after a stop (or a worker could not start)."""
        self.start_generation(self.config, self.engine)
        gc.collect()
        gc.freeze()
        killed_at: float | None = None
        while True:
            info = signal.sigtimedwait(MASTER_SIGNALS, 0.5)
            sig = info.si_signo if info is not None else None
            if info is not None and sig != signal.SIGCHLD:
                self.log.log("notice", f"signal {sig} ({signal.Signals(sig).name}) received from {info.si_pid}")
            if sig == signal.SIGHUP and self.stopping is None:
                self.reload()
            elif sig == signal.SIGUSR1:
                self.reopen()
            elif sig == signal.SIGQUIT:
                self.stop("graceful")
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self.stop("fast")
                killed_at = time.monotonic() + KILL_AFTER
            self.reap()
            if self.failed and self.stopping is None:
                self.stop("fast")
                killed_at = time.monotonic() + KILL_AFTER
            if self.stopping is not None and not self.workers:
                return 1 if self.failed else 0
            if killed_at is not None and time.monotonic() >= killed_at:
                self.signal_workers(signal.SIGKILL)
                killed_at = None


def preflight(engine: Engine) -> None:
    """Open what each worker will open (certificates, access logs) once in the master, so that a
    config whose files cannot be opened is refused before any worker starts (BindError, as nginx's
    master reports it), and a reload with such a config keeps the old workers."""
    from newproxy.http.accesslog import open_access_logs
    from newproxy.http.server import Server

    Server._listen_tls(engine)
    try:
        logs = open_access_logs(engine, None)
    except OSError as exc:
        raise BindError(f'open() "{exc.filename}" failed ({exc.errno}: {exc.strerror})') from None
    if logs is not None:
        logs.close()


def run_master(config: NewproxyConfig, engine: Engine, log: ErrorLog, prefix: str | None, error_log: str | None,
               pid_path: str | None, reload_config: Callable[[], tuple[NewproxyConfig, Engine]]) -> int:
    """Bind, write the pid file, run the workers until stopped. Errors go to stderr as ``newproxy: ...``."""
    # Blocked before anything can send them: sigtimedwait takes them in order, and a signal sent as
    # soon as the pid file exists is not lost. Workers inherit the mask and unblock once ready.
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS + (signal.SIGWINCH,))
    master = Master(config, engine, log, prefix, error_log, reload_config)
    try:
        preflight(engine)
        master.listeners = master.bind(engine)
    except BindError as exc:
        sys.stderr.write(f"newproxy: {exc}\n")
        log.log("emerg", str(exc))
        return 1
    if pid_path is not None:
        try:
            with open(pid_path, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            master.close_listeners()
            sys.stderr.write(f'newproxy: open() "{pid_path}" failed ({exc.errno}: {exc.strerror})\n')
            return 1
    try:
        return master.run()
    finally:
        master.close_listeners()
        if pid_path is not None:
            try:
                os.unlink(pid_path)
            except OSError:
                pass
        log.log("notice", "exit")
