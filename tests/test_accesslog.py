"""access_log and log_format: translation (inheritance, prefix, errors as nginx -t reports them) and
the log files (buffering, flush timer, reopen). The lines themselves are compared with nginx's in
tests/test_differential_accesslog.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from newproxy.http.accesslog import LogFile
from nginx_parser import ConfigError, parse_config
from translator import translate
from translator.logs import DEFAULT_ACCESS_LOG


def _conf(tmp_path: Path, http_body: str) -> Path:
    (tmp_path / "logs").mkdir(exist_ok=True)
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def _nginx_accepts(tmp_path: Path, path: Path) -> bool:
    """nginx -t on the same file: the oracle for what is a config error."""
    result = subprocess.run(
        ["nginx", "-t", "-q", "-p", f"{tmp_path}/", "-c", str(path), "-e", f"{tmp_path}/error.log",
         "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True, timeout=20, check=False,
    )
    return result.returncode == 0


def test_inheritance_off_if_and_prefix(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    path = _conf(tmp_path, f"""
        log_format short '$remote_addr $status';
        access_log {log} short;
        access_log logs/rel.log;
        server {{ listen 80;
          location /inherit {{ return 200; }}
          location /off {{ access_log off; return 200; }}
          location /own {{ access_log {log} combined if=$arg_x; access_log {log} SHORT buffer=8k flush=2s; }}
          location /iffy {{ if ($arg_y) {{ access_log off; return 204; }} return 200; }}
        }}
        server {{ listen 81; access_log off; location / {{ return 200; }} }}""")
    assert _nginx_accepts(tmp_path, path)
    config = translate(parse_config(str(path)), prefix="/srv/nginx").config
    assert [(f.name, f.escape, f.format) for f in config.log_formats] == [("short", "default", "$remote_addr $status")]
    first, second = config.servers
    expected = [(str(log), "short"), ("/srv/nginx/logs/rel.log", "combined")]
    assert [(a.path, a.format) for a in first.access_logs] == expected
    inherit, off, own, iffy = first.locations
    assert [(a.path, a.format) for a in inherit.access_logs] == expected
    assert off.access_logs == []
    assert [(a.format, a.condition, a.buffer, a.flush) for a in own.access_logs] == [
        ("combined", "$arg_x", 0, 0.0), ("SHORT", None, 8192, 2.0)]
    assert [(a.path, a.format) for a in iffy.access_logs] == expected
    if_block = iffy.rewrite[0].location  # type: ignore[union-attr]
    assert if_block is not None and if_block.access_logs == []
    assert second.access_logs == [] and second.locations[0].access_logs == []


def test_no_access_log_anywhere_is_nginx_default(tmp_path: Path) -> None:
    path = _conf(tmp_path, "server { listen 80; }")
    config = translate(parse_config(str(path))).config
    assert [(a.path, a.format) for a in config.servers[0].access_logs] == [(DEFAULT_ACCESS_LOG, "combined")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("log_format x '$no_such_variable'; access_log {log} x;", 'unknown "no_such_variable" variable'),
        ("access_log {log} nope;", 'unknown log format "nope"'),
        ("log_format x '$status'; log_format x '$status';", 'duplicate "log_format" name "x"'),
        ("log_format combined '$status';", 'duplicate "log_format" name "combined"'),
        ("log_format x escape=yaml '$status';", 'unknown log format escaping "yaml"'),
        ("access_log {log} combined flush=1s;", 'no buffer is defined for access_log'),
        ("access_log {log} combined buffer=0;", 'invalid buffer size "0"'),
        ("access_log off combined;", 'invalid parameter "combined"'),
        ("access_log {log} combined bogus=1;", 'invalid parameter "bogus=1"'),
        ("log_format x '${status'; access_log {log} x;", 'the closing bracket in "status" variable is missing'),
    ],
)
def test_config_errors_as_nginx(tmp_path: Path, body: str, message: str) -> None:
    path = _conf(tmp_path, body.replace("{log}", str(tmp_path / "x.log")) + "\nserver { listen 80; }")
    assert not _nginx_accepts(tmp_path, path)
    with pytest.raises(ConfigError) as info:
        translate(parse_config(str(path)))
    assert message in str(info.value)
    assert f"{path}:" in str(info.value)


def test_variables_nginx_has_but_newproxy_lacks_are_reported(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    path = _conf(tmp_path, f"log_format x '$upstream_cache_status'; access_log {log} x; access_log {log};"
                           "\nserver { listen 80; }")
    assert _nginx_accepts(tmp_path, path)
    translation = translate(parse_config(str(path)))
    assert [a.format for a in translation.config.servers[0].access_logs] == ["combined"]
    levels = {(o.directive, o.level) for o in translation.occurrences if o.directive in ("log_format", "access_log")}
    assert levels == {("log_format", "unsupported"), ("access_log", "unsupported"), ("access_log", "caveat")}


def test_buffered_file_flushes_on_timer_on_overflow_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "b.log"
    loop = asyncio.new_event_loop()
    try:
        log = LogFile(str(path), 64, 0.05, loop)
        log.write(b"a" * 30 + b"\n")
        assert path.read_bytes() == b""  # buffered
        loop.run_until_complete(asyncio.sleep(0.15))
        assert path.read_bytes() == b"a" * 30 + b"\n"  # the flush timer wrote it
        log.write(b"b" * 40 + b"\n")
        log.write(b"c" * 40 + b"\n")  # does not fit: the buffer is written first
        assert path.read_bytes().endswith(b"b" * 40 + b"\n")
        log.close()
        assert path.read_bytes().endswith(b"c" * 40 + b"\n")
    finally:
        loop.close()


def test_reopen_starts_a_new_file_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    log = LogFile(str(path), 0, 0.0, None)
    log.write(b"one\n")
    os.rename(path, tmp_path / "r.log.1")
    log.write(b"two\n")  # still the rotated file, as in nginx until USR1
    log.reopen()
    log.write(b"three\n")
    log.close()
    assert (tmp_path / "r.log.1").read_bytes() == b"one\ntwo\n"
    assert path.read_bytes() == b"three\n"
