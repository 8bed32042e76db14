"""newproxy's Prometheus endpoint (config ``metrics: {address, port, path}``; no nginx directive).

The address is bound with the server's listens (the master's, inherited by every worker), so any
worker may answer a scrape: the counters are the whole server's (newproxy/stats.py sums every
worker's slot). Connections are the same ``H1Protocol`` as for the proxy, with this endpoint in
place of the engine: ``GET|HEAD path`` answers the text exposition format (version 0.0.4), another
path 404, another method 405. Scrapes count as connections and requests, as a stub_status
location's do in nginx.

Exposed: the stub_status numbers (accepted, handled, requests; active, reading, writing, waiting)
and responses sent by status code; requests by server, listen, location and status, and upstream
response-time histograms by upstream group (newproxy/reqmetrics.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy import stats

if TYPE_CHECKING:
    from newproxy.config import MetricsConfig
    from newproxy.engine.responses import ResponseMaker
    from newproxy.engine.types import Request, Response
    from newproxy.reqmetrics import RequestMetrics

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (
    ("newproxy_connections_accepted_total", "Client connections accepted.", stats.ACCEPTED),
    ("newproxy_connections_handled_total", "Client connections handled (not refused at worker_connections).",
     stats.HANDLED),
    ("newproxy_http_requests_total", "Client requests read (as stub_status counts them).", stats.REQUESTS),
)


def exposition(requests: RequestMetrics | None = None) -> bytes:
    """Every metric in the Prometheus text format, read from the shared counters now."""
    totals = stats.totals()
    active, reading, writing, waiting = stats.connections()
    lines: list[str] = []
    for name, help_text, field in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {totals[field]}"]
    lines += ["# HELP newproxy_connections_active Client connections open, waiting ones included.",
              "# TYPE newproxy_connections_active gauge", f"newproxy_connections_active {active}",
              "# HELP newproxy_connections Client connections open, by state (stub_status's Reading, Writing, Waiting).",
              "# TYPE newproxy_connections gauge"]
    lines += [f'newproxy_connections{{state="{state}"}} {value}'
              for state, value in (("reading", reading), ("writing", writing), ("waiting", waiting))]
    lines += ["# HELP newproxy_connections_parked Waiting connections held without a transport (keepalive_park_after).",
              "# TYPE newproxy_connections_parked gauge", f"newproxy_connections_parked {totals[stats.PARKED]}"]
    lines += ["# HELP newproxy_http_responses_total Responses sent to clients, by status code.",
              "# TYPE newproxy_http_responses_total counter"]
    lines += [f'newproxy_http_responses_total{{code="{code}"}} {count}'
              for code, count in sorted(stats.statuses().items())]
    if requests is not None:
        lines += requests.exposition()
    return ("\n".join(lines) + "\n").encode()


class MetricsEndpoint:
    """Stands in for the engine on the metrics listen (what ``ConnContext`` calls)."""

    def __init__(self, config: MetricsConfig, maker: ResponseMaker, requests: RequestMetrics | None = None) -> None:
        self.path = config.path.encode()
        self.maker = maker
        self.requests = requests  # the engine's per-request counters (newproxy/reqmetrics.py)

    def handle(self, request: Request) -> Response:
        from newproxy.engine.types import Response

        path = request.target.partition(b"?")[0]
        if path != self.path:
            return self.maker.error(404, request, request.keepalive)
        if request.method not in (b"GET", b"HEAD"):
            return self.maker.error(405, request, request.keepalive)
        body = exposition(self.requests)
        head = self.maker.head(200, request.keepalive, CONTENT_TYPE, len(body))
        return Response(200, head, b"" if request.method == b"HEAD" else body, request.keepalive)

    def error_response(self, status: int, request: Request | None, keepalive: bool,
                       local_addr: tuple[str, int] | None = None) -> Response:
        return self.maker.error(status, request, keepalive)
