"""Per-request metrics for the Prometheus endpoint: requests by server, location and status, and
upstream response times per upstream group, summed over the workers.

Made only when the config has ``metrics:`` (Engine.request_metrics; None otherwise, and nothing is
counted per request). The label sets are fixed by the config: every server and every location
(named ones too, plus "no location" per server) is a row, known when the engine is built; every
upstream group is a histogram. The counters are one anonymous ``MAP_SHARED`` mmap made with the
engine, i.e. in the master before it forks the workers of that config, cut into one lane per
worker (``own``, called in the forked worker with its lane): a worker adds only to its own lane, so
no lock is needed (the scheme of newproxy/stats.py); a scrape sums the lanes. A worker that dies
is replaced on the same lane, so totals never go down. A reload builds a new engine and a new
block: the counters of the new config start at 0 (a Prometheus counter reset).

Counted in the log phase (newproxy/http/accesslog.py ``AccessLogs.log``), once per request, with
the status logged as ``$status``; a request nginx answers before choosing a server (400 on a bad
request line) is counted on the default server of its address. Upstream response times are each
attempt's ``$upstream_response_time``, in the histogram of the location's upstream group (for a
proxy_pass with variables: the group the attempt's peer belongs to).
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledServer
    from newproxy.engine.locations import LocationLevel
    from newproxy.engine.logformat import LogRecord
    from newproxy.engine.upstreams import UpstreamGroup

STATUSES = 600  # a column per status code (100-599 used)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SUM, _COUNT = len(BUCKETS) + 1, len(BUCKETS) + 2  # after the buckets and +Inf; the sum in microseconds
_HIST = len(BUCKETS) + 3

LANE = 0  # this process's lane (set in a forked worker by ``own``)


def lanes_for(workers: int | str) -> int:
    """One lane per worker of the config (``auto``: the CPUs, as newproxy/process.py counts them)."""
    if workers == "auto":
        return len(os.sched_getaffinity(0)) or 1
    return max(1, int(workers))


def own(lane: int) -> None:
    global LANE
    LANE = lane


_MODIFIERS = {"exact": "= ", "prefix_priority": "^~ ", "prefix": "", "regex": "~ ", "regex_caseless": "~* ",
              "named": ""}


def _location_label(loc: CompiledLocation) -> str:
    """The location as written in nginx: ``= /x``, ``^~ /y``, ``/z``, ``~* \\.png$``, ``@name``."""
    return _MODIFIERS.get(loc.config.match, "") + loc.config.path


def _walk(level: LocationLevel[CompiledLocation]) -> list[CompiledLocation]:
    """Every location of a level and the levels nested in it, in a stable order."""
    nodes = list(level.exact.values())
    for _, by_path in level.prefixes_by_length:
        nodes += by_path.values()
    nodes += level.regexes
    out: list[CompiledLocation] = []
    for node in nodes:
        out.append(node.value)
        if node.children is not None:
            out += _walk(node.children)
    return out


class RequestMetrics:
    """The rows of one config, and their counters in shared memory."""

    def __init__(self, servers: list[CompiledServer], groups: dict[str, UpstreamGroup], lanes: int) -> None:
        self.lanes = max(1, lanes)
        self.rows: dict[int, int] = {}  # id(CompiledLocation or CompiledServer) -> row
        self.labels: list[tuple[str, str, str]] = []  # row -> (server, listen, location)
        for server in servers:
            self._server(server)
        self.groups: dict[str, int] = {name: i for i, name in enumerate(groups)}
        self.peer_groups: dict[str, int] = {}
        for name, group in groups.items():
            peers = group.primary.peers + (group.backup.peers if group.backup is not None else [])
            for peer in peers:
                self.peer_groups.setdefault(peer.name, self.groups[name])
        self.lane_size = len(self.labels) * STATUSES + len(self.groups) * _HIST
        self.raw = mmap.mmap(-1, max(1, self.lane_size * self.lanes) * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.mem = memoryview(self.raw).cast("q")

    def _server(self, server: CompiledServer) -> None:
        if id(server) in self.rows:
            return
        config = server.config
        listen = ",".join(sorted({f"{x.address}:{x.port}" for x in config.listen}))
        name = server.primary_name

        def row(obj: object, location: str) -> None:
            self.rows[id(obj)] = len(self.labels)
            self.labels.append((name, listen, location))

        row(server, "")
        for loc in _walk(server.locations):
            if id(loc) not in self.rows:
                row(loc, _location_label(loc))
        for loc in server.named.values():
            if id(loc) not in self.rows:
                row(loc, "@" + loc.config.path.lstrip("@"))

    def observe(self, rec: LogRecord) -> None:
        """The log phase of one request (rec.ctx is set)."""
        ctx = rec.ctx
        if ctx is None:
            return
        where = ctx.location if ctx.location is not None else ctx.server
        row = self.rows.get(id(where))
        if row is None:
            row = self.rows.get(id(ctx.server))
            if row is None:
                return
        status = rec.status
        base = LANE * self.lane_size
        mem = self.mem
        if 100 <= status < STATUSES:
            mem[base + row * STATUSES + status] += 1
        attempts = rec.upstream
        if attempts:
            proxy = ctx.location.proxy if ctx.location is not None else None
            fixed = self.groups.get(proxy.group.name) if proxy is not None and proxy.url is None else None
            hist0 = base + len(self.labels) * STATUSES
            for entry in attempts:
                if entry is None or entry[5] < 0:
                    continue
                group = fixed if fixed is not None else self.peer_groups.get(entry[0])
                if group is None:
                    continue
                seconds = entry[5]
                at = hist0 + group * _HIST
                i = 0
                while i < len(BUCKETS) and seconds > BUCKETS[i]:
                    i += 1
                mem[at + i] += 1  # cumulated when exposed
                mem[at + _SUM] += int(seconds * 1_000_000)
                mem[at + _COUNT] += 1

    def _summed(self) -> list[int]:
        mem = self.mem
        size = self.lane_size
        total = mem[0:size].tolist()
        for lane in range(1, self.lanes):
            row = mem[lane * size:(lane + 1) * size].tolist()
            total = [a + b for a, b in zip(total, row)]
        return total

    def exposition(self) -> list[str]:
        """The lines of the requests and upstream-time families."""
        total = self._summed()
        lines = [("# HELP newproxy_requests_total Requests answered, by server, location and status "
                  "(location \"\": matching none)."),
                 "# TYPE newproxy_requests_total counter"]
        for row, (server, listen, location) in enumerate(self.labels):
            counts = total[row * STATUSES:(row + 1) * STATUSES]
            labels = f'server="{_esc(server)}",listen="{_esc(listen)}",location="{_esc(location)}"'
            lines += [f'newproxy_requests_total{{{labels},code="{code}"}} {n}'
                      for code, n in enumerate(counts) if n]
        lines += [("# HELP newproxy_upstream_response_seconds Upstream response time of each attempt "
                   "($upstream_response_time), by upstream group."),
                  "# TYPE newproxy_upstream_response_seconds histogram"]
        hist0 = len(self.labels) * STATUSES
        for name, group in self.groups.items():
            at = hist0 + group * _HIST
            label = f'upstream="{_esc(name)}"'
            cumulated = 0
            for i, bound in enumerate(BUCKETS):
                cumulated += total[at + i]
                lines.append(f'newproxy_upstream_response_seconds_bucket{{{label},le="{bound}"}} {cumulated}')
            cumulated += total[at + len(BUCKETS)]
            lines.append(f'newproxy_upstream_response_seconds_bucket{{{label},le="+Inf"}} {cumulated}')
            lines.append(f"newproxy_upstream_response_seconds_sum{{{label}}} {total[at + _SUM] / 1_000_000}")
            lines.append(f"newproxy_upstream_response_seconds_count{{{label}}} {total[at + _COUNT]}")
        return lines


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
