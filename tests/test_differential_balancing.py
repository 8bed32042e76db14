"""Balancing against real nginx: the peer each request reaches, request for request.

Round robin, ip_hash, hash, hash consistent and least_conn (sequential requests: no connection
overlaps, so its choice is deterministic) over weighted groups with a down peer and a refused one
(failure marking, retries through each method's own order, fail_timeout long enough that no
window ends during the run). The shadow harness compares every request's upstream recording, so a
different peer is a difference. Keys vary through the ``X-Key`` header (``hash $http_x_key``),
``$uri$arg_k``, and client addresses through the source address (any 127.x.y.z: ip_hash hashes the
first three octets). Also: mostly-down groups (a key that misses 20 times falls back to round
robin), backup peers with round robin and least_conn, keepalive before/after a balancing method
(nginx's "redefined" method drops the connection cache: reuse is compared), IPv6 client addresses
for ip_hash (IPv4-mapped on a dual-stack listen, and real_ip from X-Real-IP, where nginx hashes all
16 bytes).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from nginx_parser import Directive
from shadow.distribution import peer_counts
from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"
REFUSED = frozenset({"127.0.0.1:9509", "127.0.0.1:9519", "127.0.0.1:9529", "127.0.0.1:9539", "127.0.0.1:9559",
                     "127.0.0.1:9569"})
PER_METHOD = 160  # requests per location: 10 locations and the keep-alive ones, 1,660 requests in all


def _key(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"user-{rng.randrange(100000)}"
    if kind == 1:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789/._-") for _ in range(rng.randrange(1, 40)))
    if kind == 2:
        return str(rng.randrange(50))  # repeats: the same key must land on the same peer
    return rng.choice(["a", "b", "session=42", "café".encode().decode("latin-1")])


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    rng = random.Random(6)
    out: list[Request] = []
    for i in range(PER_METHOD):
        host = "balance.test"
        out.append(get(listen, f"/rr/{i}", host, f"rr #{i}"))
        out.append(get(listen, f"/lc/{i}", host, f"least_conn #{i}"))
        out.append(get(listen, f"/lcb/{i}", host, f"least_conn, backups #{i}"))
        key = _key(rng)
        # A few requests without the key: nginx falls back to round robin for an empty key.
        extra = () if i % 23 == 0 else (("X-Key", key),)
        out.append(get(listen, f"/hash/{i}", host, f"hash #{i}", extra=extra))
        out.append(get(listen, f"/ch/{i}", host, f"hash consistent #{i}", extra=extra))
        out.append(get(listen, f"/churi/{rng.randrange(1000)}?k={rng.randrange(30)}", host, f"hash $uri #{i}"))
        source = f"127.{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if i % 5 == 0:
            source = "127.0.0.1" if i % 10 == 0 else "127.0.0.77"  # repeats, and the same first 3 octets
        out.append(Request(method="GET", target=f"/iph/{i}", headers=(("Host", host),), listen=listen,
                           group="hand-picked", label=f"ip_hash #{i}", source=source))
        # Mostly-down groups: the 20-miss fallback to round robin.
        out.append(get(listen, f"/hash-down/{i}", host, f"hash, mostly down #{i}", extra=(("X-Key", _key(rng)),)))
        out.append(get(listen, f"/ch-down/{i}", host, f"hash consistent, mostly down #{i}",
                       extra=(("X-Key", _key(rng)),)))
        out.append(Request(method="GET", target=f"/iph-down/{i}", headers=(("Host", host),), listen=listen,
                           group="hand-picked", label=f"ip_hash, mostly down #{i}", source=source))
    for i in range(30):  # upstream keep-alive after a balancing method: connection reuse is compared
        out.append(get(listen, f"/ka/lost/{i % 4}", "balance.test", f"keepalive then hash #{i}"))
        out.append(get(listen, f"/ka/kept/{i % 4}", "balance.test", f"hash then keepalive #{i}"))
    return out


def test_balancing_sequence_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "balancing.conf"), str(tmp_path), requests, max_requests=0, refuse=REFUSED,
                    probe=0.002)
    assert_equivalent(report, minimum=10 * PER_METHOD + 60)
    assert report.statuses == {"200": 10 * PER_METHOD + 60}, report.statuses
    assert report.upstream_reused >= 20, report.upstream_reused  # ka_kept reused its connections
    # The refused peers were chosen and retried past (then skipped within fail_timeout; hsh's until
    # max_fails=2), so retries follow each method's own order too: both logged the same refusals.
    refusals = [(tmp_path / t / "error.log").read_text().count("connect() failed (111") for t in ("nginx", "newproxy")]
    assert refusals[0] == refusals[1] >= len(REFUSED), refusals


def _dual_stack(tree: list[Directive]) -> list[Directive]:
    """The rewired listens back on [::] with ipv6only=off (the harness rewires them to 127.0.0.1)."""
    out = []
    for directive in tree:
        if directive.name == "listen":
            port = directive.args[0].rsplit(":", 1)[1]
            directive = directive.model_copy(update={"args": [f"[::]:{port}", "ipv6only=off"]})
        elif directive.block is not None:
            directive = directive.model_copy(update={"block": _dual_stack(directive.block)})
        out.append(directive)
    return out


def test_ip_hash_ipv6_sequence_matches_nginx(tmp_path: Path) -> None:
    rng = random.Random(66)
    sources = [f"127.{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(150)]
    sources += ["127.0.0.1", "127.0.0.2", "127.0.0.1"]  # same first 3 octets: different IPv6 hashes

    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        return [Request(method="GET", target=f"/v6/{i}", headers=(("Host", "v6.test"),), listen=listen,
                        group="hand-picked", label=f"ip_hash v6 #{i}", source=source)
                for i, source in enumerate(sources)]

    result = peer_counts(str(DATA / "balancing_v6.conf"), make_requests=requests, workdir=str(tmp_path),
                         tweak=_dual_stack)
    nginx, ours = result["nginx"], result["newproxy"]
    assert nginx.statuses == ours.statuses == {"200": len(sources)}
    assert nginx.sequence == ours.sequence
    assert len(set(nginx.sequence)) == 3, Counter(nginx.sequence)  # every live peer, none to the down one


def test_ip_hash_after_real_ip_matches_nginx(tmp_path: Path) -> None:
    """real_ip replaces the client address before ip_hash reads it, IPv6 ones included: nginx then
    hashes all 16 bytes (the only way to vary a whole IPv6 client address on loopback)."""
    rng = random.Random(5)

    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        out = []
        for i in range(200):
            if i % 2:
                address = ":".join(f"{rng.randrange(65536):x}" for _ in range(8))
            else:
                address = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            out.append(get(listen, f"/r/{i}", "r.test", f"ip_hash after real_ip #{i}", extra=(("X-Real-IP", address),)))
        return out

    report = shadow(str(DATA / "balancing_realip.conf"), str(tmp_path), requests, max_requests=0, probe=0.002)
    assert_equivalent(report, minimum=200)
