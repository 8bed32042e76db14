"""``nginx-migrate parse`` and ``nginx-migrate fmt``: the parser's two commands, as functions of argv.

The ``nginx-migrate`` entry point (shadow/cli.py) dispatches to ``parse_command``/``fmt_command``; both
return the exit code: 0 on success, 1 on a config error (printed as ``file:line: message``, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from nginx_parser.build import parse_config
from nginx_parser.errors import ConfigError
from nginx_parser.fmt import format_tree, unwrap
from nginx_parser.inventory import occurrences
from nginx_parser.ir import NginxConfig
from nginx_parser.loader import SNIPPET_CONTEXTS, context_of


def _arguments(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("file", help="the nginx config file (a main file or a snippet)")
    parser.add_argument(
        "--context", choices=SNIPPET_CONTEXTS, default=None,
        help="where the file's directives live; detected from its top-level directives when omitted",
    )
    parser.add_argument("--prefix", default=None, help="directory relative includes are read from (default: the file's)")
    parser.add_argument("--sysroot", default=None, help="read absolute include paths under this directory")
    parser.add_argument(
        "--envsubst", action="store_true",
        help="substitute $VAR/${VAR} for the variables defined by --env or the environment (others are left alone)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a variable for --envsubst")
    return parser


def _load(options: argparse.Namespace) -> NginxConfig:
    env: dict[str, str] | None = None
    if options.envsubst or options.env:
        env = dict(os.environ) if options.envsubst else {}
        for pair in options.env:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f'--env "{pair}": expected KEY=VALUE')
            env[key] = value
    return parse_config(options.file, options.prefix, options.context, env, options.sysroot)


def parse_command(argv: Sequence[str]) -> int:
    """``nginx-migrate parse FILE [--context C] [--json] [--envsubst] [--env K=V]``."""
    parser = _arguments("nginx-migrate parse", "Parse an nginx config and print its IR.")
    parser.add_argument("--json", action="store_true", help="print the whole IR as JSON")
    options = parser.parse_args(list(argv))
    try:
        config = _load(options)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    found = occurrences(config)
    if options.json:
        payload = config.model_dump(mode="json")
        payload["context"] = context_of(config.tree)
        payload["occurrences"] = [
            {"name": o.name, "file": o.file, "line": o.line, "kind": o.kind, "entry": o.entry} for o in found
        ]
        json.dump(payload, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    http = config.http
    print(f"{config.main_file}: parsed as {context_of(config.tree)} context, {len(config.files)} file(s)")
    if http is not None:
        print(f"  servers: {len(http.servers)}  upstreams: {len(http.upstreams)}  maps: {len(http.maps)}")
    counts = {kind: sum(1 for o in found if o.kind == kind) for kind in ("core", "third-party", "unknown")}
    print(f"  directives: {counts['core']} core, {counts['third-party']} third-party, {counts['unknown']} unknown")
    for occurrence in found:
        if occurrence.kind != "core" and not occurrence.entry:
            print(f"  {occurrence.where}: {occurrence.kind} directive \"{occurrence.name}\"")
    return 0


def fmt_command(argv: Sequence[str]) -> int:
    """``nginx-migrate fmt FILE``: the config back as nginx text, includes spliced in place."""
    parser = _arguments("nginx-migrate fmt", "Print an nginx config back as nginx text, includes expanded.")
    options = parser.parse_args(list(argv))
    try:
        config = _load(options)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(format_tree(unwrap(config.tree)))
    return 0
