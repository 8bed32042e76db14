"""Seeded bugs: deliberately wrong translations the harness must catch.

Each case takes the translation of tests/data/seeded/app.conf and breaks one thing the way a
translator bug would (wrong location order, a lost header, a wrong rewrite flag, a wrong
load-balancing weight...), runs the shadow harness against real nginx, and requires a difference,
reported with the smallest request that still shows it (shrunk against both live targets). The
unbroken translation, shadowed the same way, shows none: the differences come from the bugs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from newproxy.config import LocationConfig, NewproxyConfig
from shadow.traffic import Request
from tests.differential import assert_equivalent, shadow

CONF = Path(__file__).parent / "data" / "seeded" / "app.conf"
Mutation = Callable[[NewproxyConfig], NewproxyConfig]


def _locations(config: NewproxyConfig) -> list[LocationConfig]:
    return config.servers[0].locations


def _location(config: NewproxyConfig, path: str) -> LocationConfig:
    return next(loc for loc in _locations(config) if loc.path == path)


def swap_regex_locations(config: NewproxyConfig) -> NewproxyConfig:
    locations = _locations(config)
    first = next(i for i, loc in enumerate(locations) if loc.match == "regex")
    locations[first], locations[first + 1] = locations[first + 1], locations[first]
    return config


def lose_proxy_header(config: NewproxyConfig) -> NewproxyConfig:
    proxy = _location(config, "/new/").proxy
    assert proxy is not None
    proxy.headers = [h for h in proxy.headers if h.name != "X-Tier"]
    return config


def rewrite_last_as_break(config: NewproxyConfig) -> NewproxyConfig:
    _location(config, "/old/").rewrite[0].flag = "break"  # type: ignore[union-attr]
    return config


def wrong_weights(config: NewproxyConfig) -> NewproxyConfig:
    app = next(u for u in config.upstreams if u.name == "app")
    app.servers[0].weight, app.servers[1].weight = 1, 3
    return config


def redirect_status(config: NewproxyConfig) -> NewproxyConfig:
    _location(config, "/moved").rewrite[0].status = 302  # type: ignore[union-attr]
    return config


def drop_proxy_uri(config: NewproxyConfig) -> NewproxyConfig:
    proxy = _location(config, "/api/").proxy
    assert proxy is not None
    proxy.uri = None
    return config


def wrong_map_value(config: NewproxyConfig) -> NewproxyConfig:
    tier = next(v for v in config.variables if getattr(v, "variable", "") == "tier")
    tier.entries[-1].value = "free"  # type: ignore[union-attr]
    return config


def lose_error_page(config: NewproxyConfig) -> NewproxyConfig:
    config.servers[0].error_pages = []
    for location in _locations(config):
        location.error_pages = []
    return config


def not_internal(config: NewproxyConfig) -> NewproxyConfig:
    _location(config, "/errors/404.txt").internal = False
    return config


def bigger_body_limit(config: NewproxyConfig) -> NewproxyConfig:
    config.servers[0].client_max_body_size = 1000
    for location in _locations(config):
        location.client_max_body_size = 1000
    return config


def wrong_default_type(config: NewproxyConfig) -> NewproxyConfig:
    _location(config, "/tier").default_type = "text/html"
    return config


def exact_as_prefix(config: NewproxyConfig) -> NewproxyConfig:
    _location(config, "/moved").match = "exact"
    return config


BUGS: dict[str, Mutation] = {
    "wrong location order": swap_regex_locations,
    "a lost proxy header": lose_proxy_header,
    "rewrite last translated as break": rewrite_last_as_break,
    "wrong load-balancing weights": wrong_weights,
    "wrong redirect status": redirect_status,
    "proxy_pass URI part dropped": drop_proxy_uri,
    "wrong map entry value": wrong_map_value,
    "error_page lost": lose_error_page,
    "internal lost": not_internal,
    "client_max_body_size changed": bigger_body_limit,
    "wrong default_type": wrong_default_type,
    "prefix location made exact": exact_as_prefix,
}


def _hand_picked(plan: object) -> list[Request]:
    listen = next(iter(plan.listens))  # type: ignore[attr-defined]
    host = (("Host", "shop.test"),)
    body = "x" * 500
    return [
        Request("POST", "/upload", host + (("Content-Length", str(len(body))),), listen, "hand", "big body", "1.1",
                body.encode()),
        Request("GET", "/tier", host + (("X-Tier", "platinum"),), listen, "hand", "tier"),
        Request("GET", "/new/a", host + (("X-Tier", "gold"),), listen, "hand", "tier header"),
    ]


def test_unbroken_translation_is_equivalent(tmp_path: Path) -> None:
    report = shadow(str(CONF), str(tmp_path), _hand_picked, max_requests=60)
    assert_equivalent(report, 40)


@pytest.mark.parametrize("bug", list(BUGS))
def test_seeded_bug_is_found_with_a_minimal_request(bug: str, tmp_path: Path) -> None:
    report = shadow(str(CONF), str(tmp_path), _hand_picked, max_requests=60, mutate_translation=BUGS[bug],
                    shrink=1)
    assert report.different > 0, f"{bug}: no difference found in {report.requests} requests"
    shrunk = [entry for entry in report.diffs if "minimal" in entry]
    different = [entry for entry in report.diffs if entry["verdict"] == "different"]
    # Every different request is reported with a curl command; the first one was shrunk against
    # both targets, and what it shrank to is never bigger than the request it came from.
    assert all(entry["curl"].startswith("curl ") for entry in different)
    assert shrunk and shrunk[0] is different[0]
    assert len(shrunk[0]["minimal"]["curl"]) <= len(shrunk[0]["curl"])
