"""nginx's preaccess-phase limits, ported from ngx_http_limit_req_module.c and
ngx_http_limit_conn_module.c (nginx 1.22), plus what limit_rate decides per answer.

limit_req is a leaky bucket per key, kept in integers exactly as nginx keeps it: ``excess`` in
milli-requests, ``rate`` in milli-requests per second, time in whole milliseconds of the monotonic
clock (nginx's ngx_current_msec is CLOCK_MONOTONIC too). Each request adds 1000 to the key's excess
after draining ``rate * ms / 1000`` since the key's last request; over ``burst`` it is rejected,
over ``delay`` it waits ``(excess - delay) * 1000 / rate`` ms. Several limit_req in one location are
looked up in order: every one but the last only reserves its node (``count``) and the request is
charged to all of them only when none rejects; the longest delay wins.

limit_conn counts requests in flight per key; the count is released when the answer is over (the IO
layer calls ``FileResponse.release`` / ``ProxyPass.release``; a complete in-memory answer releases at
once, since nothing can run between).

State lives in this process's zones (``Zones``): a dict per zone, which is nginx's shared zone
exactly when one process serves. Under a master (any ``worker_processes``) the master gives each
zone a table in shared memory before it forks (``ReqZone.shared`` / ``ConnZone.shared``,
newproxy/zones.py; kept over a reload when the zone is unchanged) and every zone operation goes
there, under the zone's lock, as nginx's go to its slab pool under the shpool mutex. ``shared`` is
None with ``master_process off``: that path takes no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from newproxy.config import LimitConnZoneConfig, LimitReqZoneConfig, LimitsConfig
from newproxy.engine import errors
from newproxy.engine.types import (
    Delayed,
    FileResponse,
    ProxyPass,
    RateLimit,
    Response,
    Result,
)

if TYPE_CHECKING:
    from newproxy.engine.context import RequestContext
    from newproxy.engine.variables import Template
    from newproxy.zones import SharedConnTable, SharedReqTable

# A limit_req node: a list [excess, last, count] in a process's own zone, an offset into the shared
# table in a shared one (newproxy/zones.py); only the zone that made it reads it.
Node = Any

# r->main->limit_req_status values ($limit_req_status names them).
REQ_PASSED, REQ_DELAYED, REQ_REJECTED, REQ_DELAYED_DRY_RUN, REQ_REJECTED_DRY_RUN = range(1, 6)
REQ_STATUS_NAMES = ("", "PASSED", "DELAYED", "REJECTED", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN")
CONN_PASSED, CONN_REJECTED, CONN_REJECTED_DRY_RUN = range(1, 4)
CONN_STATUS_NAMES = ("", "PASSED", "REJECTED", "REJECTED_DRY_RUN")

# ngx_http_limit_req_lookup's answers.
_DECLINED, _OK, _AGAIN, _BUSY, _ERROR = range(5)
_NODELAY = (2**63 - 1) // 1000 * 1000  # nginx: delay = NGX_MAX_INT_T_VALUE / 1000, then * 1000
_EXCESS, _LAST, _COUNT = range(3)  # a limit_req node: [excess, last, count]
_PAGE = 4096
CONN_OK, CONN_LIMITED, CONN_FULL = range(3)  # ConnZone.acquire's answers
_LOG_LEVELS = {"info": errors.INFO, "notice": errors.NOTICE, "warn": errors.WARN, "error": errors.ERR}


def _slot(size: int) -> int:
    """The slab slot nginx allocates ``size`` bytes in (powers of two from 8)."""
    slot = 8
    while slot < size:
        slot <<= 1
    return slot


def _usable(size: int) -> int:
    """Roughly what a slab pool of ``size`` bytes can hand out: whole pages after its bookkeeping."""
    return max(_PAGE, (size // (_PAGE + 24) - 1) * _PAGE)


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class ReqZone:
    """A limit_req_zone: nodes by key, least recently used first (nginx's queue, reversed)."""

    __slots__ = ("capacity", "config", "key", "name", "nodes", "rate", "shared", "used")

    def __init__(self, config: LimitReqZoneConfig, key: Template) -> None:
        self.config = config
        self.name = config.name
        self.key = key
        self.rate = config.rate
        self.capacity = _usable(config.size)
        self.used = 0
        self.nodes: OrderedDict[str, list[int]] = OrderedDict()
        self.shared: SharedReqTable | None = None  # set by the master before it forks workers

    def lookup(self, key: str, now: int, burst: int, account: bool) -> tuple[int, int, Node | None]:
        """ngx_http_limit_req_lookup: (rc, excess, the node reserved when rc is _AGAIN)."""
        if self.shared is not None:
            return self.shared.lookup(key, now, burst, account)
        node = self.nodes.get(key)
        if node is not None:
            self.nodes.move_to_end(key)
            ms = now - node[_LAST]
            if ms < -60000:
                ms = 1
            elif ms < 0:
                ms = 0
            excess = node[_EXCESS] - self.rate * ms // 1000 + 1000
            excess = max(excess, 0)
            if excess > burst:
                return _BUSY, excess, None
            if account:
                node[_EXCESS] = excess
                if ms:
                    node[_LAST] = now
                return _OK, excess, None
            node[_COUNT] += 1
            return _AGAIN, excess, node
        size = _slot(80 + len(key))  # rbtree node head (32) + limit_req node head (48) + key
        self._expire(now, 1)
        if self.used + size > self.capacity:
            self._expire(now, 0)
            if self.used + size > self.capacity:
                return _ERROR, 0, None
        self.used += size
        node = [0, now, 0] if account else [0, 0, 1]
        self.nodes[key] = node
        return (_OK, 0, None) if account else (_AGAIN, 0, node)

    def unreserve(self, node: Node) -> None:
        """A later limit rejected the request: the node reserved by lookup is free again."""
        if self.shared is not None:
            self.shared.unreserve(node)
        else:
            node[_COUNT] -= 1

    def charge(self, node: Node, now: int) -> int:
        """ngx_http_limit_req_account for one reserved node: drain, add the request, unreserve; the
        node's new excess."""
        if self.shared is not None:
            return self.shared.charge(node, now)
        ms = now - node[_LAST]
        if ms < -60000:
            ms = 1
        elif ms < 0:
            ms = 0
        excess = max(node[_EXCESS] - self.rate * ms // 1000 + 1000, 0)
        if ms:
            node[_LAST] = now
        node[_EXCESS] = excess
        node[_COUNT] -= 1
        return excess

    def _expire(self, now: int, n: int) -> None:
        """ngx_http_limit_req_expire: n == 1 drops up to two idle, drained nodes; n == 0 first drops the
        oldest by force."""
        nodes = self.nodes
        while n < 3:
            if not nodes:
                return
            key = next(iter(nodes))
            node = nodes[key]
            if node[_COUNT]:
                return
            check = n != 0
            n += 1
            if check:
                ms = abs(now - node[_LAST])
                if ms < 60000 or node[_EXCESS] - self.rate * ms // 1000 > 0:
                    return
            del nodes[key]
            self.used -= _slot(80 + len(key))


class ConnZone:
    """A limit_conn_zone: requests in flight by key."""

    __slots__ = ("capacity", "config", "counts", "key", "name", "shared", "used")

    def __init__(self, config: LimitConnZoneConfig, key: Template) -> None:
        self.config = config
        self.name = config.name
        self.key = key
        self.capacity = _usable(config.size)
        self.used = 0
        self.counts: dict[str, int] = {}
        self.shared: SharedConnTable | None = None  # set by the master before it forks workers

    def acquire(self, key: str, most: int) -> int:
        """Count one more request for ``key``: CONN_OK, or (nothing counted) CONN_LIMITED when
        ``most`` are in flight already, CONN_FULL when the zone has no room for a new key."""
        if self.shared is not None:
            return self.shared.acquire(key, most)
        count = self.counts.get(key)
        if count is None:
            size = _slot(36 + len(key))  # rbtree node head (32) + limit_conn node head (4) + key
            if self.used + size > self.capacity:
                return CONN_FULL
            self.used += size
            self.counts[key] = 1
            return CONN_OK
        if count >= most:
            return CONN_LIMITED
        self.counts[key] = count + 1
        return CONN_OK

    def release(self, key: str) -> None:
        if self.shared is not None:
            self.shared.release(key)
            return
        count = self.counts[key] - 1
        if count:
            self.counts[key] = count
        else:
            del self.counts[key]
            self.used -= _slot(36 + len(key))


class Holds:
    """The limit_conn counts one request holds (nginx's pool cleanups); ``release`` is idempotent."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[ConnZone, str]] = []

    def release(self) -> None:
        items = self.items
        while items:
            zone, key = items.pop()
            zone.release(key)


@dataclass(slots=True)
class CompiledLimits:
    req: tuple[tuple[ReqZone, int, int], ...]  # (zone, burst, delay), both in milli-requests
    req_status: int
    req_dry_run: bool
    conn: tuple[tuple[ConnZone, int], ...]
    conn_status: int
    conn_dry_run: bool
    rate: Template | None  # limit_rate; None when it is the constant 0
    rate_after: Template
    req_log: int = errors.ERR  # limit_req_log_level (newproxy/engine/errors.py numbers)
    req_delay_log: int = errors.WARN  # nginx: one level less severe, except info stays info
    conn_log: int = errors.ERR  # limit_conn_log_level


@dataclass
class Zones:
    """Every zone of the config, by name: the process-wide limit state."""

    req: dict[str, ReqZone] = field(default_factory=dict)
    conn: dict[str, ConnZone] = field(default_factory=dict)
    clock: Callable[[], int] = monotonic_ms
    rate_set: bool = False  # some `set $limit_rate` exists: pacing must be checked for every answer
    compiled: int = 0  # how many locations and servers have limits (0: the engine skips this module)

    def compile(self, config: LimitsConfig, template: Callable[[str], Template]) -> CompiledLimits:
        self.compiled += 1
        unknown = [r.zone for r in config.req if r.zone not in self.req] + \
            [c.zone for c in config.conn if c.zone not in self.conn]
        if unknown:
            raise ValueError(f'limits use a zone that is not defined: "{unknown[0]}"')
        req = tuple((self.req[r.zone], r.burst * 1000, _NODELAY if r.nodelay else r.delay * 1000) for r in config.req)
        conn = tuple((self.conn[c.zone], c.conn) for c in config.conn)
        rate = template(config.rate) if config.rate != "0" else None
        req_log = _LOG_LEVELS[config.req_log_level]
        return CompiledLimits(req, config.req_status, config.req_dry_run, conn, config.conn_status,
                              config.conn_dry_run, rate, template(config.rate_after), req_log,
                              req_log if req_log == errors.INFO else req_log + 1, _LOG_LEVELS[config.conn_log_level])


Fail = Callable[["RequestContext", int], Result]
Onward = Callable[[], Result]


def preaccess(ctx: RequestContext, limits: CompiledLimits, zones: Zones, fail: Fail, onward: Onward) -> Result:
    """limit_req then limit_conn (nginx runs the preaccess handlers in that order), then ``onward``:
    the phases after preaccess. A delayed request resumes at limit_conn, as nginx's does.

    An auth_request subrequest is not limited: nginx limits it only when the main request's location
    had no limit (r->main's status), and a delay or a count held by it would have no owner here."""
    if ctx.subrequest:
        return onward()
    if limits.req and not ctx.limit_req_status:
        delay = _limit_req(ctx, limits, zones.clock())
        if delay < 0:
            return fail(ctx, limits.req_status)
        if delay:
            ctx.start_sec = int(time.time())  # limit_rate counts from the request's start, not the delay's end
            return Delayed(delay / 1000, lambda: _limit_conn(ctx, limits, fail, onward))
    return _limit_conn(ctx, limits, fail, onward)


def _limit_req(ctx: RequestContext, limits: CompiledLimits, now: int) -> int:
    """ngx_http_limit_req_handler: the delay in ms (0: go on), or -1 to reject."""
    rc = _DECLINED
    excess = 0
    # The nodes of the earlier limits, reserved (count) by the lookup and charged by _account.
    reserved: list[tuple[Node, ReqZone, int]] = []
    chosen = limits.req[0]
    last = len(limits.req) - 1
    for i, limit in enumerate(limits.req):
        chosen = limit
        zone, burst, delay = limit
        key = zone.key.render(ctx)
        if not key or len(key) > 65535:
            continue  # an empty key is not limited
        rc, excess, node = zone.lookup(key, now, burst, i == last)
        if rc != _AGAIN:
            break
        assert node is not None
        reserved.append((node, zone, delay))
    if rc == _DECLINED:
        return 0
    if rc == _BUSY or rc == _ERROR:
        for node, zone, _ in reserved:
            zone.unreserve(node)
        dry = ", dry run" if limits.req_dry_run else ""
        if rc == _BUSY:
            errors.note(ctx, limits.req_log, f'limiting requests{dry}, excess: {excess // 1000}.{excess % 1000:03d} '
                                         f'by zone "{chosen[0].name}"')
        else:  # ngx_slab_alloc failed: logged to the main log, without the request's context
            errors.note(ctx, errors.ALERT | errors.CYCLE, f'could not allocate node in limit_req zone "{chosen[0].name}"')
        if limits.req_dry_run:
            ctx.limit_req_status = REQ_REJECTED_DRY_RUN
            return 0
        ctx.limit_req_status = REQ_REJECTED
        return -1
    if rc == _AGAIN:
        excess = 0
    delay, excess, zone = _account(reserved, excess, chosen, now)
    if not delay:
        ctx.limit_req_status = REQ_PASSED
        return 0
    dry = ", dry run" if limits.req_dry_run else ""
    errors.note(ctx, limits.req_delay_log, f'delaying request{dry}, excess: {excess // 1000}.{excess % 1000:03d}, '
                                  f'by zone "{zone.name}"')
    if limits.req_dry_run:
        ctx.limit_req_status = REQ_DELAYED_DRY_RUN
        return 0
    ctx.limit_req_status = REQ_DELAYED
    return delay


def _account(reserved: list[tuple[Node, ReqZone, int]], excess: int, limit: tuple[ReqZone, int, int],
             now: int) -> tuple[int, int, ReqZone]:
    """ngx_http_limit_req_account: charge the reserved nodes; the longest delay of all limits (ms),
    with the excess and zone that gave it (what the "delaying request" line names)."""
    zone, _, delay = limit
    max_delay = 0 if excess <= delay else (excess - delay) * 1000 // zone.rate
    worst = (excess, zone)
    for node, zone, delay in reversed(reserved):
        excess = zone.charge(node, now)
        if excess <= delay:
            continue
        wait = (excess - delay) * 1000 // zone.rate
        if wait > max_delay:
            max_delay = wait
            worst = (excess, zone)
    return max_delay, worst[0], worst[1]


def _limit_conn(ctx: RequestContext, limits: CompiledLimits, fail: Fail, onward: Onward) -> Result:
    """ngx_http_limit_conn_handler, then the phases after preaccess."""
    if limits.conn and not ctx.limit_conn_status:
        holds = ctx.holds if isinstance(ctx.holds, Holds) else None
        for zone, most in limits.conn:
            key = zone.key.render(ctx)
            if not key or len(key) > 255:
                continue
            ctx.limit_conn_status = CONN_PASSED
            refused = zone.acquire(key, most)
            if refused:
                if refused == CONN_LIMITED:  # nginx logs nothing when the zone is full
                    dry = ", dry run" if limits.conn_dry_run else ""
                    errors.note(ctx, limits.conn_log, f'limiting connections{dry} by zone "{zone.name}"')
                if holds is not None:
                    holds.release()  # ngx_http_limit_conn_cleanup_all
                if limits.conn_dry_run:
                    ctx.limit_conn_status = CONN_REJECTED_DRY_RUN
                    break
                ctx.limit_conn_status = CONN_REJECTED
                return fail(ctx, limits.conn_status)
            if holds is None:
                holds = ctx.holds = Holds()
            holds.items.append((zone, key))
    return onward()


def rate_limit(ctx: RequestContext, limits: CompiledLimits | None, start: int) -> RateLimit | None:
    """limit_rate for the answer (nginx decides it at the first write): a ``set $limit_rate`` value
    wins over the location's limit_rate; limit_rate_after is the location's."""
    variables = ctx.vars
    value = variables.get("limit_rate") if variables is not None else None
    rate = parse_size(value) if value is not None else -1  # an invalid value is not set (nginx logs it)
    if rate < 0:
        if limits is None or limits.rate is None:
            return None
        rate = parse_size(limits.rate.render(ctx))
    if rate <= 0:
        return None
    after = parse_size(limits.rate_after.render(ctx)) if limits is not None else 0
    return RateLimit(rate, max(after, 0), start)


_FACTORS = {"k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2, "g": 1024**3, "G": 1024**3}


def parse_size(value: str) -> int:
    """ngx_parse_size: digits with an optional k/m/g suffix; -1 when invalid."""
    factor = _FACTORS.get(value[-1:], 1)
    digits = value[:-1] if factor != 1 else value
    return int(digits) * factor if digits.isdigit() else -1


def limit_rate_variable(ctx: RequestContext) -> str:
    """$limit_rate: r->limit_rate, which is 0 until `set $limit_rate` (or the first write) sets it."""
    variables = ctx.vars
    value = variables.get("limit_rate") if variables is not None else None
    if value is None:
        return "0"
    return str(max(parse_size(value), 0))


def finish(ctx: RequestContext, answer: Result, zones: Zones) -> None:
    """The answer is final: hand the limit_conn counts to whoever sends it (an in-memory answer is
    over at once), and decide limit_rate for a file or proxied answer."""
    holds = ctx.holds
    if isinstance(answer, Response):
        if isinstance(holds, Holds):
            holds.release()
        return
    if isinstance(holds, Holds) and isinstance(answer, (FileResponse, ProxyPass)):
        answer.release = holds.release
    if isinstance(answer, (FileResponse, ProxyPass)):
        where = ctx.location if ctx.location is not None else ctx.server
        if where.limits is not None or zones.rate_set:
            # nginx's r->start_sec is when the request began: the answer is made in the same second
            # unless limit_req delayed it (then preaccess kept the second it began in).
            answer.rate = rate_limit(ctx, where.limits, ctx.start_sec or int(time.time()))
