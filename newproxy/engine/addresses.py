"""Client addresses as nginx reads, matches and prints them (ngx_inet.c), for allow/deny and real_ip.

An address is ``(family, value)``: family 4 or 6 with the address as an int, or ``(0, 0)`` for a
unix-socket client. A CIDR is ``(family, mask, network)``; ``(0, 0, 0)`` is ``unix:``.
"""

from __future__ import annotations

import ipaddress

Address = tuple[int, int]
Cidr = tuple[int, int, int]

_V4MAPPED = 0xFFFF << 32
_ALL4 = (1 << 32) - 1
_ALL6 = (1 << 128) - 1
_PARSED: dict[str, Address | None] = {}
_PORTS: dict[str, tuple[Address, int] | None] = {}
_TEXTS: dict[Address, str] = {}


def inet_addr(text: str) -> int | None:
    """ngx_inet_addr: four decimal octets; an empty octet counts as 0, leading zeros are decimal."""
    addr = octet = dots = 0
    for ch in text:
        if "0" <= ch <= "9":
            octet = octet * 10 + ord(ch) - 48
            if octet > 255:
                return None
        elif ch == ".":
            addr = (addr << 8) + octet
            octet = 0
            dots += 1
        else:
            return None
    return (addr << 8) + octet if dots == 3 else None


def inet6_addr(text: str) -> int | None:
    if not text or "%" in text or "/" in text:
        return None
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def parse_addr(text: str) -> Address | None:
    """ngx_parse_addr: an IPv4 or an IPv6 address, nothing else."""
    v4 = inet_addr(text)
    if v4 is not None:
        return (4, v4)
    v6 = inet6_addr(text)
    return (6, v6) if v6 is not None else None


def parse_addr_port(text: str) -> tuple[Address, int] | None:
    """ngx_parse_addr_port: an address, ``a.b.c.d:port`` or ``[v6]:port`` (port 1..65535); 0: no port.
    Memoised (bounded): real_ip parses the same few proxy-sent addresses over and over."""
    found = _PORTS.get(text, False)
    if found is False:
        found = _parse_addr_port(text)
        if len(_PORTS) < 4096:
            _PORTS[text] = found
    return found  # type: ignore[return-value]


def _parse_addr_port(text: str) -> tuple[Address, int] | None:
    addr = parse_addr(text)
    if addr is not None:
        return addr, 0
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or close == len(text) - 1 or text[close + 1] != ":":
            return None
        host, port = text[1:close], text[close + 2:]
    else:
        host, sep, port = text.partition(":")
        if not sep:
            return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    addr = parse_addr(host)
    return (addr, int(port)) if addr is not None else None


def client_address(text: str) -> Address:
    """The socket address text of a client (or what real_ip set) as an Address; cached, bounded."""
    found = _PARSED.get(text, False)
    if found is False:
        # A link-local peer's socket address carries its scope ("fe80::1%eth0"); the address is the rest.
        found = parse_addr(text.partition("%")[0]) if text and not text.startswith("unix:") else (0, 0)
        if len(_PARSED) < 4096:
            _PARSED[text] = found
    return found if found is not None else (0, 0)  # type: ignore[return-value]


def as_v4(addr: Address) -> Address:
    """An IPv4-mapped IPv6 address is matched as the IPv4 address (ngx_cidr_match, the access module)."""
    family, value = addr
    if family == 6 and value >> 32 == 0xFFFF:
        return (4, value & _ALL4)
    return addr


def parse_cidr(text: str) -> tuple[Cidr, bool] | None:
    """ngx_ptocidr: (cidr, low bits were set and got masked) or None when it is not one. ``unix:`` is
    the caller's to handle."""
    host, sep, bits = text.partition("/")
    addr = parse_addr(host)
    if addr is None:
        return None
    family, value = addr
    width = 32 if family == 4 else 128
    if not sep:
        return (family, _ALL4 if family == 4 else _ALL6, value), False
    if not bits.isdigit() or int(bits) > width:
        return None
    shift = int(bits)
    mask = ((1 << shift) - 1) << (width - shift) if shift else 0
    return (family, mask, value & mask), value & mask != value


def cidr_match(addr: Address, cidrs: list[Cidr]) -> bool:
    """ngx_cidr_match: any block of the same family containing the address (unix: matches unix)."""
    family, value = as_v4(addr)
    for cfamily, mask, network in cidrs:
        if cfamily == family and value & mask == network:
            return True
    return False


def format_addr(addr: Address) -> str:
    """ngx_sock_ntop without the port: dotted IPv4, or IPv6 as ngx_inet6_ntop writes it (memoised, bounded)."""
    text = _TEXTS.get(addr)
    if text is None:
        text = _format_addr(addr)
        if len(_TEXTS) < 4096:
            _TEXTS[addr] = text
    return text


def _format_addr(addr: Address) -> str:
    family, value = addr
    if family == 4:
        return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))
    if family == 0:
        return "unix:"
    p = value.to_bytes(16, "big")
    words = [p[i] * 256 + p[i + 1] for i in range(0, 16, 2)]
    zero, best, run, start = -1, 1, 0, -1
    for i, word in enumerate(words):
        if word:
            if best < run:
                zero, best = start, run
            run = 0
            continue
        if run == 0:
            start = i
        run += 1
    if best < run:
        zero, best = start, run
    out = []
    n = 8
    if zero == 0:
        if (best == 5 and words[5] == 0xFFFF) or best == 6 or (best == 7 and p[14] != 0 and p[15] != 1):
            n = 6
        out.append(":")
    i = 0
    while i < n:
        if i == zero:
            out.append(":")
            i += best
            continue
        out.append(f"{words[i]:x}")
        if i < 7:
            out.append(":")
        i += 1
    text = "".join(out)
    if n == 6:
        text += f"{p[12]}.{p[13]}.{p[14]}.{p[15]}"
    return text
