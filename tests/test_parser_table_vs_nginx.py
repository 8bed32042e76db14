"""The directive table against the installed nginx binary (Debian's 1.22), the oracle:

- every directive name the binary knows is in the table (candidates: the identifier-like strings in the
  binary; nginx -t tells a directive from any other string by not answering "unknown directive");
- for every core directive the binary knows, the table allows it in main/events/http/server/location/
  upstream exactly where nginx does not answer "is not allowed here".
The table also covers 1.23–1.27, so a few placements are allowed by it that 1.22 refuses: listed below.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from nginx_parser.directives import TABLE

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NEWER_THAN_1_22 = {("resolver", "upstream")}  # resolver in upstream{}: nginx 1.27.3
WRAPPERS = {
    "main": "{d}\nevents {{}}\n",
    "events": "events {{\n{d}\n}}\n",
    "http": "events {{}}\nhttp {{\n{d}\n}}\n",
    "server": "events {{}}\nhttp {{\nserver {{\n{d}\n}}\n}}\n",
    "location": "events {{}}\nhttp {{\nserver {{\nlocation / {{\n{d}\n}}\n}}\n}}\n",
    "upstream": "events {{}}\nhttp {{\nupstream u {{\n{d}\nserver 127.0.0.1;\n}}\n}}\n",
}


def nginx_says(tmp: Path, key: str, text: str) -> str:
    conf = tmp / f"{key}.conf"
    conf.write_text(text)
    result = subprocess.run(
        [
            NGINX,
            "-t",
            "-q",
            "-p",
            str(tmp),
            "-c",
            str(conf),
            "-e",
            str(tmp / "error.log"),
            "-g",
            f"pid {tmp}/nginx.pid;",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stderr


def test_every_directive_the_nginx_binary_knows_is_in_the_table(tmp_path: Path) -> None:
    binary = Path(NGINX).resolve().read_bytes()
    candidates = sorted(
        {
            m.decode()
            for m in re.findall(rb"(?<=\x00)[a-z][a-z0-9_]{2,40}(?=\x00)", binary)
        }
    )
    assert "proxy_pass" in candidates  # the extraction works
    unknown_to_us = [name for name in candidates if name not in TABLE]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda n: nginx_says(tmp_path, n, f"events {{}}\n{n} x;\n"),
                unknown_to_us,
            )
        )
    missing = [
        name
        for name, answer in zip(unknown_to_us, answers, strict=True)
        if "unknown directive" not in answer
    ]
    assert missing == []


@cache
def core_names_nginx_knows() -> list[str]:
    """The table's core directives that this nginx binary knows (not nginx Plus, not newer)."""
    with tempfile.TemporaryDirectory() as tmp:
        names = [name for name, spec in sorted(TABLE.items()) if spec.origin == "core"]
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda n: nginx_says(Path(tmp), n, f"events {{}}\n{n} x;\n"), names
                )
            )
    return [
        name
        for name, answer in zip(names, answers, strict=True)
        if "unknown directive" not in answer
    ]


def test_table_contexts_agree_with_nginx(tmp_path: Path) -> None:
    cases = [
        (name, context) for name in core_names_nginx_knows() for context in WRAPPERS
    ]

    def ask(case: tuple[str, str]) -> str:
        name, context = case
        statement = f"{name} x {{}}" if TABLE[name].is_block else f"{name} x;"
        return nginx_says(
            tmp_path, f"{name}-{context}", WRAPPERS[context].format(d=statement)
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, cases))
    disagreements = []
    for (name, context), answer in zip(cases, answers, strict=True):
        nginx_allows = "is not allowed here" not in answer
        if (
            nginx_allows != (context in TABLE[name].contexts)
            and (name, context) not in NEWER_THAN_1_22
        ):
            disagreements.append((name, context, nginx_allows))
    assert len(cases) > 2000
    assert disagreements == []


def test_table_arity_agrees_with_nginx(tmp_path: Path) -> None:
    """0 to 4 arguments, in a context the directive is allowed in: nginx's "invalid number of arguments"
    exactly where the table's check says so."""
    from nginx_parser.directives import check

    cases = []
    for name in core_names_nginx_knows():
        contexts = [
            c
            for c in WRAPPERS
            if c in TABLE[name].contexts and (name, c) not in NEWER_THAN_1_22
        ]
        if contexts and name not in ("include", "load_module"):
            cases += [(name, contexts[0], count) for count in range(5)]

    def ask(case: tuple[str, str, int]) -> str:
        name, context, count = case
        words = " ".join([name, *["on"] * count])
        statement = f"{words} {{}}" if TABLE[name].is_block else f"{words};"
        return nginx_says(
            tmp_path, f"{name}-{count}", WRAPPERS[context].format(d=statement)
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, cases))
    disagreements = []
    for (name, context, count), answer in zip(cases, answers, strict=True):
        nginx_refuses = "invalid number of arguments" in answer
        ours = check(name, ["on"] * count, TABLE[name].is_block, context)  # type: ignore[arg-type]
        if nginx_refuses != (
            ours is not None and ours.startswith("invalid number of arguments")
        ):
            disagreements.append((name, context, count, answer.strip()[:80], ours))
    assert disagreements == []
