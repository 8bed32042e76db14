"""nginx's realip module: the client address taken from a header sent by a trusted proxy.

nginx runs it twice: in the post-read phase with the server's settings (before the server rewrite
phase, so ``return 200 $remote_addr`` there already sees the new address) and in the preaccess phase
with the location's, if the first did not change the address. Once changed, the address holds for
the rest of the request (internal redirects, auth_request subrequests), as nginx swaps the
connection's address for the request's lifetime; here ``Request.client_addr`` is replaced and the
original kept in ``RequestContext.realip_from`` ($realip_remote_addr).

ngx_http_get_forwarded_addr: only when the connection's address is in ``set_real_ip_from``; the last
address of the header (after trailing spaces and commas) is taken; with ``real_ip_recursive on``,
while that address is trusted too, the one before it, across repeated X-Forwarded-For headers from
the last to the first. An address may carry a port (``1.2.3.4:80``, ``[::1]:80``): it becomes
$remote_port, else $remote_port is empty. A value that is not an address leaves everything as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from newproxy.config import RealIpConfig
from newproxy.engine.addresses import (
    Address,
    Cidr,
    cidr_match,
    client_address,
    format_addr,
    parse_addr_port,
    parse_cidr,
)
from newproxy.engine.context import RequestContext


@dataclass(slots=True, frozen=True)
class CompiledRealIp:
    trusted: list[Cidr]
    header: bytes  # lower-case name; b"x-forwarded-for" takes every such header, others the first one
    recursive: bool


def compile_realip(config: RealIpConfig) -> CompiledRealIp:
    trusted: list[Cidr] = []
    for text in config.set_real_ip_from:
        if text == "unix:":
            trusted.append((0, 0, 0))
            continue
        parsed = parse_cidr(text)
        if parsed is None:
            raise ValueError(f'invalid set_real_ip_from "{text}"')
        trusted.append(parsed[0])
    return CompiledRealIp(trusted, config.header.lower().encode("latin-1"), config.recursive)


def _from_value(addr: Address, value: bytes, trusted: list[Cidr], recursive: bool) -> tuple[int, Address, int]:
    """ngx_http_get_forwarded_addr_internal over one header value: (0 declined / 1 ok / 2 done,
    address, port)."""
    found = False
    port = 0
    length = len(value)
    while True:
        if not cidr_match(addr, trusted):
            return (2 if found else 0), addr, port
        # Index arithmetic as in the C loops: p walks back over trailing separators, then back to
        # the separator before the last item (p ends on the item's first byte, or on byte 0).
        p = length - 1
        while p > 0 and value[p] in b" ,":
            p -= 1
            length -= 1
        while p > 0:
            if value[p] in b" ,":
                p += 1
                break
            p -= 1
        parsed = parse_addr_port(value[p:length].decode("latin-1")) if p >= 0 and length > p else None
        if parsed is None:
            return (2 if found else 0), addr, port
        addr, port = parsed
        found = True
        length = p - 1
        if not (recursive and p > 0):
            return 1, addr, port


def apply(ctx: RequestContext, realip: CompiledRealIp) -> None:
    """Replace the request's client address if a trusted proxy's header gives one (once per request)."""
    if ctx.realip_from is not None:
        return
    request = ctx.request
    name = realip.header
    if name == b"x-forwarded-for":
        values = [v for k, v in request.headers if k.lower() == name]
    else:
        first = next((v for k, v in request.headers if k.lower() == name), None)
        values = [first] if first is not None else []
    if not values:
        return
    addr = client_address(request.client_addr[0])
    rc = 0
    port = 0
    found = False
    for value in reversed(values):
        rc, addr, port = _from_value(addr, value, realip.trusted, realip.recursive)
        if not realip.recursive:
            break
        if rc == 0 and found:
            rc = 2
            break
        if rc != 1:
            break
        found = True
    if rc == 0:
        return
    ctx.realip_from = request.client_addr
    request.client_addr = (format_addr(addr), port)
