"""Parse nginx configs into a typed IR that keeps every directive with its file:line.

Modules, one purpose each: syntax (statements from text, nginx's syntax errors), loader (files,
includes, snippet contexts), templates (envsubst, template detection), directives (the directive
table), build (checks and typed IR), blocks (map/geo/split_clients), expr (complex values and if
conditions, lark), regex (PCRE2/re, self-contained), inherit (effective directives of a location),
inventory (classified occurrences), fmt (IR back to text), cli (parse/fmt commands).
"""

from nginx_parser.build import parse_config, parse_listen, parse_time
from nginx_parser.directives import classify, lookup
from nginx_parser.errors import ConfigError
from nginx_parser.fmt import format_tree
from nginx_parser.inherit import effective
from nginx_parser.inventory import occurrences
from nginx_parser.ir import (
    Directive,
    HttpBlock,
    Listen,
    Location,
    NginxConfig,
    Server,
    Upstream,
    UpstreamServer,
)

__all__ = [
    "ConfigError",
    "Directive",
    "HttpBlock",
    "Listen",
    "Location",
    "NginxConfig",
    "Server",
    "Upstream",
    "UpstreamServer",
    "classify",
    "effective",
    "format_tree",
    "lookup",
    "occurrences",
    "parse_config",
    "parse_listen",
    "parse_time",
]
