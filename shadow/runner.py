"""The whole shadow loop: parse, translate, rewire, start everything, send, compare, stop.

Requests are sent one at a time, first to the reference nginx and then to the target under test,
and the recording upstreams are drained after each, so every upstream request is attributed to the
request and the target that caused it. Sequential on purpose: both targets see the same history
(keep-alive pools, round-robin positions), which keeps the comparison deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import socket
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any, Callable, Iterator, Literal

from pydantic import BaseModel, Field

from nginx_parser import ConfigError, Directive, NginxConfig, parse_config
from shadow import client
from shadow.compare import Comparison, Normaliser, Observation, compare
from shadow.rewire import DEFAULT_NGINX_PREFIX, Plan, Wiring, plan, rewire
from shadow.targets import NewproxyTarget, NginxTarget, Target, TargetError
from shadow.traffic import Request, generate
from shadow.upstreams import RecordedRequest, UpstreamPool

Against = Literal["newproxy", "nginx"]
DIFF_BODY_LIMIT = 2000
MAX_SILENT = 5  # a target that times out this many times in a row is hung: stop, don't wait hours


class HarnessError(Exception):
    """The harness could not run the comparison (a target did not start, the translator is missing...)."""


class Counts(BaseModel):
    requests: int = 0
    equivalent: int = 0
    different: int = 0
    errors: int = 0

    def add(self, verdict: str) -> None:
        self.requests += 1
        if verdict == "equivalent":
            self.equivalent += 1
        elif verdict == "different":
            self.different += 1
        else:
            self.errors += 1


class ShadowReport(BaseModel):
    config: str
    reference: str = "nginx"
    against: str
    requests: int = 0
    equivalent: int = 0
    different: int = 0
    errors: int = 0
    noted: int = Field(default=0, description="requests with notes: differences reported but not counted")
    note_kinds: dict[str, int] = Field(default_factory=dict, description="note kind (headers.order...) -> requests")
    statuses: dict[str, int] = Field(default_factory=dict, description="reference's status (or outcome) -> requests")
    upstream_requests: int = Field(default=0, description="upstream requests the reference sent")
    upstream_reused: int = Field(default=0, description="of which on a kept-alive upstream connection")
    by_group: dict[str, Counts] = Field(default_factory=dict, description="per server / location")
    by_label: dict[str, Counts] = Field(default_factory=dict, description="per kind of generated request")
    diffs: list[dict[str, Any]] = Field(
        default_factory=list, description="every request that was not equivalent or had notes, with its diffs"
    )
    notes: list[str] = Field(default_factory=list, description="what the harness could not generate or rewire")
    gaps: dict[str, Any] = Field(default_factory=dict, description="the translation's gap summary")
    listens: dict[str, dict[str, int]] = Field(default_factory=dict, description="target -> logical listen -> port")
    upstreams: dict[str, str] = Field(default_factory=dict, description="logical upstream -> recording address")

    @property
    def all_equivalent(self) -> bool:
        return self.different == 0 and self.errors == 0


@dataclasses.dataclass
class RequestResult:
    request: Request
    comparison: Comparison
    reference: Observation
    other: Observation


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all sockets held open together, so no repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _gap_item(gap: Any) -> Any:
    if hasattr(gap, "model_dump"):
        return gap.model_dump(mode="json")
    if dataclasses.is_dataclass(gap) and not isinstance(gap, type):
        return dataclasses.asdict(gap)
    return str(gap)


def gap_summary(config: NginxConfig) -> dict[str, Any]:
    """The translator's verdict on the original config (not the rewired one the harness runs).

    Counts directive occurrences per support level ("exact", "caveat", "unsupported"...) and lists
    the gaps; only what ``translator.translate`` promises is relied on (``gaps``, optionally
    ``occurrences`` with a ``level``).
    """
    from translator import translate

    translation = translate(config)
    gaps = list(getattr(translation, "gaps", []))
    levels: Counter[str] = Counter(str(getattr(o, "level", "?")) for o in getattr(translation, "occurrences", []))
    return {
        "levels": dict(levels),
        "translated": levels.get("exact", 0) + levels.get("caveat", 0)
        if levels
        else getattr(translation, "translated", None),
        "unsupported": levels.get("unsupported", 0) + levels.get("unknown", 0)
        if levels
        else getattr(translation, "unsupported", None),
        "count": len(gaps),
        "items": [_gap_item(g) for g in gaps[:200]],
    }


Tweak = Callable[[list[Directive]], list[Directive]]


def _make_target(
    kind: Against, label: str, config: NginxConfig, the_plan: Plan, wiring: Wiring, tweak: Tweak | None = None
) -> Target:
    tree = rewire(config, the_plan, wiring)
    if tweak is not None:
        tree = tweak(tree)
    if kind == "nginx":
        return NginxTarget(tree, wiring.workdir, wiring.listen_ports, label=label)
    return NewproxyTarget(tree, config.main_file, config.files, wiring.workdir, wiring.listen_ports, label=label)


def _clip_response(resp: dict[str, Any]) -> dict[str, Any]:
    body = resp["body"]
    if "text" in body and len(body["text"]) > DIFF_BODY_LIMIT:
        resp = {**resp, "body": {"text": body["text"][:DIFF_BODY_LIMIT] + "..."}}
    return resp


async def _exchange(
    request: Request, target: Target, pool: UpstreamPool, timeout: float
) -> tuple[client.Exchange, list[RecordedRequest]]:
    port = target.listen_ports[request.listen]
    ex = await client.exchange(request.to_bytes(), port, request.method, timeout=timeout)
    # The response is complete, so the upstream request that produced it has been recorded.
    pool.settle()
    return ex, pool.take()


async def _drive(
    requests: list[Request],
    reference: Target,
    other: Target,
    pool: UpstreamPool,
    timeout: float,
    probe: float,
    progress: Callable[[int, int], None] | None,
    max_seconds: float | None = None,
) -> tuple[list[RequestResult], int, str | None]:
    """Send every request to both targets; returns the results, the stale upstream requests, and
    why the run stopped early (None if it did not)."""
    upstreams = pool.by_address()
    norm_a = Normaliser({p: n for n, p in reference.listen_ports.items()}, upstreams)
    norm_b = Normaliser({p: n for n, p in other.listen_ports.items()}, upstreams)
    results: list[RequestResult] = []
    stale = 0
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    silent = 0  # consecutive requests a target did not answer in time
    for i, request in enumerate(requests):
        if deadline is not None and time.monotonic() > deadline:
            return results, stale, f"stopped after {max_seconds}s: {len(requests) - i} request(s) not sent"
        if silent >= MAX_SILENT:
            return results, stale, f"stopped: {MAX_SILENT} requests in a row timed out, {len(requests) - i} not sent"
        stale += len(pool.take())  # late upstream requests of the previous exchange (e.g. mirrors)
        ex_a, rec_a = await _exchange(request, reference, pool, timeout)
        # Probing whether the reference kept its connection alive is a wait: overlap it with the
        # other target's exchange. The upstream side is still strictly one target at a time.
        finish_a = asyncio.create_task(ex_a.finish(probe))
        ex_b, rec_b = await _exchange(request, other, pool, timeout)
        resp_b = await ex_b.finish(probe)
        resp_a = await finish_a
        a = Observation(norm_a.response(resp_a, request.method), [norm_a.record(r) for r in rec_a])
        b = Observation(norm_b.response(resp_b, request.method), [norm_b.record(r) for r in rec_b])
        results.append(RequestResult(request, compare(a, b), a, b))
        silent = silent + 1 if "timeout" in (resp_a.outcome, resp_b.outcome) else 0
        if progress:
            progress(i + 1, len(requests))
    return results, stale, None


def build_report(config_path: str, against: str, results: list[RequestResult]) -> ShadowReport:
    report = ShadowReport(config=config_path, against=against)
    by_group: dict[str, Counts] = defaultdict(Counts)
    by_label: dict[str, Counts] = defaultdict(Counts)
    for result in results:
        verdict = result.comparison.verdict
        report.requests += 1
        if verdict == "equivalent":
            report.equivalent += 1
        elif verdict == "different":
            report.different += 1
        else:
            report.errors += 1
        if result.comparison.notes:
            report.noted += 1
            for kind in {re.sub(r"\[\d+\]", "", n.field) for n in result.comparison.notes}:
                report.note_kinds[kind] = report.note_kinds.get(kind, 0) + 1
        ref = result.reference.response
        key = str(ref["status"]) if ref["outcome"] == "response" else ref["outcome"]
        report.statuses[key] = report.statuses.get(key, 0) + 1
        report.upstream_requests += len(result.reference.upstream)
        report.upstream_reused += sum(1 for r in result.reference.upstream if r["connection_seq"] > 1)
        by_group[result.request.group].add(verdict)
        by_label[result.request.label].add(verdict)
        if verdict != "equivalent" or result.comparison.notes:
            report.diffs.append(
                {
                    "verdict": verdict,
                    "request": result.request.to_json(),
                    "curl": result.request.curl(),
                    "diffs": [d.to_json() for d in result.comparison.diffs],
                    "notes": [d.to_json() for d in result.comparison.notes],
                    "nginx": _clip_response(result.reference.response),
                    "other": _clip_response(result.other.response),
                }
            )
    report.by_group = dict(by_group)
    report.by_label = dict(by_label)
    return report


@dataclasses.dataclass
class StartedTargets:
    """What ``started_targets`` runs: the recording upstreams, and nginx then the target under test."""

    pool: UpstreamPool
    targets: list[Target]
    plan: Plan


@contextlib.contextmanager
def started_targets(
    config: NginxConfig,
    the_plan: Plan,
    base: str,
    *,
    against: Against = "newproxy",
    refuse: frozenset[str] | set[str] = frozenset(),
    nginx_prefix: str = DEFAULT_NGINX_PREFIX,
    tweak_other: Tweak | None = None,
) -> Iterator[StartedTargets]:
    """Start the recording upstreams and both targets (rewired into ``base``/nginx and
    ``base``/newproxy or nginx-b), yield them, stop everything on the way out.

    The one way the harness starts things: ``run_shadow`` sends generated traffic through it, and
    tests that need their own schedule (raw bytes, timed sequences) use it directly.
    Raises ``HarnessError`` when a target does not start."""
    other_label = "nginx-b" if against == "nginx" else "newproxy"
    names = list(the_plan.listens)
    ports = free_ports(2 * len(names))
    conf_dir = os.path.dirname(os.path.abspath(config.main_file))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(UpstreamPool())
        for info in the_plan.upstreams.values():
            pool.add(info.name, refuse=info.refuse or info.name in refuse)
        upstream_addrs = {name: u.hostport for name, u in pool.upstreams.items()}
        targets: list[Target] = []
        for i, (kind, label) in enumerate([("nginx", "nginx"), (against, other_label)]):
            wiring = Wiring(
                workdir=os.path.join(base, label),
                listen_ports=dict(zip(names, ports[i * len(names) : (i + 1) * len(names)], strict=True)),
                upstream_addrs=upstream_addrs,
                for_nginx=kind == "nginx",
                nginx_prefix=nginx_prefix,
                conf_dir=conf_dir,
            )
            tweak = tweak_other if i == 1 else None
            target = _make_target(kind, label, config, the_plan, wiring, tweak)  # type: ignore[arg-type]
            try:
                targets.append(stack.enter_context(target))
            except TargetError as exc:
                raise HarnessError(str(exc)) from exc
            except ImportError as exc:
                raise HarnessError(f"{label}: cannot build its config: {exc}") from exc
        yield StartedTargets(pool, targets, the_plan)


def run_shadow(
    nginx_conf_path: str,
    *,
    max_requests: int | None = 1000,
    against: Against = "newproxy",
    seed: int = 0,
    timeout: float = 5.0,
    probe: float = 0.01,
    workdir: str | None = None,
    keep_workdir: bool = False,
    nginx_prefix: str = DEFAULT_NGINX_PREFIX,
    progress: Callable[[int, int], None] | None = None,
    tweak_other: Tweak | None = None,
    refuse: frozenset[str] | set[str] = frozenset(),
    max_seconds: float | None = None,
    extra_requests: Callable[[Plan], list[Request]] | None = None,
    context: str | None = "main",
) -> ShadowReport:
    """Shadow ``nginx_conf_path``: real nginx vs ``against`` on generated traffic.

    ``refuse``: logical upstream names (as written in the config) whose recording upstream refuses
    connections, to compare the 502 paths.
    ``max_seconds`` bounds the sending phase; a run cut short (by it, or by a target that keeps
    timing out) is noted and counted as an error.
    ``probe``: how long the client waits to tell a kept-alive connection from a closed one.
    ``context``: where the file's directives live (main, http, server, location; None detects it:
    a snippet is wrapped in the blocks nginx would include it in).
    ``extra_requests`` adds hand-picked requests (built from the plan's logical listen names) to
    the generated ones: how targeted differential tests send exactly the cases they name.
    ``tweak_other`` edits the rewired tree of the target under test before it starts: for testing
    the harness itself (nginx vs a slightly different nginx must show differences) and what-ifs.
    Raises ``ConfigError`` for a config nginx_parser rejects and ``HarnessError`` when the
    comparison cannot run; differences are in the report, not exceptions.
    """
    config = parse_config(nginx_conf_path, context=context)
    the_plan = plan(config)
    unknown = set(refuse) - set(the_plan.upstreams)
    if unknown:
        raise HarnessError(
            f"--refuse {', '.join(sorted(unknown))}: not an upstream of the config ({', '.join(the_plan.upstreams)})"
        )
    gaps: dict[str, Any] = {}
    if against == "newproxy":
        try:
            gaps = gap_summary(config)
        except ImportError as exc:
            raise HarnessError(f"the translator is not available: {exc}") from exc
        except ConfigError as exc:
            # The translator rejects something the harness rewires away (e.g. a unix: upstream):
            # say so, and still try the rewired config.
            gaps = {"error": str(exc)}

    base = workdir or tempfile.mkdtemp(prefix="shadow-")
    os.makedirs(base, exist_ok=True)
    other_label = "nginx-b" if against == "nginx" else "newproxy"
    try:
        with started_targets(config, the_plan, base, against=against, refuse=refuse, nginx_prefix=nginx_prefix,
                             tweak_other=tweak_other) as started:
            pool, targets = started.pool, started.targets
            upstream_addrs = {name: u.hostport for name, u in pool.upstreams.items()}
            requests, notes = generate(config, the_plan, seed=seed, max_requests=max_requests,
                                       nginx_prefix=nginx_prefix)
            if extra_requests is not None:
                requests = [*requests, *extra_requests(the_plan)]
            results, stale, stopped = asyncio.run(
                _drive(requests, targets[0], targets[1], pool, timeout, probe, progress, max_seconds)
            )
    finally:
        if not keep_workdir and workdir is None:
            shutil.rmtree(base, ignore_errors=True)

    report = build_report(nginx_conf_path, other_label, results)
    report.notes = [*the_plan.notes, *notes]
    if stopped:
        report.notes.append(stopped)
        report.errors += 1  # an incomplete run is not a clean bill of health
    if stale:
        report.notes.append(f"{stale} upstream request(s) arrived after their exchange had been compared")
    report.gaps = gaps
    report.listens = {t.label: dict(t.listen_ports) for t in targets}
    report.upstreams = upstream_addrs
    return report
