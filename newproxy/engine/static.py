"""nginx's content handlers for files: the index module, the static module, and the header filters
a file answer goes through (not_modified, then range), with no IO but ``os.stat``.

The answer for a file is a ``FileResponse``: the head, and the byte ranges of the file the IO layer
sends (with sendfile where it can), so the body never passes through the engine.

nginx's order (ngx_http_index_handler, ngx_http_static_handler, ngx_http_core_content_phase):
- a URI ending in "/": index names in order; an absolute one, or the first that exists, is an
  internal redirect (args kept); none: 404 if the directory is missing, else 405 for methods other
  than GET/HEAD/POST and 403 (no autoindex);
- otherwise: 405 for methods other than GET/HEAD/POST; stat the file: missing 404, forbidden 403;
  a directory is a 301 to uri + "/" (+ "?args"); not a regular file 404; POST 405; else 200 with
  Content-Type (by the URI's extension), Content-Length, Last-Modified, ETag ("%xT-%xO");
- not_modified filter: If-Unmodified-Since/If-Match (412), If-Modified-Since (exact, before or
  off) and If-None-Match (weak comparison) give a 304 without Content-Type or Content-Length;
- range filter: a "bytes=" Range (If-Range by ETag or date) gives a 206 with Content-Range, or
  multipart/byteranges for several ranges, or a 416 page; otherwise "Accept-Ranges: bytes".
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newproxy.engine import errors, gzip
from newproxy.engine.status import status_line
from newproxy.engine.types import FileResponse, Response
from newproxy.engine.variables import Template

if TYPE_CHECKING:
    from newproxy.engine.compiled import CompiledLocation, CompiledServer
    from newproxy.engine.context import RequestContext
    from newproxy.engine.engine import Engine
    from newproxy.engine.gzip import CompiledGzip
    from newproxy.engine.responses import ResponseMaker
    from newproxy.engine.types import ProxyPass

_ALLOWED = (b"GET", b"HEAD", b"POST")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK
_STATUS_LINES = {status: status_line(status) for status in (200, 206, 304)}
_ACCEPT_RANGES = b"Accept-Ranges: bytes\r\n"
# (mtime, size, etag on) -> (ETag value, ETag line, Last-Modified line): formatted once per file version.
_META: dict[tuple[int, int, bool], tuple[bytes | None, bytes, bytes]] = {}
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)
_FORBIDDEN = (errno.EACCES, errno.EMLINK, errno.ELOOP)
_ALIAS_TEMPLATES: dict[str, Template] = {}
# nginx's boundary is ngx_next_temp_number(0): a counter from 1, shared with its temp files (which
# newproxy does not make), so it matches nginx's as long as nginx wrote no temp file either.
_boundaries = itertools.count(1)


_WANTED = frozenset({b"if-unmodified-since", b"if-match", b"if-modified-since", b"if-none-match", b"range",
                     b"if-range"})
_NONE: dict[bytes, bytes] = {}


def _conditionals(request_headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request headers the not_modified and range filters read, by lower-case name (the first
    of each, as nginx keeps them); one pass, nothing allocated when there are none."""
    found = _NONE
    for key, value in request_headers:
        if key[:1] in b"IiRr":
            lower = key.lower()
            if lower in _WANTED:
                if found is _NONE:
                    found = {}
                found.setdefault(lower, value)
    return found


def map_uri(where: CompiledLocation | CompiledServer, ctx: RequestContext, uri: str) -> str:
    """ngx_http_map_uri_to_path: root + uri, or alias + what follows the location's prefix (a regex
    location's alias is the whole path, captures substituted)."""
    config = where.config
    alias = config.static.alias
    if alias is None:
        return config.root + uri
    match = getattr(config, "match", None)
    if match in ("regex", "regex_caseless"):
        template = _ALIAS_TEMPLATES.get(alias)
        if template is None:
            template = _ALIAS_TEMPLATES[alias] = Template(alias)
        return template.render(ctx)
    return alias + uri[len(config.path):]  # type: ignore[union-attr]


def serve(engine: Engine, ctx: RequestContext) -> Response | FileResponse | ProxyPass:
    where: CompiledLocation | CompiledServer = ctx.location if ctx.location is not None else ctx.server
    request = ctx.request
    method = ctx.method or request.method
    uri = ctx.uri
    static = where.config.static
    if uri.endswith("/"):
        if method in _ALLOWED:
            answer = _index(engine, ctx, where)
            if answer is not None:
                return answer
        if static.autoindex and method in (b"GET", b"HEAD"):
            return autoindex(engine, ctx, where)
        if method not in _ALLOWED:
            return engine._fail(ctx, 405)
        # ngx_http_core_content_phase: a URI ending in "/" nobody answered
        errors.note(ctx, errors.ERR, f'directory index of "{map_uri(where, ctx, uri)}" is forbidden')
        return engine._fail(ctx, 403)
    if method not in _ALLOWED:
        return engine._fail(ctx, 405)
    path = map_uri(where, ctx, uri)
    cached = _CACHE.get(path)
    if cached is not None and method != b"POST":
        try:
            st = os.stat(path)
        except OSError:
            st = None  # the open below answers as nginx would
        if st is not None and file_identity(st) == cached[0]:
            ctx.static_file = (path, st)  # for the static memo (newproxy/engine/memo.py)
            return _file_answer(engine, ctx, where, -1, st, static.etag, static.if_modified_since, cached[1])
    # ngx_open_cached_file: open (O_NONBLOCK), then fstat; EACCES on open is a 403 as in nginx.
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        # ngx_http_static_handler logs every failure (log_not_found is on), a strange one at crit
        level = errors.ERR if exc.errno in _NOT_FOUND or exc.errno in _FORBIDDEN else errors.CRIT
        errors.note(ctx, level, f'open() "{path}" failed {errors.os_error(exc)}')
        return engine._fail(ctx, 404 if exc.errno in _NOT_FOUND else 403 if exc.errno in _FORBIDDEN else 500)
    except ValueError:  # a NUL in the path
        return engine._fail(ctx, 404)
    answer: Response | FileResponse | ProxyPass | None = None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            target = uri + "/" + ("?" + ctx.args if ctx.args else "")
            answer = engine._redirect(ctx, 301, target)
        elif not stat.S_ISREG(st.st_mode):
            answer = engine._fail(ctx, 404)
        elif method == b"POST":
            answer = engine._fail(ctx, 405)
        else:
            data = _cache_fill(path, fd, st)
            if data is not None:
                ctx.static_file = (path, st)
            answer = _file_answer(engine, ctx, where, fd, st, static.etag, static.if_modified_since, data)
    finally:
        if not isinstance(answer, FileResponse) or answer.fd != fd:
            os.close(fd)
    return answer


# -- small-file cache -------------------------------------------------------------------------------
# A world-readable regular file of at most CACHE_FILE_MAX bytes, unchanged for CACHE_SETTLE seconds, is
# kept in memory and served after one stat() instead of open/fstat/read/close, as long as its inode,
# size, mtime and ctime are what they were when it was read (so every change on disk is seen at
# once: a write changes ctime; a file still being written is not cached). World-readable: a stat can
# not tell whether open() would be refused, and for such a file it would not be.

CACHE_FILE_MAX = 65536
CACHE_ENTRIES = 2048
CACHE_SETTLE = 2.0
_CACHE: dict[str, tuple[tuple[int, int, int, int, int], bytes]] = {}
_COMPRESSED: dict[tuple[bytes, int], bytes] = {}  # gzip: (a cached file's bytes, level) -> compressed


def has_conditionals(request_headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request has a header the not_modified or range filter reads."""
    return _conditionals(request_headers) is not _NONE


def file_identity(st: os.stat_result) -> tuple[int, int, int, int, int] | None:
    """What tells one version of a cacheable file from another (None: not cacheable)."""
    if not (stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH):
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _cache_fill(path: str, fd: int, st: os.stat_result) -> bytes | None:
    """The file's bytes when it may be cached (then cached), else None."""
    if st.st_size > CACHE_FILE_MAX or time.time() - st.st_ctime < CACHE_SETTLE:
        return None
    key = file_identity(st)
    if key is None:
        return None
    data = os.pread(fd, st.st_size, 0)
    if len(data) != st.st_size:
        return None
    if len(_CACHE) >= CACHE_ENTRIES:
        _CACHE.clear()
    _CACHE[path] = (key, data)
    return data


def _answer(status: int, head: bytes, fd: int, parts: list[bytes | tuple[int, int]], keepalive: bool, size: int,
            data: bytes | None) -> Response | FileResponse:
    """A FileResponse for the IO layer to send from ``fd``, or, for a cached file, the bytes at once."""
    if data is None:
        return FileResponse(status, head, fd, parts, keepalive, size)
    if len(parts) == 1 and parts[0] == (0, len(data)):
        return Response(status, head, data, keepalive)
    body = b"".join(part if isinstance(part, bytes) else data[part[0]:part[0] + part[1]] for part in parts)
    return Response(status, head, body, keepalive)


def _index(engine: Engine, ctx: RequestContext, where: CompiledLocation | CompiledServer
           ) -> Response | FileResponse | ProxyPass | None:
    """ngx_http_index_handler: an internal redirect, an error, or None (declined)."""
    directory = map_uri(where, ctx, ctx.uri)
    tested = False
    for name in where.config.static.index:
        if name.startswith("/"):
            return _internal_redirect(engine, ctx, name)
        try:
            os.stat(directory + name)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES):  # ngx_http_index_error
                what = "forbidden" if exc.errno == errno.EACCES else "not found"
                errors.note(ctx, errors.ERR, f'"{directory + name}" is {what} {errors.os_error(exc)}')
                return engine._fail(ctx, 403 if exc.errno == errno.EACCES else 404)
            if not tested:
                status = _test_dir(directory)
                if status:
                    if status == 404 and exc.errno == errno.ENOENT:  # ngx_http_index_test_dir: no directory
                        bare = directory[:-1] if directory.endswith("/") and len(directory) > 1 else directory
                        if not os.path.lexists(bare):  # nginx names the index file it looked for
                            errors.note(ctx, errors.ERR, f'"{directory + name}" is not found {errors.os_error(exc)}')
                    return engine._fail(ctx, status)
                tested = True
            if exc.errno == errno.ENOENT:
                continue
            return engine._fail(ctx, 500)
        except ValueError:
            return engine._fail(ctx, 404)
        return _internal_redirect(engine, ctx, ctx.uri + name)
    return None


def _test_dir(directory: str) -> int:
    try:
        st = os.stat(directory[:-1] if directory.endswith("/") and len(directory) > 1 else directory)
    except OSError as exc:
        return 404 if exc.errno == errno.ENOENT else 403 if exc.errno == errno.EACCES else 500
    return 0 if stat.S_ISDIR(st.st_mode) else 404


def _internal_redirect(engine: Engine, ctx: RequestContext, uri: str) -> Response | FileResponse | ProxyPass:
    """ngx_http_internal_redirect: same args and method, the phases again from server rewrite."""
    ctx.uri_changes -= 1
    if ctx.uri_changes == 0:
        return engine.maker.error(500, ctx.request, ctx.request.keepalive)
    ctx.internal = True
    ctx.uri = uri
    ctx.valid_unparsed_uri = False
    ctx.valid_location = True
    ctx.location = None
    return engine._serve(ctx, 0)


# -- the response and its header filters ---------------------------------------------------------

def _file_answer(engine: Engine, ctx: RequestContext, where: CompiledLocation | CompiledServer, fd: int,
                 st: os.stat_result, etag_on: bool, ims_mode: str, data: bytes | None = None
                 ) -> Response | FileResponse:
    request = ctx.request
    headers = _conditionals(request.headers)
    keepalive = request.keepalive
    size = st.st_size
    mtime = int(st.st_mtime)
    key = (mtime, size, etag_on)
    meta = _META.get(key)
    if meta is None:
        if len(_META) >= 4096:
            _META.clear()
        tag = f'"{mtime:x}-{size:x}"'.encode() if etag_on else None
        meta = _META[key] = (tag, b"ETag: " + tag + b"\r\n" if tag is not None else b"",
                             b"Last-Modified: " + _http_date(mtime) + b"\r\n")
    etag, etag_line, last_modified = meta
    ctx.last_modified = mtime
    maker = engine.maker
    content_type = ctx.accel_type or where.content_type(ctx.uri)  # X-Accel-Redirect: the upstream's
    head_only = (ctx.method or request.method) == b"HEAD"
    parts: list[bytes | tuple[int, int]] = [] if head_only or size == 0 else [(0, size)]
    gz = where.gzip
    if ctx.err_status and ctx.err_status != 200:
        # An error_page target: ngx_http_send_header puts r->err_status in place before the
        # filters, so neither 304 nor ranges apply, and Last-Modified is dropped (not 200/206/304);
        # with "=200" it is served as any file (not_modified, range and Last-Modified apply).
        vary = b""
        if gz is not None:
            ctx.gzip_filtered = True  # the engine's gzip filter must not look at this answer again
            decision = gzip.file_decision(gz, request, ctx.err_status, content_type, size, etag is not None,
                                          _added_headers(engine, ctx, where, ctx.err_status))
            if decision == 2:
                return _gzip_file(engine, ctx, gz, ctx.err_status, fd, size, data, content_type, b"", etag,
                                  head_only)
            vary = gzip.VARY if decision and gz.vary else b""
        head = _head(maker, ctx.err_status, keepalive, content_type, size, b"", vary + etag_line)
        return _answer(ctx.err_status, head, fd, parts, keepalive, size, data)
    # not_modified filter
    ius = headers.get(b"if-unmodified-since")
    if_match = headers.get(b"if-match")
    if (ius is not None and not parse_http_time(ius) >= mtime) or \
            (if_match is not None and not _etag_matches(etag, if_match, weak=False)):
        return _precondition_failed(engine, ctx)
    ims = headers.get(b"if-modified-since")
    inm = headers.get(b"if-none-match")
    if ims is not None or inm is not None:
        modified = ims is not None and _modified(ims, mtime, ims_mode)
        if not modified and inm is not None and not _etag_matches(etag, inm, weak=True):
            modified = True
        if not modified:
            head = _head(maker, 304, keepalive, None, None, last_modified, etag_line)
            return Response(304, head, b"", keepalive)
    # gzip filter (before the range filter: a compressed answer has no ranges)
    if gz is not None:
        ctx.gzip_filtered = True
        decision = gzip.file_decision(gz, request, 200, content_type, size, etag is not None,
                                      _added_headers(engine, ctx, where, 200))
        if decision == 2:
            return _gzip_file(engine, ctx, gz, 200, fd, size, data, content_type, last_modified, etag, head_only)
        if decision and gz.vary:
            etag_line = gzip.VARY + etag_line  # Vary follows Connection, before the list headers
    # range filter
    answer = _ranges(engine, ctx, headers, size, mtime, etag, content_type, last_modified, etag_line, fd,
                     head_only, data)
    if answer is not None:
        return answer
    head = _head(maker, 200, keepalive, content_type, size, last_modified, etag_line + _ACCEPT_RANGES)
    return _answer(200, head, fd, parts, keepalive, size, data)


def _added_headers(engine: Engine, ctx: RequestContext, where: CompiledLocation | CompiledServer, status: int
                   ) -> Callable[[], bytes] | None:
    """What the location's headers filter (expires, add_header) adds to a 200, for gzip_proxied,
    which nginx decides after that filter: computed only when a request with Via asks."""
    program = where.headers
    if program is None:
        return None
    return lambda: program.apply(b"HTTP/1.1 200 OK\r\n\r\n", status, ctx, engine.maker.date.second,
                                 ctx.last_modified, True)


def _gzip_file(engine: Engine, ctx: RequestContext, gz: CompiledGzip, status: int, fd: int, size: int,
               data: bytes | None, content_type: bytes, last_modified: bytes, etag: bytes | None, head_only: bool
               ) -> Response:
    """A compressed file answer, compressed in memory (not sent with sendfile); chunked for HTTP/1.1,
    until close for HTTP/1.0; a HEAD gets the head alone."""
    request = ctx.request
    chunked = not head_only and request.version == b"1.1"
    keepalive = request.keepalive and (head_only or chunked)
    maker = engine.maker
    head = gzip.file_head(_STATUS_LINES.get(status) or status_line(status), maker.server_line, maker.date.line(),
                          content_type, last_modified, etag, chunked, keepalive, gz.vary)
    if head_only:
        return Response(status, head, b"", keepalive)
    if data is None:
        # Read and compressed a MiB at a time: the memory held is the compressed body, not the file.
        compressor = gz.compressor()
        chunks = []
        offset = 0
        while offset < size:
            piece = os.pread(fd, min(size - offset, 1 << 20), offset)
            if not piece:
                break  # the file shrank: compress what there is (the length is not promised)
            chunks.append(compressor.compress(piece))
            offset += len(piece)
        chunks.append(compressor.flush())
        body = b"".join(chunks)
    else:
        # A cached small file: its bytes object is the cache's, so (data, level) finds the
        # compressed copy made for an earlier request (bytes cache their hash; equal is identity).
        key = (data, gz.level)
        body = _COMPRESSED.get(key)  # type: ignore[assignment]
        if body is None:
            body = gz.compress(data)
            if len(_COMPRESSED) >= CACHE_ENTRIES:
                _COMPRESSED.clear()
            _COMPRESSED[key] = body
    return Response(status, head, gzip.chunk(body) if chunked else body, keepalive)


def _precondition_failed(engine: Engine, ctx: RequestContext) -> Response | FileResponse:
    """ngx_http_filter_finalize_request(412): the 412 (or its error_page), after which nginx closes
    the connection although the head said keep-alive."""
    answer = engine._fail(ctx, 412)
    if isinstance(answer, (Response, FileResponse)):
        answer.keepalive = False
    return answer  # type: ignore[return-value]


_CONNECTION = (b"Connection: close\r\n", b"Connection: keep-alive\r\n")


def _head(maker: ResponseMaker, status: int, keepalive: bool, content_type: bytes | None, length: int | None,
          last_modified: bytes, extra: bytes) -> bytes:
    """Server, Date, Content-Type, Content-Length, Last-Modified, Connection, then the list headers."""
    return b"".join((
        _STATUS_LINES.get(status) or status_line(status), maker.server_line, maker.date.line(),
        b"" if content_type is None else b"Content-Type: " + content_type + b"\r\n",
        b"" if length is None else b"Content-Length: %d\r\n" % length,
        last_modified, _CONNECTION[keepalive], extra, b"\r\n",
    ))


def _modified(value: bytes, mtime: int, mode: str) -> bool:
    """ngx_http_test_if_modified."""
    if mode == "off":
        return True
    ims = parse_http_time(value)
    if ims == mtime:
        return False
    return mode == "exact" or ims < mtime


def _etag_matches(etag: bytes | None, header: bytes, weak: bool) -> bool:
    """ngx_http_test_if_match."""
    if header == b"*":
        return True
    if etag is None:
        return False
    if weak and etag.startswith(b"W/"):
        etag = etag[2:]
    start, end = 0, len(header)
    while start < end:
        if weak and end - start > 2 and header[start:start + 2] == b"W/":
            start += 2
        if len(etag) > end - start:
            return False
        if header[start:start + len(etag)] == etag:
            start += len(etag)
            while start < end and header[start] in b" \t":
                start += 1
            if start == end or header[start] == 44:  # ","
                return True
        while start < end and header[start] != 44:
            start += 1
        while start < end and header[start] in b" \t,":
            start += 1
    return False


def _ranges(engine: Engine, ctx: RequestContext, headers: dict[bytes, bytes], size: int, mtime: int,
            etag: bytes | None, content_type: bytes, last_modified: bytes, etag_line: bytes, fd: int,
            head_only: bool, data: bytes | None) -> Response | FileResponse | None:
    """ngx_http_range_header_filter; None: no ranges (a plain 200)."""
    request = ctx.request
    if request.version == b"0.9":
        return None
    value = headers.get(b"range")
    if value is None or len(value) < 7 or value[:6].lower() != b"bytes=":
        return None
    if_range = headers.get(b"if-range")
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith(b'"'):
            if etag is None or etag != if_range:
                return None
        elif parse_http_time(if_range) != mtime:
            return None
    ranges = parse_ranges(value[6:], size)
    if ranges is None:
        return None
    keepalive = request.keepalive
    maker = engine.maker
    if not ranges:
        # ngx_http_range_not_satisfiable, then the special response: the 416 page with Content-Range.
        page = maker.error(416, request, keepalive)
        ctx.range_rejected = True
        cut = page.head.rindex(b"\r\n\r\n")
        head = page.head[:cut + 2] + b"Content-Range: bytes */" + str(size).encode() + b"\r\n\r\n"
        if etag_line.startswith(gzip.VARY):
            # The gzip filter looked at the 200 first: r->gzip_vary outlives the special response.
            at = head.index(b"\r\nConnection: ") + 2
            at = head.index(b"\r\n", at) + 2
            head = head[:at] + gzip.VARY + head[at:]
        return Response(416, head, page.body, page.keepalive)
    if len(ranges) == 1:
        start, end = ranges[0]
        extra = etag_line + f"Content-Range: bytes {start}-{end - 1}/{size}\r\n".encode()
        head = _head(maker, 206, keepalive, content_type, end - start, last_modified, extra)
        return _answer(206, head, fd, [] if head_only else [(start, end - start)], keepalive, size, data)
    boundary = b"%020d" % next(_boundaries)
    part_head = b"\r\n--" + boundary + b"\r\nContent-Type: " + content_type + b"\r\nContent-Range: bytes "
    parts: list[bytes | tuple[int, int]] = []
    length = 0
    for start, end in ranges:
        line = part_head + f"{start}-{end - 1}/{size}\r\n\r\n".encode()
        parts.append(line)
        parts.append((start, end - start))
        length += len(line) + end - start
    tail = b"\r\n--" + boundary + b"--\r\n"
    parts.append(tail)
    length += len(tail)
    head = _head(maker, 206, keepalive, b"multipart/byteranges; boundary=" + boundary, length, last_modified,
                 etag_line)
    return _answer(206, head, fd, [] if head_only else parts, keepalive, size, data)


def parse_ranges(spec: bytes, size: int) -> list[tuple[int, int]] | None:
    """ngx_http_range_parse over what follows "bytes=": [(start, end)] with end exclusive; [] for
    416 (not satisfiable); None to ignore the header (NGX_DECLINED)."""
    p = spec + b"\0"
    i = 0
    ranges: list[tuple[int, int]] = []
    total = 0
    limit = (1 << 63) - 1

    def digit(at: int) -> bool:
        return 48 <= p[at] <= 57

    while True:
        start = end = 0
        suffix = False
        while p[i] == 32:
            i += 1
        if p[i] != 45:  # "-"
            if not digit(i):
                return []
            while digit(i):
                start = start * 10 + p[i] - 48
                if start > limit:
                    return []
                i += 1
            while p[i] == 32:
                i += 1
            if p[i] != 45:
                return []
            i += 1
            while p[i] == 32:
                i += 1
            if p[i] in (44, 0):
                end = size
                found = True
            else:
                found = False
        else:
            suffix = True
            i += 1
            found = False
        if not found:
            if not digit(i):
                return []
            while digit(i):
                end = end * 10 + p[i] - 48
                if end > limit:
                    return []
                i += 1
            while p[i] == 32:
                i += 1
            if p[i] not in (44, 0):
                return []
            if suffix:
                start = size - end if end < size else 0
                end = size - 1
            end = size if end >= size else end + 1
        if start < end:
            ranges.append((start, end))
            total += end - start
        elif start == 0:
            return None
        if p[i] != 44:
            break
        i += 1
    if not ranges:
        return []
    if total > size:
        return None
    return ranges


# -- HTTP dates ------------------------------------------------------------------------------------

_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _http_date(t: int) -> bytes:
    tm = time.gmtime(t)
    return b"%s, %02d %s %d %02d:%02d:%02d GMT" % (_DAYS[tm.tm_wday], tm.tm_mday, _MONTHS[tm.tm_mon - 1],
                                                   tm.tm_year, tm.tm_hour, tm.tm_min, tm.tm_sec)


def parse_http_time(value: bytes) -> int:
    """ngx_parse_http_time: RFC 1123, RFC 850 and asctime dates; -1 when malformed."""
    try:
        return _parse_http_time(value + b"\0" * 32, len(value))
    except IndexError:
        return -1


def _parse_http_time(v: bytes, end: int) -> int:
    fmt = "rfc822"
    p = 0
    while p < end:
        if v[p] == 44:
            break
        if v[p] == 32:
            fmt = "isoc"
            break
        p += 1
    p += 1
    while p < end and v[p] == 32:
        p += 1
    if end - p < 18:
        return -1

    def two(at: int) -> int:
        if not (48 <= v[at] <= 57 and 48 <= v[at + 1] <= 57):
            raise IndexError
        return (v[at] - 48) * 10 + v[at + 1] - 48

    day = 0
    if fmt != "isoc":
        day = two(p)
        p += 2
        if v[p] == 32:
            if end - p < 18:
                return -1
            fmt = "rfc822"
        elif v[p] == 45:
            fmt = "rfc850"
        else:
            return -1
        p += 1
    c = v[p]
    if c == 74:  # J
        month = 0 if v[p + 1] == 97 else 5 if v[p + 2] == 110 else 6
    elif c == 70:
        month = 1
    elif c == 77:
        month = 2 if v[p + 2] == 114 else 4
    elif c == 65:
        month = 3 if v[p + 1] == 112 else 7
    elif c == 83:
        month = 8
    elif c == 79:
        month = 9
    elif c == 78:
        month = 10
    elif c == 68:
        month = 11
    else:
        return -1
    p += 3
    if (fmt == "rfc822" and v[p] != 32) or (fmt == "rfc850" and v[p] != 45):
        return -1
    p += 1
    year = 0
    if fmt == "rfc822":
        year = two(p) * 100 + two(p + 2)
        p += 4
    elif fmt == "rfc850":
        year = two(p)
        year += 2000 if year < 70 else 1900
        p += 2
    if fmt == "isoc":
        if v[p] == 32:
            p += 1
        if not 48 <= v[p] <= 57:
            return -1
        day = v[p] - 48
        p += 1
        if v[p] != 32:
            if not 48 <= v[p] <= 57:
                return -1
            day = day * 10 + v[p] - 48
            p += 1
        if end - p < 14:
            return -1
    if v[p] != 32:
        return -1
    p += 1
    hour = two(p)
    p += 2
    if v[p] != 58:
        return -1
    p += 1
    minute = two(p)
    p += 2
    if v[p] != 58:
        return -1
    p += 1
    sec = two(p)
    p += 2
    if fmt == "isoc":
        if v[p] != 32:
            return -1
        p += 1
        year = two(p) * 100 + two(p + 2)
    if hour > 23 or minute > 59 or sec > 59:
        return -1
    if day == 29 and month == 1:
        if (year & 3) or (year % 100 == 0 and year % 400 != 0):
            return -1
    elif day > _MDAYS[month]:
        return -1
    # nginx's days-since-epoch arithmetic (Gauss), month shifted so that February is last.
    month += 1
    month -= 2
    if month <= 0:
        month += 12
        year -= 1
    days = 365 * year + year // 4 - year // 100 + year // 400 + 367 * month // 12 - 30 + day - 1 - 719527 + 31 + 28
    return days * 86400 + hour * 3600 + minute * 60 + sec


# -- autoindex (html format) -----------------------------------------------------------------------

_NAME_LEN = 50  # NGX_HTTP_AUTOINDEX_NAME_LEN
_MONTHS_STR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _escape_html(data: bytes) -> bytes:
    """ngx_escape_html."""
    return data.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;").replace(b'"', b"&quot;")


def _human_size(size: int) -> bytes:
    giga, mega = 1024 * 1024 * 1024, 1024 * 1024
    if size > giga - 1:
        value, scale = size // giga + (size % giga > giga // 2 - 1), b"G"
    elif size > mega - 1:
        value, scale = size // mega + (size % mega > mega // 2 - 1), b"M"
    elif size > 9999:
        value, scale = size // 1024 + (size % 1024 > 511), b"K"
    else:
        return b" %6d" % size
    return b"%6d" % value + scale


def autoindex(engine: Engine, ctx: RequestContext, where: CompiledLocation | CompiledServer
              ) -> Response | FileResponse | ProxyPass:
    """ngx_http_autoindex_handler, html format: the listing, chunked (HTTP/1.1) or until close."""
    from urllib.parse import quote

    static = where.config.static
    path = map_uri(where, ctx, ctx.uri)
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    try:
        names = os.listdir(os.fsencode(path))
    except OSError as exc:
        return engine._fail(ctx, 404 if exc.errno in _NOT_FOUND else 403 if exc.errno == errno.EACCES else 500)
    except ValueError:
        return engine._fail(ctx, 404)
    entries = []
    base = os.fsencode(path) + b"/"
    for name in names:
        if name.startswith(b"."):
            continue
        try:
            st = os.stat(base + name)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ELOOP):
                return engine._fail(ctx, 500)
            st = os.lstat(base + name)  # nginx lists a dangling link with the link's own data
        entries.append((not stat.S_ISDIR(st.st_mode), name, int(st.st_mtime), st.st_size))
    entries.sort()
    uri = ctx.uri.encode("latin-1", "replace")
    title = _escape_html(uri)
    out = [b"<html>\r\n<head><title>Index of ", title, b"</title></head>\r\n<body>\r\n<h1>Index of ", title,
           b"</h1><hr><pre><a href=\"../\">../</a>\r\n"]
    offset = time.localtime().tm_gmtoff if static.autoindex_localtime else 0
    for is_file, name, mtime, size in entries:
        is_dir = not is_file
        out.append(b'<a href="' + quote(name, safe="").encode() + (b"/" if is_dir else b"") + b'">')
        # Lengths count bytes: nginx counts UTF-8 characters only under "charset utf-8", which
        # newproxy does not translate.
        length = len(name)
        if length > _NAME_LEN:
            out.append(_escape_html(name[:_NAME_LEN - 3]))
        else:
            out.append(_escape_html(name))
        if length > _NAME_LEN:
            out.append(b"..&gt;</a>")
        else:
            if is_dir and _NAME_LEN - length > 0:
                out.append(b"/")
                length += 1
            out.append(b"</a>")
            if _NAME_LEN - length > 0:
                out.append(b" " * (_NAME_LEN - length))
        tm = time.gmtime(mtime + offset)
        out.append(b" %02d-%s-%d %02d:%02d " % (tm.tm_mday, _MONTHS_STR[tm.tm_mon - 1].encode(), tm.tm_year,
                                                tm.tm_hour, tm.tm_min))
        if static.autoindex_exact_size:
            out.append(b"                  -" if is_dir else b"%19d" % size)
        else:
            out.append(b"      -" if is_dir else _human_size(size))
        out.append(b"\r\n")
    out.append(b"</pre><hr></body>\r\n</html>\r\n")
    body = b"".join(out)
    request = ctx.request
    head_only = (ctx.method or request.method) == b"HEAD"
    status = ctx.err_status or 200
    chunked = request.version == b"1.1" and not head_only
    keepalive = request.keepalive and (chunked or head_only)
    head = engine.maker.head(status, keepalive, b"text/html", None, None, None, chunked)
    if head_only:
        return Response(status, head, b"", keepalive)
    if chunked:
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return Response(status, head, body, keepalive)
