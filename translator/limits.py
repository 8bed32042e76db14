"""Rules for nginx's limit_req, limit_conn and limit_rate: the zones (``limit_req_zone``,
``limit_conn_zone``, http level) and the settings in effect per block, written out as
``newproxy.config.LimitReqZoneConfig`` / ``LimitConnZoneConfig`` / ``LimitsConfig``.

Inheritance as nginx merges them (ngx_http_limit_req_merge_conf, ngx_http_limit_conn_merge_conf):
``limit_req`` and ``limit_conn`` come whole from the innermost block that has any; the status,
dry_run, limit_rate and limit_rate_after settings are scalars. Arguments are checked with nginx's
own messages (nginx -t fails on them too).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from newproxy.config import (
    LimitConnConfig,
    LimitConnZoneConfig,
    LimitReqConfig,
    LimitReqZoneConfig,
    LimitsConfig,
)
from nginx_parser import ConfigError, Directive

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

_SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MIN_ZONE = 8 * 4096  # nginx: 8 pages
_LOG_LEVELS = ("info", "notice", "warn", "error")


def _error(directive: Directive, message: str) -> ConfigError:
    return ConfigError(message, directive.file, directive.line)


def _size(text: str) -> int | None:
    match = _SIZE.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _FACTOR[match.group(2).lower()]


def _zone(directive: Directive, arg: str) -> tuple[str, int]:
    """``zone=NAME:SIZE`` of a *_zone directive, checked as ngx_http_limit_req_zone does."""
    name, colon, size_text = arg[5:].partition(":")
    size = _size(size_text) if colon else None
    if size is None:
        raise _error(directive, f'invalid zone size "{arg}"')
    if size < _MIN_ZONE:
        raise _error(directive, f'zone "{arg}" is too small')
    return name, size


def _rate(directive: Directive, arg: str) -> int:
    """``rate=Nr/s`` or ``rate=Nr/m``, in milli-requests per second as nginx keeps it."""
    text, scale = arg[5:], 1
    if text.endswith("r/s"):
        text = text[:-3]
    elif text.endswith("r/m"):
        text, scale = text[:-3], 60
    if not text.isdigit() or int(text) <= 0:
        raise _error(directive, f'invalid rate "{arg}"')
    return int(text) * 1000 // scale


def limit_zones(translator: Translator, directives: list[Directive]) -> tuple[list[LimitReqZoneConfig],
                                                                              list[LimitConnZoneConfig]]:
    """The http block's limit_req_zone and limit_conn_zone directives. A zone whose key uses a
    variable newproxy lacks is left out (a gap), and so is every limit that uses it."""
    req: list[LimitReqZoneConfig] = []
    conn: list[LimitConnZoneConfig] = []
    names: dict[str, str] = {}
    for directive in directives:
        if directive.name not in ("limit_req_zone", "limit_conn_zone"):
            continue
        if len(directive.args) != (3 if directive.name == "limit_req_zone" else 2):
            raise _error(directive, f'invalid number of arguments in "{directive.name}" directive')
        key, name, size, rate = directive.args[0], "", 0, 1000
        for arg in directive.args[1:]:
            if arg.startswith("zone="):
                name, size = _zone(directive, arg)
            elif arg.startswith("rate=") and directive.name == "limit_req_zone":
                rate = _rate(directive, arg)
            else:
                raise _error(directive, f'invalid parameter "{arg}"')
        if not name:
            raise _error(directive, f'"{directive.name}" must have "zone" parameter')
        if name in names:
            raise _error(directive, f'{directive.name} "{name}" is already bound to key "{names[name]}"')
        names[name] = key
        if not translator._variables_ok(directive, key):
            continue
        if directive.name == "limit_req_zone":
            req.append(LimitReqZoneConfig(name=name, key=key, size=size, rate=rate, source=directive.where))
        else:
            conn.append(LimitConnZoneConfig(name=name, key=key, size=size, source=directive.where))
    translator.limit_zone_names = ({z.name for z in req}, {z.name for z in conn}, set(names))
    # newproxy does not limit auth_request subrequests (newproxy/engine/limits.py preaccess).
    translator.limit_auth = any(d.name == "auth_request" for d in translator.nginx.all_directives())
    return req, conn


def _limit_req(translator: Translator, directive: Directive) -> LimitReqConfig | None:
    zone, burst, delay, nodelay = "", 0, 0, False
    for arg in directive.args:
        if arg.startswith("zone="):
            zone = arg[5:]
        elif arg.startswith("burst="):
            if not arg[6:].isdigit() or int(arg[6:]) <= 0:
                raise _error(directive, f'invalid burst value "{arg}"')
            burst = int(arg[6:])
        elif arg.startswith("delay="):
            if not arg[6:].isdigit() or int(arg[6:]) <= 0:
                raise _error(directive, f'invalid delay value "{arg}"')
            delay, nodelay = int(arg[6:]), False
        elif arg == "nodelay":
            nodelay = True
        else:
            raise _error(directive, f'invalid parameter "{arg}"')
    if not zone:
        raise _error(directive, '"limit_req" must have "zone" parameter')
    return _zone_ref(translator, directive, zone, 0,
                     LimitReqConfig(zone=zone, burst=burst, delay=delay, nodelay=nodelay, source=directive.where))


def _limit_conn(translator: Translator, directive: Directive) -> LimitConnConfig | None:
    if len(directive.args) != 2:
        raise _error(directive, 'invalid number of arguments in "limit_conn" directive')
    zone, number = directive.args
    if not number.isdigit() or int(number) <= 0:
        raise _error(directive, f'invalid number of connections "{number}"')
    if int(number) > 65535:
        raise _error(directive, 'connection limit must be less 65536')
    return _zone_ref(translator, directive, zone, 1, LimitConnConfig(zone=zone, conn=int(number), source=directive.where))


def _zone_ref(translator: Translator, directive: Directive, zone: str, kind: int, limit: LimitReqConfig |
              LimitConnConfig) -> LimitReqConfig | LimitConnConfig | None:
    usable, declared = translator.limit_zone_names[kind], translator.limit_zone_names[2]
    if zone in usable:
        return limit
    if zone in declared:  # the zone's key uses a variable newproxy lacks: this limit is a gap too
        translator.note(directive, "unsupported", f'zone "{zone}" could not be translated')
        return None
    raise _error(directive, f'zero size shared memory zone "{zone}"')


def _status(chain: _Chain, name: str) -> int:
    directive = chain.scalar(name)
    if directive is None:
        return 503
    value = directive.args[0]
    if not value.isdigit() or not 400 <= int(value) <= 599:
        raise _error(directive, "value must be between 400 and 599")
    return int(value)


def _flag(chain: _Chain, name: str) -> bool:
    directive = chain.scalar(name)
    if directive is None:
        return False
    value = directive.args[0].lower()
    if value not in ("on", "off"):
        raise _error(directive, f'invalid value "{directive.args[0]}" in "{name}" directive, it must be "on" or "off"')
    return value == "on"


def _rate_value(translator: Translator, chain: _Chain, name: str) -> str:
    directive = chain.scalar(name)
    if directive is None:
        return "0"
    value = directive.args[0]
    if "$" not in value and _size(value) is None:
        raise _error(directive, f'"{name}" directive invalid value')
    if not translator._variables_ok(directive, value):
        return "0"
    return value


def _scalar_arg(chain: _Chain, name: str, default: str) -> str:
    directive = chain.scalar(name)
    return directive.args[0] if directive is not None else default


def limits_config(translator: Translator, chain: _Chain) -> LimitsConfig | None:
    """The limits in effect in the innermost block of ``chain``; None when there are none."""
    for name in ("limit_req_log_level", "limit_conn_log_level"):
        directive = chain.scalar(name)
        if directive is not None and directive.args[0] not in _LOG_LEVELS:
            raise _error(directive, f'invalid value "{directive.args[0]}"')
    seen: set[tuple[str, str]] = set()
    req: list[LimitReqConfig] = []
    conn: list[LimitConnConfig] = []
    for directive in chain.array("limit_req") + chain.array("limit_conn"):
        if translator.limit_auth:
            translator.note(directive, "caveat", "not applied to auth_request subrequests (nginx applies it to one "
                                                 "when the main request's location has no limit of its own)")
        limit = _limit_req(translator, directive) if directive.name == "limit_req" else _limit_conn(translator, directive)
        zone = next((a[5:] for a in directive.args if a.startswith("zone=")), "") if directive.name == "limit_req" \
            else directive.args[0]
        if (directive.name, zone) in seen:
            raise _error(directive, f'"{directive.name}" directive is duplicate')
        seen.add((directive.name, zone))
        if isinstance(limit, LimitReqConfig):
            req.append(limit)
        elif isinstance(limit, LimitConnConfig):
            conn.append(limit)
    config = LimitsConfig(
        req=req,
        req_status=_status(chain, "limit_req_status"),
        req_dry_run=_flag(chain, "limit_req_dry_run"),
        conn=conn,
        conn_status=_status(chain, "limit_conn_status"),
        conn_dry_run=_flag(chain, "limit_conn_dry_run"),
        rate=_rate_value(translator, chain, "limit_rate"),
        rate_after=_rate_value(translator, chain, "limit_rate_after"),
        req_log_level=_scalar_arg(chain, "limit_req_log_level", "error"),
        conn_log_level=_scalar_arg(chain, "limit_conn_log_level", "error"),
    )
    if not req and not conn and config.rate == "0":
        return None
    return config
