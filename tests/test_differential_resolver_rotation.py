"""A proxy_pass name that resolves to several addresses, against real nginx 1.22.

nginx makes a round-robin group of every address of the answer (ngx_http_upstream_create_round_
robin_peer), tried in the answer's order, the next one on error (proxy_next_upstream). A fresh
answer keeps the DNS order; a cached one is rotated at random (ngx_resolver_export(rotate)), so the
requests for the name spread over its addresses. The recording upstreams listen on 127.0.0.1 and
127.0.0.2 (the same port: upstream_binds), the loopback DNS responder (tests/dns_responder.py) gives
both addresses for one name, and one refusing address (127.0.0.3) and a live one for another.

Compared: the first request (the fresh answer: both targets send it to the first address), the
spread of the next ones (random on both sides: each address gets at least a fifth of them), and for
the name with a dead address, every request answered 200 by the live one, with the dead one tried
first about as often on both sides ($upstream_addr lists both then).
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from nginx_parser import parse_config
from shadow.rewire import access_log_name, plan
from shadow.runner import started_targets
from tests.dns_responder import DnsResponder
from tests.test_differential_proxy_variables import _free_ports

CONFIG = """
events {}
http {
    log_format up '$upstream_addr|$upstream_status|$status';
    access_log logs/up.log up;
    server {
        listen 8080;
        server_name r.test;
        location /one { proxy_pass http://127.0.0.1:%(p)d; }
        location /two { proxy_pass http://127.0.0.2:%(p)d; }
        location /dns/ {
            resolver 127.0.0.1:%(dns)d valid=30s;
            proxy_pass http://$arg_to;
        }
    }
}
"""
N = 60


def _get(port: int, target: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target, headers={"Host": "r.test"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_every_address_of_a_name_is_used_as_nginx_uses_them(tmp_path: Path) -> None:
    (p,) = _free_ports(1)
    records = {"two.test": ["127.0.0.1", "127.0.0.2"], "half.test": ["127.0.0.3", "127.0.0.1"]}
    conf = tmp_path / "nginx.conf"
    seen: dict[str, tuple[list[str], list[int], list[str]]] = {}
    with DnsResponder(records) as dns:
        conf.write_text(CONFIG % {"p": p, "dns": dns.port})
        config = parse_config(str(conf))
        binds = {f"127.0.0.{i}:{p}": (f"127.0.0.{i}", p) for i in (1, 2)}
        with started_targets(config, plan(config), str(tmp_path / "run"), upstream_binds=binds) as started:
            for target in started.targets:
                port = next(iter(target.listen_ports.values()))
                statuses = [_get(port, f"/dns/{i}?to=two.test:{p}") for i in range(N)]
                statuses += [_get(port, f"/dns/h{i}?to=half.test:{p}") for i in range(N)]
                started.pool.settle()
                went = [r.upstream for r in started.pool.take()]
                time.sleep(0.2)  # the last log line
                log = (target.workdir / access_log_name("logs/up.log")).read_text().splitlines()
                seen[target.label if hasattr(target, "label") else str(len(seen))] = (went, statuses, log)
    (nginx, newproxy) = seen.values()
    for went, statuses, log in (nginx, newproxy):
        assert statuses == [200] * (2 * N), statuses
        two = went[:N]
        # The fresh answer: its first address. Then the rotation spreads the cached ones.
        assert two[0] == f"127.0.0.1:{p}", two[:3]
        for address in (f"127.0.0.1:{p}", f"127.0.0.2:{p}"):
            assert two[1:].count(address) >= N // 5, (address, two)
        # half.test: always answered by the live address, the dead one tried first now and then.
        assert went[N:] == [f"127.0.0.1:{p}"] * N, went[N:]
        retried = [line for line in log[N:] if line.startswith(f"127.0.0.3:{p}, 127.0.0.1:{p}|502, 200|")]
        direct = [line for line in log[N:] if line == f"127.0.0.1:{p}|200|200"]
        assert len(retried) + len(direct) == N and len(retried) >= N // 5 and len(direct) >= N // 5, log[N:]
    assert newproxy[2][N] == nginx[2][N], (nginx[2][N], newproxy[2][N])  # the fresh answer's order
