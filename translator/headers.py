"""Rules for nginx's headers filter module: ``expires``, ``add_header``, ``add_trailer``, written out
as ``newproxy.config.ResponseHeadersConfig`` with inheritance resolved (ngx_http_headers_merge_conf):
``expires`` comes from the innermost level that sets it; ``add_header`` (and ``add_trailer``) whole
from the innermost level that has any, so one ``add_header`` in a location or ``if`` block drops
every inherited one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import AddHeaderConfig, ExpiresConfig, ResponseHeadersConfig
from newproxy.engine.headers import parse_expires
from nginx_parser import ConfigError, Directive

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain


def headers_config(translator: Translator, chain: _Chain) -> ResponseHeadersConfig | None:
    """The headers filter in effect for the innermost block of ``chain``; None when it does nothing."""
    expires = _expires(translator, chain)
    add = _added(translator, chain, "add_header")
    trailers = _added(translator, chain, "add_trailer")
    if expires is None and not add and not trailers:
        return None
    return ResponseHeadersConfig(expires=expires, add=add, trailers=trailers)


def _expires(translator: Translator, chain: _Chain) -> ExpiresConfig | None:
    for scope in reversed(chain.scopes):
        found = scope.all("expires")
        if not found:
            continue
        if len(found) > 1:
            raise ConfigError('"expires" directive is duplicate', found[1].file, found[1].line)
        return _expires_directive(translator, found[0])
    return None


def _expires_directive(translator: Translator, directive: Directive) -> ExpiresConfig | None:
    args = directive.args
    if len(args) not in (1, 2):
        raise ConfigError('invalid number of arguments in "expires" directive', directive.file, directive.line)
    modified = len(args) == 2
    if modified and args[0] != "modified":
        raise ConfigError('"expires" directive invalid value', directive.file, directive.line)
    value = args[-1]
    mode = "modified" if modified else "access"
    if "$" in value:
        if not translator._variables_ok(directive, value):
            return None
        return ExpiresConfig(mode=mode, value=value, source=directive.where)  # type: ignore[arg-type]
    parsed = parse_expires(value, modified)
    if isinstance(parsed, str):
        raise ConfigError(f'"expires" directive {parsed}', directive.file, directive.line)
    kind, seconds = parsed
    if kind == "off":
        return None
    if kind == "time":
        kind = mode
    return ExpiresConfig(mode=kind, seconds=seconds, source=directive.where)  # type: ignore[arg-type]


def _added(translator: Translator, chain: _Chain, name: str) -> list[AddHeaderConfig]:
    out = []
    for directive in chain.array(name):
        args = directive.args
        if len(args) not in (2, 3):
            raise ConfigError(f'invalid number of arguments in "{name}" directive', directive.file, directive.line)
        if len(args) == 3 and args[2] != "always":
            raise ConfigError(f'invalid parameter "{args[2]}"', directive.file, directive.line)
        if not translator._variables_ok(directive, args[1]):
            continue  # reported as unsupported at this directive
        out.append(AddHeaderConfig(name=args[0], value=args[1], always=len(args) == 3, source=directive.where))
    return out
