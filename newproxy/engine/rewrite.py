"""ngx_http_rewrite_module: the rewrite phase as a small interpreter over steps compiled at load.

nginx compiles the rewrite directives of a server or location (``if`` blocks inline) into one
script; the script runs until a step ends it. Here each step is a compiled object and ``run``
walks them; it returns ``None`` when the phase ends normally (by falling off the end, ``break``,
or a ``rewrite ... last|break``), or the ``Response`` that ends the request.

What a matching ``rewrite`` changes (ngx_http_script_regex_start/end_code):
- ``$uri`` becomes the replacement (up to its first literal "?"), not decoded again;
- ``$args``: the replacement's part after "?" (then "&" and the original args, unless the
  replacement ends with "?"); without "?" the original args stay, with a trailing "?" they go;
- ``r->internal`` is set (proxy_pass re-escapes $uri), ``$request_uri`` stays the client's;
- ``last`` or no flag: the location is searched again after the phase; ``break``: not, and
  proxy_pass then ignores its URI part (``r->valid_location = 0``);
- a replacement starting with ``http://``, ``https://`` or ``$scheme``, or the flags ``redirect``
  and ``permanent``: the answer is a 302 (301) with that Location, %XX in it decoded as
  NGX_UNESCAPE_REDIRECT does, the original args appended.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Union

from newproxy.engine import trace
from newproxy.engine.context import RequestContext, set_captures
from newproxy.engine.types import Response, Result
from newproxy.engine.variables import Template

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledReturn


@dataclass(slots=True)
class CompiledRewrite:
    regex: re.Pattern[str]
    uri: Template  # the replacement up to its first literal "?"
    args: Template | None  # after the "?", if any
    add_args: bool  # append the original args (the replacement does not end with "?")
    redirect: int  # 0, or the status of the redirect it answers with
    flag: str  # none, last, break, redirect, permanent
    source: str | None


@dataclass(slots=True)
class CompiledSet:
    name: str
    value: Template
    source: str | None


@dataclass(slots=True)
class CompiledBreak:
    source: str | None


@dataclass(slots=True)
class CompiledIf:
    test: Callable[[RequestContext], bool]
    steps: list[Step]
    location: CompiledLocation | None
    source: str | None


Step = Union["CompiledReturn", CompiledRewrite, CompiledSet, CompiledBreak, CompiledIf]

_STEP_KINDS: dict[type, str] = {CompiledSet: "set", CompiledBreak: "break"}

# What ends the phase without a response.
_GO_ON, _STOP = 0, 1


class RewriteError(Exception):
    """The rewrite produced something nginx answers with 500 (e.g. an empty URI)."""


# ngx_unescape_uri(NGX_UNESCAPE_REDIRECT): %XX is decoded only into a byte in ('%', 0x7f), and
# decoding stops at the first "?".
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def unescape_redirect(target: str) -> str:
    if "%" not in target:
        return target
    query = target.find("?")
    head, tail = (target, "") if query < 0 else (target[:query + 1], target[query + 1:])

    def repl(m: re.Match[str]) -> str:
        value = int(m.group(1), 16)
        return chr(value) if 0x25 < value < 0x7F else m.group(0)

    return _PERCENT.sub(repl, head) + tail


# ngx_escape_uri(NGX_ESCAPE_ARGS) as in nginx 1.22 (";" included, measured): what a capture copied into the args part is escaped with, when
# the client's URI had "%" or "+" in it.
_ARGS_ESCAPE = frozenset(b" #%&+;?") | frozenset(range(0x00, 0x20)) | frozenset(range(0x7F, 0x100))


def escape_args(value: str) -> str:
    raw = value.encode("latin-1")
    if not any(b in _ARGS_ESCAPE for b in raw):
        return value
    return "".join("%%%02X" % b if b in _ARGS_ESCAPE else chr(b) for b in raw)


class Actions(Protocol):
    """What the engine lends the rewrite phase to answer with."""

    def rewrite_redirect(self, ctx: RequestContext, status: int, target: str) -> Response: ...

    def rewrite_return(self, ctx: RequestContext, step: CompiledReturn) -> Result: ...


def run(actions: Actions, ctx: RequestContext, steps: list[Step]) -> Result | None:
    """Run a rewrite phase. Returns None when the phase ends, else the answer that ends the request
    (a ``return`` with an error_page may lead anywhere: a proxied location, a limit_req delay...)."""
    result = _run(actions, ctx, steps)
    return None if result is _GO_ON or result is _STOP else result  # type: ignore[return-value]


def _run(actions: Actions, ctx: RequestContext, steps: list[Step]) -> object:
    tracer = trace.tracer
    for step in steps:
        kind = type(step)
        if tracer is not None:
            _trace_step(tracer, ctx, step)
        if kind is CompiledRewrite:
            match = step.regex.search(ctx.uri)  # type: ignore[union-attr]
            if match is None:
                ctx.captures = None  # nginx: a failed rewrite regex leaves $1..$9 empty (named ones stay)
                continue
            outcome = _rewrite(actions, ctx, step, match)  # type: ignore[arg-type]
            if outcome is not _GO_ON:
                return outcome
        elif kind is CompiledSet:
            value = step.value.render(ctx)  # type: ignore[union-attr]
            name = step.name  # type: ignore[union-attr]
            if name == "args":  # nginx's $args is settable; the raw target is then no longer valid
                ctx.args = value
                ctx.valid_unparsed_uri = False
            else:
                if ctx.vars is None:
                    ctx.vars = {}
                ctx.vars[name] = value
        elif kind is CompiledIf:
            if step.test(ctx):  # type: ignore[union-attr]
                if step.location is not None:  # type: ignore[union-attr]
                    ctx.location = step.location  # type: ignore[union-attr]
                outcome = _run(actions, ctx, step.steps)  # type: ignore[union-attr]
                if outcome is not _GO_ON:
                    return outcome
        elif kind is CompiledBreak:
            return _STOP
        else:  # return
            return actions.rewrite_return(ctx, step)  # type: ignore[arg-type]
    return _GO_ON


def _trace_step(tracer: trace.Tracer, ctx: RequestContext, step: Step) -> None:
    """Report a step about to run; for a rewrite, whether its regex matches, for an if, whether it
    is taken (evaluated here on a copy of the captures, so the real run is unchanged)."""
    kind = type(step)
    if kind is CompiledRewrite:
        tracer("rewrite", step.source, step.regex.search(ctx.uri) is not None)  # type: ignore[union-attr]
    elif kind is CompiledIf:
        captures = ctx.captures
        tracer("if", step.source, step.test(ctx))  # type: ignore[union-attr]
        ctx.captures = captures
    else:
        tracer(_STEP_KINDS.get(kind, "return"), step.source, None)  # type: ignore[union-attr]


def _rewrite(actions: Actions, ctx: RequestContext, step: CompiledRewrite, match: re.Match[str]) -> object:
    set_captures(ctx, match)
    uri = step.uri.render(ctx)
    args = step.args.render(ctx) if step.args is not None else None
    if step.redirect:
        target = uri if args is None else uri + "?" + args
        target = unescape_redirect(target)
        if step.add_args and ctx.args:
            target += ("&" if args is not None else "?") + ctx.args
        return actions.rewrite_redirect(ctx, step.redirect, target)
    if args is not None:
        if step.add_args and ctx.args:
            args += "&" + ctx.args
        ctx.args = args
    elif not step.add_args:
        ctx.args = ""
    if not uri:
        raise RewriteError("the rewritten URI has a zero length")
    ctx.uri = uri
    ctx.internal = True
    ctx.valid_unparsed_uri = False
    if step.flag == "break":
        ctx.valid_location = False
        ctx.uri_changed = False
        return _STOP
    ctx.uri_changed = True
    return _STOP if step.flag == "last" else _GO_ON


# -- if conditions ------------------------------------------------------------------------------


def _file_test(operator: str) -> Callable[[str], bool]:
    """-f -d -e -x as nginx's ngx_open_cached_file answers them (symlinks followed)."""
    negate = operator.startswith("!")
    op = operator.lstrip("!")

    def test(path: str) -> bool:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            result = False
        else:
            if op == "-f":
                result = stat.S_ISREG(st.st_mode)
            elif op == "-d":
                result = stat.S_ISDIR(st.st_mode)
            elif op == "-e":
                result = True
            else:  # -x
                result = not stat.S_ISDIR(st.st_mode) and os.access(path, os.X_OK)
        return result != negate

    return test


def compile_condition(operator: str, value: Template, operand: Template | re.Pattern[str] | None
                      ) -> Callable[[RequestContext], bool]:
    if operator == "true":
        return lambda ctx: value.render(ctx) not in ("", "0")
    if operator in ("=", "!="):
        assert isinstance(operand, Template)
        equal = operator == "="
        return lambda ctx: (value.render(ctx) == operand.render(ctx)) == equal
    if operator in ("~", "~*", "!~", "!~*"):
        assert isinstance(operand, re.Pattern)
        positive = not operator.startswith("!")

        def regex_test(ctx: RequestContext) -> bool:
            match = operand.search(value.render(ctx))
            if match is not None:
                set_captures(ctx, match)
            else:
                ctx.captures = None  # nginx: a failed if regex leaves $1..$9 empty (named ones stay)
            return (match is not None) == positive

        return regex_test
    file_test = _file_test(operator)
    return lambda ctx: file_test(value.render(ctx))
