"""Print a directive tree back as nginx config text, includes expanded in place."""

from __future__ import annotations

import crossplane  # type: ignore[import-untyped]

from nginx_parser.ir import Directive, iter_spliced


def escape(arg: str) -> str:
    """The inverse of nginx's token unescaping, so that ``parse(fmt(x))`` gives back the same value."""
    out: list[str] = []
    for index, char in enumerate(arg):
        if char == "\\":
            following = arg[index + 1:index + 2]
            out.append("\\\\" if following in ("", "\\", "t", "r", "n", '"', "'") else "\\")
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        else:
            out.append(char)
    return "".join(out)


def _to_payload(directives: list[Directive]) -> list[dict]:
    payload: list[dict] = []
    for directive in iter_spliced(directives):
        item: dict = {"directive": directive.name, "args": [escape(a) for a in directive.args]}
        if directive.block is not None:
            item["block"] = _to_payload(directive.block)
        payload.append(item)
    return payload


def format_tree(directives: list[Directive]) -> str:
    """nginx text for ``directives`` as one self-contained file (every include spliced in)."""
    return crossplane.build(_to_payload(directives), indent=4, tabs=False) + "\n"
