"""An upstream answer's bytes held for a client slower than the upstream (proxy_buffering on).

nginx's event pipe (ngx_event_pipe.c) goes on reading an answer while the client takes no more: into
its ``proxy_buffers`` in memory, then into a temporary file in ``proxy_temp_path``, until the file
has taken ``proxy_max_temp_file_size`` bytes in all (0: no file). Only past that does it stop reading
the upstream, until the client frees a buffer. So a slow client does not hold the upstream: its
connection goes back to the keepalive cache as soon as the answer is read, and the client is served
from the buffers and the file. The exchange (newproxy/http/upstream.py) keeps a Spool in the same
place, and this module is that store: bytes in arrival order, the first ones in memory, the rest in
an unnamed temporary file, taken from the front as the client drains.

The file is made lazily (most slow answers never need it) and unnamed (``tempfile.TemporaryFile``):
nothing is left behind by a worker that dies. Its bytes are written and read with pwrite/pread on
the loop's thread, as nginx does without ``aio``.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from typing import IO


class Spool:
    __slots__ = ("_fd", "_file", "_file_cap", "_file_read", "_file_written", "_items", "_mem_cap", "_temp_dir",
                 "draining", "failure", "memory", "size", "upstream_held")

    def __init__(self, mem_cap: int, file_cap: int, temp_dir: str | None) -> None:
        # Arrival order: bytes held in memory, or an int, the length of the next run of the file.
        self._items: deque[bytes | int] = deque()
        self._mem_cap = mem_cap  # proxy_buffers: number x size
        self._file_cap = file_cap  # proxy_max_temp_file_size: bytes the file may take in all
        self._temp_dir = temp_dir  # proxy_temp_path (None: the system's temporary directory)
        self._file: IO[bytes] | None = None  # the TemporaryFile (kept for its lifetime: closing it frees the disk)
        self._fd = -1
        self._file_written = 0  # bytes written to the file so far (nginx's temp_file->offset)
        self._file_read = 0  # the file's next unread byte
        self.memory = 0  # bytes held in memory
        self.size = 0  # bytes held in all
        self.draining = False  # a drain step is scheduled (the exchange's)
        self.upstream_held = False  # the exchange stopped reading the upstream: the spool is full
        self.failure: str | None = None  # why the file cannot be used, for the exchange to log once

    def add(self, data: bytes) -> None:
        """Hold ``data`` after everything held: in memory while the buffers have room, then in the
        file while it may grow, then in memory anyway (the read is done; ``full`` then tells the
        exchange to stop reading)."""
        n = len(data)
        self.size += n
        if self.memory + n > self._mem_cap and self._file_written < self._file_cap and self._to_file(data):
            return
        self.memory += n
        self._items.append(data)

    def _to_file(self, data: bytes) -> bool:
        if self._fd < 0:
            try:
                self._file = _temporary_file(self._temp_dir)
            except OSError as exc:
                self._file_cap = 0  # memory only, then the upstream waits (nginx would fail the request)
                self.failure = f"open() a temporary file in \"{self._temp_dir or tempfile.gettempdir()}\" failed " \
                               f"({exc.errno}: {exc.strerror})"
                return False
            self._fd = self._file.fileno()
        try:
            os.pwrite(self._fd, data, self._file_written)
        except OSError as exc:
            self._file_cap = 0  # a full disk: memory only from now on
            self.failure = f"pwrite() to a temporary file failed ({exc.errno}: {exc.strerror})"
            return False
        self._file_written += len(data)
        items = self._items
        if items and type(items[-1]) is int:
            items[-1] += len(data)  # type: ignore[operator]
        else:
            items.append(len(data))
        return True

    @property
    def full(self) -> bool:
        """The buffers are spent and the file may not grow: time to stop reading the upstream."""
        return self.memory > self._mem_cap

    @property
    def roomy(self) -> bool:
        """Room again after ``full``: half the buffers free (hysteresis, so that reading does not
        flip on and off with every write to the client)."""
        return self.memory <= self._mem_cap // 2

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes from the front (b"" when empty)."""
        items = self._items
        parts: list[bytes] = []
        want = limit
        while want > 0 and items:
            item = items[0]
            if type(item) is int:
                n = min(item, want)  # type: ignore[type-var]
                data = os.pread(self._fd, n, self._file_read)
                if len(data) != n:
                    raise OSError(f"temporary file gave {len(data)} of {n} bytes")
                self._file_read += n
                if n == item:
                    items.popleft()
                else:
                    items[0] = item - n  # type: ignore[operator]
            else:
                assert isinstance(item, bytes)
                n = len(item)
                if n <= want:
                    data = item
                    items.popleft()
                else:
                    data = item[:want]
                    items[0] = item[want:]
                    n = want
                self.memory -= n
            parts.append(data)
            want -= n
        taken = parts[0] if len(parts) == 1 else b"".join(parts)
        self.size -= len(taken)
        return taken

    def close(self) -> None:
        """Drop what is held and the file (its disk space is freed with its last descriptor)."""
        self._items.clear()
        self.size = self.memory = 0
        file, self._file, self._fd = self._file, None, -1
        if file is not None:
            file.close()


def _temporary_file(temp_dir: str | None) -> IO[bytes]:
    """An unnamed file in ``temp_dir``, made first if missing (nginx makes proxy_temp_path at start,
    mode 0700)."""
    try:
        return tempfile.TemporaryFile(dir=temp_dir)
    except FileNotFoundError:
        if temp_dir is None:
            raise
        os.makedirs(temp_dir, mode=0o700, exist_ok=True)
        return tempfile.TemporaryFile(dir=temp_dir)
