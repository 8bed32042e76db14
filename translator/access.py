"""Rules for nginx's access, auth_basic, auth_request and realip modules, written out as
``newproxy.config.AccessConfig`` and ``RealIpConfig`` with inheritance resolved as nginx merges them:

- ``allow``/``deny``: the whole list from the innermost block that has any rule (ngx_http_access_merge_loc_conf);
- ``auth_basic``, ``auth_basic_user_file``, ``auth_request``, ``satisfy``, ``auth_delay``,
  ``real_ip_header``, ``real_ip_recursive``: the innermost one set;
- ``auth_request_set``, ``set_real_ip_from``: the whole list from the innermost block that has any.

Arguments are checked with nginx's own messages (nginx -t fails on them too).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from newproxy.config import (
    AccessConfig,
    AccessRuleConfig,
    AuthRequestSetConfig,
    RealIpConfig,
)
from newproxy.engine.access import auth_set_variables_known
from newproxy.engine.addresses import parse_cidr
from newproxy.engine.variables import variable_names
from nginx_parser import ConfigError, Directive, parse_time

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

ACCESS_DIRECTIVES = frozenset({"allow", "deny", "auth_basic", "auth_basic_user_file", "auth_request",
                               "auth_request_set", "satisfy"})


def _error(directive: Directive, message: str) -> ConfigError:
    return ConfigError(message, directive.file, directive.line)


def _innermost(chain: _Chain, names: tuple[str, ...]) -> list[Directive]:
    """The directives named ``names`` of the innermost block that has any of them, in order."""
    for scope in reversed(chain.scopes):
        found = [d for d in scope.directives if d.name in names]
        if found:
            return found
    return []


def _rule(directive: Directive) -> AccessRuleConfig:
    address = directive.args[0]
    if address not in ("all", "unix:") and parse_cidr(address) is None:
        raise _error(directive, f'invalid parameter "{address}"')
    return AccessRuleConfig(action=directive.name, address=address, source=directive.where)  # type: ignore[arg-type]


def _in_limit_except(translator: Translator, chain: _Chain) -> None:
    """Access directives inside limit_except (not built) are reported, never silently dropped."""
    for directive in chain.scopes[-1].directives:
        if directive.name != "limit_except":
            continue
        for child in directive.children():
            if child.name in ACCESS_DIRECTIVES:
                translator.note(child, "unsupported", "limit_except is not built: this rule is not applied")


def _user_file(translator: Translator, realm: Directive, user_file: Directive) -> str | None:
    """The user file's absolute path, or None (the occurrence noted) when auth_basic cannot be
    translated: newproxy then does not ask for credentials there, which the gap report says."""
    path = user_file.args[0]
    if not (translator._variables_ok(realm, realm.args[0]) and translator._variables_ok(user_file, path)):
        return None
    if path.startswith("$"):
        translator.note(user_file, "unsupported", "a user file path starting with a variable is not translated "
                                                  "(nginx resolves it against its conf prefix): no credentials "
                                                  "are asked for here")
        return None
    if not path.startswith("/"):
        # nginx reads a relative path against its conf prefix: the main config's directory.
        path = os.path.join(os.path.dirname(translator.nginx.main_file), path)
    return path


def access_config(translator: Translator, chain: _Chain) -> AccessConfig | None:
    """The access phase in effect in the innermost block of ``chain``; None when it has nothing to do."""
    _in_limit_except(translator, chain)
    config = AccessConfig(rules=[_rule(d) for d in _innermost(chain, ("allow", "deny"))])
    satisfy = chain.scalar("satisfy")
    if satisfy is not None:
        if satisfy.args[0] not in ("all", "any"):
            raise _error(satisfy, f'invalid value "{satisfy.args[0]}" in "satisfy" directive, '
                                  'it must be "all" or "any"')
        config.satisfy = satisfy.args[0]  # type: ignore[assignment]
    realm = chain.scalar("auth_basic")
    user_file = chain.scalar("auth_basic_user_file")
    if realm is not None and user_file is not None and realm.args[0] != "off":
        path = _user_file(translator, realm, user_file)
        if path is not None:
            config.auth_basic = realm.args[0]
            config.auth_basic_user_file = path
    request = chain.scalar("auth_request")
    if request is not None and request.args[0] != "off":
        config.auth_request = request.args[0]
    for directive in chain.array("auth_request_set"):
        name, value = directive.args
        if not name.startswith("$"):
            raise _error(directive, f'invalid variable name "{name}"')
        upstream = set(auth_set_variables_known(value))
        # The other $upstream_* variables would read the main request's upstream attempts, not the
        # subrequest's: not translated.
        unknown = [n for n in variable_names(value) if n not in upstream and (
            n.startswith("upstream_") or not translator._variables_known("$" + n))]
        if unknown:
            translator.note(directive, "unsupported", f"uses variables newproxy does not provide yet: "
                                                      f"{', '.join(unknown)}")
            continue
        config.auth_request_set.append(AuthRequestSetConfig(variable=name[1:], value=value, source=directive.where))
    if not config.rules and config.auth_basic is None and config.auth_request is None:
        return None
    delay = chain.scalar("auth_delay")
    if delay is not None:
        config.auth_delay = parse_time(delay.args[0], delay)
    return config


def real_ip_config(translator: Translator, chain: _Chain) -> RealIpConfig | None:
    """realip in effect in the innermost block of ``chain``; None when no set_real_ip_from applies."""
    trusted: list[str] = []
    for directive in chain.array("set_real_ip_from"):
        value = directive.args[0]
        if value != "unix:" and parse_cidr(value) is None:
            translator.note(directive, "unsupported", "a host name in set_real_ip_from is not resolved by "
                                                      "newproxy: this entry is not trusted")
            continue
        trusted.append(value)
    header = chain.scalar("real_ip_header")
    if header is not None and header.args[0] == "proxy_protocol":
        translator.note(header, "unsupported", "real_ip_header proxy_protocol: newproxy does not read the PROXY "
                                               "protocol; the client address is left as it is")
        return None
    if not trusted:
        return None
    recursive = chain.scalar("real_ip_recursive")
    if recursive is not None and recursive.args[0] not in ("on", "off"):
        raise _error(recursive, f'invalid value "{recursive.args[0]}" in "real_ip_recursive" directive, '
                                'it must be "on" or "off"')
    return RealIpConfig(set_real_ip_from=trusted, header=header.args[0] if header is not None else "X-Real-IP",
                        recursive=recursive is not None and recursive.args[0] == "on")
