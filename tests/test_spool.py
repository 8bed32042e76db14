"""newproxy/http/spool.py: an answer held for a slow client keeps its bytes in order across memory
and the temporary file, never lets the file take more than its cap in all, and says when the
upstream must wait (``full``) and may go on (``roomy``)."""

from __future__ import annotations

import os
from pathlib import Path

from newproxy.http.spool import Spool


def _pieces(count: int, size: int) -> list[bytes]:
    return [(b"%07d\n" % i) * (size // 8) for i in range(count)]


def _drain(spool: Spool, step: int) -> bytes:
    out = bytearray()
    while chunk := spool.take(step):
        out += chunk
    return bytes(out)


def test_memory_then_file_then_memory_in_order(tmp_path: Path) -> None:
    spool = Spool(mem_cap=64, file_cap=160, temp_dir=str(tmp_path / "made" / "here"))
    pieces = _pieces(12, 32)  # 2 in memory, 5 in the file (its cap), the rest in memory again
    for piece in pieces:
        spool.add(piece)
    assert spool.size == 12 * 32
    assert spool.memory == 7 * 32 and spool.full
    assert os.path.isdir(tmp_path / "made" / "here")  # made when first needed, as nginx makes it at start
    assert _drain(spool, 45) == b"".join(pieces)  # steps that cut pieces and file runs anywhere
    assert spool.size == 0 and spool.memory == 0 and spool.roomy
    spool.close()


def test_the_file_cap_counts_every_byte_written_not_what_it_holds(tmp_path: Path) -> None:
    # nginx's temp_file->offset only grows: a file drained meanwhile takes no more past the cap.
    spool = Spool(mem_cap=0, file_cap=100, temp_dir=str(tmp_path))
    spool.add(b"a" * 100)
    assert spool.memory == 0 and not spool.full
    assert spool.take(1000) == b"a" * 100
    spool.add(b"b" * 10)
    assert spool.memory == 10 and spool.full
    assert spool.take(1000) == b"b" * 10
    spool.close()


def test_no_file_holds_everything_in_memory_and_asks_the_upstream_to_wait() -> None:
    spool = Spool(mem_cap=100, file_cap=0, temp_dir=None)
    spool.add(b"x" * 60)
    assert not spool.full
    spool.add(b"y" * 60)
    assert spool.full and not spool.roomy
    assert spool.take(70) == b"x" * 60 + b"y" * 10
    assert spool.roomy and spool.memory == 50
    assert spool.take(70) == b"y" * 50


def test_a_temporary_directory_that_cannot_be_used_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    spool = Spool(mem_cap=10, file_cap=1000, temp_dir=str(blocker / "below"))  # below a file: ENOTDIR
    spool.add(b"z" * 50)
    assert spool.memory == 50 and spool.full
    assert spool.failure == f'open() a temporary file in "{blocker / "below"}" failed (20: Not a directory)'
    assert spool.take(100) == b"z" * 50
    spool.add(b"z" * 50)  # the file is not tried again
    assert spool.memory == 50 and spool.failure is not None


def test_close_drops_what_is_held(tmp_path: Path) -> None:
    spool = Spool(mem_cap=8, file_cap=1000, temp_dir=str(tmp_path))
    spool.add(b"q" * 100)
    spool.close()
    assert spool.size == 0 and spool.take(10) == b""
    assert list(tmp_path.iterdir()) == []  # the file never had a name
