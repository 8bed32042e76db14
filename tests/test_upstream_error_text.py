"""Unit cases of the invalid-header quote (newproxy/http/invalidheader.py) that the differential test
(tests/test_differential_upstream_faultlines.py, against nginx) cannot reach through the recording
upstream, and the error log's byte handling (newproxy/http/errorlog.py)."""

from __future__ import annotations

from pathlib import Path

from newproxy.http.errorlog import ErrorLog
from newproxy.http.invalidheader import invalid_header_message, invalid_header_quote

STATUS = b"HTTP/1.1 200 OK\r\n"


def test_quote_stops_where_nginx_parser_stops() -> None:
    assert invalid_header_quote(STATUS + b"A: 1\r\nX-Bad: a\0b\r\n\r\n") == (b"X-Bad: a", 0)
    # A bare LF ends a line as well; the refused line is the one quoted.
    assert invalid_header_quote(STATUS + b"A: 1\nB: 2\nC D: 3\n\n") == (b"C", 0x20)
    # An IIS-style duplicate status line is skipped, not refused; the next line is read.
    assert invalid_header_quote(STATUS + b"HTTP/1.1 200 OK\r\nX: \0\r\n\r\n") == (b"X: ", 0)
    # A value's spaces before a stray CR: header_end stays at the first space.
    assert invalid_header_quote(STATUS + b"X: a b  \rz\r\n\r\n") == (b"X: a b", 0x20)
    # An empty value ended by a stray CR.
    assert invalid_header_quote(STATUS + b"X:  \rz\r\n\r\n") == (b"X:  ", 0x0D)


def test_no_quote_when_nginx_would_accept_the_head() -> None:
    assert invalid_header_quote(STATUS + b"X-A_b: \x01\x7f\xff\r\nX-B@d: 1\r\n\r\nbody\0") is None
    assert invalid_header_quote(STATUS + b"X: 1\r\n") is None  # incomplete: nothing refused yet
    assert invalid_header_message(STATUS + b"X-B@d: 1\r\n\r\n") == \
        "upstream sent invalid header while reading response header from upstream"
    assert invalid_header_message(STATUS + b"X: \xfe\0") == \
        'upstream sent invalid header: "X: \xfe\\x00..." while reading response header from upstream'


def test_error_log_writes_bytes_and_cuts_long_lines(tmp_path: Path) -> None:
    log = ErrorLog(str(tmp_path / "error.log"))
    log.open()
    log.error('sent: "\xff\x01"')  # bytes from the wire, decoded as latin-1: written back as they were
    log.error('open() "/srv/\u00e9t\u00e9\u2603" failed')  # text that is not latin-1: UTF-8, as nginx writes the config's bytes
    log.error("x" * 5000)
    log.close()
    lines = (tmp_path / "error.log").read_bytes().split(b"\n")
    assert lines[0].endswith(b'sent: "\xff\x01"')
    assert lines[1].endswith('open() "/srv/\u00e9t\u00e9\u2603" failed'.encode())
    assert len(lines[2]) == 2047 and lines[2].endswith(b"xxx") and lines[3] == b""
