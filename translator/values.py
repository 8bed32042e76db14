"""Argument checks several translator modules share, with nginx's own error words.

``flag`` is ngx_conf_set_flag_slot (on/off, any case); ``number`` is ngx_conf_set_num_slot for the
non-negative counts (http2_*, http3_* streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nginx_parser import ConfigError, Directive

if TYPE_CHECKING:
    from translator.translate import _Chain


def flag(directive: Directive) -> bool:
    value = directive.args[0].lower() if len(directive.args) == 1 else ""
    if value not in ("on", "off"):
        raise ConfigError(f'invalid value "{directive.args[0] if directive.args else ""}" in "{directive.name}" '
                          'directive, it must be "on" or "off"', directive.file, directive.line)
    return value == "on"


def scalar_flag(chain: _Chain, name: str, default: bool) -> bool:
    """The flag ``name`` in force at the end of ``chain``, ``default`` when no level sets it."""
    directive = chain.scalar(name)
    return flag(directive) if directive is not None else default


def number(directive: Directive) -> int:
    value = directive.args[0] if directive.args else ""
    if not value.isdigit():
        raise ConfigError(f'invalid number "{value}" in "{directive.name}" directive', directive.file,
                          directive.line)
    return int(value)
