"""``nginx-migrate``: convert an nginx config, or shadow it against newproxy and report differences.

Exit codes: 0 all equivalent (or converted), 1 differences or a config error ("file:line: message",
no traceback), 2 the harness itself could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from rich.console import Console

if TYPE_CHECKING:
    from shadow.rewire import Plan
    from shadow.traffic import Request

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basic" / "nginx.conf"
_T = TypeVar("_T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nginx-migrate",
        description="Convert an nginx config, or shadow it against newproxy and report differences.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    shadow = sub.add_parser("shadow", help="run nginx and newproxy side by side on generated traffic and diff")
    shadow.add_argument("config", metavar="NGINX_CONF")
    _shadow_options(shadow)

    demo = sub.add_parser("demo", help=f"shadow the bundled example ({EXAMPLE.parent.name}/nginx.conf)")
    _shadow_options(demo)

    mirror = sub.add_parser("mirror", help="receive requests mirrored by production nginx (its `mirror` "
                                           "directive), then shadow them")
    mirror.add_argument("config", metavar="NGINX_CONF")
    mirror.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:0",
                        help="where the receiver listens (default: a free loopback port)")
    mirror.add_argument("--seconds", type=float, default=60.0, help="how long to receive before shadowing")
    _shadow_options(mirror)
    mirror.set_defaults(max_requests=0)

    raw = sub.add_parser("raw", help="send the malformed-request corpus byte for byte to nginx and newproxy")
    raw.add_argument("config", metavar="NGINX_CONF", nargs="?", default=None,
                     help="the config to run (default: shadow/data/h1_raw.conf, the corpus's own)")
    raw.add_argument("--host", default="raw.test", help="the Host the corpus's requests name")
    raw.add_argument("--family", action="append", default=[], help="only cases of this family; repeatable")
    raw.add_argument("--json", metavar="FILE", help="also write every case's observations as JSON")

    # parse and fmt have their own options (nginx_parser.cli); listed here for --help.
    sub.add_parser("parse", help="print the parsed IR of an nginx config (see `nginx-migrate parse -h`)", add_help=False)
    sub.add_parser("fmt", help="print an nginx config back from its IR, includes spliced in", add_help=False)

    convert = sub.add_parser("convert", help="translate an nginx config into a newproxy config")
    convert.add_argument("config", metavar="NGINX_CONF")
    convert.add_argument("-o", "--output", metavar="OUT.yaml", default=None)
    convert.add_argument("--plan", metavar="FILE", default=None,
                         help="write the migration plan here (default with -o: OUT.plan.md beside OUT.yaml)")
    convert.add_argument("--fallback", metavar="http://HOST:PORT", default=None,
                         help="proxy every location that cannot be translated faithfully to the legacy nginx "
                              "at this address (the strangler fallback)")
    _context_option(convert)

    report = sub.add_parser("report", help="every directive occurrence with its support level, per server/location")
    report.add_argument("config", metavar="NGINX_CONF")
    report.add_argument("--format", choices=["terminal", "markdown", "json", "html", "sarif"], default="terminal")
    report.add_argument("-o", "--output", metavar="OUT", default=None, help="write here (Lua stubs go beside it)")
    report.add_argument("--shadow-report", metavar="FILE", default=None,
                        help="a `nginx-migrate shadow --json` report: sets shadow_verified per server/location")
    _context_option(report)

    corpus = sub.add_parser("corpus", help="summary table over a directory of nginx configs (INDEX.tsv if present)")
    corpus.add_argument("directory", metavar="DIR")
    corpus.add_argument("--format", choices=["terminal", "markdown"], default="terminal")
    corpus.add_argument("-p", "--prefix", metavar="DIR", default=None,
                        help="what relative includes are read against (default: each file's directory)")
    corpus.add_argument("--sysroot", metavar="DIR", default=None, help="read absolute include paths under DIR")
    corpus.add_argument("--prefix-for", metavar="GLOB=DIR", action="append", default=[],
                        help="files whose name matches GLOB read relative includes from DIR (relative to the "
                             "corpus directory); repeatable, first match wins")
    return parser


def _context_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context",
        choices=["detect", "main", "http", "server", "location"],
        default="detect",
        help="where the file's directives live; 'detect' (default) lets a conf.d snippet be read as it is",
    )


def _context(args: argparse.Namespace) -> str | None:
    return None if args.context == "detect" else args.context


def _shadow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--max-requests", type=int, default=1000, metavar="N")
    parser.add_argument(
        "--against",
        choices=["newproxy", "nginx"],
        default="newproxy",
        help="target under test; 'nginx' runs a second nginx (calibrates the harness's noise)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for generated traffic")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop sending after this long")
    parser.add_argument("--max-diffs", type=int, default=10, help="diffs shown in detail")
    parser.add_argument(
        "--refuse",
        action="append",
        default=[],
        metavar="UPSTREAM",
        help="make this upstream (host:port as in the config) refuse connections; repeatable",
    )
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep the configs and logs")
    parser.add_argument("--fallback", action="store_true",
                        help="translate with the strangler fallback: a third target, legacy nginx on the "
                             "original config, serves the locations newproxy hands over")
    parser.add_argument("-p", "--prefix", metavar="DIR", default=None,
                        help="nginx's prefix (as nginx -p): what relative root/alias paths are read against")
    parser.add_argument("--access-log", metavar="FILE", action="append", default=[],
                        help="also replay the requests of this access log (read by --log-format); repeatable. "
                             "With --max-requests 0, only replayed traffic is sent")
    parser.add_argument("--log-format", metavar="NAME", default="combined",
                        help="the config's log_format the access logs were written with (default: combined)")
    parser.add_argument("--har", metavar="FILE", action="append", default=[],
                        help="also replay the requests of this HAR file; repeatable")
    parser.add_argument("--accept", metavar="FILE", default=None,
                        help="accepted differences (YAML, the format of shadow/data/accepted_builtin.yaml): "
                             "headers to mask, diff fields to forgive")
    parser.add_argument("--calibrate", action="store_true",
                        help="first run nginx against a second nginx on the same traffic: differences seen "
                             "there are noise, reported apart and not counted")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="request pairs in flight at once (default 1: sequential, the most exact; over 1 "
                             "each request carries an X-Shadow-Id header to attribute upstream requests)")
    parser.add_argument("--rate", type=float, default=None, metavar="PAIRS_PER_S",
                        help="start at most this many request pairs per second")
    parser.add_argument("--protocol", choices=["h1", "h2", "h3"], default="h1",
                        help="h2: send the traffic of `listen ... http2` addresses over HTTP/2 (h2c, or TLS with "
                             "ALPN h2) to both targets (default h1: HTTP/1.x, as each request says); h3: the "
                             "traffic of addresses with `listen ... quic` over HTTP/3 to newproxy, compared with "
                             "nginx's and newproxy's HTTP/1.1 answers (nginx 1.22 has no HTTP/3: shadow/h3.py)")
    parser.add_argument("--header-order", choices=["note", "strict"], default="note",
                        help="a header list in another order: a note (default) or a difference")
    parser.add_argument("--allow-unsafe", action="store_true",
                        help="run even when requests could reach a real backend (a *_pass with variables the "
                             "harness cannot point at its recording upstreams)")
    parser.add_argument("--no-guided", action="store_true",
                        help="do not add coverage-guided requests for config parts the generated ones miss")
    _context_option(parser)


class _Progress:
    """A progress bar over the request pairs once they are being sent (a spinner before: starting
    the targets, generating traffic)."""

    def __init__(self, console: Console, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=True)
        self._task = self._bar.add_task(what, total=None)

    def __enter__(self) -> _Progress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)


def _replay_sources(config_path: str, args: argparse.Namespace, console: Console) -> Callable[[Plan], list[Request]]:
    """The requests of --access-log and --har files (and of the mirror receiver), as run_shadow's
    ``extra_requests``; notes on what could not be replayed are printed."""
    from nginx_parser import parse_config
    from shadow.replay import from_access_log, from_har

    config = parse_config(config_path, context=_context(args))
    mirrored: list[Request] = list(getattr(args, "mirrored", []))

    def extra(plan: Plan) -> list[Request]:
        requests = list(mirrored)
        for path in args.access_log:
            replayed = from_access_log(path, config, plan, args.log_format)
            requests += replayed.requests
            for note in replayed.notes:
                console.print(f"[dim]note: {note}[/dim]")
        for path in args.har:
            replayed = from_har(path, config, plan)
            requests += replayed.requests
            for note in replayed.notes:
                console.print(f"[dim]note: {note}[/dim]")
        return requests

    return extra


def _shadow(config: str, args: argparse.Namespace, console: Console) -> int:
    from nginx_parser import ConfigError
    from shadow.accepted import AcceptedError
    from shadow.accepted import load as load_accepted
    from shadow.report import render, write_json
    from shadow.runner import HarnessError, run_shadow

    if args.protocol == "h3":
        return _shadow_h3(config, args, console)
    try:
        for path in [*args.access_log, *args.har]:
            if not os.path.isfile(path):
                print(f"{path}: no such file", file=sys.stderr)
                return 1
        extra = _replay_sources(config, args, console) if args.access_log or args.har or \
            getattr(args, "mirrored", None) else None
        accept = load_accepted(args.accept) if args.accept else None
        with _Progress(console, f"shadowing {config} against {args.against}") as progress:
            report = run_shadow(
                config,
                max_requests=args.max_requests,
                against=args.against,
                seed=args.seed,
                timeout=args.timeout,
                workdir=args.keep,
                keep_workdir=args.keep is not None,
                refuse=set(args.refuse),
                max_seconds=args.max_seconds,
                context=_context(args),
                extra_requests=extra,
                guided=not args.no_guided,
                accept=accept,
                calibrate=args.calibrate,
                concurrency=max(1, args.concurrency),
                rate=args.rate,
                strict_order=args.header_order == "strict",
                allow_unsafe=args.allow_unsafe,
                protocol=args.protocol,
                progress=progress.update,
                **({"fallback": True} if getattr(args, "fallback", False) else {}),
                **({"nginx_prefix": os.path.abspath(args.prefix)} if args.prefix else {}),
            )
    except (ConfigError, AcceptedError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except HarnessError as exc:
        print(f"nginx-migrate: harness error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every process was stopped on the way out (context managers); no traceback.
        print("nginx-migrate: interrupted", file=sys.stderr)
        return 130
    render(report, console, max_diffs=args.max_diffs)
    if args.json:
        write_json(report, args.json)
    if args.html:
        from shadow.html import render as render_html

        Path(args.html).write_text(render_html(report), encoding="utf-8")
    return 0 if report.all_equivalent else 1


def _shadow_h3(config: str, args: argparse.Namespace, console: Console) -> int:
    """--protocol h3: shadow.h3.run_shadow_h3, and one line per request that differs."""
    import tempfile

    from shadow.h3 import run_shadow_h3

    results = _guarded(lambda: run_shadow_h3(config, args.keep or tempfile.mkdtemp(prefix="shadow-h3-"),
                                             max_requests=args.max_requests, seed=args.seed))
    if isinstance(results, int):
        return results
    different = [r for r in results if not r.equivalent]
    for result in different[:args.max_diffs]:
        fields = sorted({d.field for d in result.nginx_h1.diffs + result.newproxy_h1.diffs})
        where = "h3 front end" if not result.h3_faithful else "also over HTTP/1.1"
        console.print(f"[red]different[/red] {result.request.method} {result.request.target} "
                      f"({result.request.label}; {where}): {', '.join(fields)}", highlight=False)
    console.print(f"HTTP/3: {len(results)} requests, {len(results) - len(different)} equivalent over h3 and "
                  f"HTTP/1.1, {len(different)} different "
                  f"({sum(not r.h3_faithful for r in different)} from the h3 front end)", highlight=False)
    return 0 if not different else 1


def _guarded(run: Callable[[], _T]) -> _T | int:
    """``run()``, or the exit status when it fails as a run may: 1 for a config error (its
    "file:line: message" on stderr), 2 when the harness itself could not run."""
    from nginx_parser import ConfigError
    from shadow.runner import HarnessError

    try:
        return run()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except HarnessError as exc:
        print(f"nginx-migrate: harness error: {exc}", file=sys.stderr)
        return 2


def _mirror(args: argparse.Namespace, console: Console) -> int:
    """Receive mirrored requests for --seconds (Ctrl-C ends early), then shadow them."""
    import time

    from nginx_parser import ConfigError, parse_config
    from shadow.mirror import MirrorReceiver, to_request
    from shadow.rewire import plan

    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"--listen {args.listen}: expected HOST:PORT", file=sys.stderr)
        return 1
    try:
        config = parse_config(args.config, context=_context(args))
        receiver = MirrorReceiver(host.strip("[]") or "127.0.0.1", int(port))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"--listen {args.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    records = []
    with receiver:
        console.print(f"receiving mirrored requests on {receiver.address} for {args.seconds:g}s; add to the "
                      "production server (or locations):")
        console.print(receiver.snippet(), markup=False, highlight=False)
        try:
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                time.sleep(0.2)
                records += receiver.take()
        except KeyboardInterrupt:
            pass
        records += receiver.take()
    the_plan = plan(config)
    args.mirrored = [r for i, record in enumerate(records) if (r := to_request(record, config, the_plan, i))]
    console.print(f"{len(records)} mirrored request(s) received; shadowing them")
    if not args.mirrored:
        return 0
    return _shadow(args.config, args, console)


def _raw(args: argparse.Namespace, console: Console) -> int:
    """The raw corpus against nginx and newproxy: a line per differing case, a count per family."""
    import json
    from collections import Counter

    from shadow.h1_corpus import corpus
    from shadow.raw import RAW_CONFIG, run_raw

    cases = [c for c in corpus(args.host) if not args.family or c.family in args.family
             or c.family.removeprefix("mutated-") in args.family]
    with console.status(f"sending {len(cases)} raw cases to nginx and newproxy…"):
        results = _guarded(lambda: run_raw(args.config or str(RAW_CONFIG), cases))
    if isinstance(results, int):
        return results
    differing = [r for r in results if r.diffs]
    for result in differing:
        console.print(f"[bold]{result.case.name}[/bold]: " + "; ".join(result.diffs)[:300], markup=True,
                      highlight=False)
    families = Counter(r.case.family for r in differing)
    console.print(f"{len(results) - len(differing)}/{len(results)} cases identical to nginx"
                  + (f"; differing by family: {dict(families)}" if families else ""))
    if args.json:
        Path(args.json).write_text(json.dumps([{"case": r.case.name, "family": r.case.family, "nginx": r.nginx,
                                                "newproxy": r.other, "diffs": r.diffs} for r in results],
                                              indent=1, default=str))
    return 1 if differing else 0


def _convert(args: argparse.Namespace) -> int:
    from nginx_parser import ConfigError

    try:
        from translator.cli import run_convert  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        print(f"nginx-migrate: convert is not available: {exc}", file=sys.stderr)
        return 2
    try:
        return int(run_convert(args.config, args.output, context=_context(args), plan=args.plan,
                               fallback=args.fallback))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("parse", "fmt"):
        from nginx_parser.cli import fmt_command, parse_command

        return (parse_command if argv[0] == "parse" else fmt_command)(argv[1:])
    args = _parser().parse_args(argv)
    console = Console()
    if args.command == "shadow":
        return _shadow(args.config, args, console)
    if args.command == "demo":
        return _shadow(str(EXAMPLE), args, console)
    if args.command == "mirror":
        return _mirror(args, console)
    if args.command == "raw":
        return _raw(args, console)
    if args.command == "report":
        from translator.report.cli import run_report

        return run_report(args.config, args.format, args.output, args.shadow_report, _context(args))
    if args.command == "corpus":
        from translator.report.cli import run_corpus

        return run_corpus(args.directory, args.format, args.prefix, args.sysroot, args.prefix_for)
    return _convert(args)


def entry() -> None:
    """Console-script entry: a closed stdout (``| head``) ends the command quietly, as for other CLIs."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry()
