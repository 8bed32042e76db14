"""newproxy's DNS client (newproxy/http/resolver.py) against a loopback responder: answers, the
cache (valid= or the TTL), failed lookups kept, timeouts not kept, A before AAAA questions."""

from __future__ import annotations

import asyncio

import pytest

from newproxy.config import ResolverConfig
from newproxy.http.resolver import ResolveError, Resolver, rotated
from tests.dns_responder import AAAA, A, DnsResponder


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_answers_are_cached_for_valid_and_failures_are_kept() -> None:
    with DnsResponder({"app.test": ["127.0.0.7", "127.0.0.8"]}, silent=frozenset({"slow.test"})) as dns:
        config = ResolverConfig(servers=[f"127.0.0.1:{dns.port}"], valid=30, timeout=0.3)

        async def scenario() -> list[object]:
            resolver = Resolver(asyncio.get_running_loop())
            out: list[object] = [await resolver.resolve("app.test", config), await resolver.resolve("APP.test", config)]
            for name in ("missing.test", "missing.test", "slow.test", "slow.test"):
                try:
                    await resolver.resolve(name, config)
                except ResolveError as exc:
                    out.append((name, exc.code, exc.text))
            # two lookups of one name at once share one question
            out.append(await asyncio.gather(resolver.resolve("twice.test", config), resolver.resolve("twice.test", config),
                                            return_exceptions=True))
            return out

        result = _run(scenario())
        questions = list(dns.questions)
    assert result[0] == ["127.0.0.7", "127.0.0.8"]  # a fresh answer in its order
    assert sorted(result[1]) == ["127.0.0.7", "127.0.0.8"]  # the cached one, rotated (nginx's export)
    assert result[2:6] == [("missing.test", 3, "Host not found")] * 2 + [("slow.test", 110, "Operation timed out")] * 2
    assert [type(e) for e in result[6]] == [ResolveError, ResolveError]  # type: ignore[union-attr]
    assert questions.count(("app.test", A)) == 1 and questions.count(("app.test", AAAA)) == 1
    assert questions.count(("missing.test", A)) == 1  # the failure is kept
    assert questions.count(("slow.test", A)) == 2  # a timeout is not
    assert questions.count(("twice.test", A)) == 1


def test_the_ttl_decides_without_valid_and_ipv6_off_asks_a_only() -> None:
    with DnsResponder({"ttl.test": ["127.0.0.9"]}, ttl=0) as dns:
        config = ResolverConfig(servers=[f"127.0.0.1:{dns.port}"], ipv6=False, timeout=1)

        async def scenario() -> list[str]:
            resolver = Resolver(asyncio.get_running_loop())
            await resolver.resolve("ttl.test", config)
            return await resolver.resolve("ttl.test", config)

        assert _run(scenario()) == ["127.0.0.9"]
        assert dns.questions == [("ttl.test", A), ("ttl.test", A)]  # TTL 0: asked again; no AAAA


def test_no_server_is_a_failure() -> None:
    async def scenario() -> list[str]:
        return await Resolver(asyncio.get_running_loop()).resolve("x.test", ResolverConfig(servers=[]))

    with pytest.raises(ResolveError):
        _run(scenario())


def test_a_cached_answer_is_rotated_as_nginx_exports_it() -> None:
    """ngx_resolver_export(rotate=1): IPv4 from a random one, written from a random slot on, the
    IPv6 ones after them (wrapping); draws given here so the placement is checked exactly."""
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "::1", "::2"]
    draws = iter([3, 1, 1])  # the slot 3, IPv4 from its second, IPv6 from its second
    assert rotated(addresses, lambda n: next(draws)) == ["10.0.0.1", "::2", "::1", "10.0.0.2", "10.0.0.3"]
    draws = iter([0, 0, 0])
    assert rotated(addresses, lambda n: next(draws)) == addresses  # no rotation drawn: as answered
    starts = {tuple(rotated(["10.0.0.1", "10.0.0.2"])) for _ in range(200)}
    assert starts == {("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")}
