"""Generated routing configs: hypothesis builds random location trees and server_name sets, and
newproxy must pick the same server and location as real nginx for every probe.

Every location and server answers with a probe naming itself (``return 200 "S1 L4 $server_name $uri"``),
so a request that lands elsewhere under newproxy shows as a body difference. Several servers share
one config (one nginx start each); the requests are derived from the config (each location's path
and its boundaries, regex samples, every server name instantiated and spelled oddly), not drawn,
so hypothesis shrinks only the config. derandomize=True: CI runs the same cases every time.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shadow import regex_sample
from shadow.rewire import Plan
from shadow.traffic import Request, encode_path, instantiate_name
from tests.differential import get, shadow

MINIMUM_CASES = 2000
EXAMPLES = 25
PORTS = (8080, 8081)

SEGMENTS = ("a", "ab", "b", "api", "Img")
DOMAINS = ("a.test", "b.a.test", "c.test", "www.c.test", "x.b.a.test")
TRAILING = ("www.*", "www.c.*", "b.*", "x.b.*")
REGEX_NAMES = (r"~^(?<sub>[a-z]+)\.a\.test$", r"~^www\d*\.c\.test$", r"~b\.a", r"~^[a-c]\.test$",
               r"~^(x|y)\.(?<rest>.+)$")
# Location regexes, each with a {s} slot for a segment; case matters for ~ and not for ~*.
REGEX_LOCATIONS = (r"^/{s}", r"/{s}$", r"^/{s}/", r"\.(png|jpg)$", r"^/{s}/(\w+)", r"{s}", r"^/{s}/b/?$",
                   r"/(?<word>{s})x")


@dataclass
class Loc:
    modifier: str  # "=", "^~", "", "~", "~*", "@"
    path: str
    children: list[Loc] = field(default_factory=list)
    named_target: str | None = None  # reach this @location (error_page or try_files)
    via_try_files: bool = False
    label: str = ""


@dataclass
class Srv:
    names: list[str]
    listens: list[int]
    defaults: list[int]  # ports on which this is the default_server
    locations: list[Loc]
    label: str = ""


def _static_path(draw: st.DrawFn, base: str = "") -> str:
    segments = draw(st.lists(st.sampled_from(SEGMENTS), max_size=2))
    path = base.rstrip("/") + "/" + "/".join(segments) if segments or not base else base
    if segments and draw(st.booleans()):
        path += "/"
    if base and path == base:
        path = base + draw(st.sampled_from(("x", "b", "/")))
    return path


@st.composite
def location(draw: st.DrawFn, depth: int, parent: Loc | None, named: list[str]) -> Loc:
    regex_parent = parent is not None and parent.modifier in ("~", "~*")
    modifiers = ["~", "~*"] if regex_parent else ["=", "^~", "", "", "~", "~*"]
    modifier = draw(st.sampled_from(modifiers))
    if modifier in ("~", "~*"):
        template = draw(st.sampled_from(REGEX_LOCATIONS))
        path = template.replace("{s}", draw(st.sampled_from(SEGMENTS)))
    else:
        path = _static_path(draw, parent.path if parent is not None else "")
    loc = Loc(modifier, path)
    if named and draw(st.integers(0, 4)) == 0:
        loc.named_target = draw(st.sampled_from(named))
        loc.via_try_files = draw(st.booleans())
    if depth < 2 and modifier in ("^~", "", "~", "~*") and draw(st.integers(0, 3)) == 0:
        loc.children = _unique(draw(st.lists(location(depth + 1, loc, named), min_size=1, max_size=3)))
    return loc


def _unique(locations: list[Loc]) -> list[Loc]:
    """nginx refuses duplicate locations: the same static path twice (``^~`` and plain alike), or twice ``=``."""
    seen: set[tuple[str, str]] = set()
    out = []
    for loc in locations:
        key = ("=" if loc.modifier == "=" else "~" + loc.modifier if loc.modifier.startswith("~") else "prefix", loc.path)
        if key not in seen:
            seen.add(key)
            out.append(loc)
    return out


@st.composite
def server_name(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(("exact", "exact", "leading", "trailing", "regex", "dot", "empty")))
    if kind == "exact":
        return draw(st.sampled_from(DOMAINS + ("A.Test", "c.test")))
    if kind == "leading":
        return "*." + draw(st.sampled_from(DOMAINS))
    if kind == "trailing":
        return draw(st.sampled_from(TRAILING))
    if kind == "regex":
        return draw(st.sampled_from(REGEX_NAMES))
    if kind == "dot":
        return "." + draw(st.sampled_from(DOMAINS))
    return ""


@st.composite
def server(draw: st.DrawFn) -> Srv:
    named = draw(st.lists(st.sampled_from(("@n1", "@n2", "@fallback")), max_size=2, unique=True))
    locations = _unique(draw(st.lists(location(0, None, named), min_size=1, max_size=8)))
    locations += [Loc("@", name) for name in named]
    names = list(dict.fromkeys(draw(st.lists(server_name(), min_size=1, max_size=3))))
    listens = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=2, unique=True))
    return Srv(names, sorted(listens), [], locations)


@st.composite
def config(draw: st.DrawFn) -> list[Srv]:
    servers = draw(st.lists(server(), min_size=2, max_size=5))
    for port in PORTS:
        on_port = [s for s in servers if port in s.listens]
        if on_port and draw(st.booleans()):
            draw(st.sampled_from(on_port)).defaults.append(port)
    for i, srv in enumerate(servers):
        srv.label = f"S{i}"
        for j, (loc, _) in enumerate(_walk(srv.locations)):
            loc.label = f"{srv.label}L{j}"
    return servers


def _walk(locations: list[Loc], depth: int = 0):  # type: ignore[no-untyped-def]
    for loc in locations:
        yield loc, depth
        yield from _walk(loc.children, depth + 1)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(servers: list[Srv]) -> str:
    lines = ["events {}", "http {"]
    for srv in servers:
        lines.append("    server {")
        for port in srv.listens:
            lines.append(f"        listen {port}{' default_server' if port in srv.defaults else ''};")
        lines.append("        server_name " + " ".join(_quote(n) if n == "" or "\\" in n else n for n in srv.names) + ";")
        _render_locations(lines, srv.locations, 2)
        if not any(loc.path == "/" and loc.modifier in ("", "^~") for loc in srv.locations):
            # What no location matches would be a static file: answer it with a probe too.
            lines.append(f'        location / {{ return 200 "{srv.label} fallback $server_name $uri\\n"; }}')
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_locations(lines: list[str], locations: list[Loc], indent: int) -> None:
    pad = "    " * indent
    for loc in locations:
        head = f"location {loc.modifier + ' ' if loc.modifier and loc.modifier != '@' else ''}"
        head += _quote(loc.path) if loc.modifier.startswith("~") else loc.path
        lines.append(f"{pad}{head} {{")
        _render_locations(lines, loc.children, indent + 1)
        captures = " $1" if loc.modifier.startswith("~") and "(" in loc.path else ""
        probe = f'return 200 "{loc.label} $server_name $uri $args{captures}\\n";'
        if loc.named_target and loc.via_try_files:
            lines.append(f"{pad}    try_files /__generated_missing__ {loc.named_target};")
        elif loc.named_target:
            lines.append(f"{pad}    error_page 418 = {loc.named_target};")
            probe = "return 418;"
        lines.append(f"{pad}    {probe}")
        lines.append(f"{pad}}}")


def _paths(loc: Loc, seed: int) -> list[str]:
    if loc.modifier == "@":
        return []
    if loc.modifier.startswith("~"):
        samples = regex_sample.sample(loc.path, 2, seed, caseless=loc.modifier == "~*", prefix="/")
        out = list(samples)
        if samples:
            out += [samples[0] + "x", samples[0][:-1] or "/", samples[0].swapcase()]
        return out
    path = loc.path
    out = [path, path + "x", path + "/", path.rstrip("/") + "/deeper/x", path.swapcase()]
    if len(path) > 1:
        out.append(path[:-1])
    return out


def requests_for(servers: list[Srv]) -> list[tuple[int, str, str | None, str]]:
    """(port, target, Host, label) probes: every location's boundaries through a Host reaching its
    server, and every server name (instantiated, odd spellings) on each port."""
    rng = random.Random(render(servers))
    all_paths = list(dict.fromkeys(p for s in servers for loc, _ in _walk(s.locations) for p in _paths(loc, 0)))
    out: list[tuple[int, str, str | None, str]] = []
    all_hosts: list[str] = []
    for srv in servers:
        hosts = [h for name in srv.names for h in instantiate_name(name, 0)[0]]
        all_hosts += hosts
        host = hosts[0] if hosts else "unknown.invalid"
        for loc, _ in _walk(srv.locations):
            for path in _paths(loc, 0):
                out.append((srv.listens[0], encode_path(path), host, f"{loc.label} {path!r}"))
        out.append((srv.listens[0], "/a?x=1", host, f"{srv.label} query"))
    hosts = list(dict.fromkeys(all_hosts))
    spelled = ([h.upper() for h in hosts[:4]] + [h + "." for h in hosts[:3]] + [h + ":8080" for h in hosts[:3]]
               + ["." + h for h in hosts[:3]])
    for port in PORTS:
        if not any(port in s.listens for s in servers):
            continue
        for host in [*hosts, *spelled, "unknown.invalid", "", None]:
            out.append((port, encode_path(rng.choice(all_paths)) if all_paths else "/", host, f"host {host!r}"))
    return out


def _requests(probes: list[tuple[int, str, str | None, str]]):  # type: ignore[no-untyped-def]
    def build(plan: Plan) -> list[Request]:
        by_port = {int(name.rsplit(":", 1)[1]): name for name in plan.listens}
        return [get(by_port[port], target, host, label, version="1.1" if host is not None else "1.0")
                for port, target, host, label in probes]
    return build


def test_generated_routing_matches_nginx() -> None:
    cases: list[int] = []

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              # Shrinking restarts nginx per attempt (minutes); GENERATED_NO_SHRINK=1 while iterating.
              phases=[p for p in Phase if p is not Phase.shrink or not os.environ.get("GENERATED_NO_SHRINK")])
    @given(config())
    def one_config(servers: list[Srv]) -> None:
        text = render(servers)
        probes = requests_for(servers)
        with tempfile.TemporaryDirectory(prefix="generated-") as tmp:
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(text)
            report = shadow(str(conf), str(Path(tmp) / "run"), _requests(probes), max_requests=0)
        problems = [{"curl": e.get("curl"), "diffs": e.get("diffs")}
                    for e in report.diffs if e.get("verdict") != "equivalent"]
        assert (report.different, report.errors, report.requests) == (0, 0, len(probes)), (
            f"config:\n{text}\nfirst differing requests:\n{json.dumps(problems[:4], indent=1, default=str)}"
            f"\nnotes: {report.notes}")
        cases.append(report.requests)

    one_config()
    assert sum(cases) >= MINIMUM_CASES, cases
