"""Headers whose configured value differs per response by nature: masked, with the reason.

``add_header X-Response-Time $request_time`` gives every response of every server its own value, and
``proxy_set_header X-Request-Start "t=${msec}"`` every upstream request; ``$connection`` numbers a
server's connections its own way, ``$pid`` names its worker. Comparing such values would report a
difference for each request that says nothing about behaviour. So the headers the config sets from
these variables (``add_header``, ``add_trailer``, ``proxy_set_header``, ``grpc_set_header``) are
masked on both sides, as Date is, each as an accepted rule naming the directive and the variable
(shown in the report with the others). The header must still be present on both sides, once per
directive: only its value is forgiven. A body made from them (``return 200 "$msec"``) is not masked.
"""

from __future__ import annotations

import re

from nginx_parser.ir import NginxConfig
from shadow.accepted import Accepted, Rule

# Per response or per server by nature (ngx_http_variables.c, ngx_http_upstream.c): time, the
# connection's serial number, the worker's pid, the random request id.
MOMENT_VARIABLES = frozenset({
    "request_time", "msec", "time_local", "time_iso8601", "connection", "pid", "request_id",
    "upstream_response_time", "upstream_connect_time", "upstream_header_time",
})
HEADER_SETTERS = ("add_header", "add_trailer", "proxy_set_header", "grpc_set_header")
MASK = "<per-response value>"
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")  # $name, ${name}


def moment_rules(config: NginxConfig) -> Accepted:
    """A masking rule per header name the config sets from a variable of MOMENT_VARIABLES."""
    rules: dict[str, Rule] = {}
    for directive in config.all_directives():
        if directive.name not in HEADER_SETTERS or len(directive.args) < 2:
            continue
        moments = [m.group(1) or m.group(2) for m in _VARIABLE.finditer(directive.args[1])
                   if (m.group(1) or m.group(2)) in MOMENT_VARIABLES]
        name = directive.args[0].lower()
        if moments and name not in rules:
            rules[name] = Rule(reason=f"{directive.name} {directive.args[0]} at {directive.file}:{directive.line} "
                                      f"is made from ${moments[0]}, which differs per response by nature",
                               header=directive.args[0], mask=MASK)
    return Accepted(list(rules.values()))
