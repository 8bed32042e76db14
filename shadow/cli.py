"""``nginx-migrate``: convert an nginx config, or shadow it against newproxy and report differences.

Exit codes: 0 all equivalent (or converted), 1 differences or a config error ("file:line: message",
no traceback), 2 the harness itself could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "basic" / "nginx.conf"


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

    # parse and fmt have their own options (nginx_parser.cli); listed here for --help.
    sub.add_parser("parse", help="print the parsed IR of an nginx config (see `nginx-migrate parse -h`)", add_help=False)
    sub.add_parser("fmt", help="print an nginx config back from its IR, includes spliced in", add_help=False)

    convert = sub.add_parser("convert", help="translate an nginx config into a newproxy config")
    convert.add_argument("config", metavar="NGINX_CONF")
    convert.add_argument("-o", "--output", metavar="OUT.yaml", default=None)
    _context_option(convert)
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
    parser.add_argument("-p", "--prefix", metavar="DIR", default=None,
                        help="nginx's prefix (as nginx -p): what relative root/alias paths are read against")
    _context_option(parser)


def _shadow(config: str, args: argparse.Namespace, console: Console) -> int:
    from nginx_parser import ConfigError
    from shadow.report import render, write_json
    from shadow.runner import HarnessError, run_shadow

    try:
        with console.status(f"shadowing {config} against {args.against}…"):
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
                **({"nginx_prefix": os.path.abspath(args.prefix)} if args.prefix else {}),
            )
    except ConfigError as exc:
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
    return 0 if report.all_equivalent else 1


def _convert(args: argparse.Namespace) -> int:
    from nginx_parser import ConfigError

    try:
        from translator.cli import run_convert  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        print(f"nginx-migrate: convert is not available: {exc}", file=sys.stderr)
        return 2
    try:
        return int(run_convert(args.config, args.output, context=_context(args)))
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
