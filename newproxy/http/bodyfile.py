"""A client's request body read whole, kept in memory only up to client_body_buffer_size.

nginx reads a body into one buffer of ``client_body_buffer_size`` (16k by default here); a body that
does not fit goes to a temporary file in ``client_body_temp_path``, with a warning in the error log
(ngx_http_read_client_request_body, ngx_http_write_request_body). A Content-Length body whose
unread rest is under 1.25 buffers gets a buffer of its own size and no file. So a proxy that takes
a 10 GB upload does not hold it in memory. ``BodyBuffer`` is that reading for the front ends
(HTTP/1.1, HTTP/2, HTTP/3), and a body that did not fit is a ``BodyFile``: what the upstream client
sends from (newproxy/http/upstream.py), in pieces, as the peer reads them.

The file is made with nginx's kind of name (ten digits) in the directory, made if missing, and
unlinked at once: the name is only for the warning, and nothing is left behind by a worker that
dies. Reads and writes are pread/pwrite on the loop's thread, as nginx's without ``aio``.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import TYPE_CHECKING

from newproxy.http.errorlog import log_for_request

if TYPE_CHECKING:
    from newproxy.engine.types import Request
    from newproxy.http.errorlog import ErrorLog

# The first number nginx gives a temporary file is random too (ngx_temp_number); then one up each.
_next_number = random.randrange(10000) + 1


class _Descriptor:
    """An open file descriptor, closed when the last body (or framed view) using it goes."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class BodyFile:
    """A body in an unlinked temporary file: ``len()`` is its length; ``prefix``/``suffix`` are bytes
    sent around it (a chunked framing the upstream request adds), not counted in ``len()``."""

    __slots__ = ("_descriptor", "fd", "length", "path", "pieces", "prefix", "reads", "suffix")

    def __init__(self, descriptor: _Descriptor, path: str) -> None:
        self._descriptor = descriptor
        self.fd = descriptor.fd
        self.path = path
        self.length = 0
        self.prefix = b""
        self.suffix = b""
        # The lengths of the reads it came in (HTTP/2 and HTTP/3 keep them: nginx forwards an
        # unbuffered body a chunk per read); None: not kept.
        self.reads: list[int] | None = None
        # In a chunked view: those lengths, each sent as a chunk of its own; None: sent as it is.
        self.pieces: list[int] | None = None

    def __len__(self) -> int:
        return self.length

    def __bool__(self) -> bool:
        return True  # a file is made only for a body past the buffer: never empty

    def write(self, data: bytes) -> None:
        os.pwrite(self.fd, data, self.length)
        self.length += len(data)

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes of the body from ``offset`` (fewer at its end)."""
        want = min(size, self.length - offset)
        data = os.pread(self.fd, want, offset)
        if len(data) != want:
            raise OSError(f"the body's temporary file gave {len(data)} of {want} bytes at {offset}")
        return data

    def chunked(self) -> BodyFile:
        """The same file, sent chunked: one chunk, or one per read when the reads were kept; then
        the last chunk."""
        view = BodyFile(self._descriptor, self.path)
        view.length = self.length
        view.pieces = self.reads
        view.prefix = b"" if self.reads is not None else b"%x\r\n" % self.length
        view.suffix = b"0\r\n\r\n" if self.reads is not None else b"\r\n0\r\n\r\n"
        return view


class BodyBuffer:
    """Collects one request body: in memory while it fits, else in a ``BodyFile``."""

    __slots__ = ("directory", "file", "length", "limit", "parts", "reads", "warn")

    def __init__(self, limit: int, directory: str | None, warn: bool = True, reads: bool = False) -> None:
        self.limit = limit  # what stays in memory: client_body_buffer_size (and what came with the head)
        self.directory = directory  # client_body_temp_path (None: the system's temporary directory)
        self.warn = warn  # nginx's warning when the file is made (not for a body it reads unbuffered)
        self.reads = reads  # keep the reads apart: a part per read in memory, their lengths in the file
        self.parts: list[bytes] = []
        self.length = 0
        self.file: BodyFile | None = None

    def add(self, data: bytes, same_read: bool = False) -> str | None:
        """Keep ``data`` (with ``reads``: as part of the previous read when ``same_read``). Returns
        the new file's path when this made the body go to a file (the caller logs nginx's warning).
        Raises OSError when the file cannot be made or written (nginx answers 500)."""
        self.length += len(data)
        file = self.file
        if file is not None:
            file.write(data)
            if file.reads is not None:
                if same_read and file.reads:
                    file.reads[-1] += len(data)
                else:
                    file.reads.append(len(data))
            return None
        if same_read and self.reads and self.parts:
            self.parts[-1] += data
        else:
            self.parts.append(data)
        if self.length <= self.limit:
            return None
        file = self.file = body_file(self.directory)
        for part in self.parts:
            file.write(part)
        if self.reads:
            file.reads = [len(part) for part in self.parts]
        self.parts = []
        return file.path

    def take(self) -> bytes | BodyFile:
        if self.file is not None:
            return self.file
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)


def body_file(directory: str | None) -> BodyFile:
    """A new file in ``directory`` (made first if missing, as nginx makes its temp paths), named as
    nginx names its temporary files, opened and unlinked."""
    global _next_number
    directory = directory or tempfile.gettempdir()
    made = False
    for _ in range(100):
        number, _next_number = _next_number, _next_number + 1
        path = os.path.join(directory, f"{number:010d}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            if made:
                raise
            os.makedirs(directory, mode=0o700, exist_ok=True)
            made = True
            continue
        except FileExistsError:
            continue  # another worker's (nginx goes on to the next number too)
        os.unlink(path)
        return BodyFile(_Descriptor(fd), path)
    raise FileExistsError(17, "File exists", directory)


def buffered(buffer: BodyBuffer, data: bytes, same_read: bool, log: ErrorLog, req: Request | None,
             conn_id: int) -> bool:
    """``buffer.add`` for a front end, with nginx's error-log lines: the warning when the body goes
    to a file, the crit line when the file cannot be made or written. False then: the front end
    answers 500, as nginx does (ngx_http_write_request_body's failure)."""
    try:
        path = buffer.add(data, same_read)
    except OSError as exc:
        where = exc.filename or buffer.directory or ""
        call = "open()" if buffer.file is None else "pwrite()"
        log_for_request(log, req, "crit", f'{call} "{where}" failed ({exc.errno}: {exc.strerror})', conn_id)
        return False
    if path is not None and buffer.warn:
        log_for_request(log, req, "warn", f"a client request body is buffered to a temporary file {path}", conn_id)
    return True
