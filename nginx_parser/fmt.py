"""Print a directive tree back as nginx config text, includes expanded in place.

The printer is ours, not ``crossplane.build``: crossplane quotes with Python's ``repr`` and leaves a
leading ``#`` unquoted, and both change what nginx reads back. Invariant: tokenising the output gives
back exactly the names and arguments of the tree (``parse(fmt(x)) == x``, tested on generated trees).
"""

from __future__ import annotations

from nginx_parser.ir import Directive, iter_spliced

# Characters that end or start a token, or a comment, in ngx_conf_read_token.
_SPECIAL = set(' \t\r\n\f\v;{}"\'#')
_QUOTED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape(arg: str) -> str:
    """The inverse of nginx's token unescaping for an unquoted token (no whitespace or quotes in it)."""
    out: list[str] = []
    for index, char in enumerate(arg):
        if char == "\\":
            following = arg[index + 1:index + 2]
            out.append("\\\\" if following in ("", "\\", "t", "r", "n", '"', "'") else "\\")
        else:
            out.append(char)
    return "".join(out)


def quote(arg: str) -> str:
    """``arg`` as one nginx token: bare when it can be, else double-quoted with nginx's escapes."""
    if arg and not any(char in _SPECIAL for char in arg):
        return escape(arg)
    return '"' + "".join(_QUOTED_ESCAPES.get(char, char) for char in arg) + '"'


def _lines(directives: list[Directive], depth: int) -> list[str]:
    pad = "    " * depth
    out: list[str] = []
    for directive in iter_spliced(directives):
        words = [quote(directive.name)]
        if directive.name == "if":
            words.append("(" + " ".join(quote(a) for a in directive.args) + ")")
        else:
            words.extend(quote(a) for a in directive.args)
        if directive.name.endswith("_by_lua_block") and directive.args:
            # crossplane's Lua lexer hands the body over as the last argument, braces stripped
            head = pad + " ".join(words[:-1])
            out.append(f"{head} {{{directive.args[-1]}}}")
            continue
        head = pad + " ".join(words)
        if directive.block is None:
            out.append(head + ";")
        else:
            out.append(head + " {")
            out.extend(_lines(directive.block, depth + 1))
            out.append(pad + "}")
    return out


def unwrap(directives: list[Directive]) -> list[Directive]:
    """The snippet inside the synthetic blocks a context wrapped around it (see loader.wrap)."""
    while len(directives) == 1 and directives[0].synthetic:
        directives = directives[0].block or []
    return directives


def format_tree(directives: list[Directive]) -> str:
    """nginx text for ``directives`` as one self-contained file (every include spliced in)."""
    return "\n".join(_lines(directives, 0)) + "\n"
