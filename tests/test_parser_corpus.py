"""The real-world corpus (../shared/corpus/realworld): every file parses, or fails for a documented reason.

Each file is read in the context INDEX.tsv gives it, with the include trees beside it:
- h5bp__* read their relative includes from includes/h5bp (the checkout they come from), matomo from
  includes/matomo;
- every other file is treated as living in a stock Debian /etc/nginx: relative includes and absolute
  /etc/nginx/... includes are read from a temporary sysroot that holds stub ``mime.types`` and
  ``fastcgi_params`` (so the result does not depend on what this machine has in /etc/nginx).
Nothing of the corpus is copied.

Counting rule for directive occurrences (same on both sides): every statement crossplane reports in a
file's own payload is one occurrence — include lines and data-block entries (map/types lines) too,
comments (also the "#" entries crossplane adds for comments inside multi-line directives) not.
A file included N times appears N times in the IR.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import crossplane  # type: ignore[import-untyped]
import pytest

from nginx_parser import ConfigError, format_tree, parse_config
from nginx_parser.fmt import unwrap
from nginx_parser.inventory import occurrences
from nginx_parser.ir import Directive, NginxConfig, iter_spliced
from nginx_parser.loader import context_of

CORPUS = Path(__file__).parents[1].parent / "shared" / "corpus" / "realworld"
INCLUDES = CORPUS / "includes"


def index() -> list[dict[str, str]]:
    with open(CORPUS / "INDEX.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = index()
CONTEXTS = {row["file"]: row["context"] for row in ROWS}

# Why each failing file fails; any file not listed must parse.
MISSING = 'failed (2: No such file or directory)'
TEMPLATE = "not an nginx config: render it first, then parse the output"
EXPECTED_FAILURES: dict[str, tuple[int, str]] = {
    "frappe-docker__nginx-template.conf": (25, f'open() "{{root}}/etc/nginx/snippets/security_headers.conf" {MISSING}'),
    "ingress-nginx__nginx.tmpl.conf": (1, f"this is a Go template, {TEMPLATE}"),
    "linuxserver__grafana.subfolder.conf": (23, f'open() "{{root}}/config/nginx/proxy.conf" {MISSING}'),
    "linuxserver__homeassistant.subdomain.conf": (22, f'open() "{{root}}/config/nginx/ssl.conf" {MISSING}'),
    "linuxserver__nextcloud.subdomain.conf": (25, f'open() "{{root}}/config/nginx/ssl.conf" {MISSING}'),
    "mailcow__sites-default.conf.j2.conf": (54, f"this is a Jinja template, {TEMPLATE}"),
    "matomo__matomo.conf": (37, f'open() "{INCLUDES}/matomo/snippets/fastcgi-php.conf" {MISSING}'),
    "nginx-proxy__nginx.tmpl.conf": (3, f"this is a Go template, {TEMPLATE}"),
    "onlyoffice__ds-docservice.conf.m4.conf": (5, f"this is an m4 template, {TEMPLATE}"),
    "penpot__devenv_nginx.conf": (
        78, f'open() "{{root}}/home/penpot/penpot/docker/devenv/files/nginx-security-headers.conf" {MISSING}'
    ),
    "penpot__nginx.conf.template.conf": (84, f'open() "{{root}}/etc/nginx/nginx-security-headers.conf" {MISSING}'),
    "swag__authelia-server.conf": (9, f'open() "{{root}}/config/nginx/proxy.conf" {MISSING}'),
    "swag__site-confs_default.conf": (22, f'open() "{{root}}/config/nginx/ssl.conf" {MISSING}'),
    "synapse__conf-workers_nginx.conf.j2.conf": (5, f"this is a Jinja template, {TEMPLATE}"),
}
PARSING = sorted(set(CONTEXTS) - set(EXPECTED_FAILURES))


@pytest.fixture(scope="module")
def sysroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stock /etc/nginx with stub mime.types and fastcgi_params and an empty conf.d."""
    root = tmp_path_factory.mktemp("sysroot")
    etc = root / "etc" / "nginx"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "mime.types").write_text("types {\n    text/html html htm;\n    image/png png;\n}\n")
    (etc / "fastcgi_params").write_text("fastcgi_param QUERY_STRING $query_string;\n")
    return root


def include_dir(name: str, sysroot: Path) -> str:
    if name.startswith("h5bp__"):
        return str(INCLUDES / "h5bp")
    if name.startswith("matomo__"):
        return str(INCLUDES / "matomo")
    return str(sysroot / "etc" / "nginx")


def parse_corpus_file(name: str, sysroot: Path) -> NginxConfig:
    return parse_config(str(CORPUS / name), prefix=include_dir(name, sysroot), context=CONTEXTS[name], sysroot=str(sysroot))


def test_index_lists_every_corpus_file() -> None:
    on_disk = {p.name for p in CORPUS.glob("*.conf")}
    assert on_disk == set(CONTEXTS) and len(on_disk) == 36
    assert set(EXPECTED_FAILURES) <= set(CONTEXTS)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_file_parses_or_fails_for_its_documented_reason(name: str, sysroot: Path) -> None:
    if name not in EXPECTED_FAILURES:
        config = parse_corpus_file(name, sysroot)
        assert config.files[0] == str(CORPUS / name)
        return
    line, message = EXPECTED_FAILURES[name]
    with pytest.raises(ConfigError) as info:
        parse_corpus_file(name, sysroot)
    assert (info.value.file, info.value.line) == (str(CORPUS / name), line)
    assert info.value.message == message.format(root=sysroot)


def raw_count(path: str) -> int:
    """Statements in crossplane's own payload of one file, comments excluded."""
    payload = crossplane.parse(path, single=True, comments=False, check_ctx=False, check_args=False)
    assert payload["status"] == "ok", payload["errors"]

    def count(items: list[dict]) -> int:
        return sum(1 + count(item.get("block", [])) for item in items if item["directive"] != "#")

    return count(payload["config"][0]["parsed"])


def inclusions(config: NginxConfig) -> Counter[str]:
    """How many times each file was read into the tree: once for the main file, once per include site."""
    seen: Counter[str] = Counter({config.files[0]: 1})

    def visit(directives: list[Directive]) -> None:
        for directive in directives:
            if directive.name == "include":
                seen.update({d.file for d in directive.block or []})
            if directive.block:
                visit(directive.block)

    visit(config.tree)
    return seen


@pytest.mark.parametrize("name", PARSING)
def test_no_directive_is_dropped_and_each_is_classified_at_its_line(name: str, sysroot: Path) -> None:
    config = parse_corpus_file(name, sysroot)
    found = occurrences(config)
    per_file = Counter(o.file for o in found)
    times = inclusions(config)
    for path in config.files:
        assert per_file[path] == raw_count(path) * times[path], path
    text = {path: Path(path).read_text().splitlines() for path in config.files}
    for occurrence in found:
        assert occurrence.kind in ("core", "third-party", "unknown")
        source_line = text[occurrence.file][occurrence.line - 1]
        # the statement's first token is on its line (quotes and escapes aside)
        assert occurrence.name.strip("\\")[:8] in source_line.replace("\\", ""), (occurrence, source_line)


def test_classification_of_known_corpus_directives(sysroot: Path) -> None:
    found = [o for name in PARSING for o in occurrences(parse_corpus_file(name, sysroot))]
    kinds = {(o.name, o.kind, o.entry) for o in found}
    assert ("proxy_pass", "core", False) in kinds
    # types entries (h5bp's media_types.conf) are entries of a core block, not unknown directives
    assert ("text/html", "core", True) in kinds
    unknown = {o.where for o in found if o.kind == "unknown"}
    # Every directive of the corpus files that parse is in the table: none is unknown.
    assert unknown == set(), unknown


def spliced_shape(directives: list[Directive]) -> list[tuple[str, tuple[str, ...], object]]:
    """The tree as nginx executes it: names, args and blocks, includes spliced, positions dropped."""
    return [
        (d.name, tuple(d.args), None if d.block is None else spliced_shape(d.block))
        for d in iter_spliced(directives)
    ]


@pytest.mark.parametrize("name", PARSING)
def test_round_trip_through_fmt(name: str, sysroot: Path, tmp_path: Path) -> None:
    config = parse_corpus_file(name, sysroot)
    text = format_tree(unwrap(config.tree))
    again_path = tmp_path / "again.conf"
    again_path.write_text(text)
    again = parse_config(str(again_path), context=CONTEXTS[name])
    assert spliced_shape(again.tree) == spliced_shape(config.tree)
    assert os.path.basename(again.files[0]) == "again.conf"


# Detection picks the outermost context that admits every top-level directive; a file of proxy_*
# lines is valid in http, server and location alike, so it is read as http (INDEX says location).
AMBIGUOUS = {"swag__proxy.conf": "http"}


@pytest.mark.parametrize("name", PARSING)
def test_detected_context_matches_the_index(name: str, sysroot: Path) -> None:
    config = parse_config(str(CORPUS / name), prefix=include_dir(name, sysroot), context=None, sysroot=str(sysroot))
    assert context_of(config.tree) == AMBIGUOUS.get(name, CONTEXTS[name])
