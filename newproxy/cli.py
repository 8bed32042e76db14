"""``newproxy``: nginx's command line for the new proxy.

    newproxy [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]

``-c`` takes a newproxy config (``.yaml``/``.yml``/``.json``) or an nginx config, translated on load
by the ``nginx`` adapter found through the ``newproxy.adapters`` entry point group (the translator
registers it; newproxy does not import it). The proxy runs in the foreground as nginx does: a master
and ``worker_processes`` workers (newproxy/process.py, newproxy/worker.py), or one process with
``master_process off``; signals as nginx's master: QUIT graceful stop, TERM/INT fast stop, HUP reload,
USR1 reopen the logs.

Every error a user can cause is one ``newproxy: ...`` line (``file:line: message`` for config
errors) and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, NoReturn

from newproxy import __version__, native
from newproxy.config import NewproxyConfig
from newproxy.configfile import ConfigError, load_newproxy_config
from newproxy.http.errorlog import targets_of
from newproxy.worker import close_loop

if TYPE_CHECKING:
    from newproxy.engine.engine import Engine
    from newproxy.http.errorlog import ErrorLog
    from newproxy.http.server import Server

NAME = "newproxy"
DEFAULT_CONFIG = "newproxy.yaml"
USAGE = f"""\
{NAME} version: {NAME}/{__version__}
Usage: {NAME} [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]
       {NAME} schema   (print the JSON Schema of the newproxy config)

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it (as newproxy YAML) and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (relative -c, pid and log paths are resolved against it)
  -e filename   : set error log file ("stderr" for the standard error)
  -c filename   : set configuration file: newproxy YAML/JSON (.yaml, .yml, .json) or nginx.conf
  -g directives : set global directives out of configuration file (pid, daemon, error_log, ...)
"""
SIGNALS = {"stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reopen": signal.SIGUSR1, "reload": signal.SIGHUP}
NEWPROXY_SUFFIXES = (".yaml", ".yml", ".json")
_LOCATED = re.compile(r"^\S+:\d+: ")  # "file:line: message"


class UsageError(Exception):
    pass


@dataclass
class Options:
    config: str | None = None
    prefix: str | None = None
    error_log: str | None = None
    directives: str | None = None
    signal: str | None = None
    test: bool = False
    dump: bool = False
    quiet: bool = False
    version: bool = False
    configure: bool = False
    help: bool = False
    rest: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """nginx's option syntax: flags may be grouped (``-tq``), values attached (``-cfile``) or not."""
    opts = Options()
    valued = {"c": "config", "p": "prefix", "e": "error_log", "g": "directives", "s": "signal"}
    names = {"c": "file name", "p": "prefix", "e": "file name", "g": "directives", "s": "signal"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f'invalid option: "{arg}"')
        j = 1
        while j < len(arg):
            flag = arg[j]
            j += 1
            if flag in "?h":
                opts.help = True
            elif flag == "v":
                opts.version = True
            elif flag == "V":
                opts.version = opts.configure = True
            elif flag == "t":
                opts.test = True
            elif flag == "T":
                opts.test = opts.dump = True
            elif flag == "q":
                opts.quiet = True
            elif flag in valued:
                if j < len(arg):
                    value = arg[j:]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise UsageError(f'option "-{flag}" requires {names[flag]}')
                if flag == "s" and value not in SIGNALS:
                    raise UsageError(f'invalid option: "-s {value}"')
                setattr(opts, valued[flag], value)
                break
            else:
                raise UsageError(f'invalid option: "{flag}"')
        i += 1
    return opts


def _err(message: str) -> None:
    sys.stderr.write(f"{NAME}: {message}\n")
    sys.stderr.flush()


def resolve(path: str, prefix: str | None) -> str:
    """A relative path is relative to the prefix when one is given (nginx's -p), else to the cwd."""
    if os.path.isabs(path) or not prefix:
        return os.path.abspath(path)
    return os.path.abspath(os.path.join(prefix, path))


def _apply_global_directives(config: NewproxyConfig, directives: str) -> NewproxyConfig:
    """-g for a newproxy config: the main-context directives that make sense on a command line."""
    update: dict[str, object] = {}
    for statement in directives.split(";"):
        words = statement.split()
        if not words:
            continue
        name, args = words[0], words[1:]
        if name == "pid" and len(args) == 1:
            update["pid"] = None if args[0] == "off" else args[0]
        elif name == "error_log" and args:  # nginx adds it to the config's error_log lines
            update["error_log"] = [*targets_of(update.get("error_log", config.error_log)), " ".join(args)]  # type: ignore[arg-type]
        elif name == "worker_processes" and len(args) == 1 and (args[0].isdigit() or args[0] == "auto"):
            update["worker_processes"] = int(args[0]) if args[0].isdigit() else "auto"
        elif name == "master_process" and args in (["on"], ["off"]):
            update["master_process"] = args == ["on"]
        elif name == "keepalive_park_after" and len(args) == 1 and _is_seconds(args[0]):
            update["keepalive_park_after"] = float(args[0])
        elif name == "daemon" and args in (["on"], ["off"]):
            pass  # newproxy always runs in the foreground
        else:
            raise ConfigError(f'invalid global directive "{statement.strip()}" in command line (newproxy configs accept pid, error_log, daemon, master_process, worker_processes, keepalive_park_after)')
    return config.model_copy(update=update) if update else config


def _is_seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def load_config(opts: Options) -> tuple[str, NewproxyConfig]:
    """Load the config named by -c (or the default). Raises ConfigError with ``file:line: message``."""
    path = resolve(opts.config or DEFAULT_CONFIG, opts.prefix)
    if path.endswith(NEWPROXY_SUFFIXES):
        config = load_newproxy_config(path)
        if opts.directives:
            config = _apply_global_directives(config, opts.directives)
        return path, config
    adapter = _nginx_adapter()
    if not os.path.exists(path):
        raise ConfigError(f'open() "{path}" failed (2: No such file or directory)')
    own, nginx_directives = _own_directives(opts.directives)
    try:
        config = adapter(path, opts.prefix, nginx_directives)
    except Exception as exc:  # noqa: BLE001 - the adapter's errors are "file:line: message" already
        raise ConfigError(str(exc) or type(exc).__name__) from None
    return path, _apply_global_directives(config, own) if own else config


OWN_DIRECTIVES = ("keepalive_park_after",)  # newproxy's own settings; nginx has no such directive


def _own_directives(directives: str | None) -> tuple[str, str | None]:
    """-g with an nginx config: newproxy's own directives (applied to the translation), and the rest
    (nginx's, for the adapter)."""
    if not directives:
        return "", directives
    statements = [statement for statement in directives.split(";") if statement.strip()]
    own = [s for s in statements if s.split()[0] in OWN_DIRECTIVES]
    rest = [s for s in statements if s.split()[0] not in OWN_DIRECTIVES]
    return ";".join(own), (";".join(rest) + ";") if rest else None


def _nginx_adapter() -> Callable[[str, str | None, str | None], NewproxyConfig]:
    try:
        entry = entry_points(group="newproxy.adapters")["nginx"]
    except KeyError:
        raise ConfigError(
            'no "nginx" config adapter is installed (entry point group "newproxy.adapters"): '
            "install the translator, or pass a newproxy config (.yaml, .yml, .json)"
        ) from None
    try:
        return entry.load()  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - any import failure of the adapter is a config error
        raise ConfigError(f'the "nginx" config adapter failed to load: {exc}') from None


def build_engine(config: NewproxyConfig, path: str) -> Engine:
    from newproxy.engine.engine import Engine
    from newproxy.http.upstream_tls import load_contexts

    try:
        engine = Engine(config)
        load_contexts(config)  # the proxy_ssl_* files, read as nginx reads them with the config
        return engine
    except Exception as exc:  # noqa: BLE001 - a config the engine cannot run, reported like a parse error
        message = str(exc) or type(exc).__name__
        if not _LOCATED.match(message):
            message = f"{path}: {message}"
        raise ConfigError(message) from None


def check_tls(engine: Engine) -> None:
    """-t loads the certificates, keys and TLS settings, as nginx -t does (a run loads them on bind)."""
    if not any(listen.ssl for server in engine.config.servers for listen in server.listen):
        return
    from newproxy.http.tls import TlsConfigError, listen_tls

    try:
        listen_tls(engine)
    except TlsConfigError as exc:
        raise ConfigError(str(exc)) from None


def print_schema() -> int:
    """``newproxy schema``: the JSON Schema of newproxy's config (pydantic's, from newproxy.config)."""
    import json

    from newproxy.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["schema"]:  # the one subcommand; everything else is nginx's option syntax
        if len(argv) > 1:
            _err(f'invalid option: "{argv[1]}"')
            return 1
        return print_schema()
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        _err(str(exc))
        return 1
    if opts.help:
        sys.stderr.write(USAGE)
        return 0
    if opts.version:
        sys.stderr.write(f"{NAME} version: {NAME}/{__version__}\n")
        if opts.configure:
            import httptools
            import uvloop

            sys.stderr.write(
                f"built with Python {sys.version.split()[0]}, uvloop {uvloop.__version__}, httptools {httptools.__version__}\n"
            )
            sys.stderr.write(f"hot path: {native.STATUS}\n")
        if not opts.test:
            return 0
    try:
        path, config = load_config(opts)
        engine = build_engine(config, path)
        if opts.test:
            check_tls(engine)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            _err(line)
        if opts.test:
            _err(f"configuration file {resolve(opts.config or DEFAULT_CONFIG, opts.prefix)} test failed")
        return 1
    if opts.test:
        if not opts.quiet:
            _err(f"the configuration file {path} syntax is ok")
            _err(f"configuration file {path} test is successful")
        if opts.dump:
            sys.stdout.write(f"# configuration file {path}:\n{config.dump_yaml()}")
        return 0
    if opts.signal:
        return send_signal(config, opts)
    return run(config, engine, opts, path)


def _pid_path(config: NewproxyConfig, opts: Options) -> str | None:
    return resolve(config.pid, opts.prefix) if config.pid else None


def send_signal(config: NewproxyConfig, opts: Options) -> int:
    pid_path = _pid_path(config, opts)
    if pid_path is None:
        _err("no pid file is configured (set pid in the config or -g \"pid FILE;\")")
        return 1
    try:
        with open(pid_path) as f:
            text = f.read().strip()
    except OSError as exc:
        _err(f'open() "{pid_path}" failed ({exc.errno}: {exc.strerror})')
        return 1
    if not text.isdigit():
        _err(f'invalid PID number "{text}" in "{pid_path}"')
        return 1
    try:
        os.kill(int(text), SIGNALS[opts.signal or "quit"])
    except OSError as exc:
        _err(f'kill({text}, {int(SIGNALS[opts.signal or "quit"])}) failed ({exc.errno}: {exc.strerror})')
        return 1
    return 0


def run(config: NewproxyConfig, engine: Engine, opts: Options, path: str) -> int:
    if not config.master_process:  # nginx's "master_process off": one process serves, for debugging
        return run_single(config, engine, opts, path)
    from newproxy.http.errorlog import ErrorLog
    from newproxy.process import run_master

    log = ErrorLog(opts.error_log or config.error_log, opts.prefix)
    try:
        log.open()
    except OSError as exc:
        _err(f'open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})')
        return 1

    def reload_config() -> tuple[NewproxyConfig, Engine]:
        _, new_config = load_config(opts)  # ConfigError: logged by the master with its file:line
        return new_config, build_engine(new_config, path)

    try:
        return run_master(config, engine, log, opts.prefix, opts.error_log, _pid_path(config, opts), reload_config)
    finally:
        log.close()


def run_single(config: NewproxyConfig, engine: Engine, opts: Options, path: str) -> int:
    import uvloop

    from newproxy.http.errorlog import ErrorLog
    from newproxy.http.server import Server

    log = ErrorLog(opts.error_log or config.error_log, opts.prefix)
    try:
        log.open()
    except OSError as exc:
        _err(f'open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})')
        return 1
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(engine, loop, log)
    try:
        return loop.run_until_complete(_main(server, _pid_path(config, opts), opts, path, log))
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
        close_loop(loop)
        log.close()


async def _main(server: Server, pid_path: str | None, opts: Options, path: str, log: ErrorLog) -> int:
    from newproxy.http.server import BindError

    # Signals are handled before the sockets listen and the pid file exists (as nginx does), so a
    # QUIT sent as soon as the port answers is a graceful stop. Installed from inside the running
    # loop: uvloop drops a signal that arrives between add_signal_handler and the loop's start.
    stop = _install_signals(asyncio.get_running_loop(), server, opts, path, log)
    try:
        server.bind()
    except BindError as exc:
        _err(str(exc))
        log.log("emerg", str(exc))
        return 1
    if pid_path is not None:
        try:
            with open(pid_path, "w") as f:  # noqa: ASYNC230 - before serving, nothing waits
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            server.close_sockets()
            _err(f'open() "{pid_path}" failed ({exc.errno}: {exc.strerror})')
            return 1
    # The config, the engine and the imported modules live as long as the process: move them out
    # of the collector's sight so that full collections do not rescan them under load.
    gc.collect()
    gc.freeze()
    try:
        await server.start()
        how = await stop
        if how == "graceful":
            log.log("notice", "gracefully shutting down")
            await server.shutdown_graceful()
        else:
            server.terminate()
    finally:
        if pid_path is not None:
            try:
                os.unlink(pid_path)
            except OSError:
                pass
    return 0


_SIGNALS = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def _install_signals(
    loop: asyncio.AbstractEventLoop, server: Server, opts: Options, path: str, log: ErrorLog
) -> asyncio.Future[str]:
    """nginx's master signals: QUIT graceful, TERM/INT fast, HUP reload, USR1 reopen the log."""
    stop: asyncio.Future[str] = loop.create_future()

    def request_stop(how: str) -> None:
        if not stop.done():
            stop.set_result(how)
        elif how == "fast" and stop.result() == "graceful":
            server.terminate()  # a TERM during a graceful stop: stop now (nginx does the same)

    def reload() -> None:
        try:
            _, new_config = load_config(opts)
            new_engine = build_engine(new_config, path)
        except ConfigError as exc:
            log.log("emerg", f"reload failed, keeping the old configuration: {exc}")
            return
        if sorted(new_engine.listen_addresses) != sorted(server.engine.listen_addresses) or \
                sorted(new_engine.quic_addresses) != sorted(server.engine.quic_addresses):
            log.log("emerg", "reload failed: the listening sockets changed; restart newproxy to change them")
            return
        server.reload(new_engine)
        log.log("notice", "reconfiguring")

    def reopen() -> None:
        try:
            log.open()
        except OSError as exc:
            _err(f'open() "{exc.filename or log.path}" failed ({exc.errno}: {exc.strerror})')

    loop.add_signal_handler(signal.SIGQUIT, request_stop, "graceful")
    loop.add_signal_handler(signal.SIGTERM, request_stop, "fast")
    loop.add_signal_handler(signal.SIGINT, request_stop, "fast")
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    return stop


def entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    entry()
