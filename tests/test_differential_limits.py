"""limit_req, limit_conn and limit_rate: nginx and newproxy driven with the same timed schedule.

Both targets start from one config through the shadow harness (``shadow.runner.started_targets``:
rewired listens, recording upstreams); each test sends the same schedule to both at once (distinct
keys per test, so the zones' state does not leak between tests) and compares what came back.

Tolerances, chosen so that a loaded 2-core machine does not flip a decision:
- limit_req decisions are compared exactly where the schedule keeps every decision at least 30 ms
  (300 milli-requests at 10r/s) away from a bucket boundary: requests sent together (same ms, give
  or take scheduling) and groups spaced so the bucket has drained far from the burst limit. Within
  a group the count of each status is compared (which connection wins a race is not).
- delays (limit_req without nodelay) are measured from the quickest passed request of the group and
  compared per rank: nginx and newproxy within ±60 ms of each other, each within ±70 ms of the
  delay nginx's formula gives (the delays are 100 ms apart or more).
- the "50 requests in 1 s" schedule (one every 20 ms) lands on bucket boundaries by construction:
  there the accepted counts must be within 2 of each other (which requests pass shifts with the
  machine's load).
- limit_rate: the transfer starts 0.1 s into a wall-clock second (nginx paces by whole seconds of
  ngx_time()); the transfer times are compared within ±0.25 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from nginx_parser import parse_config
from shadow.rewire import plan
from shadow.runner import started_targets

RATE_FILE_SIZE = 250 * 1024

CONFIG = """
events {}
http {
    limit_req_zone $http_x_key zone=one:1m rate=10r/s;
    limit_req_zone $http_x_key2 zone=two:1m rate=2r/s;
    limit_req_zone $http_x_key zone=five:1m rate=5r/s;
    limit_conn_zone $http_x_key zone=conns:1m;
    server {
        listen 127.0.0.1:8080;
        proxy_set_header X-LR $limit_req_status;
        proxy_set_header X-LC $limit_conn_status;
        location /nodelay/ { limit_req zone=one burst=5 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /groups/ { limit_req zone=five burst=5 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /delay/ { limit_req zone=one burst=3; proxy_pass http://127.0.0.1:9000; }
        location /partial/ { limit_req zone=one burst=4 delay=2; proxy_pass http://127.0.0.1:9000; }
        location /two/ {
            limit_req zone=one burst=5 nodelay;
            limit_req zone=two burst=2;
            limit_req_status 429;
            proxy_pass http://127.0.0.1:9000;
        }
        location /dry/ { limit_req zone=one burst=1; limit_req_dry_run on; proxy_pass http://127.0.0.1:9000; }
        location /conn/ { limit_conn conns 2; proxy_pass http://127.0.0.1:9000; }
        location /conn429/ { limit_conn conns 1; limit_conn_status 429; proxy_pass http://127.0.0.1:9000; }
        location /conndry/ { limit_conn conns 1; limit_conn_dry_run on; proxy_pass http://127.0.0.1:9000; }
        location /redirected/ { limit_req zone=one burst=1 nodelay; try_files /nonexistent @limited; }
        location @limited { limit_req zone=two nodelay; proxy_pass http://127.0.0.1:9000; }
        location /files/ { root %(root)s; limit_rate 100k; }
        location /setrate/ { alias %(root)s/files/; set $limit_rate 200k; }
        location /proxied/ { limit_rate 100k; limit_rate_after 100k; proxy_pass http://127.0.0.1:9000; }
    }
    limit_req_zone $http_x_key zone=slow:1m rate=30r/m;
    server {
        listen 127.0.0.1:8081;
        limit_req zone=one burst=1 nodelay;
        location /inner/ { proxy_pass http://127.0.0.1:9000; }
        location /own/ { limit_req zone=slow burst=1 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /vars/ { set $limit_rate 1k; return 200 "[$limit_rate|$limit_req_status|$limit_conn_status]"; }
    }
}
"""


class Reply:
    def __init__(self, status: int, body: bytes, elapsed: float) -> None:
        self.status = status
        self.body = body
        self.elapsed = elapsed

    def upstream_header(self, name: str) -> str:
        """A header of the request the recording upstream echoed ("" when not proxied)."""
        if self.status != 200:
            return ""
        echo = json.loads(self.body)
        return next((v for k, v in echo["headers"] if k.lower() == name.lower()), "")


async def fetch(port: int, path: str, headers: dict[str, str], at: float) -> Reply:
    """GET ``path`` on a new connection at loop time ``at`` (a POST with a body of that many "a" when
    headers has "Content-Length"); the reply and its time since ``at``."""
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    start = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    method, body = ("POST", b"a" * int(headers["Content-Length"])) if "Content-Length" in headers else ("GET", b"")
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: limits\r\n{lines}Connection: close\r\n\r\n".encode() + body)
    data = await asyncio.wait_for(reader.read(-1), 10)
    elapsed = asyncio.get_running_loop().time() - start
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return Reply(int(head.split(b" ", 2)[1]), body, elapsed)


Schedule = list[tuple[float, str, dict[str, str]]]  # (seconds from start, path, headers)


async def _both(ports: tuple[int, int], schedule: Schedule, lead: float) -> tuple[list[Reply], list[Reply]]:
    loop = asyncio.get_running_loop()
    t0 = loop.time() + lead
    tasks = [[asyncio.create_task(fetch(port, path, hdrs, t0 + at)) for at, path, hdrs in schedule] for port in ports]
    return await asyncio.gather(*tasks[0]), await asyncio.gather(*tasks[1])  # type: ignore[return-value]


def run(ports: tuple[int, int], schedule: Schedule, lead: float = 0.05) -> tuple[list[Reply], list[Reply]]:
    """The same schedule to nginx and newproxy at the same time."""
    return asyncio.run(_both(ports, schedule, lead))


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "files").mkdir()
    (tmp / "files" / "big.bin").write_bytes(os.urandom(RATE_FILE_SIZE))
    path = tmp / "nginx.conf"
    path.write_text(CONFIG % {"root": tmp})
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run")) as started:
        nginx, newproxy = started.targets
        SECOND[:] = [nginx.listen_ports["127.0.0.1:8081"], newproxy.listen_ports["127.0.0.1:8081"]]
        yield nginx.listen_ports["127.0.0.1:8080"], newproxy.listen_ports["127.0.0.1:8080"]


SECOND: list[int] = []  # the second server's ports (nginx, newproxy), filled by the fixture


def statuses(replies: list[Reply]) -> list[int]:
    return [r.status for r in replies]


def test_burst_nodelay_groups_match(ports: tuple[int, int]) -> None:
    """rate=5r/s burst=5 nodelay, one key: 12 at once, 5 at +0.7 s, 8 at +2.0 s. nginx: 6 pass (the
    first, then 5 of burst), then 3 (3.5 requests drained: 100 ms from either boundary), then 6
    (excess - drained + 1000 is clamped at 0, so the first of the group is free again). The counts
    per group must be the same on both."""
    key = {"X-Key": "groups"}
    schedule = [(0.0, "/groups/a", key)] * 12 + [(0.7, "/groups/b", key)] * 5 + [(2.0, "/groups/c", key)] * 8
    got_nginx, got_newproxy = run(ports, schedule)
    groups = [(0, 12), (12, 17), (17, 25)]
    counts = [[Counter(statuses(side[a:b])) for a, b in groups] for side in (got_nginx, got_newproxy)]
    assert counts[0] == counts[1]
    assert counts[0] == [Counter({200: 6, 503: 6}), Counter({200: 3, 503: 2}), Counter({200: 6, 503: 2})]
    # Rejected at once, never delayed (nodelay).
    assert all(r.elapsed < 0.5 for r in got_newproxy)


def test_fifty_requests_in_one_second(ports: tuple[int, int]) -> None:
    """One request every 20 ms for 1 s (50 requests), rate=10r/s burst=5 nodelay: about 1 + 5 + 10
    pass. Boundaries are hit by construction (20 ms drains 200 of the 1000 each request costs), so
    the accepted counts must be within 2 of each other (and near what the rate allows)."""
    key = {"X-Key": "fifty"}
    schedule = [(i * 0.02, "/nodelay/f", key) for i in range(50)]
    got_nginx, got_newproxy = run(ports, schedule)
    a, b = statuses(got_nginx), statuses(got_newproxy)
    assert set(a) <= {200, 503} and set(b) <= {200, 503}
    assert a[0] == b[0] == 200, (a, b)
    assert abs(a.count(200) - b.count(200)) <= 2, (a, b)
    assert 14 <= a.count(200) <= 18, a


def _delays(replies: list[Reply]) -> list[float]:
    """The times of the passed requests, sorted, from the quickest one (which no limit delayed): the
    load's constant cost drops out."""
    times = sorted(r.elapsed for r in replies if r.status == 200)
    return [t - times[0] for t in times]


def _quickest(replies: list[Reply]) -> float:
    return min(r.elapsed for r in replies)


def test_delay_queue_matches(ports: tuple[int, int]) -> None:
    """rate=10r/s burst=3 (delayed, not nodelay), 5 at once: 0, 100, 200, 300 ms, and the fifth is
    rejected at once. With burst=4 delay=2: 2 more pass undelayed, then 100 and 200 ms, then 503."""
    schedule = [(0.0, "/delay/d", {"X-Key": "delay"})] * 5
    got_nginx, got_newproxy = run(ports, schedule)
    assert sorted(statuses(got_nginx)) == sorted(statuses(got_newproxy)) == [200, 200, 200, 200, 503]
    for side in (got_nginx, got_newproxy):
        rejected = [r.elapsed - _quickest(side) for r in side if r.status == 503]
        assert rejected[0] < 0.06, rejected  # answered at once, before the first delayed one (0.1 s)
        for measured, expected in zip(_delays(side), (0.0, 0.1, 0.2, 0.3), strict=True):
            assert abs(measured - expected) <= 0.07, (_delays(got_nginx), _delays(got_newproxy))
    for x, y in zip(_delays(got_nginx), _delays(got_newproxy), strict=True):
        assert abs(x - y) <= 0.06

    schedule = [(0.0, "/partial/p", {"X-Key": "partial"})] * 6
    got_nginx, got_newproxy = run(ports, schedule)
    assert sorted(statuses(got_nginx)) == sorted(statuses(got_newproxy)) == [200] * 5 + [503]
    for side in (got_nginx, got_newproxy):
        for measured, expected in zip(_delays(side), (0.0, 0.0, 0.0, 0.1, 0.2), strict=True):
            assert abs(measured - expected) <= 0.07, (_delays(got_nginx), _delays(got_newproxy))
    for x, y in zip(_delays(got_nginx), _delays(got_newproxy), strict=True):
        assert abs(x - y) <= 0.06


def test_two_limits_combine(ports: tuple[int, int]) -> None:
    """Two limit_req in one location: zone one (10r/s burst=5 nodelay) and zone two (2r/s burst=2,
    delayed) with limit_req_status 429. 4 at once: two decides (0, 500, 1000 ms, then 429), and the
    request two rejects is not charged to one: a later burst on one alone passes 5 of 6 (the
    three charged are drained by then, 1000 ms later...). Requests without X-Key2 skip zone two
    (an empty key is not limited) and those without either key are not limited at all."""
    both = {"X-Key": "two", "X-Key2": "two"}
    schedule: Schedule = [(0.0, "/two/t", both)] * 4
    schedule += [(0.0, "/two/free", {})] * 10
    got_nginx, got_newproxy = run(ports, schedule)
    for side in (got_nginx, got_newproxy):
        assert sorted(statuses(side[:4])) == [200, 200, 200, 429]
        for measured, expected in zip(_delays(side[:4]), (0.0, 0.5, 1.0), strict=True):
            assert abs(measured - expected) <= 0.07, (_delays(got_nginx[:4]), _delays(got_newproxy[:4]))
        assert statuses(side[4:]) == [200] * 10
    for x, y in zip(_delays(got_nginx[:4]), _delays(got_newproxy[:4]), strict=True):
        assert abs(x - y) <= 0.06
    for side in (got_nginx, got_newproxy):
        assert {r.upstream_header("X-LR") for r in side[4:]} == {""}  # no limit applied: not found
    assert Counter(r.upstream_header("X-LR") for r in got_nginx[:4]) == \
        Counter(r.upstream_header("X-LR") for r in got_newproxy[:4]) == Counter({"PASSED": 1, "DELAYED": 2, "": 1})


def test_dry_run_rejects_nothing_and_sets_the_variable(ports: tuple[int, int]) -> None:
    """limit_req_dry_run on (burst=1, delayed mode): 3 at once all pass at once; $limit_req_status is
    PASSED, DELAYED_DRY_RUN, REJECTED_DRY_RUN (as the upstream sees it in a proxy_set_header)."""
    schedule = [(0.0, "/dry/x", {"X-Key": "dry"})] * 3
    got_nginx, got_newproxy = run(ports, schedule)
    for side in (got_nginx, got_newproxy):
        assert statuses(side) == [200] * 3
        assert max(r.elapsed for r in side) - _quickest(side) < 0.06  # none delayed (0.1 s)
    seen = [Counter(r.upstream_header("X-LR") for r in side) for side in (got_nginx, got_newproxy)]
    assert seen[0] == seen[1] == Counter({"PASSED": 1, "DELAYED_DRY_RUN": 1, "REJECTED_DRY_RUN": 1})


def test_limit_req_once_per_request_across_internal_redirect(ports: tuple[int, int]) -> None:
    """/redirected/ (zone one, burst=1 nodelay) falls back by try_files to @limited (zone two, no
    burst). 8 at once: 2 pass /redirected/'s limit, 6 get 503; the 2 that pass are not limited
    again in @limited (nginx applies limit_req once per request), so both reach the upstream."""
    schedule = [(0.0, "/redirected/r", {"X-Key": "redirect", "X-Key2": "redirect"})] * 8
    got_nginx, got_newproxy = run(ports, schedule)
    assert Counter(statuses(got_nginx)) == Counter(statuses(got_newproxy)) == Counter({200: 2, 503: 6})
    for side in (got_nginx, got_newproxy):
        assert [r.upstream_header("X-LR") for r in side if r.status == 200] == ["PASSED"] * 2


def test_limit_conn_counts_requests_in_flight(ports: tuple[int, int]) -> None:
    """limit_conn conns 2: 3 slow requests (the upstream waits 600 ms) at once: 2 pass, the third gets
    503 at once; a request after they are over passes again (the counts were released). With
    limit_conn_status 429 (conns 1): 429. With dry run (conns 1): all pass, $limit_conn_status tells."""
    slow = "/conn/__delay/600"
    schedule: Schedule = [(0.0, slow, {"X-Key": "conn"})] * 3 + [(1.5, "/conn/after", {"X-Key": "conn"})]
    schedule += [(0.0, "/conn429/__delay/600", {"X-Key": "c429"})] * 2
    schedule += [(0.0, "/conndry/__delay/300", {"X-Key": "cdry"})] * 2
    schedule += [(0.0, "/conn/nokey", {})] * 3  # empty key: not limited
    got_nginx, got_newproxy = run(ports, schedule)
    for side in (got_nginx, got_newproxy):
        assert sorted(statuses(side[:3])) == [200, 200, 503]
        assert next(r.elapsed for r in side[:3] if r.status == 503) < 0.3  # at once; the others take 0.6 s
        assert side[3].status == 200
        assert sorted(statuses(side[4:6])) == [200, 429]
        assert statuses(side[6:8]) == [200, 200]
        assert statuses(side[8:]) == [200] * 3
    seen = [Counter(r.upstream_header("X-LC") for r in side[6:8]) for side in (got_nginx, got_newproxy)]
    assert seen[0] == seen[1] == Counter({"PASSED": 1, "REJECTED_DRY_RUN": 1})
    assert {r.upstream_header("X-LC") for r in got_newproxy[8:]} == {r.upstream_header("X-LC") for r in got_nginx[8:]}


def _next_second_plus(offset: float) -> float:
    """Seconds to wait until ``offset`` into the next wall-clock second."""
    now = time.time()
    return (int(now) + 1 + offset) - now


def test_limit_rate_paces_like_nginx(ports: tuple[int, int]) -> None:
    """limit_rate 100k on a 250 KiB file: nginx sends 100k (head included) at once, then 100k a
    second later, then the rest: about 2 s (by whole second k, nginx allows rate * (k + 1) +
    limit_rate_after bytes). `set $limit_rate 200k`: about 1 s. A proxied answer of about 250 KiB
    (the upstream's echo of a 250 KiB body) with limit_rate 100k and limit_rate_after 100k: about
    1 s. Each total is at least 30 KiB from a whole second's allowance. Started 0.1 s into a
    wall-clock second (nginx counts whole seconds of its clock); compared within ±0.25 s."""
    schedule: Schedule = [(0.0, "/files/big.bin", {}), (0.0, "/setrate/big.bin", {}),
                          (0.0, "/proxied/p", {"Content-Length": str(RATE_FILE_SIZE)})]
    got_nginx, got_newproxy = run(ports, schedule, lead=_next_second_plus(0.1))
    for side in (got_nginx, got_newproxy):
        assert statuses(side) == [200, 200, 200]
        assert [len(r.body) for r in side[:2]] == [RATE_FILE_SIZE] * 2
    assert abs(len(got_nginx[2].body) - len(got_newproxy[2].body)) < 200  # the echoes differ in ports only
    for x, y, expected in zip(got_nginx, got_newproxy, (2.0, 1.0, 1.0)):
        assert abs(x.elapsed - expected) <= 0.25, (x.elapsed, y.elapsed)
        assert abs(x.elapsed - y.elapsed) <= 0.25, (x.elapsed, y.elapsed)


def test_server_level_limit_inherited_and_outside_locations(ports: tuple[int, int]) -> None:
    """A server-level limit_req (burst=1 nodelay) applies to a location without its own (2 of 3 pass)
    and to a request matching no location (404 from the static handler, 2 of 3; the third 503). A
    location's own limit_req replaces it: 30r/m burst=1, 3 at once then 1 at +1.2 s: 2 pass, and
    the late one is still rejected (only 600 of the 1000 it needs drained at 30r/m)."""
    assert ports
    second = (SECOND[0], SECOND[1])
    schedule: Schedule = [(0.0, "/inner/i", {"X-Key": "inner"})] * 3
    schedule += [(0.0, "/nolocation", {"X-Key": "noloc"})] * 3
    schedule += [(0.0, "/own/o", {"X-Key": "own"})] * 3 + [(1.2, "/own/late", {"X-Key": "own"})]
    got_nginx, got_newproxy = run(second, schedule)
    for side in (got_nginx, got_newproxy):
        assert Counter(statuses(side[:3])) == Counter({200: 2, 503: 1})
        assert Counter(statuses(side[3:6])) == Counter({404: 2, 503: 1})
        assert Counter(statuses(side[6:9])) == Counter({200: 2, 503: 1})
        assert side[9].status == 503


def test_variables_in_the_rewrite_phase(ports: tuple[int, int]) -> None:
    """`return` answers in the rewrite phase, before any limit: $limit_req_status and
    $limit_conn_status are empty (not found); $limit_rate reads what `set` gave it, as a number."""
    assert ports
    got_nginx, got_newproxy = run((SECOND[0], SECOND[1]), [(0.0, "/vars/v", {"X-Key": "vars"})])
    assert got_nginx[0].body == got_newproxy[0].body == b"[1024||]"


# -- config errors: nginx -t and the translator refuse the same directives, with the same message --

BAD: list[tuple[str, str, str]] = [  # (http-level text, location-level text, nginx's message)
    ("limit_req_zone $http_k zone=z:10 rate=1r/s;", "", 'zone "zone=z:10" is too small'),
    ("limit_req_zone $http_k zone=z rate=1r/s;", "", 'invalid zone size "zone=z"'),
    ("limit_req_zone $http_k zone=z:1m rate=0r/s;", "", 'invalid rate "rate=0r/s"'),
    ("limit_req_zone $http_k zone=z:1m rate=1r/s sync;", "",  # `sync` is nginx Plus only
     'invalid number of arguments in "limit_req_zone" directive'),
    ("limit_req_zone $http_k zone=z:1m burst=1;", "", 'invalid parameter "burst=1"'),
    ("limit_req_zone $http_k rate=1r/s rate=2r/s;", "", '"limit_req_zone" must have "zone" parameter'),
    ("limit_req_zone $a zone=z:1m rate=1r/s; limit_req_zone $b zone=z:1m rate=2r/s;", "",
     'limit_req_zone "z" is already bound to key "$a"'),
    ("limit_req_zone $http_k zone=z:1m rate=1r/s;", "limit_req zone=z burst=0;", 'invalid burst value "burst=0"'),
    ("limit_req_zone $http_k zone=z:1m rate=1r/s;", "limit_req zone=z delay=x;", 'invalid delay value "delay=x"'),
    ("limit_req_zone $http_k zone=z:1m rate=1r/s;", "limit_req zone=z; limit_req zone=z;",
     '"limit_req" directive is duplicate'),
    ("limit_req_zone $http_k zone=z:1m rate=1r/s;", "limit_req_status 399;", "value must be between 400 and 599"),
    ("limit_conn_zone $http_k zone=c:1m;", "limit_conn c 0;", 'invalid number of connections "0"'),
    ("", "limit_rate abc;", '"limit_rate" directive invalid value'),
    ("", "limit_req zone=nope;", 'zero size shared memory zone "nope"'),
]


@pytest.mark.parametrize(("http_text", "location_text", "message"), BAD)
def test_bad_limit_directives_fail_like_nginx(tmp_path: Path, http_text: str, location_text: str,
                                              message: str) -> None:
    from nginx_parser import ConfigError
    from tests.test_parser_nginx_agreement import nginx_test, temp_paths
    from translator.translate import translate

    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\n{temp_paths(tmp_path)}{http_text}\nserver {{\nlisten 127.0.0.1:1;\n"
                    f"location / {{\n{location_text}\n}}\n}}\n}}\n")
    verdict = nginx_test(conf, tmp_path)
    assert not verdict.ok and verdict.message == message, verdict.output
    with pytest.raises(ConfigError) as caught:
        translate(parse_config(str(conf)))
    assert caught.value.message == message
    if verdict.line:  # nginx names the line (not for a zone it finds missing after reading)
        assert (caught.value.file, caught.value.line) == (str(conf), verdict.line)


async def _pipelined(port: int, path: str, count: int) -> tuple[list[int], float]:
    """``count`` keep-alive GETs written at once on one connection: the statuses in order, the time."""
    start = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: limits\r\nX-Key: pipelined\r\n\r\n".encode()
    writer.write(request * count)
    got = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        got.append(int(head.split(b" ", 2)[1]))
    elapsed = asyncio.get_running_loop().time() - start
    writer.close()
    return got, elapsed


def test_pipelined_requests_wait_behind_a_delayed_one(ports: tuple[int, int]) -> None:
    """3 pipelined requests on one connection to /delay/ (10r/s burst=3): nginx takes them one after
    the other, so the 2nd waits 100 ms (excess 1000) and so does the 3rd (drained back to 0 by
    then): all 200, in order, in about 200 ms (±70 ms)."""
    async def both() -> list[tuple[list[int], float]]:
        return list(await asyncio.gather(*(_pipelined(port, "/delay/pipelined", 3) for port in ports)))

    for got, elapsed in asyncio.run(both()):
        assert got == [200, 200, 200]
        assert abs(elapsed - 0.2) <= 0.07, elapsed


def test_gap_levels(tmp_path: Path) -> None:
    """What the gap report says of the limit directives; auth_request anywhere makes each limit_req
    and limit_conn a caveat (newproxy does not limit its subrequests)."""
    from translator.translate import translate

    conf = tmp_path / "nginx.conf"
    body = ("limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;\nlimit_conn_zone $binary_remote_addr zone=c:1m;\n"
            "server {\nlisten 127.0.0.1:1;\nlocation / {\nlimit_req zone=z;\nlimit_conn c 1;\nlimit_rate 1k;\n"
            "limit_req_log_level warn;\n%s}\nlocation /auth { return 204; }\n}\n")
    levels = []
    for extra in ("", "auth_request /auth;\n"):
        conf.write_text("events {}\nhttp {\n" + body % extra + "}\n")
        occurrences = translate(parse_config(str(conf))).occurrences
        levels.append({o.directive: o.level for o in occurrences if o.directive.startswith("limit_")})
    assert levels[0] == {"limit_req_zone": "caveat", "limit_conn_zone": "caveat", "limit_req": "exact",
                         "limit_conn": "caveat", "limit_rate": "caveat", "limit_req_log_level": "exact"}
    assert levels[1] == {**levels[0], "limit_req": "caveat"}
