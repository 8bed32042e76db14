"""Parse nginx configs into a typed IR that keeps every directive with its file:line."""

from nginx_parser.build import parse_config, parse_listen, parse_time
from nginx_parser.errors import ConfigError
from nginx_parser.fmt import format_tree
from nginx_parser.ir import Directive, HttpBlock, Listen, Location, NginxConfig, Server, Upstream, UpstreamServer

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
    "format_tree",
    "parse_config",
    "parse_listen",
    "parse_time",
]
