"""map, geo and split_clients against real nginx: every key kind, captures, default, volatile, maps of
maps, and the split_clients buckets (many ids, so the bucket boundaries are crossed)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def map_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out = []
    for path in ("/old-page", "/OLD-PAGE", "/old-page/", "/mixed/case", "/Mixed/Case", "/blog/2019/07/title",
                 "/blog/19/07/x", "/docs/a/b", "/DoCs/x", "/default", "/nothing", "/cap?n=12-34", "/cap?n=x",
                 "/vol?v=1", "/vol", "/layout?force=m", "/layout?force=d", "/layout"):
        out.append(get(listen, path, "maps.test", f"GET {path}"))
    for host in ("example.com", "EXAMPLE.com", "example.com.", "a.example.com", "a.b.example.com", "example.org",
                 "x.example.org", "www.example.net", "www.example.co.uk", "api7.x", "api.x", "unknown.test",
                 "wwwexample.com"):
        out.append(get(listen, "/site", host, f"Host {host}"))
    for agent in ("Mozilla (iPhone)", "ANDROID x", "Opera Mini/1", "opera mini/1", "curl"):
        for force in ("", "m", "d"):
            out.append(get(listen, f"/layout?force={force}", "maps.test", f"UA {agent} force={force}",
                           extra=(("User-Agent", agent),)))
    for ip in ("10.9.9.9", "10.1.9.9", "10.1.2.3", "10.1.2.4", "192.168.1.1", "192.168.2.1", "172.16.5.5",
               "1.2.3.4", "200.1.1.1", "2001:db8::1", "2001:db8:1::5", "2001:db9::1", "::ffff:10.1.2.3", "::1",
               "not-an-ip", "", "10.1.2.3%20", "010.1.2.3", "10.1.2.3/8"):
        out.append(get(listen, f"/geo?ip={ip}", "maps.test", f"geo ip={ip!r}"))
    for i in range(160):
        out.append(get(listen, f"/variant?id={i}", "maps.test", f"split id={i}", extra=(("X-User", f"user{i}"),)))
    return out


def test_map_and_split_clients_match_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "maps.conf"), str(tmp_path), map_requests, max_requests=100)
    assert_equivalent(report, minimum=250)
