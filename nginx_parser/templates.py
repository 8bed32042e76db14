"""Config files that are templates rather than nginx configs: detect them, or substitute envsubst placeholders.

Detection (``detect_template``) looks at non-comment lines only, so an nginx config that merely mentions
``{{`` in a comment still parses:

- Jinja: ``{%`` or ``{#`` anywhere (``{{ x }}`` alone is also Jinja/Go-ambiguous, see below);
- Go text/template: ``{{-``, ``-}}``, ``{{/*`` or an action starting with ``$``, ``.``, ``if``, ``range``,
  ``end``, ``define``, ``template``, ``with``, ``block``, ``else``;
- m4: ``dnl``/``define(``/``ifelse(``/``changequote`` or the ``M4_NAME`` macro convention;
- ``{{ name }}`` with nothing that tells Go from Jinja: "Go or Jinja template".

The kind is decided over the whole file; the line reported is the first line carrying template syntax.

envsubst rule (``envsubst``): the one the official nginx Docker image uses — only variables that are
*defined* (given with ``--env K=V`` or, when allowed, present in the environment) are replaced, both
``$NAME`` and ``${NAME}``; every other ``$name`` is left alone, so nginx's own ``$host``, ``$1`` and
``${var}`` survive. Names follow the shell: ``[A-Za-z_][A-Za-z0-9_]*``. Newlines in values are kept
verbatim, so line numbers after a multi-line value shift (as they would for nginx reading the output).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nginx_parser.errors import ConfigError

# A delimiter counts only when its closing partner follows (on any later line): "{#" alone is text.
_JINJA = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_GO = re.compile(r"\{\{-|-\}\}|\{\{/\*|\{\{\s*(?:\$|\.|(?:if|range|end|define|template|with|block|else)\b)")
_CURLY = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_M4 = re.compile(r"\bdnl\b|\bdefine\(|\bifelse\(|\bchangequote\b|\bM4_[A-Z0-9_]+\b")
_PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _code(text: str) -> str:
    """``text`` with comment lines blanked (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith("#") else line for line in text.splitlines())


def detect_template(text: str) -> tuple[str, int] | None:
    """``(kind, line)`` when ``text`` is a template, else None."""
    # Fast path: a plain config has none of the markers (this runs on every file parsed).
    if "{{" not in text and "{%" not in text and "{#" not in text and not _M4.search(text):
        return None
    code = _code(text)
    starts = [m.start() for m in (_CURLY.search(code), _JINJA.search(code)) if m is not None]
    if starts:
        line = code.count("\n", 0, min(starts)) + 1
        jinja = _JINJA.search(code) is not None
        go = _GO.search(code) is not None
        if jinja and not go:
            return "Jinja template", line
        if go and not jinja:
            return "Go template", line
        return "Go or Jinja template", line
    m4 = _M4.search(code)
    if m4 is not None:
        return "m4 template", code.count("\n", 0, m4.start()) + 1
    return None


def check_not_template(text: str, path: str) -> None:
    found = detect_template(text)
    if found is not None:
        kind, line = found
        article = "an" if kind.startswith("m4") else "a"
        raise ConfigError(
            f"this is {article} {kind}, not an nginx config: render it first, then parse the output", path, line
        )


def envsubst(text: str, env: Mapping[str, str]) -> str:
    """Replace ``$NAME``/``${NAME}`` for the names defined in ``env``; leave every other ``$`` as is."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env[name] if name in env else match.group(0)

    return _PLACEHOLDER.sub(replace, text)
