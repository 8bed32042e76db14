"""newproxy/http/bodyfile.py: a request body kept in memory up to its buffer, then in an unlinked
temporary file named as nginx names its own; the reads an HTTP/2 or HTTP/3 body came in, kept for
its chunked view. (Against nginx: tests/test_differential_request_body_file.py, and the HTTP/2
cases of tests/test_differential_h2.py.)"""

from __future__ import annotations

import gc
import os
import re
from pathlib import Path

import pytest

from newproxy.http.bodyfile import BodyBuffer, BodyFile, body_file


def test_a_body_within_the_buffer_stays_in_memory(tmp_path: Path) -> None:
    buffer = BodyBuffer(10, str(tmp_path))
    assert buffer.add(b"12345") is None and buffer.add(b"67890") is None
    assert buffer.take() == b"1234567890" and buffer.file is None
    assert os.listdir(tmp_path) == []


def test_past_the_buffer_the_whole_body_goes_to_an_unlinked_file(tmp_path: Path) -> None:
    directory = tmp_path / "made" / "here"  # made when first needed, as nginx makes its temp paths
    buffer = BodyBuffer(10, str(directory))
    buffer.add(b"0123456789")
    path = buffer.add(b"abc")
    assert path is not None and re.fullmatch(re.escape(str(directory)) + r"/\d{10}", path)
    assert buffer.add(b"def") is None  # the warning is for the file's making only
    body = buffer.take()
    assert isinstance(body, BodyFile) and len(body) == 16 and body.read(0, 100) == b"0123456789abcdef"
    assert body.read(12, 2) == b"cd" and body.read(16, 10) == b""
    assert os.listdir(directory) == []  # unlinked at once: nothing is left behind
    assert (os.stat(directory).st_mode & 0o777) == 0o700


def test_the_descriptor_is_closed_with_the_last_view(tmp_path: Path) -> None:
    body = body_file(str(tmp_path))
    body.write(b"x" * 100)
    fd = body.fd
    view = body.chunked()
    del body
    gc.collect()
    assert os.fstat(fd)  # the view keeps it open
    assert view.prefix == b"64\r\n" and view.suffix == b"\r\n0\r\n\r\n" and view.pieces is None
    del view
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_the_reads_are_kept_for_a_chunk_each(tmp_path: Path) -> None:
    """HTTP/2 and HTTP/3: a part per read (the frames of one read joined); in a file, their lengths,
    which its chunked view sends a chunk each."""
    buffer = BodyBuffer(8, str(tmp_path), reads=True)
    buffer.add(b"aaa")
    buffer.add(b"bb", same_read=True)
    assert buffer.parts == [b"aaabb"]
    buffer.add(b"cccc")  # a new read; past the buffer: to the file
    buffer.add(b"dd", same_read=True)
    buffer.add(b"e")
    body = buffer.take()
    assert isinstance(body, BodyFile) and body.reads == [5, 6, 1] and body.pieces is None
    view = body.chunked()
    assert (view.prefix, view.pieces, view.suffix) == (b"", [5, 6, 1], b"0\r\n\r\n")


def test_a_directory_that_cannot_be_used_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    buffer = BodyBuffer(1, str(tmp_path / "file" / "sub"))
    with pytest.raises(NotADirectoryError) as caught:
        buffer.add(b"ab")
    assert caught.value.filename is not None and caught.value.filename.startswith(str(tmp_path / "file" / "sub"))
