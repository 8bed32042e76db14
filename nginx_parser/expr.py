"""nginx expressions as small ASTs: complex values (``"$scheme://$host$request_uri"``) and ``if`` conditions.

Both grammars are lark LALR grammars, built once at import. Complex values follow
``ngx_http_script_compile``: ``$name`` (letters, digits, ``_``), ``${name}`` (so text may follow directly),
``$1``..``$9`` regex captures (one digit: ``$12`` is capture 1 then "2"); a ``$`` with no name after it is
an error, as in nginx. ``if`` conditions follow ``ngx_http_rewrite_if_condition`` on the argument list
crossplane gives (parentheses already stripped): a bare variable, ``$v = text``, ``$v != text``,
``$v ~ re``/``~*``/``!~``/``!~*``, and ``-f -d -e -x`` with their ``!`` negations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError
from lark.lexer import Lexer

from nginx_parser.regex import Regex, RegexError, compile_regex


class ExpressionError(ValueError):
    """An expression nginx would refuse; the message is nginx's wording where it has one."""


# ---- complex values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(frozen=True, slots=True)
class Capture:
    index: int


Part = Text | Var | Capture


@dataclass(frozen=True, slots=True)
class ComplexValue:
    parts: tuple[Part, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(part, Text) for part in self.parts)

    def variables(self) -> list[str]:
        return [part.name for part in self.parts if isinstance(part, Var)]


_VALUE_GRAMMAR = r"""
start: part*
?part: TEXT -> text
     | BRACED -> braced
     | CAPTURE -> capture
     | VAR -> var
BRACED: /\$\{[A-Za-z0-9_]+\}/
CAPTURE: /\$[0-9]/
VAR: /\$[A-Za-z_][A-Za-z0-9_]*/
TEXT: /[^$]+/
"""


class _ValueBuilder(Transformer[Token, ComplexValue]):
    def start(self, parts: list[Part]) -> ComplexValue:
        merged: list[Part] = []
        for part in parts:
            if isinstance(part, Text) and merged and isinstance(merged[-1], Text):
                merged[-1] = Text(merged[-1].text + part.text)
            else:
                merged.append(part)
        return ComplexValue(tuple(merged))

    def text(self, token: list[Token]) -> Text:
        return Text(str(token[0]))

    def braced(self, token: list[Token]) -> Var:
        return Var(str(token[0])[2:-1])

    def capture(self, token: list[Token]) -> Capture:
        return Capture(int(str(token[0])[1]))

    def var(self, token: list[Token]) -> Var:
        return Var(str(token[0])[1:])


_VALUE_PARSER = Lark(_VALUE_GRAMMAR, parser="lalr", lexer="basic", transformer=_ValueBuilder())


def parse_value(value: str) -> ComplexValue:
    """A complex value as its parts; raises ``ExpressionError`` like nginx does on a bad ``$``."""
    if "$" not in value:
        return ComplexValue((Text(value),) if value else ())  # the common case, no parser needed
    try:
        result: ComplexValue = _VALUE_PARSER.parse(value)  # type: ignore[assignment]
    except LarkError:
        if "${" in value and "}" not in value.split("${", 1)[1]:
            raise ExpressionError(f'the closing bracket in "{value}" variable is missing') from None
        raise ExpressionError(f'invalid variable name in "{value}"') from None
    return result


# ---- if conditions --------------------------------------------------------------------------------

FileTest = Literal["-f", "!-f", "-d", "!-d", "-e", "!-e", "-x", "!-x"]
MatchOp = Literal["~", "~*", "!~", "!~*"]


@dataclass(frozen=True, slots=True)
class Truthy:
    """``if ($var)``: true unless the value is empty or "0"."""

    variable: str


@dataclass(frozen=True, slots=True)
class Compare:
    variable: str
    negated: bool
    value: ComplexValue


@dataclass(frozen=True, slots=True)
class RegexMatch:
    variable: str
    op: MatchOp
    regex: Regex


@dataclass(frozen=True, slots=True)
class FileCheck:
    op: FileTest
    path: ComplexValue


Condition = Truthy | Compare | RegexMatch | FileCheck

# The condition grammar runs on nginx's argument list, not on text: each argument becomes one token
# (a custom lexer below), so quoting and spaces were already settled by the tokeniser.
_IF_GRAMMAR = r"""
start: VARIABLE                  -> truthy
     | VARIABLE CMP ARG          -> compare
     | VARIABLE CMP VARIABLE     -> compare
     | VARIABLE MATCH ARG        -> match
     | VARIABLE MATCH VARIABLE   -> match
     | FILETEST ARG              -> filetest
     | FILETEST VARIABLE         -> filetest
%declare VARIABLE CMP MATCH FILETEST ARG
"""

_FILETESTS = {"-f", "!-f", "-d", "!-d", "-e", "!-e", "-x", "!-x"}


def _is_single_variable(arg: str) -> bool:
    if not arg.startswith("$"):
        return False
    try:
        parts = parse_value(arg).parts
    except ExpressionError:
        return False
    return len(parts) == 1 and isinstance(parts[0], (Var, Capture))


class _ArgLexer(Lexer):
    def __init__(self, lexer_conf: object) -> None:
        pass

    def lex(self, data: list[str]) -> Iterator[Token]:  # type: ignore[override]
        for index, arg in enumerate(data):
            if index == 1 and arg in ("=", "!="):
                kind = "CMP"
            elif index == 1 and arg in ("~", "~*", "!~", "!~*"):
                kind = "MATCH"
            elif index == 0 and arg in _FILETESTS:
                kind = "FILETEST"
            elif _is_single_variable(arg):
                kind = "VARIABLE"
            else:
                kind = "ARG"
            yield Token(kind, arg)


_IF_PARSER = Lark(_IF_GRAMMAR, parser="lalr", lexer=_ArgLexer)


def _var_name(token: Token) -> str:
    part = parse_value(str(token)).parts[0]
    return part.name if isinstance(part, Var) else str(part.index)  # type: ignore[union-attr]


def parse_condition(args: list[str]) -> Condition:
    """An ``if`` condition from its arguments (parentheses stripped, as crossplane gives them)."""
    try:
        tree = _IF_PARSER.parse(args)  # type: ignore[arg-type]
    except (LarkError, ExpressionError):
        raise ExpressionError(f'invalid condition "{" ".join(args)}"') from None
    tokens: list[Token] = list(tree.children)  # type: ignore[arg-type]
    if tree.data == "truthy":
        return Truthy(_var_name(tokens[0]))
    if tree.data == "compare":
        return Compare(_var_name(tokens[0]), str(tokens[1]) == "!=", parse_value(str(tokens[2])))
    if tree.data == "match":
        op: MatchOp = str(tokens[1])  # type: ignore[assignment]
        try:
            regex = compile_regex(str(tokens[2]), caseless=op.endswith("*"))
        except RegexError as exc:
            raise ExpressionError(str(exc)) from None
        return RegexMatch(_var_name(tokens[0]), op, regex)
    filetest: FileTest = str(tokens[0])  # type: ignore[assignment]
    return FileCheck(filetest, parse_value(str(tokens[1])))
