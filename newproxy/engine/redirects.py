"""proxy_redirect and proxy_cookie_domain/_path: rewriting Location, Refresh and Set-Cookie of a
proxied response, as ngx_http_proxy_module.c does (ngx_http_proxy_rewrite_redirect and
ngx_http_proxy_rewrite_cookie with their complex/regex/domain handlers).

A rule list is tried in order; the first rule that matches rewrites the value and ends the list.
A prefix rule replaces the part it matched; a regex rule replaces the whole value (after Refresh's
``url=``) with its replacement, in which $1..$9 are the regex's captures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.config import RewriteRuleConfig
from newproxy.engine.context import RequestContext, set_captures
from newproxy.engine.regex import compile_regex

if TYPE_CHECKING:
    from newproxy.engine.variables import Template


@dataclass(slots=True, frozen=True)
class CompiledRule:
    kind: str  # "prefix", "domain", "regex"
    pattern: Template | None  # prefix and domain rules
    regex: re.Pattern[str] | None  # regex rules
    replacement: Template

    def apply(self, ctx: RequestContext, value: str, prefix: int) -> str | None:
        """The rewritten value, or None when the rule does not match (nginx's NGX_DECLINED)."""
        if self.regex is not None:
            match = self.regex.search(value[prefix:])  # "^" anchors at the url= of a Refresh
            if match is None:
                return None
            set_captures(ctx, match)  # ngx_http_regex_exec: the replacement's $1..$9
            return value[:prefix] + self.replacement.render(ctx)
        assert self.pattern is not None
        pattern = self.pattern.render(ctx)
        if self.kind == "domain":
            if prefix < len(value) and value[prefix] == ".":
                prefix += 1
            if value[prefix:].lower() != pattern.lower():
                return None
            return value[:prefix] + self.replacement.render(ctx)
        if not value.startswith(pattern, prefix):
            return None
        return value[:prefix] + self.replacement.render(ctx) + value[prefix + len(pattern):]


def compile_rules(rules: list[RewriteRuleConfig], template: Callable[[str], Template]) -> tuple[CompiledRule, ...]:
    out = []
    for rule in rules:
        if rule.kind in ("regex", "regex_caseless"):
            out.append(CompiledRule("regex", None, compile_regex(rule.pattern, caseless=rule.kind == "regex_caseless"),
                                    template(rule.replacement)))
        else:
            out.append(CompiledRule(rule.kind, template(rule.pattern), None, template(rule.replacement)))
    return tuple(out)


def _first(rules: tuple[CompiledRule, ...], ctx: RequestContext, value: str, prefix: int) -> str | None:
    for rule in rules:
        result = rule.apply(ctx, value, prefix)
        if result is not None:
            return result
    return None


@dataclass(slots=True, frozen=True)
class HeaderRewrites:
    """A location's proxy_redirect and proxy_cookie_* rules, compiled at load; None when it has none."""

    redirects: tuple[CompiledRule, ...]
    cookie_domains: tuple[CompiledRule, ...]
    cookie_paths: tuple[CompiledRule, ...]
    names: frozenset[bytes]  # the lower-case header names these rules look at

    @classmethod
    def build(cls, redirects: tuple[CompiledRule, ...], domains: tuple[CompiledRule, ...],
              paths: tuple[CompiledRule, ...]) -> HeaderRewrites | None:
        names = set()
        if redirects:
            names |= {b"location", b"refresh"}
        if domains or paths:
            names.add(b"set-cookie")
        if not names:
            return None
        return cls(redirects, domains, paths, frozenset(names))

    def location(self, ctx: RequestContext, value: bytes) -> bytes | None:
        """ngx_http_upstream_rewrite_location: the rewritten value, None when no rule matched."""
        result = _first(self.redirects, ctx, value.decode("latin-1"), 0)
        return None if result is None else result.encode("latin-1")

    def refresh(self, ctx: RequestContext, value: bytes) -> bytes | None:
        """ngx_http_upstream_rewrite_refresh: the rules apply after the first "url=" (any case)."""
        at = value.lower().find(b"url=")
        if at < 0:
            return None
        result = _first(self.redirects, ctx, value.decode("latin-1"), at + 4)
        return None if result is None else result.encode("latin-1")

    def set_cookie(self, ctx: RequestContext, value: bytes) -> bytes | None:
        """ngx_http_proxy_rewrite_cookie: Domain and Path attributes rewritten; when one was, the
        cookie is written again from its parsed attributes ("; " between them, spaces trimmed)."""
        attrs = _parse_cookie(value.decode("latin-1"))
        if attrs[0][1] is None:
            return None
        changed = False
        for i in range(1, len(attrs)):
            key, val = attrs[i]
            if val is None:
                continue
            low = key.lower()
            if self.cookie_domains and low == "domain":
                result = _first(self.cookie_domains, ctx, val, 0)
                if result is not None:
                    attrs[i] = (key, result)
                    val = result
                    changed = True
            if self.cookie_paths and low == "path":
                result = _first(self.cookie_paths, ctx, val, 0)
                if result is not None:
                    attrs[i] = (key, result)
                    changed = True
        if not changed:
            return None
        return "; ".join(key if val is None else f"{key}={val}" for key, val in attrs).encode("latin-1")


def _parse_cookie(value: str) -> list[tuple[str, str | None]]:
    """ngx_http_proxy_parse_cookie: ";"-separated name[=value] pairs, blanks around them trimmed."""
    attrs: list[tuple[str, str | None]] = []
    for part in value.split(";"):
        name, eq, val = part.partition("=")
        attrs.append((name.lstrip(" ").rstrip(" "), val.lstrip(" ").rstrip(" ") if eq else None))
    return attrs


def rewrite_header(rewrites: HeaderRewrites, ctx: object, low: bytes, value: bytes) -> tuple[bytes, bool]:
    """(value to relay, whether it is a Location a rule rewrote) for a header in ``rewrites.names``."""
    assert isinstance(ctx, RequestContext)
    if low == b"location":
        result = rewrites.location(ctx, value)
        return (value, False) if result is None else (result, True)
    if low == b"refresh":
        result = rewrites.refresh(ctx, value)
    else:
        result = rewrites.set_cookie(ctx, value)
    return (value if result is None else result), False


def absolute_location(ctx: object, path: bytes) -> bytes:
    """ngx_http_header_filter for a relative Location (absolute_redirect on, server_name_in_redirect
    off, port_in_redirect on): the scheme, the client's host (else the local address), the local
    port unless the scheme's default."""
    assert isinstance(ctx, RequestContext)
    request = ctx.request
    host = ctx.redirect_host or request.local_addr[0]
    port = request.local_addr[1]
    default_port = 443 if request.scheme == "https" else 80
    port_part = "" if port == default_port else f":{port}"
    return f"{request.scheme}://{host}{port_part}".encode("latin-1") + path
