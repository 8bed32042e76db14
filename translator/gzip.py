"""Rules for nginx's gzip filter and the gzip settings of its core module: ``gzip``, ``gzip_types``,
``gzip_min_length``, ``gzip_comp_level``, ``gzip_vary``, ``gzip_proxied``, ``gzip_disable``,
``gzip_http_version``, written out as ``newproxy.config.GzipConfig`` (null where gzip is off).

Inheritance as nginx merges each one: scalars from the innermost block that sets them;
``gzip_types`` whole from the innermost block that has any (several in one block add up, and
text/html is always among them); ``gzip_proxied`` likewise (a bitmask: several in one block add
up); ``gzip_disable``'s regexes from the innermost block that has any, while its ``msie6`` flag is
merged on its own (a block whose gzip_disable lists regexes only keeps an outer ``msie6``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from newproxy.config import GzipConfig
from nginx_parser import ConfigError, Directive
from translator.values import flag, scalar_flag

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

PROXIED = ("off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth", "any")
_SIZE = re.compile(r"^(\d+)([kKmM]?)$")


def gzip_config(translator: Translator, chain: _Chain) -> GzipConfig | None:
    """The gzip settings in effect for the innermost block of ``chain``; None when gzip is off."""
    _check_all(chain)
    enable = chain.scalar("gzip")
    if enable is None or not flag(enable):
        return None
    config = GzipConfig(source=enable.where)
    types = chain.array("gzip_types")
    if types:
        names = ["text/html"]
        for directive in types:
            for arg in directive.args:
                if arg == "*":
                    names = ["*"]
                    break
                if arg.lower() not in names:
                    names.append(arg.lower())
            if names == ["*"]:
                break
        config.types = names
    length = chain.scalar("gzip_min_length")
    if length is not None:
        config.min_length = _size(length)
    level = chain.scalar("gzip_comp_level")
    if level is not None:
        config.comp_level = _level(level)
    config.vary = scalar_flag(chain, "gzip_vary", False)
    proxied = chain.array("gzip_proxied")
    if proxied:
        flags: list[str] = []
        for directive in proxied:
            for arg in directive.args:
                if arg.lower() not in flags:
                    flags.append(arg.lower())
        config.proxied = flags  # type: ignore[assignment]
    disable = chain.array("gzip_disable")
    config.disable = [arg for d in disable for arg in d.args if arg != "msie6"]
    config.disable_msie6 = any(arg == "msie6" for scope in chain.scopes for d in scope.all("gzip_disable")
                               for arg in d.args)
    version = chain.scalar("gzip_http_version")
    if version is not None:
        config.http_version = version.args[0]  # type: ignore[assignment]
    return config


def _check_all(chain: _Chain) -> None:
    """nginx rejects bad values at load, wherever they are (an outer block's too, gzip on or off)."""
    for directive in (d for scope in chain.scopes for d in scope.directives):
        name = directive.name
        if name in ("gzip", "gzip_vary"):
            flag(directive)
        elif name == "gzip_proxied":
            for arg in directive.args:
                if arg.lower() not in PROXIED:
                    raise ConfigError(f'invalid value "{arg}"', directive.file, directive.line)
        elif name == "gzip_http_version":
            if directive.args[:1] not in (["1.0"], ["1.1"]) or len(directive.args) != 1:
                raise ConfigError(f'invalid value "{" ".join(directive.args)}" in "gzip_http_version" directive, '
                                  'it must be "1.0" or "1.1"', directive.file, directive.line)
        elif name == "gzip_min_length":
            _size(directive)
        elif name == "gzip_comp_level":
            _level(directive)
        elif name == "gzip_disable":
            for arg in directive.args:
                if arg != "msie6":
                    try:
                        re.compile(arg, re.IGNORECASE)
                    except re.error as exc:
                        raise ConfigError(f'gzip_disable regex "{arg}" is not supported by newproxy ({exc})',
                                          directive.file, directive.line) from None


def _size(directive: Directive) -> int:
    match = _SIZE.match(directive.args[0]) if len(directive.args) == 1 else None
    if match is None:
        raise ConfigError(f'"{directive.name}" directive invalid value', directive.file, directive.line)
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]


def _level(directive: Directive) -> int:
    value = directive.args[0] if len(directive.args) == 1 else ""
    if not value.isdigit():
        raise ConfigError(f'invalid number "{value}" in "gzip_comp_level" directive', directive.file, directive.line)
    level = int(value)
    if level < 1:
        raise ConfigError('"gzip_comp_level" directive: the value must be equal or more than 1', directive.file,
                          directive.line)
    if level > 9:
        raise ConfigError('"gzip_comp_level" directive: the value must be equal or less than 9', directive.file,
                          directive.line)
    return level

