"""Differential test against the nginx binary (`nginx -t`): the parser accepts what nginx accepts and,
where nginx rejects a config for a syntax, placement or arity reason, reports an error at the same line.

How nginx is run: ``nginx -t -p TMP -c TMP/nginx.conf -e TMP/error.log``, with ``pid`` given by ``-g`` and
every http block carrying temp and access-log paths under TMP; no server is ever started.

Generated configs use only core directives whose failures are syntax/context/arity ones (each block
holds a directive name at most once; nested locations extend their parent's path, so "is outside
location" never fires); some are corrupted by dropping a ``;`` or a brace or adding a stray ``}``. A
stray brace can move a directive next to its twin: nginx's "is duplicate" for a scalar directive is
not checked by the parser (only for the main-level http and events blocks), so there the parser may
only fail at a later line.

Corpus configs are included from a generated main file in TMP (nothing copied): http-level files inside
``http {}``, server-level inside ``server {}``, location-level inside ``location / {}``; the include trees
beside the corpus are symlinked into TMP so relative includes resolve for nginx as for the parser.
nginx then stops at the first problem it finds: a syntax/context/arity error or a missing include must
be reported by the parser at the same file:line; an "unknown directive" (a third-party module Debian's
nginx lacks) must be a non-core occurrence in the parser's inventory at that line; any other failure
(certificates, users, upstream host names that do not resolve here) is about the machine, not the
syntax, and then the parser must accept the file.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nginx_parser import ConfigError, NginxConfig, parse_config
from nginx_parser.inventory import occurrences
from nginx_parser.loader import PartialLoad, load
from tests.test_parser_corpus import CONTEXTS, CORPUS, EXPECTED_FAILURES, INCLUDES

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_EMERG = re.compile(r"\[emerg\] (?P<message>.*?)(?: in (?P<file>/\S+):(?P<line>\d+))?$", re.MULTILINE)
SYNTAX_OR_CONTEXT = re.compile(
    r'is not allowed here|invalid number of arguments|has no opening "\{"|is not terminated by ";"'
    r'|it must be "on" or "off"|^unexpected|^open\(\) ".*" failed|^"(http|events)" directive is duplicate'
)


@dataclass
class NginxVerdict:
    ok: bool
    message: str = ""
    file: str = ""
    line: int = 0
    output: str = ""


def nginx_test(conf: Path, prefix: Path, set_pid: bool = True) -> NginxVerdict:
    command = [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    if set_pid:
        command += ["-g", f"pid {prefix / 'nginx.pid'};"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return NginxVerdict(True, output=output)
    found = _EMERG.search(output)
    assert found is not None, output
    # some errors (an unknown variable) are found after reading, and come without a position
    return NginxVerdict(False, found["message"], found["file"] or "", int(found["line"] or 0), output)


def temp_paths(prefix: Path) -> str:
    return "".join(
        f"{name} {prefix / 'tmp'};\n"
        for name in ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
    ) + f"access_log {prefix / 'access.log'};\n"


# ---- generated configs --------------------------------------------------------------------------

# name -> argument variants (the first is valid where the name is allowed, the others are arity/flag errors)
SIMPLE: dict[str, list[str]] = {
    "gzip": ["on", "maybe"],
    "keepalive_timeout": ["5", "1 2 3"],
    "add_header": ["X-A 1", "X-A"],
    "root": ["/tmp"],
    "return": ["204"],
    "listen": ["127.0.0.1:8080"],
    "worker_connections": ["64"],
    "worker_processes": ["1"],
    "server_tokens": ["off"],
    "index": ["index.html"],
    "default_type": ["text/plain"],
    "deny": ["all"],
    "set": ["$v 1"],
    "rewrite": ["^/a /b", "^/a"],
    "proxy_pass": ["http://127.0.0.1:9"],
    "frobnicate": ["1"],  # unknown: nginx says "unknown directive"; handled below
}
BLOCKS = ["events", "http", "server", "location", "if", "limit_except", "map"]


@dataclass
class Node:
    name: str
    args: str
    children: list[Node] | None
    multiline: bool = False  # arguments on the next line after a comment: errors name the ";" line


def nodes(depth: int) -> st.SearchStrategy[list[Node]]:
    simple = st.builds(
        lambda name, variant, multiline: Node(name, SIMPLE[name][variant % len(SIMPLE[name])], None, multiline),
        st.sampled_from(sorted(n for n in SIMPLE if n != "frobnicate")), st.integers(0, 3),
        st.sampled_from([False, False, False, True]),
    )
    if depth >= 3:
        leaf = simple
    else:
        block = st.builds(lambda name, kids: Node(name, "", kids), st.sampled_from(BLOCKS), st.deferred(lambda: nodes(depth + 1)))
        leaf = st.one_of(simple, simple, block)
    return st.lists(leaf, max_size=4, unique_by=lambda n: n.name)


class Renderer:
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.counter = itertools.count()

    def render(self, items: list[Node], indent: int, location: str) -> list[str]:
        lines: list[str] = []
        pad = "    " * indent
        for node in items:
            if node.children is None and node.multiline:
                lines += [f"{pad}{node.name}", f"{pad}    # a comment inside the directive", f"{pad}    {node.args};"]
                continue
            if node.children is None:
                lines.append(f"{pad}{node.name} {node.args};")
                continue
            args, inner_location = {
                "location": (f"{location}/l{next(self.counter)}",) * 2,
                "if": ("($arg_a)", location),
                "limit_except": ("GET", location),
                "map": (f"$uri $m{next(self.counter)}", location),
            }.get(node.name, ("", location))
            lines.append(f"{pad}{node.name} {args} {{".replace("  {", " {"))
            if node.name == "map":
                lines.append(f"{pad}    default 0;")
            else:
                if node.name == "http":
                    lines.extend(pad + "    " + line for line in temp_paths(self.prefix).splitlines())
                lines.extend(self.render(node.children, indent + 1, inner_location))
            lines.append(f"{pad}}}")
        return lines


def corrupt(lines: list[str], how: int) -> list[str]:
    """0: leave alone; 1: drop the last ";"; 2: drop the last "}"; 3: add a stray "}"."""
    lines = list(lines)
    if how == 1:
        for index in reversed(range(len(lines))):
            if lines[index].endswith(";"):
                lines[index] = lines[index][:-1]
                break
    elif how == 2:
        for index in reversed(range(len(lines))):
            if lines[index].strip() == "}":
                del lines[index]
                break
    elif how == 3:
        lines.insert(len(lines) // 2, "}")
    return lines


def read_anyway(conf: Path) -> NginxConfig:
    """The directives read, checks aside, up to the first loading error if any."""
    try:
        tree, files = load(str(conf))
    except PartialLoad as partial:
        tree, files = partial.tree, partial.files
    return NginxConfig(main_file=str(conf), files=files, tree=tree)


def assert_agree(conf: Path, prefix: Path) -> NginxVerdict:
    verdict = nginx_test(conf, prefix)
    parsed_error: ConfigError | None = None
    try:
        parse_config(str(conf))
    except ConfigError as exc:
        parsed_error = exc
    if verdict.message.startswith("unknown directive"):
        # a stray "}" can push a map entry out of its map: nginx refuses the name, the parser keeps
        # it and reports it as unknown
        assert parsed_error is None or (parsed_error.line or 0) > verdict.line, (verdict.output, str(parsed_error))
        kinds = {o.kind for o in occurrences(read_anyway(conf)) if (o.file, o.end_line) == (verdict.file, verdict.line)}
        assert kinds == {"unknown"}, (verdict.output, kinds)
        return verdict
    if verdict.ok:
        assert parsed_error is None, f"nginx accepts, parser says {parsed_error}\n{conf.read_text()}"
        return verdict
    if verdict.message.endswith("directive is duplicate") and not verdict.message.startswith(('"http"', '"events"')):
        # A corruption can move a scalar directive next to its twin; the parser does not check
        # duplicates of scalar directives (nginx's per-slot rule), so it may only fail later.
        assert parsed_error is None or (parsed_error.line or 0) > verdict.line, (verdict.output, str(parsed_error))
        return verdict
    assert SYNTAX_OR_CONTEXT.search(verdict.message), f"generator produced a non-syntax failure: {verdict.output}"
    assert parsed_error is not None, f"nginx: {verdict.output}\nparser accepts\n{conf.read_text()}"
    assert (parsed_error.file, parsed_error.line) == (verdict.file, verdict.line), (
        f"nginx: {verdict.output}\nparser: {parsed_error}\n{conf.read_text()}"
    )
    return verdict


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=nodes(0), how=st.sampled_from([0, 0, 0, 1, 2, 3]))
def test_generated_configs_agree_with_nginx(tmp_path: Path, body: list[Node], how: int) -> None:
    prefix = tmp_path / f"p{os.getpid()}"
    prefix.mkdir(exist_ok=True)
    body = [n for n in body if n.name != "events"]
    lines = ["events {", "}", *Renderer(prefix).render(body, 0, "")]
    conf = prefix / "nginx.conf"
    conf.write_text("\n".join(corrupt(lines, how)) + "\n")
    assert_agree(conf, prefix)


@pytest.mark.parametrize(("text", "line"), [
    ("events {}\nserver {\n}\n", 2),
    ("events {}\nhttp {\n    location / {\n    }\n}\n", 3),
    ("events {}\nhttp {\n    server {\n        location / {\n            listen 80;\n        }\n    }\n}\n", 5),
    ("events {}\nhttp {\n    server {\n        listen 80\n    }\n}\n", 5),
    ("events {}\nhttp {\n    gzip yes;\n}\n", 3),
])
def test_known_context_and_syntax_errors_agree_with_nginx(tmp_path: Path, text: str, line: int) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("http {\n", "http {\n" + temp_paths(tmp_path), 1))
    shift = len(temp_paths(tmp_path).splitlines()) if "http {" in text and line > 2 else 0
    verdict = assert_agree(conf, tmp_path)
    assert not verdict.ok and verdict.line == line + shift


# ---- the corpus ---------------------------------------------------------------------------------

WRAP = {
    "main": "{include}\n",
    "http": "events {{}}\nhttp {{\n{temp}{include}\n}}\n",
    "server": "events {{}}\nhttp {{\n{temp}server {{\n{include}\n}}\n}}\n",
    "location": "events {{}}\nhttp {{\n{temp}server {{\nlocation / {{\n{include}\n}}\n}}\n}}\n",
}
# nginx and the parser both refuse templates, but nginx for reasons of its own (the first "{{"): the
# parser's template verdict is checked in test_parser_corpus.
TEMPLATES = {name for name, (_, message) in EXPECTED_FAILURES.items() if "template" in message}


@pytest.mark.parametrize("name", sorted(set(CONTEXTS) - TEMPLATES))
def test_corpus_agrees_with_nginx(name: str, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    tree = INCLUDES / ("h5bp" if name.startswith("h5bp__") else "matomo" if name.startswith("matomo__") else "")
    if tree != INCLUDES:
        for entry in tree.iterdir():
            if entry.name != "nginx.conf":
                (prefix / entry.name).symlink_to(entry)
    else:
        # a stock Debian conf dir: the mime.types and fastcgi_params nginx itself ships
        for stock in ("mime.types", "fastcgi_params"):
            if Path("/etc/nginx", stock).exists():
                (prefix / stock).symlink_to(Path("/etc/nginx", stock))
    source = CORPUS / name
    context = CONTEXTS[name]
    conf = prefix / "nginx.conf"
    conf.write_text(WRAP[context].format(include=f"include {source};", temp=temp_paths(prefix)))
    has_pid = context == "main" and re.search(r"^\s*pid\s", source.read_text(), re.MULTILINE) is not None
    verdict = nginx_test(conf, prefix, set_pid=not has_pid)
    parsed_error: ConfigError | None = None
    try:
        config = parse_config(str(source), prefix=str(prefix), context=context)
    except PartialLoad as partial:
        # what was read before the error, for the inventory check below
        parsed_error = partial
        config = NginxConfig(main_file=str(source), files=partial.files, tree=partial.tree)
    if verdict.ok:
        assert parsed_error is None, (verdict.output, str(parsed_error))
        return
    if SYNTAX_OR_CONTEXT.search(verdict.message):
        assert parsed_error is not None, verdict.output
        assert (parsed_error.file, parsed_error.line) == (verdict.file, verdict.line), (verdict.output, str(parsed_error))
        return
    # nginx stopped for a reason that is not the syntax: the parser may only fail later in the same file.
    if parsed_error is not None:
        assert (parsed_error.file, verdict.file) == (str(source), str(source)), (verdict.output, str(parsed_error))
        assert (parsed_error.line or 0) > verdict.line, (verdict.output, str(parsed_error))
    if verdict.message.startswith("unknown directive"):
        at_line = {o.kind for o in occurrences(config) if (o.file, o.end_line) == (verdict.file, verdict.line)}
        assert at_line and "core" not in at_line, (verdict.output, at_line)
