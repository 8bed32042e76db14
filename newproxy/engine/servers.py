"""Virtual server selection: first by the address and port a request arrived on, then by name.

Mirrors ngx_http_find_virtual_server: exact names, then the longest leading wildcard
(``*.example.com``), then the longest trailing wildcard (``www.example.*``), then regex names in
config order; failing all, the ``default_server`` of that address:port (or the first server there).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Generic, TypeVar

from newproxy.config import ServerConfig
from newproxy.engine.regex import compile_regex

S = TypeVar("S")


class InvalidHost(ValueError):
    pass


_PLAIN_HOST: Final = re.compile(rb"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


# nginx 1.22 refuses a Host with a space, a control byte, DEL, "/" or ".." anywhere, port included.
_HOST_BAD: Final = re.compile(rb"[\x00-\x20\x7f/]|\.\.").search


# Valid Host values already normalised: a client sends the same Host on every request, and the
# general check (a regex miss for "name:port", then the port and dot scans) costs ~1 µs where a
# dict probe costs ~0.05. Cleared when full, so a client making up names cannot grow it.
_KNOWN_HOSTS: Final[dict[bytes, str]] = {}
_KNOWN_HOSTS_MAX: Final = 1024


def normalise_host(raw: bytes) -> str:
    """Validate a Host value as ngx_http_validate_host does; return it lower-cased, without port or final dot.

    Checked against the binary: a leading dot, a backslash or an unterminated "[" literal pass.
    """
    host = _KNOWN_HOSTS.get(raw)
    if host is None:
        host = _validate_host(raw)  # raises InvalidHost: an invalid value is never remembered
        if len(_KNOWN_HOSTS) >= _KNOWN_HOSTS_MAX:
            _KNOWN_HOSTS.clear()
        _KNOWN_HOSTS[raw] = host
    return host


def _validate_host(raw: bytes) -> str:
    if _PLAIN_HOST.fullmatch(raw):
        return raw.decode("ascii")  # the common case: already lower-case, no port, nothing to check
    if _HOST_BAD(raw):
        raise InvalidHost("invalid host")
    if raw[:1] == b"[":
        end = raw.find(b"]")
        host_len = end + 1 if end >= 0 else len(raw)
    else:
        colon = raw.find(b":")
        host_len = colon if colon >= 0 else len(raw)
    # nginx drops a final dot only when it is the last dot of the whole value (port included).
    if raw.rfind(b".") == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        raise InvalidHost("empty host")
    return raw[:host_len].decode("latin-1").lower()


def host_valid(raw: bytes) -> bool:
    try:
        normalise_host(raw)
    except InvalidHost:
        return False
    return True


class NameTable(Generic[S]):
    """All the server names reachable on one address:port. A plain class, not a dataclass: compiled
    (newproxy/native.py), its lookup, which runs per request, reads it without Python's generic
    attribute lookup."""

    def __init__(self, default: S) -> None:
        self.default = default
        self.exact: dict[str, S] = {}
        self.leading: list[tuple[str, S]] = []  # ".example.com" suffixes, longest first
        self.trailing: list[tuple[str, S]] = []  # "www.example." prefixes, longest first
        self.regexes: list[tuple[re.Pattern[str], S]] = []
        # The names already taken, as ngx_hash_add_key tracks them to refuse a later duplicate
        # ("conflicting server name ... ignored"): ".example.com" takes "example.com" in the exact
        # keys even when its wildcard half then conflicts, and shares its key with "*.example.com".
        self.exact_keys: set[str] = set()
        self.head_keys: set[str] = set()
        self.tail_keys: set[str] = set()

    def add(self, name: str, server: S) -> None:
        if name.startswith("~"):
            # nginx matches a regex name caselessly when the pattern has an upper-case letter.
            pattern = name[1:]
            self.regexes.append((compile_regex(pattern, caseless=pattern != pattern.lower()), server))
            return
        name = name.lower()
        if name.startswith(".") and len(name) > 1:
            base = name[1:]
            if not self._take(self.exact_keys, base) or not self._take(self.head_keys, base):
                return
            # ".example.com" matches "example.com" itself through the wildcard hash; no exact name
            # can be "example.com" any more, so answering it from the exact table is the same.
            self.exact[base] = server
            self._insert(self.leading, name, server)
        elif name.startswith("*."):
            if self._take(self.head_keys, name[2:]):
                self._insert(self.leading, name[1:], server)
        elif name.endswith(".*"):
            if self._take(self.tail_keys, name[:-2]):
                self._insert(self.trailing, name[:-1], server)
        elif self._take(self.exact_keys, name):
            self.exact[name] = server

    @staticmethod
    def _take(keys: set[str], key: str) -> bool:
        if key in keys:
            return False  # nginx keeps the first server that declares a name
        keys.add(key)
        return True

    @staticmethod
    def _insert(table: list[tuple[str, S]], key: str, server: S) -> None:
        table.append((key, server))
        table.sort(key=lambda item: -len(item[0]))

    def find(self, host: str) -> tuple[S, re.Match[str] | None]:
        server = self.exact.get(host)
        if server is not None:
            return server, None
        for suffix, candidate in self.leading:
            # ngx_hash_find_wc_head: the label before the suffix may be empty (Host ".example.com").
            if host.endswith(suffix):
                return candidate, None
        for prefix, candidate in self.trailing:
            if host.startswith(prefix) and len(host) > len(prefix):
                return candidate, None
        for pattern, candidate in self.regexes:
            match = pattern.search(host)
            if match:
                return candidate, match
        return self.default, None


def is_wildcard(address: str) -> bool:
    return address in ("0.0.0.0", "::", "*", "[::]")


def canonical_address(address: str) -> str:
    if address == "*":
        return "0.0.0.0"
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return address


def covering(keys: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Sockets to open for these (canonical address, port) keys, in order: a wildcard on a port
    covers the specific addresses on it, as in nginx."""
    wildcard_ports = {(port, ":" in addr) for (addr, port) in keys if is_wildcard(addr)}
    return [(addr, port) for addr, port in dict.fromkeys(keys)
            if is_wildcard(addr) or (port, ":" in addr) not in wildcard_ports]


class ServerRouter(Generic[S]):
    """Picks the server for (local address, local port, host)."""

    def __init__(self, servers: list[tuple[ServerConfig, S]]) -> None:
        self.tables: dict[tuple[str, int], NameTable[S]] = {}
        self._by_socket: dict[tuple[str, int], NameTable[S]] = {}
        # First pass: the default server of each address:port.
        for config, server in servers:
            for listen in config.listen:
                key = (canonical_address(listen.address), listen.port)
                table = self.tables.get(key)
                if table is None:
                    self.tables[key] = NameTable(default=server)
                elif listen.default_server:
                    table.default = server
        # Second pass: names, in config order. Each address:port has its own table: a server on
        # 127.0.0.1:80 is not reachable by name through *:80, nor the other way round (as in nginx).
        for config, server in servers:
            for listen in config.listen:
                table = self.tables[(canonical_address(listen.address), listen.port)]
                for name in config.server_names:
                    table.add(name, server)

    def bind_addresses(self) -> list[tuple[str, int]]:
        """Sockets to open: a wildcard listen on a port covers the specific addresses on it, as in nginx."""
        wildcard_ports = {(port, ":" in addr) for (addr, port) in self.tables if is_wildcard(addr)}
        out = []
        for addr, port in self.tables:
            if not is_wildcard(addr) and (port, ":" in addr) in wildcard_ports:
                continue
            out.append((addr, port))
        return out

    def table_for(self, local_ip: str, local_port: int) -> NameTable[S]:
        # A connection's local address repeats for every request on it: resolve it once.
        key = (local_ip, local_port)
        table = self._by_socket.get(key)
        if table is None:
            table = self._by_socket[key] = self._resolve_table(local_ip, local_port)
        return table

    def _resolve_table(self, local_ip: str, local_port: int) -> NameTable[S]:
        table = self.tables.get((canonical_address(local_ip), local_port))
        if table is not None:
            return table
        wildcard = "::" if ":" in local_ip else "0.0.0.0"
        table = self.tables.get((wildcard, local_port))
        if table is None:
            # Only reachable when a socket was bound for an address the config does not name.
            table = next(iter(self.tables.values()))
        return table
