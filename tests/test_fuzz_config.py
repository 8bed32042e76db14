"""Fuzzing the config path: random mutations of the real-world corpus (../shared/corpus/realworld, each
file in its INDEX.tsv context, includes as tests/test_parser_corpus.py reads them) through the parser
and, when it accepts them, the translator. The only exception allowed is ``ConfigError`` naming the
file and line (what the CLI prints as ``file:line: message``); anything else is a bug.

Mutations work on the config's own vocabulary: delete, duplicate or swap lines, cut the file short,
insert or delete a syntax character (braces, semicolons, quotes, backslash, $, #, newline), replace a
word by another word of the same file or by an odd value (empty quotes, a huge number, a negative,
a unit suffix, a regex, a variable). Deterministic (derandomized) so CI sees the same cases;
``FUZZ_EXAMPLES`` raises the count for a longer run.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nginx_parser import ConfigError, parse_config
from tests.test_parser_corpus import CONTEXTS, CORPUS, PARSING, include_dir
from translator.translate import translate

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SYNTAX = ["{", "}", ";", '"', "'", "\\", "$", "#", "\n", " ", "${", "(", ")", "~", "^", "*", "="]
ODD_WORDS = ['""', "''", "99999999999999999999", "-1", "0", "1k", "10z", "5s", "1y", "~*^/(", "$nope",
             "${host", "unix:", "[::1]:80", "off", "on", "=", "@x", "/", "*.", ".", "http://", "$1", "\\"]
_WORD = re.compile(r"[^\s;{}]+")
_TEXTS = {name: (CORPUS / name).read_text(errors="replace") for name in PARSING}
_SYSROOT = Path(tempfile.mkdtemp(prefix="fuzz-config-sysroot-"))
(_SYSROOT / "etc" / "nginx" / "conf.d").mkdir(parents=True, exist_ok=True)
(_SYSROOT / "etc" / "nginx" / "mime.types").write_text("types {\n    text/html html htm;\n}\n")
(_SYSROOT / "etc" / "nginx" / "fastcgi_params").write_text("fastcgi_param QUERY_STRING $query_string;\n")


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(PARSING))
    text = _TEXTS[name]
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["del_line", "dup_line", "swap", "cut", "insert", "delete", "word", "odd"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "del_line":
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":
            text = text[:draw(st.integers(0, len(text)))]
            continue
        else:
            pos = draw(st.integers(0, len(text)))
            if op == "insert":
                text = text[:pos] + draw(st.sampled_from(SYNTAX)) + text[pos:]
            elif op == "delete":
                text = text[:pos] + text[pos + 1:]
            else:
                words = list(_WORD.finditer(text))
                if words:
                    target = words[draw(st.integers(0, len(words) - 1))]
                    new = draw(st.sampled_from(ODD_WORDS)) if op == "odd" else \
                        words[draw(st.integers(0, len(words) - 1))].group()
                    text = text[:target.start()] + new + text[target.end():]
            continue
        text = "\n".join(lines)
    return name, text


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_corpus_configs_fail_only_with_file_and_line(case: tuple[str, str]) -> None:
    name, text = case
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as work:
        path = Path(work) / name
        path.write_text(text)
        try:
            config = parse_config(str(path), prefix=include_dir(name, _SYSROOT), context=CONTEXTS[name],
                                  sysroot=str(_SYSROOT))
            translate(config)
        except ConfigError as error:
            assert error.file and error.line and error.line >= 1, (str(error), error.file, error.line)
            assert str(error).startswith(f"{error.file}:{error.line}: "), str(error)
