"""Which upstream got how many requests, under concurrency: for balancing that is not a sequence.

``run_shadow`` sends one request at a time and compares each answer, which proves methods whose
choices are deterministic (round robin, ip_hash, hash, least_conn when nothing overlaps). Random
choices and choices made while connections overlap (least_conn, max_conns) are compared as
distributions instead: ``peer_counts`` sends the same requests to each target in turn, ``concurrency``
at a time, and counts per target which logical upstream each request reached (from the recording
upstreams) and which statuses the clients got; one at a time, it also keeps the per-request sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from nginx_parser import parse_config
from shadow import client
from shadow.rewire import DEFAULT_NGINX_PREFIX, Plan, Wiring, plan
from shadow.runner import Tweak, _make_target, free_ports
from shadow.traffic import Request
from shadow.upstreams import UpstreamPool


@dataclass
class Counts:
    upstreams: Counter[str] = field(default_factory=Counter)  # logical upstream -> requests it received
    statuses: Counter[str] = field(default_factory=Counter)  # client status (or transport outcome) -> requests
    # With concurrency 1: per request, the logical upstreams that received it, in order.
    sequence: list[tuple[str, ...]] = field(default_factory=list)


async def _burst(requests: list[Request], ports: dict[str, int], concurrency: int, timeout: float,
                 pool: UpstreamPool, counts: Counts) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(request: Request) -> None:
        async with gate:
            # A short keep-alive probe: the connection's fate is not what is counted here.
            response = await client.send(request.to_bytes(), ports[request.listen], request.method,
                                         timeout=timeout, probe=0.001, source=request.source,
                                         tls=request.tls)
            counts.statuses[str(response.status) if response.outcome == "response" else response.outcome] += 1
            if concurrency == 1:
                pool.settle()
                names = tuple(record.upstream for record in pool.take())
                counts.sequence.append(names)
                counts.upstreams.update(names)

    await asyncio.gather(*(one(r) for r in requests))


def peer_counts(
    nginx_conf_path: str,
    requests: list[Request] | None = None,
    *,
    make_requests: object = None,
    against: str = "newproxy",
    concurrency: int = 1,
    timeout: float = 10.0,
    workdir: str | None = None,
    refuse: frozenset[str] = frozenset(),
    tweak: Tweak | None = None,
) -> dict[str, Counts]:
    """Per target label ("nginx", then ``against``): where ``requests`` went and what came back.

    ``tweak`` edits the rewired tree of both targets (e.g. a dual-stack listen, which the rewiring
    replaces with an IPv4 one).

    ``make_requests(plan)`` builds the requests from the plan's logical listen names instead of
    ``requests``. Targets run one after the other on fresh recording upstreams, so neither sees the
    other's history.
    """
    config = parse_config(nginx_conf_path)
    the_plan: Plan = plan(config)
    if make_requests is not None:
        requests = make_requests(the_plan)  # type: ignore[operator]
    assert requests is not None
    base = workdir or tempfile.mkdtemp(prefix="shadow-dist-")
    names = list(the_plan.listens)
    conf_dir = os.path.dirname(os.path.abspath(config.main_file))
    result: dict[str, Counts] = {}
    for kind in ("nginx", against):
        label = kind if kind not in result else f"{kind}-b"
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(UpstreamPool())
            for info in the_plan.upstreams.values():
                pool.add(info.name, refuse=info.refuse or info.name in refuse)
            wiring = Wiring(
                workdir=os.path.join(base, label),
                listen_ports=dict(zip(names, free_ports(len(names)), strict=True)),
                upstream_addrs={name: u.hostport for name, u in pool.upstreams.items()},
                for_nginx=kind == "nginx",
                nginx_prefix=DEFAULT_NGINX_PREFIX,
                conf_dir=conf_dir,
            )
            target = stack.enter_context(_make_target(kind, label, config, the_plan, wiring, tweak))  # type: ignore[arg-type]
            counts = Counts()
            asyncio.run(_burst(requests, target.listen_ports, concurrency, timeout, pool, counts))
            pool.settle()
            counts.upstreams.update(record.upstream for record in pool.take())
            result[label] = counts
    return result


def shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.items()}
