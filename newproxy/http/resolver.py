"""A small DNS client over UDP for proxy_pass URLs made of variables (nginx's ``resolver``).

Why our own and not getaddrinfo: nginx never uses the system's resolver at run time; it asks the
servers named by ``resolver`` and fails with 502 when there is none. Doing the same keeps the
behaviour (which server is asked, /etc/hosts not consulted, ``valid=`` and ``resolver_timeout``)
identical and keeps lookups off the thread pool.

One ``Resolver`` per event loop: A (and AAAA unless ``ipv6=off``; A unless ``ipv4=off``) queries
sent together to the next server in turn, answers cached per name for ``valid`` seconds or the
smallest TTL; a failed lookup (NXDOMAIN, SERVFAIL, no address) is cached for ``valid`` or 10 s; a
timed out one is not cached. Concurrent lookups of one name share one query. A fresh answer gives
its IPv4 addresses, then its IPv6 ones, in answer order; a cached one is rotated as nginx's
ngx_resolver_export(rotate) does (each family from a random address, placed from a random slot),
so the requests for a name with several addresses spread over them: the upstream client makes a
round-robin group of the list (tried in its order, the next on error).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct
from collections.abc import Callable

from newproxy import connnum
from newproxy.config import ResolverConfig

_A, _AAAA, _CNAME = 1, 28, 5
_RCODES = {1: "Format error", 2: "Server failure", 3: "Host not found", 4: "Unimplemented", 5: "Operation refused"}
_NEGATIVE_TTL = 10.0
_CACHE_MAX = 10000


class ResolveError(Exception):
    """``code`` and ``text`` as nginx logs them: "could not be resolved (3: Host not found)"."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"({code}: {text})")
        self.code = code
        self.text = text


def build_query(qid: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes((len(part),)) + part for part in name.rstrip(".").encode("idna").split(b".") if part)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, at: int) -> int:
    while True:
        if at >= len(data):
            raise ValueError("truncated name")
        length = data[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def parse_answer(data: bytes) -> tuple[int, int, list[str], float]:
    """(id, rcode, addresses, smallest TTL) of a response."""
    qid, flags, qdcount, ancount = struct.unpack_from("!HHHH", data)
    at = 12
    for _ in range(qdcount):
        at = _skip_name(data, at) + 4
    addresses: list[str] = []
    ttl = float("inf")
    for _ in range(ancount):
        at = _skip_name(data, at)
        rtype, _rclass, rttl, length = struct.unpack_from("!HHIH", data, at)
        at += 10
        rdata = data[at:at + length]
        at += length
        if rtype == _A and length == 4:
            addresses.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == _AAAA and length == 16:
            addresses.append(str(ipaddress.IPv6Address(rdata)))
        else:
            continue
        ttl = min(ttl, float(rttl))
    return qid, flags & 0xF, addresses, ttl


class _Query(asyncio.DatagramProtocol):
    def __init__(self, expected: dict[int, int], done: Callable[[int, bytes], None]) -> None:
        self.expected = expected  # query id -> qtype
        self.done = done

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 12:
            qid = struct.unpack_from("!H", data)[0]
            if qid in self.expected:
                self.done(qid, data)


def rotated(addresses: list[str], draw: Callable[[int], int] = random.randrange) -> list[str]:
    """A cached answer as ngx_resolver_export(rotate=1) hands it out: the IPv4 addresses from a
    random one on, written from a random slot on (wrapping), then the IPv6 ones the same way from
    the slot after; ``draw(n)`` picks in range(n)."""
    n = len(addresses)
    out = [""] * n
    slot = draw(n)
    for family in ([a for a in addresses if ":" not in a], [a for a in addresses if ":" in a]):
        if not family:
            continue
        start = draw(len(family))
        for k in range(len(family)):
            out[slot] = family[(start + k) % len(family)]
            slot = (slot + 1) % n
    return out


class Resolver:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # name (lower case) -> (expiry, addresses or the error)
        self.cache: dict[tuple[str, int], tuple[float, list[str] | ResolveError]] = {}
        self.pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self.turn = 0  # the next server to ask (nginx asks them in turn)
        self.queries = 0  # lookups sent to a server (for tests and metrics)
        # (servers of a resolver, server) nginx would have opened its socket to: it opens one at the
        # first query to each and keeps it, and that takes a connection number (newproxy/connnum.py).
        self.opened: set[tuple[tuple[str, ...], str]] = set()

    async def resolve(self, name: str, config: ResolverConfig) -> list[str]:
        """The addresses of ``name``; raises ResolveError (nginx's code and text) or TimeoutError."""
        key = (name.lower(), id(config))
        now = self.loop.time()
        cached = self.cache.get(key)
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], ResolveError):
                raise cached[1]
            return rotated(cached[1]) if len(cached[1]) > 1 else cached[1]
        waiting = self.pending.get(key)
        if waiting is None:
            waiting = self.pending[key] = self.loop.create_future()
            task = self.loop.create_task(self._lookup(key, name, config))
            task.add_done_callback(lambda _t: self.pending.pop(key, None))
        return await asyncio.shield(waiting)

    async def _lookup(self, key: tuple[str, int], name: str, config: ResolverConfig) -> None:
        future = self.pending[key]
        try:
            addresses, ttl = await asyncio.wait_for(self._ask(name, config), config.timeout)
        except TimeoutError:
            if not future.done():
                future.set_exception(ResolveError(110, "Operation timed out"))
            return
        except ResolveError as exc:
            self._trim()
            self.cache[key] = (self.loop.time() + (config.valid or _NEGATIVE_TTL), exc)
            if not future.done():
                future.set_exception(exc)
            return
        except OSError as exc:
            if not future.done():
                future.set_exception(ResolveError(exc.errno or 2, exc.strerror or "Server failure"))
            return
        valid = config.valid if config.valid is not None else ttl
        if valid > 0:
            self._trim()
            self.cache[key] = (self.loop.time() + valid, addresses)
        if not future.done():
            future.set_result(addresses)

    def _trim(self) -> None:
        """Names come from requests: past _CACHE_MAX entries, the expired ones go (all, if none had)."""
        if len(self.cache) < _CACHE_MAX:
            return
        now = self.loop.time()
        self.cache = {key: entry for key, entry in self.cache.items() if entry[0] > now}
        if len(self.cache) >= _CACHE_MAX:
            self.cache.clear()

    async def _ask(self, name: str, config: ResolverConfig) -> tuple[list[str], float]:
        if not config.servers:
            raise ResolveError(2, "Server failure")
        server = config.servers[self.turn % len(config.servers)]
        self.turn += 1
        opened = (tuple(config.servers), server)
        if opened not in self.opened:
            self.opened.add(opened)
            connnum.take()
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        types = ([_A] if config.ipv4 else []) + ([_AAAA] if config.ipv6 else [])
        expected = {random.randrange(1, 65536): qtype for qtype in types}
        while len(expected) < len(types):  # two equal random ids: draw again
            expected = {random.randrange(1, 65536): qtype for qtype in types}
        answers: dict[int, bytes] = {}
        complete: asyncio.Future[None] = self.loop.create_future()

        def done(qid: int, data: bytes) -> None:
            answers[qid] = data
            if len(answers) == len(expected) and not complete.done():
                complete.set_result(None)

        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Query(expected, done), remote_addr=(host, int(port)))
        try:
            for qid, qtype in expected.items():
                transport.sendto(build_query(qid, name, qtype))
            self.queries += 1
            await complete
        finally:
            transport.close()
        by_type: dict[int, list[str]] = {}
        ttl = float("inf")
        worst = 0
        for qid, data in answers.items():
            _, rcode, addresses, answer_ttl = parse_answer(data)
            if rcode:
                worst = worst or rcode
                continue
            by_type[expected[qid]] = addresses
            ttl = min(ttl, answer_ttl)
        addresses = by_type.get(_A, []) + by_type.get(_AAAA, [])
        if not addresses:
            code = worst or 3  # NOERROR without an address: nginx reports "Host not found"
            raise ResolveError(code, _RCODES.get(code, "Unknown error"))
        return addresses, ttl if ttl != float("inf") else 0.0
