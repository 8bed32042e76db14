"""Which header names a connection's requests keep: underscores_in_headers / ignore_invalid_headers.

nginx reads them from the server the request is in *while* the head is parsed
(ngx_http_process_request_headers re-reads the server config for every line, "the host header
could change the server configuration context"): first the default server of the address:port
(under TLS, the server the SNI name chose), then, once the request line's host or the Host header
(HTTP/2: ``:authority`` or ``host``) names a server, that server's setting for the lines after it.

A parser takes the setting as a threshold (``h1parse.drop_below``) and, only when the servers of an
address:port do not all agree, a function from a host to the threshold of the server it names.
Nothing here runs for a config that keeps nginx's defaults everywhere (``HeaderRules.build``
returns None): the parsers' own defaults are those.
"""

from __future__ import annotations

from typing import Callable, Generic, Protocol, TypeVar

from newproxy.config import ServerConfig
from newproxy.engine.servers import InvalidHost, NameTable, normalise_host
from newproxy.http.h1parse import drop_below

_HOSTS_MAX = 1024  # cached host -> threshold entries per address:port (hosts come from clients)


class _HasConfig(Protocol):
    config: ServerConfig


S = TypeVar("S", bound=_HasConfig)


class _Router(Protocol[S]):  # newproxy.engine.servers.ServerRouter
    tables: dict[tuple[str, int], NameTable[S]]

    def table_for(self, local_ip: str, local_port: int) -> NameTable[S]: ...


def _drop(server: _HasConfig) -> int:
    config = server.config
    return drop_below(config.underscores_in_headers, config.ignore_invalid_headers)


def _servers(table: NameTable[S]) -> list[S]:
    return [table.default, *table.exact.values(), *(s for _, s in table.leading), *(s for _, s in table.trailing),
            *(s for _, s in table.regexes)]


class HeaderRules(Generic[S]):
    """The header-name settings of one engine's servers, per address:port (built once per engine)."""

    def __init__(self, router: _Router[S]) -> None:
        self.router = router
        # per NameTable: the function from a host to the threshold, or None when its servers agree
        self._by_host: dict[int, Callable[[bytes], int] | None] = {}

    @staticmethod
    def build(router: _Router[S]) -> HeaderRules[S] | None:
        """None when every server keeps nginx's defaults (underscores off, invalid names ignored)."""
        if all(_drop(server) == 0 for table in router.tables.values() for server in _servers(table)):
            return None
        return HeaderRules(router)

    def for_connection(self, local_addr: tuple[str, int], sni: str | None) -> tuple[int, Callable[[bytes], int] | None]:
        """(the threshold a request starts with, the host -> threshold function or None)."""
        table = self.router.table_for(*local_addr)
        key = id(table)
        if key not in self._by_host:
            self._by_host[key] = self._host_function(table)
        by_host = self._by_host[key]
        if by_host is None:
            return _drop(table.default), None
        # nginx's SNI callback makes the named server the connection's (ngx_http_ssl_servername).
        return (by_host(sni.encode("latin-1")) if sni else _drop(table.default)), by_host

    @staticmethod
    def _host_function(table: NameTable[S]) -> Callable[[bytes], int] | None:
        default = _drop(table.default)
        if all(_drop(server) == default for server in _servers(table)):
            return None
        cache: dict[bytes, int] = {}

        def by_host(raw: bytes) -> int:
            drop = cache.get(raw)
            if drop is None:
                try:
                    host = normalise_host(raw)
                except InvalidHost:
                    return default  # nginx refuses the request (400): the setting no longer matters
                drop = _drop(table.find(host)[0])
                if len(cache) < _HOSTS_MAX:
                    cache[raw] = drop
            return drop

        return by_host
