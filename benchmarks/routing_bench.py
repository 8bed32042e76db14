"""Routing cost per request: server selection, location match and the rewrite phase, in µs.

    .venv/bin/python benchmarks/routing_bench.py [--locations 500] [--regexes 50] [--repeat 15] [--number 20000]

A generated nginx config with one server of ``--locations`` locations (exact, prefix, ``^~``, nested
prefix, and ``--regexes`` regex locations), each answering ``return 200 "<label> $uri"``, is
translated and loaded into the sans-IO ``Engine``; ``Engine.handle`` is then timed on a request per
case (best of ``--repeat`` runs of ``--number`` calls). That is the whole per-request engine work for a
return probe: request-line parsing, Host validation, server selection, the server and location
rewrite phases, the location search and the response it builds. Also timed: the location tree's
``find`` alone. Targets (issue 4): <= 5 µs for prefix and exact matches, <= 20 µs when all the regexes
must be tried. Not a timed test: numbers to watch, from one run on one machine.
"""

from __future__ import annotations

import argparse
import tempfile
import timeit
from pathlib import Path

from newproxy.engine.engine import Engine
from newproxy.engine.types import Request, Response
from translator.adapter import load_nginx_config


def generate(locations: int, regexes: int) -> str:
    lines = ["events {}", "http {", "    server {", "        listen 8080;", "        server_name bench.test;"]
    static = locations - regexes
    for i in range(static):
        kind = i % 4
        if kind == 0:
            lines.append(f'        location = /exact/{i} {{ return 200 "exact {i} $uri"; }}')
        elif kind == 1:
            lines.append(f'        location /prefix/{i}/ {{ return 200 "prefix {i} $uri"; }}')
        elif kind == 2:
            lines.append(f'        location ^~ /noregex/{i}/ {{ return 200 "noregex {i} $uri"; }}')
        else:
            lines.append(f"        location /outer/{i}/ {{")
            lines.append(f'            location /outer/{i}/inner/ {{ return 200 "inner {i} $uri"; }}')
            lines.append(f'            return 200 "outer {i} $uri";')
            lines.append("        }")
    for i in range(regexes):
        lines.append(f'        location ~ ^/re{i}/(\\d+)\\.html$ {{ return 200 "regex {i} $1"; }}')
    lines.append("        location ^~ /rw/ { rewrite ^/rw/(\\d+)/(.*)$ /noregex/$1/$2 last; }")
    lines += ['        location / { return 200 "root $uri"; }', "    }", "}"]
    return "\n".join(lines) + "\n"


def request(target: str) -> Request:
    return Request(b"GET", target.encode(), b"1.1", [(b"Host", b"bench.test"), (b"User-Agent", b"bench")], b"",
                   ("127.0.0.1", 40000), ("127.0.0.1", 8080))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locations", type=int, default=500)
    parser.add_argument("--regexes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nginx.conf"
        path.write_text(generate(args.locations, args.regexes))
        engine = Engine(load_nginx_config(str(path)))
    static = args.locations - args.regexes
    base = (static // 4 - 1) * 4  # the last group of four generated locations
    cases = {
        "exact (= /exact/N)": (f"/exact/{base}", "exact", 5.0),
        "prefix, then every regex tried": (f"/prefix/{base + 1}/a/b", "prefix", 20.0),
        "^~ prefix (regexes skipped)": (f"/noregex/{base + 2}/a", "noregex", 5.0),
        "nested prefix, then every regex": (f"/outer/{base + 3}/inner/x", "inner", 20.0),
        f"last of {args.regexes} regexes matches": (f"/re{args.regexes - 1}/42.html", "regex", 20.0),
        "no location but /, every regex": ("/nothing/here", "root", 20.0),
        "rewrite ... last, then ^~ prefix": (f"/rw/{base + 2}/a", "noregex", 5.0),
    }
    server = next(iter(engine.router.tables.values())).default
    print(f"{args.locations} locations ({args.regexes} regex), Engine.handle per request, best of {args.repeat}:")
    print(f"{'case':40} {'handle µs':>10} {'route µs':>9} {'find µs':>8} {'target':>7}")
    for name, (target, expect, budget) in cases.items():
        req = request(target)
        answer = engine.handle(req)
        assert isinstance(answer, Response) and answer.body.startswith(expect.encode()), (name, answer)
        handle = min(timeit.repeat(lambda req=req: engine.handle(req), number=args.number, repeat=args.repeat))
        uri = target.split("?")[0]
        find = min(timeit.repeat(lambda uri=uri: server.locations.find(uri), number=args.number, repeat=args.repeat))
        route = min(timeit.repeat(lambda req=req: route_only(engine, req), number=args.number, repeat=args.repeat))
        us, route_us, find_us = (t / args.number * 1e6 for t in (handle, route, find))
        print(f"{name:40} {us:10.2f} {route_us:9.2f} {find_us:8.2f} {budget:7.0f}{'' if route_us <= budget else '  OVER'}")
    print("handle: Engine.handle, response included; route: request line and Host parsing, server selection and\n"
          "location search (Engine._context + the tree's find); find: the location tree alone. Targets apply to route;\n"
          "the rewrite row's route and find are the first search only: the rewrite and second search show in handle.")


def route_only(engine: Engine, req: Request) -> object:
    ctx = engine._context(req)
    return ctx.server.locations.find(ctx.uri)  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
