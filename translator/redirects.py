"""proxy_redirect, proxy_cookie_domain and proxy_cookie_path: nginx's merge written out.

ngx_http_proxy_merge_loc_conf, walked from the outermost block in: a block with any of the
directive replaces what it inherits (``off`` clears it); a block with its own ``proxy_pass`` and no
redirect rules of its own or inherited gets the default rule (the proxy_pass URL replaced by the
location's name when the URL has a URI part, else URL + "/" replaced by "/"). An inner location
inherits its parent's list as is, the parent's default rule included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from newproxy.config import RewriteRuleConfig
from nginx_parser import ConfigError, Directive

# (directives of a block, the location's name for a prefix/exact location, "" otherwise)
Block = tuple[Sequence[Directive], str]
VariablesOk = Callable[[Directive, str], bool]


def _duplicate(directive: Directive) -> ConfigError:
    return ConfigError(f'"{directive.name}" directive is duplicate', directive.file, directive.line)


def _default(proxy_pass: Directive, name: str, where: str | None) -> RewriteRuleConfig:
    url = proxy_pass.args[0]
    scheme_end = url.find("://")
    has_uri = scheme_end >= 0 and url.find("/", scheme_end + 3) >= 0
    if has_uri:
        return RewriteRuleConfig(kind="prefix", pattern=url, replacement=name, source=where)
    return RewriteRuleConfig(kind="prefix", pattern=url + "/", replacement="/", source=where)


def _regex_rule(directive: Directive, pattern: str, replacement: str, cookie_domain: bool) -> RewriteRuleConfig:
    body = pattern[1:]
    caseless = cookie_domain  # proxy_cookie_domain's regexes are always caseless
    if body.startswith("*") and not cookie_domain:
        body, caseless = body[1:], True
    return RewriteRuleConfig(kind="regex_caseless" if caseless else "regex", pattern=body, replacement=replacement,
                             source=directive.where)


def redirect_rules(blocks: list[Block], variables_ok: VariablesOk) -> list[RewriteRuleConfig]:
    """The proxy_redirect rules in force in the innermost block of ``blocks``."""
    enabled = True
    rules: list[RewriteRuleConfig] | None = None
    for directives, name in blocks:
        own = [d for d in directives if d.name == "proxy_redirect"]
        proxy_pass: Directive | None = None
        if own:
            enabled, rules = True, []
            for directive in directives:
                if directive.name == "proxy_pass":
                    proxy_pass = directive
                if directive.name != "proxy_redirect":
                    continue
                args = directive.args
                if not enabled:
                    raise _duplicate(directive)
                if len(args) == 1 and args[0] == "off":
                    if rules:
                        raise _duplicate(directive)
                    enabled = False
                    continue
                if len(args) == 1 and args[0] != "default":
                    raise ConfigError(f'invalid parameter "{args[0]}"', directive.file, directive.line)
                if len(args) == 1:
                    if proxy_pass is None:
                        raise ConfigError('"proxy_redirect default" should be placed after the "proxy_pass" '
                                          'directive', directive.file, directive.line)
                    if "$" in proxy_pass.args[0]:
                        raise ConfigError('"proxy_redirect default" cannot be used with "proxy_pass" directive '
                                          'with variables', directive.file, directive.line)
                    rules.append(_default(proxy_pass, name, directive.where))
                    continue
                pattern, replacement = args
                if not variables_ok(directive, replacement):
                    continue
                if pattern.startswith("~"):
                    rules.append(_regex_rule(directive, pattern, replacement, cookie_domain=False))
                elif variables_ok(directive, pattern):
                    rules.append(RewriteRuleConfig(kind="prefix", pattern=pattern, replacement=replacement,
                                                   source=directive.where))
        proxy_pass = next((d for d in reversed(directives) if d.name == "proxy_pass"), None)
        if enabled and rules is None and proxy_pass is not None and "$" not in proxy_pass.args[0]:
            rules = [_default(proxy_pass, name, None)]
    return (rules or []) if enabled else []


def cookie_rules(blocks: list[Block], directive_name: str, variables_ok: VariablesOk) -> list[RewriteRuleConfig]:
    """proxy_cookie_domain or proxy_cookie_path rules in force in the innermost block."""
    domain = directive_name == "proxy_cookie_domain"
    rules: list[RewriteRuleConfig] = []
    for directives, _ in blocks:
        own = [d for d in directives if d.name == directive_name]
        if not own:
            continue
        rules = []
        off = False
        for directive in own:
            args = directive.args
            if off:
                raise _duplicate(directive)
            if len(args) == 1:
                if args[0] != "off":
                    raise ConfigError(f'invalid parameter "{args[0]}"', directive.file, directive.line)
                if rules:
                    raise _duplicate(directive)
                off = True
                continue
            pattern, replacement = args
            if not variables_ok(directive, replacement):
                continue
            if pattern.startswith("~"):
                rules.append(_regex_rule(directive, pattern, replacement, cookie_domain=domain))
                continue
            if not variables_ok(directive, pattern):
                continue
            if domain:  # a leading "." of either is not part of the comparison or the result
                pattern = pattern.removeprefix(".")
                replacement = replacement.removeprefix(".")
            rules.append(RewriteRuleConfig(kind="domain" if domain else "prefix", pattern=pattern,
                                           replacement=replacement, source=directive.where))
    return rules
