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
import random
import re
import shutil
import socket
import tempfile
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping

import uvloop
from pydantic import BaseModel, Field

from nginx_parser import ConfigError, Directive, NginxConfig, parse_config
from shadow import client, h2client
from shadow.accepted import Accepted, builtin
from shadow.compare import Comparison, Normaliser, Observation, compare
from shadow.concurrent import TAG, TAG_MASK, drive_concurrent
from shadow.moments import moment_rules
from shadow.shrink import shrink
from shadow.rewire import DEFAULT_NGINX_PREFIX, Plan, Wiring, plan, rewire
from shadow.targets import NewproxyTarget, NginxTarget, Target, TargetError
from shadow.traffic import Request, generate, with_tls
from shadow.upstreams import RecordedRequest, TlsUpstream, UpstreamPool

if TYPE_CHECKING:
    from newproxy.config import NewproxyConfig
    from translator.fallback import Fallback

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
    upstream_tls_resumed: int = Field(default=0, description="of which on a resumed TLS session")
    by_group: dict[str, Counts] = Field(default_factory=dict, description="per server / location")
    by_label: dict[str, Counts] = Field(default_factory=dict, description="per kind of generated request")
    diffs: list[dict[str, Any]] = Field(
        default_factory=list, description="every request that was not equivalent or had notes, with its diffs"
    )
    notes: list[str] = Field(default_factory=list, description="what the harness could not generate or rewire")
    gaps: dict[str, Any] = Field(default_factory=dict, description="the translation's gap summary")
    listens: dict[str, dict[str, int]] = Field(default_factory=dict, description="target -> logical listen -> port")
    upstreams: dict[str, str] = Field(default_factory=dict, description="logical upstream -> recording address")
    calibrated: bool = Field(default=False, description="a nginx-vs-nginx run first classified the noise")
    noise: int = Field(default=0, description="requests whose differences were also seen between two nginx")
    coverage: dict[str, Any] = Field(
        default_factory=dict, description="servers, locations, rewrite steps, if sides and map entries the "
                                          "requests went through (shadow/coverage.py)")
    legacy_requests: int | None = Field(
        default=None, description="with the strangler fallback: requests the legacy nginx target logged "
                                  "(its access.log), i.e. what newproxy handed over")

    @property
    def all_equivalent(self) -> bool:
        return self.different == 0 and self.errors == 0


@dataclasses.dataclass
class RequestResult:
    request: Request
    comparison: Comparison
    reference: Observation
    other: Observation


PORTS_VARIABLE = "NGINX_MIGRATE_PORTS"  # LOW-HIGH: the ports free_ports picks from


def _port_range() -> tuple[int, int] | None:
    """Where free_ports picks: ``NGINX_MIGRATE_PORTS``, else from 10000 to just below the kernel's
    ephemeral range (None: no room there; the kernel picks)."""
    given = os.environ.get(PORTS_VARIABLE)
    if given:
        low, _, high = given.partition("-")
        return int(low), int(high)
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (10000, ephemeral - 1) if ephemeral > 11000 else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all sockets held open together, so no repeats). Picked
    at random below the kernel's ephemeral range: a port from that range could be taken, between this
    pick and the server's bind, as the local port of an outgoing connection (another test's, a
    benchmark's); ``NGINX_MIGRATE_PORTS=LOW-HIGH`` narrows the choice (the test suite gives each of
    its processes a range of its own: tests/conftest.py)."""
    socks: list[socket.socket] = []
    span = _port_range()
    try:
        tries = 0
        while len(socks) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tries += 1
            try:
                s.bind(("127.0.0.1", random.randint(*span) if span is not None and tries < 1000 else 0))
            except OSError:  # taken: another pick
                s.close()
                continue
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


def guided_traffic(config: NginxConfig, requests: list[Request], seed: int) -> list[Request]:
    """Requests for the parts of the config the generated ones miss (shadow/guided.py); none when
    the translator refuses the config (the gap summary says why)."""
    from shadow.guided import guided_requests

    try:
        return guided_requests(config, requests, seed)
    except (ConfigError, ImportError):
        return []


def coverage_of(config: NginxConfig, requests: list[Request]) -> dict[str, Any]:
    """The coverage of the requests sent, or why it could not be measured (the translator refused
    the config, which the gap summary reports too)."""
    from shadow.coverage import measure

    try:
        return measure(config, requests).to_json()
    except (ConfigError, ImportError) as exc:
        return {"error": str(exc)}


def gap_summary(config: NginxConfig, fallback: Fallback | None = None) -> dict[str, Any]:
    """The translator's verdict on the original config (not the rewired one the harness runs).

    Counts directive occurrences per support level ("exact", "caveat", "unsupported"...) and lists
    the gaps; only what ``translator.translate`` promises is relied on (``gaps``, optionally
    ``occurrences`` with a ``level``).
    """
    from translator import translate

    translation = translate(config, fallback=fallback) if fallback is not None else translate(config)
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
Mutation = Callable[["NewproxyConfig"], "NewproxyConfig"]  # a deliberate change to newproxy's translated config


def _make_target(
    kind: Against, label: str, config: NginxConfig, the_plan: Plan, wiring: Wiring, tweak: Tweak | None = None,
    fallback: Fallback | None = None, mutate: Mutation | None = None,
) -> Target:
    tree = rewire(config, the_plan, wiring)
    if tweak is not None:
        tree = tweak(tree)
    if kind == "nginx":
        return NginxTarget(tree, wiring.workdir, wiring.listen_ports, label=label)
    return NewproxyTarget(tree, config.main_file, config.files, wiring.workdir, wiring.listen_ports, label=label,
                          fallback=fallback, mutate=mutate)


def legacy_fallback(newproxy_ports: list[int], legacy_ports: list[int]) -> Fallback:
    """The fallback of the newproxy target: each server goes to the legacy target's port for the same
    logical listen as its own first listen (legacy picks the server by address as nginx does)."""
    from translator.fallback import Fallback

    by_port = {mine: ("127.0.0.1", theirs) for mine, theirs in zip(newproxy_ports, legacy_ports, strict=True)}
    return Fallback("127.0.0.1", legacy_ports[0], by_port)


def count_legacy_requests(legacy: Target) -> int | None:
    """Lines in the legacy target's access.log (the one the rewiring gives a config without its own)."""
    path = os.path.join(str(getattr(legacy, "workdir", "")), "access.log")
    try:
        with open(path, "rb") as log:
            return sum(1 for _ in log)
    except OSError:
        return None


def _clip_response(resp: dict[str, Any]) -> dict[str, Any]:
    body = resp["body"]
    if "text" in body and len(body["text"]) > DIFF_BODY_LIMIT:
        resp = {**resp, "body": {"text": body["text"][:DIFF_BODY_LIMIT] + "..."}}
    return resp


async def _exchange(
    request: Request, target: Target, pool: UpstreamPool, timeout: float
) -> tuple[client.Exchange, list[RecordedRequest]]:
    port = target.listen_ports[request.listen]
    if request.version == "2":  # HTTP/2 (shadow/h2client.py)
        ex = await h2client.exchange(request, port, timeout=timeout)
        pool.settle()
        return ex, pool.take()
    ex = await client.exchange(request.to_bytes(), port, request.method, timeout=timeout, source=request.source,
                               tls=request.tls)
    # The response is complete, so the upstream request that produced it has been recorded.
    pool.settle()
    return ex, pool.take()


def _calibrate(
    config: NginxConfig, the_plan: Plan, base: str, requests: list[Request], refuse: frozenset[str] | set[str],
    nginx_prefix: str, timeout: float, probe: float, masks: dict[str, str],
) -> dict[int, set[str]]:
    """Diffy's primary/secondary idea: nginx against a second nginx on ``requests``; per request
    index, the diff fields that differ there (noise: nothing the target under test can cause)."""
    with started_targets(config, the_plan, base, against="nginx", refuse=refuse,
                         nginx_prefix=nginx_prefix) as started:
        results, _, _ = uvloop.run(_drive(requests, started.targets[0], started.targets[1], started.pool, timeout,
                                           probe, None, masks=masks))
    return {i: {d.field for d in r.comparison.diffs} for i, r in enumerate(results) if r.comparison.diffs}


def _normalisers(reference: Target, other: Target, pool: UpstreamPool,
                 masks: dict[str, str] | None) -> tuple[Normaliser, Normaliser]:
    upstreams = pool.by_address()
    masks = masks if masks is not None else builtin().masks()
    return (Normaliser({p: n for n, p in reference.listen_ports.items()}, upstreams, masks),
            Normaliser({p: n for n, p in other.listen_ports.items()}, upstreams, masks))


def _forgive(results: list[RequestResult], accepted: Accepted, noise: dict[int, set[str]],
             strict_order: bool = False) -> None:
    """Move the diffs an --accept rule or the noise calibration forgives into the notes (prefixed
    ``accepted:`` / ``noise:``), and recompute each verdict. With ``strict_order``, a header list
    in another order (normally a note) is a difference."""
    for index, result in enumerate(results):
        comparison = result.comparison
        if strict_order:
            ordered = [n for n in comparison.notes if n.field.endswith(".order")]
            if ordered:
                comparison.notes = [n for n in comparison.notes if not n.field.endswith(".order")]
                comparison.diffs.extend(ordered)
                if comparison.verdict == "equivalent":
                    comparison.verdict = "different"
        kept = []
        for diff in comparison.diffs:
            if diff.field in noise.get(index, ()):
                comparison.notes.append(dataclasses.replace(diff, field="noise:" + diff.field))
            elif accepted.accepts(diff.field, result.request.target) is not None:
                comparison.notes.append(dataclasses.replace(diff, field="accepted:" + diff.field))
            else:
                kept.append(diff)
        if len(kept) != len(comparison.diffs):
            comparison.diffs = kept
            if comparison.verdict == "different" and not kept:
                comparison.verdict = "equivalent"


async def _compare_one(
    request: Request, reference: Target, other: Target, pool: UpstreamPool, norms: tuple[Normaliser, Normaliser],
    timeout: float, probe: float,
) -> tuple[RequestResult, bool]:
    """One request to both targets, compared; and whether either timed out."""
    norm_a, norm_b = norms
    ex_a, rec_a = await _exchange(request, reference, pool, timeout)
    # Probing whether the reference kept its connection alive is a wait: overlap it with the
    # other target's exchange. The upstream side is still strictly one target at a time.
    finish_a = asyncio.create_task(ex_a.finish(probe))
    ex_b, rec_b = await _exchange(request, other, pool, timeout)
    resp_b = await ex_b.finish(probe)
    resp_a = await finish_a
    a = Observation(norm_a.response(resp_a, request.method), [norm_a.record(r) for r in rec_a])
    b = Observation(norm_b.response(resp_b, request.method), [norm_b.record(r) for r in rec_b])
    return RequestResult(request, compare(a, b), a, b), "timeout" in (resp_a.outcome, resp_b.outcome)


async def _shrink_all(
    results: list[RequestResult], reference: Target, other: Target, pool: UpstreamPool, timeout: float,
    probe: float, limit: int, masks: dict[str, str] | None = None,
) -> dict[int, Request]:
    """The smallest request found that still shows the first difference, for up to ``limit``
    different results (index in ``results`` -> that request; the original when nothing smaller
    shows it)."""
    norms = _normalisers(reference, other, pool, masks)
    minimal: dict[int, Request] = {}
    different = [i for i, r in enumerate(results) if r.comparison.verdict == "different"][:limit]
    for index in different:
        field_name = results[index].comparison.diffs[0].field

        async def still_differs(candidate: Request, field_name: str = field_name) -> bool:
            pool.take()
            result, _ = await _compare_one(candidate, reference, other, pool, norms, timeout, probe)
            return result.comparison.verdict == "different" and any(
                d.field == field_name for d in result.comparison.diffs)

        minimal[index] = await shrink(results[index].request, still_differs)
    return minimal


async def _drive(
    requests: list[Request],
    reference: Target,
    other: Target,
    pool: UpstreamPool,
    timeout: float,
    probe: float,
    progress: Callable[[int, int], None] | None,
    max_seconds: float | None = None,
    legacy: Target | None = None,
    masks: dict[str, str] | None = None,
) -> tuple[list[RequestResult], int, str | None]:
    """Send every request to both targets; returns the results, the stale upstream requests, and
    why the run stopped early (None if it did not). ``legacy`` (the fallback's legacy nginx) is not
    sent to directly, and its ports are not normalised: a client or an upstream that sees legacy's
    own port (an absolute redirect, $server_port) would see it in production too."""
    norm_a, norm_b = _normalisers(reference, other, pool, masks)
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
        result, timed_out = await _compare_one(request, reference, other, pool, (norm_a, norm_b), timeout, probe)
        results.append(result)
        silent = silent + 1 if timed_out else 0
        if progress:
            progress(i + 1, len(requests))
    return results, stale, None


def build_report(config_path: str, against: str, results: list[RequestResult],
                 minimal: dict[int, Request] | None = None) -> ShadowReport:
    """The report of ``results``; ``minimal``: the shrunk request of some different results, by index."""
    minimal = minimal or {}
    report = ShadowReport(config=config_path, against=against)
    by_group: dict[str, Counts] = defaultdict(Counts)
    by_label: dict[str, Counts] = defaultdict(Counts)
    for index, result in enumerate(results):
        verdict = result.comparison.verdict
        report.requests += 1
        if verdict == "equivalent":
            report.equivalent += 1
        elif verdict == "different":
            report.different += 1
        else:
            report.errors += 1
        if any(note.field.startswith("noise:") for note in result.comparison.notes):
            report.noise += 1
        if result.comparison.notes:
            report.noted += 1
            for kind in {re.sub(r"\[\d+\]", "", n.field) for n in result.comparison.notes}:
                report.note_kinds[kind] = report.note_kinds.get(kind, 0) + 1
        ref = result.reference.response
        key = str(ref["status"]) if ref["outcome"] == "response" else ref["outcome"]
        report.statuses[key] = report.statuses.get(key, 0) + 1
        report.upstream_requests += len(result.reference.upstream)
        report.upstream_reused += sum(1 for r in result.reference.upstream if r["connection_seq"] > 1)
        report.upstream_tls_resumed += sum(1 for r in result.reference.upstream if r.get("tls_resumed"))
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
                    **({"minimal": {"request": minimal[index].to_json(), "curl": minimal[index].curl()}}
                       if index in minimal else {}),
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
    legacy: Target | None = None  # the strangler fallback's legacy nginx, when there is one


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
    fallback: bool = False,
    mutate_translation: Mutation | None = None,
    upstream_binds: Mapping[str, tuple[str, int]] | None = None,
    tls_upstreams: Mapping[str, TlsUpstream] | None = None,
    tweak_reference: Tweak | None = None,
) -> Iterator[StartedTargets]:
    """Start the recording upstreams and both targets (rewired into ``base``/nginx and
    ``base``/newproxy or nginx-b), yield them, stop everything on the way out.

    The one way the harness starts things: ``run_shadow`` sends generated traffic through it, and
    tests that need their own schedule (raw bytes, timed sequences) use it directly.
    With ``fallback``, a third target, "legacy" (nginx on the original config, its own ports, the
    same recording upstreams), starts before newproxy, whose translation hands the locations it
    cannot translate to it. ``tweak_reference`` edits the reference nginx's rewired tree (its
    worker_processes, say), as ``tweak_other`` edits the other target's.
    Raises ``HarnessError`` when a target does not start."""
    if fallback and against != "newproxy":
        raise HarnessError("the strangler fallback is shadowed against newproxy only")
    other_label = "nginx-b" if against == "nginx" else "newproxy"
    names = list(the_plan.listens)
    kinds: list[tuple[str, str]] = [("nginx", "nginx"), (against, other_label)]
    if fallback:
        kinds.insert(1, ("nginx", "legacy"))
    legacy: Target | None = None
    legacy_setting: Fallback | None = None
    conf_dir = os.path.dirname(os.path.abspath(config.main_file))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(UpstreamPool())
        for info in the_plan.upstreams.values():
            # upstream_binds: a recording upstream on the very address the config names (a test's
            # free port), so a proxy_pass whose host comes from variables reaches it unrewired.
            bind = (upstream_binds or {}).get(info.name, ("127.0.0.1", 0))
            pool.add(info.name, refuse=info.refuse or info.name in refuse, bind=bind,
                     tls=(tls_upstreams or {}).get(info.name))
        upstream_addrs = {name: u.hostport for name, u in pool.upstreams.items()}
        # The listen ports are picked once the upstreams hold theirs: a port free_ports saw free and
        # released could otherwise be the one the kernel gives an upstream next, and the target's
        # readiness probe would then be answered by that upstream while the target failed to bind.
        ports = free_ports(len(kinds) * len(names))
        targets: list[Target] = []
        for i, (kind, label) in enumerate(kinds):
            wiring = Wiring(
                workdir=os.path.join(base, label),
                listen_ports=dict(zip(names, ports[i * len(names) : (i + 1) * len(names)], strict=True)),
                upstream_addrs=upstream_addrs,
                for_nginx=kind == "nginx",
                nginx_prefix=nginx_prefix,
                conf_dir=conf_dir,
                tls_upstreams=frozenset(tls_upstreams or ()),
            )
            tweak = tweak_other if label == other_label else tweak_reference if label == "nginx" else None
            if label == other_label and fallback:
                legacy_setting = legacy_fallback(list(wiring.listen_ports.values()),
                                                 ports[len(names): 2 * len(names)])
            mutate = mutate_translation if label == other_label else None
            target = _make_target(kind, label, config, the_plan, wiring, tweak, legacy_setting,  # type: ignore[arg-type]
                                  mutate)
            try:
                started = stack.enter_context(target)
            except TargetError as exc:
                raise HarnessError(str(exc)) from exc
            except ImportError as exc:
                raise HarnessError(f"{label}: cannot build its config: {exc}") from exc
            if label == "legacy":
                legacy = started
            else:
                targets.append(started)
        yield StartedTargets(pool, targets, the_plan, legacy)


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
    guided: bool = True,
    shrink: int = 10,
    mutate_translation: Mutation | None = None,
    accept: Accepted | None = None,
    calibrate: bool = False,
    concurrency: int = 1,
    rate: float | None = None,
    strict_order: bool = False,
    allow_unsafe: bool = False,
    fallback: bool = False,
    protocol: Literal["h1", "h2"] = "h1",
    upstream_binds: Mapping[str, tuple[str, int]] | None = None,
    tls_upstreams: Mapping[str, TlsUpstream] | None = None,
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
    ``protocol="h2"``: the traffic of addresses with ``listen ... http2`` goes over HTTP/2 (generated
    as for HTTP/1.1, then ``h2client.to_h2``; h2c or TLS with ALPN h2), to both targets; requests
    that say ``version="2"`` go over HTTP/2 whatever this says.
    ``fallback``: translate with the strangler fallback, handing what cannot be translated to a third
    target, legacy nginx on the original config (``report.legacy_requests`` counts what it served).
    ``guided`` adds requests for the config parts the generated ones miss (shadow/guided.py).
    ``shrink``: for up to this many different requests (the ones the terminal shows), the smallest
    request that still shows the difference is searched with both targets (shadow/shrink.py) and
    reported as ``minimal``.
    ``accept``: the user's accepted differences (shadow/accepted.py), on top of the built-in ones.
    ``concurrency`` > 1 sends that many request pairs at once (shadow/concurrent.py: each request is
    tagged so its upstream requests can be told apart), at most ``rate`` pairs started per second.
    ``allow_unsafe``: run even when a target could reach a real backend (a ``*_pass`` with variables,
    which the rewiring cannot point at a recording upstream); refused otherwise.
    ``upstream_binds``: logical upstream name -> the address its recording upstream listens on (by
    default a free port): tests of proxy_pass with variables bind the addresses their requests name.
    ``tls_upstreams``: logical upstream name -> its certificate: that recording upstream speaks TLS
    and an ``https://`` proxy_pass to it stays https (by default https upstreams are shadowed over http).
    ``strict_order``: the order of header lines counts (by default an order-only difference is a note).
    ``calibrate`` first runs nginx against a second nginx on the same requests: what differs there
    is the harness's noise, and the same differences in the real run are reported as such (notes
    ``noise:...``), not counted.
    ``mutate_translation`` edits newproxy's translated config before it starts: how seeded bugs
    (deliberately wrong translations) prove the harness finds what a translator bug would cause.
    ``tweak_other`` edits the rewired tree of the target under test before it starts: for testing
    the harness itself (nginx vs a slightly different nginx must show differences) and what-ifs.
    Raises ``ConfigError`` for a config nginx_parser rejects and ``HarnessError`` when the
    comparison cannot run; differences are in the report, not exceptions.
    """
    config = parse_config(nginx_conf_path, context=context)
    the_plan = plan(config)
    if the_plan.unsafe and not allow_unsafe:
        raise HarnessError(
            "requests could reach real backends: the rewiring cannot replace these addresses with recording "
            f"upstreams: {'; '.join(the_plan.unsafe)}. Run with --allow-unsafe to send traffic anyway "
            "(every method, POST and DELETE included)")
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
    requests, notes = generate(config, h2client.as_http1(the_plan) if protocol == "h2" else the_plan, seed=seed,
                               max_requests=max_requests, nginx_prefix=nginx_prefix)
    if guided:
        requests = [*requests, *guided_traffic(config, requests, seed)]
    if extra_requests is not None:
        requests = [*requests, *extra_requests(the_plan)]
    requests = with_tls(requests, the_plan)
    if protocol == "h2":
        requests = h2client.over_h2(requests, the_plan)
    # Headers the config makes from $request_time, $msec, $connection...: masked (shadow/moments.py).
    rules = builtin() + moment_rules(config) + (accept or Accepted())
    noise: dict[int, set[str]] = {}
    try:
        if calibrate and against == "newproxy":
            noise = _calibrate(config, the_plan, os.path.join(base, "calibration"), requests, refuse, nginx_prefix,
                               timeout, probe, rules.masks())
        with started_targets(config, the_plan, base, against=against, refuse=refuse, nginx_prefix=nginx_prefix,
                             tweak_other=tweak_other, fallback=fallback,
                             mutate_translation=mutate_translation, upstream_binds=upstream_binds,
                             tls_upstreams=tls_upstreams) as started:
            pool, targets = started.pool, started.targets
            upstream_addrs = {name: u.hostport for name, u in pool.upstreams.items()}
            masks = rules.masks()
            if concurrency > 1:
                masks[TAG.lower()] = TAG_MASK
                results, untagged, stopped = uvloop.run(drive_concurrent(
                    requests, targets[0], targets[1], pool, _normalisers(targets[0], targets[1], pool, masks),
                    timeout, probe, concurrency, rate, progress, max_seconds))  # type: ignore[assignment]
                stale = 0
                if untagged:
                    notes.append(f"{untagged} upstream request(s) carried no {TAG} header and could not be "
                                 "attributed: run without --concurrency for this config")
            else:
                results, stale, stopped = uvloop.run(
                    _drive(requests, targets[0], targets[1], pool, timeout, probe, progress, max_seconds,
                           started.legacy, masks)
                )
            _forgive(results, rules, noise, strict_order)
            minimal = uvloop.run(
                _shrink_all(results, targets[0], targets[1], pool, timeout, probe, shrink, rules.masks())
            ) if shrink and not stopped else {}
            legacy_requests = count_legacy_requests(started.legacy) if started.legacy is not None else None
            if fallback and "error" not in gaps:
                # The gaps as `convert --fallback` reports them, with the legacy target's address.
                gaps = gap_summary(config, getattr(targets[1], "fallback", None))
    finally:
        if not keep_workdir and workdir is None:
            shutil.rmtree(base, ignore_errors=True)

    report = build_report(nginx_conf_path, other_label, results, minimal)
    report.notes = [*the_plan.notes, *notes]
    report.notes += [f"masked: {rule.header} ({rule.reason})" for rule in moment_rules(config).rules]
    report.calibrated = calibrate and against == "newproxy"
    if stopped:
        report.notes.append(stopped)
        report.errors += 1  # an incomplete run is not a clean bill of health
    if stale:
        report.notes.append(f"{stale} upstream request(s) arrived after their exchange had been compared")
    report.gaps = gaps
    report.coverage = coverage_of(config, [result.request for result in results])
    report.listens = {t.label: dict(t.listen_ports) for t in targets}
    report.upstreams = upstream_addrs
    report.legacy_requests = legacy_requests
    if started.legacy is not None:
        report.listens[started.legacy.label] = dict(started.legacy.listen_ports)
    return report
