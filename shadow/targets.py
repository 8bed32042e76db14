"""The proxies under comparison, as context managers: write the config, start, wait ready, stop.

Each target runs in a new session (its own process group) so that stopping it can also reap
workers a killed master would leave behind: SIGQUIT to the master (graceful), SIGKILL to the whole
group after a timeout. Nothing is left running, whatever happens inside the ``with``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from nginx_parser import Directive, format_tree
from shadow.rewire import QUIC_SUFFIX

if TYPE_CHECKING:
    from newproxy.config import NewproxyConfig
    from translator.fallback import Fallback

NGINX_BINARY = os.environ.get("SHADOW_NGINX", "nginx")


class TargetError(Exception):
    """A target could not be started; the message carries the tail of its logs."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Target(Protocol):
    kind: str  # "nginx" or "newproxy"
    label: str  # unique within a run: "nginx", "nginx-b", "newproxy"
    listen_ports: dict[str, int]
    server_token: str

    def __enter__(self) -> Target: ...

    def __exit__(self, *exc: object) -> None: ...


class _ProcessTarget(ABC):
    kind = "process"
    server_token = ""

    def __init__(
        self,
        label: str,
        workdir: str,
        listen_ports: dict[str, int],
        *,
        ready_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.label = label
        self.workdir = Path(workdir)
        self.listen_ports = listen_ports
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def write_config(self) -> None:
        """Write this target's rewired config into its work directory."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that starts this target in the foreground."""

    def logs(self) -> list[Path]:
        return [self.workdir / "stderr.log", self.workdir / "error.log"]

    def failure(self, what: str) -> TargetError:
        parts = [f"{self.label}: {what}"]
        for log in self.logs():
            tail = _tail(log)
            if tail:
                parts.append(f"--- {log.name} ---\n{tail}")
        return TargetError("\n".join(parts))

    def __enter__(self) -> _ProcessTarget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        command = self.command()
        with open(self.workdir / "stderr.log", "wb") as stderr:
            try:
                self.process = subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
            except OSError as exc:
                raise TargetError(f"{self.label}: cannot run {command[0]}: {exc}") from exc
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        # Quic listens are UDP (named "... quic" by shadow/rewire.py): nothing to connect to; newproxy
        # binds them before its TCP listens accept.
        pending = {port for name, port in self.listen_ports.items() if not name.endswith(QUIC_SUFFIX)}
        while pending:
            code = self.process.poll()
            if code is not None:
                raise self.failure(f"exited with status {code} while starting")
            for port in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pending.discard(port)
                except OSError:
                    pass
            if not pending:
                # A port answering is not proof: if another process held it, the target failed to
                # bind and is exiting. Give that a moment to show.
                time.sleep(0.05)
                code = self.process.poll()
                if code is not None:
                    raise self.failure(f"exited with status {code} while starting (a port taken?)")
                return
            if time.monotonic() > deadline:
                raise self.failure(f"not listening on {sorted(pending)} after {self.ready_timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGQUIT)
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        # Our own process group (start_new_session): catches workers orphaned by the master.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass


class NginxTarget(_ProcessTarget):
    """Real nginx on a rewired directive tree."""

    kind = "nginx"

    def __init__(
        self, tree: list[Directive], workdir: str, listen_ports: dict[str, int], label: str = "nginx", **kw: float
    ) -> None:
        super().__init__(label, workdir, listen_ports, **kw)
        self.tree = tree
        self.server_token = "nginx"

    def write_config(self) -> None:
        (self.workdir / "nginx.conf").write_text(format_tree(self.tree))

    def command(self) -> list[str]:
        d = str(self.workdir)
        return [
            NGINX_BINARY,
            "-p",
            d + "/",
            "-c",
            f"{d}/nginx.conf",
            "-e",
            f"{d}/error.log",
            "-g",
            "daemon off; master_process on;",
        ]


class NewproxyTarget(_ProcessTarget):
    """newproxy on the translation of a rewired directive tree."""

    kind = "newproxy"

    def __init__(
        self,
        tree: list[Directive],
        main_file: str,
        files: list[str],
        workdir: str,
        listen_ports: dict[str, int],
        label: str = "newproxy",
        fallback: Fallback | None = None,
        mutate: Callable[[NewproxyConfig], NewproxyConfig] | None = None,
        **kw: float,
    ) -> None:
        super().__init__(label, workdir, listen_ports, **kw)
        self.mutate = mutate  # a deliberate change to the translation (seeded bugs)
        self.tree = tree
        self.main_file = main_file
        self.files = files
        self.server_token = "newproxy"
        self.fallback = fallback  # the strangler fallback: where the legacy nginx target listens

    def write_config(self) -> None:
        from newproxy.http.errorlog import targets_of
        from nginx_parser.build import build
        from translator import translate  # the translator sits below shadow: imported only when used

        translation = translate(build(self.tree, self.main_file, self.files), fallback=self.fallback)
        # the level the rewiring gives nginx's error_log (shadow/rewire.py), so both logs compare; main
        # error_log lines a test's tweak added to the rewired tree are kept next to it
        own = f"{self.workdir / 'error.log'} notice"
        more = [target for target in targets_of(translation.config.error_log) if target != own]
        config = translation.config.model_copy(
            update={"pid": str(self.workdir / "newproxy.pid"), "error_log": [own, *more] if more else own}
        )
        if self.mutate is not None:
            config = self.mutate(config)
        (self.workdir / "proxy.yaml").write_text(config.dump_yaml())
        # Kept for debugging a run: what nginx would have been given.
        (self.workdir / "nginx.conf").write_text(format_tree(self.tree))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "newproxy", "-c", str(self.workdir / "proxy.yaml"), "-p", str(self.workdir)]
