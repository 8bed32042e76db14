"""nginx's gzip filter (ngx_http_gzip_filter_module) and ngx_http_gzip_ok, with no IO.

The header filter looks at a response when gzip is on for the request's location and the status is
200, 403 or 404, it has no (non-empty) Content-Encoding, its Content-Length, when known, is at
least gzip_min_length, and its type is in gzip_types. Such a response gets ``Vary: Accept-Encoding``
(gzip_vary on), compressed or not. It is compressed when ngx_http_gzip_ok accepts the request
(Accept-Encoding, MSIE 6, gzip_http_version, Via + gzip_proxied, gzip_disable); then nginx adds
``Content-Encoding: gzip`` after the other headers, drops Content-Length and Accept-Ranges (so no
range is served), makes a strong ETag weak (``W/"..."``; an ETag without quotes is dropped), keeps
Last-Modified, and frames the body chunked for HTTP/1.1 or until close for HTTP/1.0. A HEAD
request goes through the same filter (nginx marks it header-only only after the gzip filter): the
headers change, there is no body and the connection is kept.

Three places apply it, each with the information nginx has there:
- static files (``static.py``) decide before the range filter, as nginx's filter order does;
- responses the engine makes (``return`` text, error pages, autoindex) are filtered by
  ``filter_response`` on their finished head;
- proxied responses by ``rewrite_head`` on the relayed head (``proxy.client_response_head``), the
  body then streamed through a zlib compressor by the upstream client (``newproxy/http/upstream.py``).
A location without gzip costs nothing: its compiled gzip is None and no code here runs.

The compressed bytes are not nginx's (other zlib settings and flush points); what they decompress
to, and every header, are.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newproxy.config import GzipConfig
from newproxy.engine.regex import to_python_syntax

if TYPE_CHECKING:
    from newproxy.engine.types import Request, Response

GZIP_STATUSES = frozenset({200, 403, 404})
CONTENT_ENCODING = b"Content-Encoding: gzip\r\n"
VARY = b"Vary: Accept-Encoding\r\n"

# gzip_proxied flags.
_OFF, _EXPIRED, _NO_CACHE, _NO_STORE, _PRIVATE, _NO_LM, _NO_ETAG, _AUTH, _ANY = (1 << i for i in range(9))
_PROXIED = {"off": _OFF, "expired": _EXPIRED, "no-cache": _NO_CACHE, "no-store": _NO_STORE, "private": _PRIVATE,
            "no_last_modified": _NO_LM, "no_etag": _NO_ETAG, "auth": _AUTH, "any": _ANY}


@dataclass(slots=True, frozen=True)
class CompiledGzip:
    types: frozenset[bytes] | None  # lower-case MIME types; None: "*" (any response, even untyped)
    min_length: int
    level: int
    vary: bool
    proxied: int  # bitmask of the _PROXIED flags
    disable: tuple[re.Pattern[bytes], ...]
    disable_msie6: bool
    min_version: int  # 10 or 11: the request's HTTP version must be at least this

    def compressor(self) -> zlib._Compress:
        # wbits 31: a gzip wrapper around a 32 KB window, as nginx's default gzip_window.
        return zlib.compressobj(self.level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        compressor = self.compressor()
        return compressor.compress(data) + compressor.flush()


def compile_gzip(config: GzipConfig | None) -> CompiledGzip | None:
    if config is None:
        return None
    types = None if "*" in config.types else frozenset(t.lower().encode("latin-1") for t in config.types)
    proxied = 0
    for name in config.proxied:
        proxied |= _PROXIED[name]
    # nginx compiles gzip_disable with PCRE, caseless, without UTF: a bytes pattern is ASCII-only too.
    disable = tuple(re.compile(to_python_syntax(pattern).encode("latin-1"), re.IGNORECASE)
                    for pattern in config.disable)
    return CompiledGzip(types, config.min_length, config.comp_level, config.vary, proxied, disable,
                        config.disable_msie6, 11 if config.http_version == "1.1" else 10)


# -- the request side: ngx_http_gzip_ok ---------------------------------------------------------------

def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first header of that (lower-case) name, as nginx keeps it in r->headers_in."""
    size = len(name)
    for key, value in headers:
        if len(key) == size and key.lower() == name:
            return value
    return None


def accepts_gzip(value: bytes) -> bool:
    """ngx_http_gzip_ok's test of Accept-Encoding (with ngx_http_gzip_accept_encoding)."""
    if len(value) < 4:
        return False
    if value[:5] == b"gzip,":
        return True
    lower = value.lower()
    start = 0
    while True:
        p = lower.find(b"gzip", start)
        if p < 0:
            return False
        if p == 0 or value[p - 1] in b", ":  # as ngx_strcasestrn finds it: any earlier "gzip" counts
            break
        start = p + 4
    p += 4
    last = len(value)
    while p < last:
        c = value[p]
        p += 1
        if c == 44:  # ","
            return True
        if c == 59:  # ";"
            break
        if c != 32:
            return False
    else:
        return True
    while p < last:  # a parameter: only q counts
        c = value[p]
        p += 1
        if c in b"qQ":
            break
        if c != 32:
            return False
    else:
        return True
    if p + 2 > last or value[p] != 61:  # "="
        return False
    return _quantity(value, p + 1, last) != 0


def _quantity(value: bytes, p: int, last: int) -> int:
    """ngx_http_gzip_quantity (its arithmetic kept: only zero or not matters)."""
    c = value[p]
    p += 1
    if c not in b"01":
        return 0
    q = (c - 48) * 100
    if p == last:
        return q
    c = value[p]
    p += 1
    if c in b", ":
        return q
    if c != 46:  # "."
        return 0
    n = 0
    while p < last:
        c = value[p]
        p += 1
        if c in b", ":
            break
        if 48 <= c <= 57:
            q += c - 48
            n += 1
            continue
        return 0
    if q > 100 or n > 3:
        return 0
    return q


def is_msie6(user_agent: bytes) -> bool:
    """r->headers_in.msie6 as ngx_http_process_user_agent sets it: MSIE 4.x, 5.x, or 6.x without SV1,
    and not Opera."""
    msie = user_agent.find(b"MSIE ")
    found = False
    if msie >= 0 and msie + 7 < len(user_agent) and user_agent[msie + 6] == 46:
        version = user_agent[msie + 5]
        if version in b"45":
            found = True
        elif version == 54 and user_agent.find(b"SV1", msie + 8) < 0:  # "6"
            found = True
    return found and b"Opera" not in user_agent


@dataclass(slots=True)
class ResponseFacts:
    """What ngx_http_gzip_ok reads from r->headers_out for gzip_proxied."""

    expires: bytes | None = None
    date: bytes | None = None
    cache_control: list[bytes] | None = None
    last_modified: bool = False
    etag: bool = False


def _token(values: list[bytes], name: bytes) -> bool:
    """ngx_http_parse_multi_header_lines(cc, name, NULL) >= 0."""
    size = len(name)
    for value in values:
        if size > len(value):
            continue
        lower = value.lower()
        start, end = 0, len(value)
        while start < end:
            if lower[start:start + size] == name:
                start += size
                while start < end and value[start] == 32:
                    start += 1
                if start == end or value[start] == 44:
                    return True
            while start < end:
                c = value[start]
                start += 1
                if c in b";,":
                    break
            while start < end and value[start] == 32:
                start += 1
    return False


def gzip_ok(gz: CompiledGzip, request: Request, facts: ResponseFacts | Callable[[], ResponseFacts] | None) -> bool:
    """ngx_http_gzip_ok: may this response be compressed for this request? ``facts`` (what
    gzip_proxied reads from the response) may be a callable: only a request with Via needs them."""
    headers = request.headers
    ae = _first(headers, b"accept-encoding")
    if ae is None or not accepts_gzip(ae):
        return False
    agent = _first(headers, b"user-agent")
    if gz.disable_msie6 and agent is not None and is_msie6(agent):
        return False
    if (10 if request.version < b"1.1" else 11) < gz.min_version:  # HTTP/2 and 3 count as >= 1.1
        return False
    if _first(headers, b"via") is not None and not _proxied_ok(
            gz.proxied, request, (facts() if callable(facts) else facts) or ResponseFacts()):
        return False
    if gz.disable and agent is not None:
        for pattern in gz.disable:
            if pattern.search(agent):
                return False
    return True


def _proxied_ok(p: int, request: Request, facts: ResponseFacts) -> bool:
    if p & _OFF:
        return False
    if p & _ANY:
        return True
    if p & _AUTH and _first(request.headers, b"authorization") is not None:
        return True
    if facts.expires is not None:
        if not p & _EXPIRED:
            return False
        from newproxy.engine.static import parse_http_time  # a late import: static imports this module

        expires = parse_http_time(facts.expires)
        if expires == -1:
            return False
        if facts.date is not None:
            date = parse_http_time(facts.date)
            if date == -1:
                return False
        else:
            date = int(time.time())
        return expires < date
    if facts.cache_control is not None:
        cc = facts.cache_control
        return bool((p & _NO_CACHE and _token(cc, b"no-cache")) or (p & _NO_STORE and _token(cc, b"no-store"))
                    or (p & _PRIVATE and _token(cc, b"private")))
    if p & _NO_LM and facts.last_modified:
        return False
    if p & _NO_ETAG and facts.etag:
        return False
    return True


# -- the response side --------------------------------------------------------------------------------

def type_matches(gz: CompiledGzip, content_type: bytes | None) -> bool:
    """ngx_http_test_content_type over gzip_types: "*" takes anything; otherwise the lower-cased type."""
    if gz.types is None:
        return True
    if not content_type:
        return False
    return content_type.lower() in gz.types


def proxy_type(value: bytes) -> bytes:
    """The type nginx tests for an upstream Content-Type (ngx_http_upstream_copy_content_type): the
    value up to a ";" that starts a charset parameter, else the whole value."""
    if b";" not in value:
        return value
    at = 0
    while True:
        semi = value.find(b";", at)
        if semi < 0:
            return value
        p = semi + 1
        while p < len(value) and value[p] == 32:
            p += 1
        if p == len(value):
            return value
        if value[p:p + 8].lower() == b"charset=":
            return value[:semi]
        at = p


def weak_etag(value: bytes) -> bytes | None:
    """ngx_http_weak_etag: W/ in front of a strong ETag; None: the ETag is dropped (not quoted)."""
    if len(value) > 2 and value[:2] == b"W/":
        return value
    if not value.startswith(b'"'):
        return None
    return b"W/" + value


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked body the engine framed itself (autoindex)."""
    out = []
    at = 0
    while True:
        eol = body.index(b"\r\n", at)
        size = int(body[at:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2:eol + 2 + size])
        at = eol + 2 + size + 2


def chunk(data: bytes) -> bytes:
    return (b"%x\r\n" % len(data) + data + b"\r\n" if data else b"") + b"0\r\n\r\n"


def rewrite_head(gz: CompiledGzip, request: Request, method: bytes, head: bytes, proxied: bool
                 ) -> tuple[bytes, int, bool]:
    """The gzip header filter over a finished head: (head, decision, keepalive) where decision is 0
    (not looked at: the head is unchanged), 1 (Vary added if gzip_vary) or 2 (compress: the head
    says so; the body must be compressed, and framed chunked when the head says so).

    ``proxied``: the head relays an upstream's, whose Last-Modified is a header nginx's gzip_proxied
    tests and whose Content-Type is tested up to a charset parameter (ngx_http_upstream_copy_content_type)."""
    lines = head[:-4].split(b"\r\n")
    if int(lines[0][9:12]) not in GZIP_STATUSES:
        return head, 0, True
    content_type: bytes | None = None
    length = -1
    facts = ResponseFacts()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        value = value.strip(b" ")
        low = name.lower()
        if low == b"content-type":
            content_type = value
        elif low == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif low == b"content-encoding":
            if value:
                return head, 0, True
        elif low == b"expires":
            facts.expires = value  # r->headers_out.expires: the last one copied from upstream
        elif low == b"cache-control":
            facts.cache_control = (facts.cache_control or []) + [value]
        elif low == b"etag":
            facts.etag = True
        elif low == b"last-modified":
            # A file's Last-Modified is r->headers_out.last_modified_time, not the header element
            # gzip_proxied no_last_modified tests; an upstream's is that element.
            facts.last_modified = proxied
    if content_type is not None and proxied:
        content_type = proxy_type(content_type)
    if (length != -1 and length < gz.min_length) or not type_matches(gz, content_type):
        return head, 0, True
    if not gzip_ok(gz, request, facts):
        if gz.vary:
            return _insert_vary(lines), 1, True
        return head, 1, True
    head_only = method == b"HEAD"
    use_chunked = not head_only and request.version == b"1.1"
    keepalive = head_only or use_chunked
    out = [lines[0]]
    connection = False
    for line in lines[1:]:
        low = line[:line.find(b":")].lower()
        if low in (b"content-length", b"accept-ranges", b"transfer-encoding"):
            continue
        if low == b"connection" and not connection:
            connection = True
            if use_chunked:
                out.append(b"Transfer-Encoding: chunked")
            out.append(line if keepalive else b"Connection: close")
            if gz.vary:
                out.append(VARY[:-2])
            continue
        if low == b"etag":
            tag = weak_etag(line[5:].strip(b" "))
            if tag is None:
                continue
            line = line[:line.find(b":") + 2] + tag
        out.append(line)
    out.append(CONTENT_ENCODING[:-2])
    return b"\r\n".join(out) + b"\r\n\r\n", 2, keepalive


def filter_response(gz: CompiledGzip, request: Request, method: bytes, resp: Response) -> None:
    """The gzip header and body filter over a response the engine made (in place)."""
    if resp.close_without_response or resp.status not in GZIP_STATUSES:
        return
    was_chunked = b"\r\nTransfer-Encoding: chunked" in resp.head  # autoindex frames its listing itself
    head, decision, keepalive = rewrite_head(gz, request, method, resp.head, False)
    resp.head = head
    if decision != 2:
        return
    resp.keepalive = resp.keepalive and keepalive
    if method == b"HEAD":
        resp.body = b""
        return
    body = resp.body
    if body and was_chunked:
        body = dechunk(body)
    data = gz.compress(body)
    resp.body = chunk(data) if request.version == b"1.1" else data


def _insert_vary(lines: list[bytes]) -> bytes:
    out = []
    for line in lines:
        out.append(line)
        if line[:11].lower() == b"connection:":
            out.append(VARY[:-2])
    return b"\r\n".join(out) + b"\r\n\r\n"


def file_decision(gz: CompiledGzip, request: Request, status: int, content_type: bytes, size: int,
                  etag: bool, added: Callable[[], bytes] | None = None) -> int:
    """For a file answer (Last-Modified is not a header nginx's gzip_proxied tests there): 0 the
    filter does not look at it, 1 Vary only, 2 compress. ``added``: the headers the location's
    headers filter (expires, add_header) will add, as a head; it runs before gzip in nginx."""
    if status not in GZIP_STATUSES or size < gz.min_length or not type_matches(gz, content_type):
        return 0

    def facts() -> ResponseFacts:
        found = ResponseFacts(etag=etag)
        if added is not None:
            for line in added()[:-4].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                low = name.lower()
                value = value.strip(b" ")
                if low == b"expires" and found.expires is None:
                    found.expires = value
                elif low == b"cache-control":
                    found.cache_control = (found.cache_control or []) + [value]
                elif low == b"etag":
                    found.etag = True
        return found

    return 2 if gzip_ok(gz, request, facts) else 1


def file_head(status_line: bytes, server_line: bytes, date_line: bytes, content_type: bytes,
              last_modified: bytes, etag: bytes | None, chunked: bool, keepalive: bool, vary: bool) -> bytes:
    """The head of a compressed file answer, in nginx's order."""
    tag = weak_etag(etag) if etag is not None else None
    return b"".join((
        status_line, server_line, date_line, b"Content-Type: ", content_type, b"\r\n", last_modified,
        b"Transfer-Encoding: chunked\r\n" if chunked else b"",
        b"Connection: keep-alive\r\n" if keepalive else b"Connection: close\r\n",
        VARY if vary else b"", b"" if tag is None else b"ETag: " + tag + b"\r\n", CONTENT_ENCODING, b"\r\n",
    ))
