"""Generated traffic: deterministic, enough of it, every location covered, samples that match."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from nginx_parser import parse_config
from shadow.regex_sample import compile_pcre, sample
from shadow.rewire import plan
from shadow.traffic import Request, generate, instantiate_name

CONF = Path(__file__).parent / "data" / "shadow" / "small.conf"


def _generate(**kw):  # type: ignore[no-untyped-def]
    config = parse_config(str(CONF))
    return generate(config, plan(config), **kw)


def test_deterministic_and_plenty() -> None:
    a, notes_a = _generate(seed=3)
    b, notes_b = _generate(seed=3)
    assert a == b and notes_a == notes_b
    assert len(a) >= 200
    assert len({(r.method, r.target, r.headers, r.listen, r.version, r.body) for r in a}) == len(a)


def test_every_location_and_listen_gets_traffic() -> None:
    requests, _ = _generate()
    groups = Counter(r.group.split(" › ")[-1] for r in requests)
    for location in (
        "location /api/",
        "location = /exact",
        "location ~* \\.(png|jpg)$",
        "location ~ ^/users/(?<id>\\d+)$",
    ):
        assert groups[location] >= 10, groups
    assert {r.listen for r in requests} == {"*:80", "*:8080"}
    methods = Counter(r.method for r in requests)
    assert methods["GET"] and methods["HEAD"] and methods["POST"]
    assert any(r.version == "1.0" and not any(h[0] == "Host" for h in r.headers) for r in requests)


def test_regex_samples_match_their_location() -> None:
    requests, _ = _generate()
    users = [
        r
        for r in requests
        if r.group.endswith("(?<id>\\d+)$")
        and "sample" in r.label
        and "sample+" not in r.label
        and "sample-" not in r.label
    ]
    assert users
    pattern = compile_pcre(r"^/users/(?<id>\d+)$")
    assert pattern is not None
    for r in users:
        assert pattern.search(r.target.split("?")[0]), r.target
    caseless = [r for r in requests if "regex.case" in r.label]
    assert caseless and all(re.search(r"\.(PNG|JPG)$", r.target.split("?")[0], re.I) for r in caseless)


def test_cap_keeps_every_group() -> None:
    full, _ = _generate()
    capped, _ = _generate(max_requests=40)
    assert len(capped) == 40
    assert {r.group for r in capped} == {r.group for r in full}
    # Still in generation order.
    positions = [full.index(r) for r in capped]
    assert positions == sorted(positions)


def test_server_names() -> None:
    assert instantiate_name("*.example.com", 0) == (["a.example.com", "b.c.example.com"], None)
    assert instantiate_name(".example.org", 0) == (["example.org", "www.example.org"], None)
    assert instantiate_name("www.example.*", 0) == (["www.example.com"], None)
    hosts, note = instantiate_name(r"~^www\d+\.other\.test$", 0)
    assert hosts and note is None and all(re.fullmatch(r"www\d+\.other\.test", h) for h in hosts)
    assert instantiate_name("~(", 0)[0] == []


def test_sampler_is_deterministic() -> None:
    assert sample(r"\.php$", 3, 7, prefix="/") == sample(r"\.php$", 3, 7, prefix="/")
    assert all(s.startswith("/") and s.endswith(".php") for s in sample(r"\.php$", 3, 7, prefix="/"))


def test_request_bytes_and_curl() -> None:
    r = Request("POST", "/a?b=1", (("Host", "x"), ("Content-Length", "3")), "*:80", "g", "l", "1.0", b"abc")
    assert r.to_bytes() == b"POST /a?b=1 HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    assert (
        r.curl()
        == "curl -sS -i --path-as-is --http1.0 -X POST -H 'Host: x' --data-binary abc 'http://127.0.0.1:80/a?b=1'"
    )
    assert "-H Host:" in Request("GET", "/", (), "127.0.0.1:8081", "g", "l", "1.0").curl()


def test_curl_of_a_chunked_request_sends_the_payload() -> None:
    body = b"4\r\nab=c\r\n5\r\n&d=ef\r\n0\r\n\r\n"
    r = Request("POST", "/", (("Host", "x"), ("Transfer-Encoding", "chunked")), "[::]:80", "g", "l", "1.1", body)
    assert r.curl().endswith("--data-binary 'ab=c&d=ef' 'http://[::1]:80/'")
