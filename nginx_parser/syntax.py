"""One file's text -> statements (crossplane's payload shape), with nginx's syntax errors and lines.

crossplane's lexer splits the tokens (quotes, escapes, ``${var}``, Lua blocks); the statements are
assembled here rather than by ``crossplane.parse`` because nginx reads in one pass and reports
the first problem where it meets it, and crossplane does not: it accepts a directive ended by ``}``
(``listen 80 }``), checks brace balance only at the end of the file, and gives no tree on error.
On a syntax error, ``SyntaxProblem.partial`` holds the statements read before it, blocks cut short
where the error falls, so that the caller can report an earlier misplaced directive first, as nginx does.
"""

from __future__ import annotations

import io

from crossplane.lexer import _lex_file_object  # type: ignore[import-untyped]
from crossplane.parser import _prepare_if_args  # type: ignore[import-untyped]


class SyntaxProblem(Exception):
    def __init__(self, message: str, line: int, partial: list[dict]) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.partial = partial


def parse_text(text: str) -> list[dict]:
    """Statements as ``{"directive", "line", "args"[, "block"]}``; comments are dropped."""
    root: list[dict] = []
    stack: list[list[dict]] = [root]
    words: list[str] = []
    first_line = 0
    for token, line, quoted in _lex_file_object(io.StringIO(text)):
        if not quoted and token in ("{", ";", "}"):
            if token == "}":
                if words or len(stack) == 1:
                    raise SyntaxProblem('unexpected "}"', line, root)
                stack.pop()
                continue
            if not words:
                raise SyntaxProblem(f'unexpected "{token}"', line, root)
            # "end": the line of the ";" or "{" — where nginx is when it runs the directive, so the
            # line it names in its errors about it.
            stmt: dict = {"directive": words[0], "line": first_line, "args": words[1:], "end": line}
            if stmt["directive"] == "if":
                _prepare_if_args(stmt)
            stack[-1].append(stmt)
            if token == "{":
                stmt["block"] = []
                stack.append(stmt["block"])
            words = []
            continue
        if not quoted and token.startswith("#"):
            continue  # a comment, also inside a multi-line directive's arguments
        if not words:
            first_line = line
        words.append(token)
    end_line = text.count("\n") + 1  # nginx's line counter when it reaches the end of the file
    if words:
        raise SyntaxProblem('unexpected end of file, expecting ";" or "}"', end_line, root)
    if len(stack) > 1:
        raise SyntaxProblem('unexpected end of file, expecting "}"', end_line, root)
    return root
