"""The pure parts of the access phase: password schemes (cross-checked with openssl), the user file
reader, nginx's base64 decoder, address parsing and printing, and the translator's checks and gap
notes. Behaviour against nginx is in tests/test_differential_access.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from newproxy.engine.addresses import (
    format_addr,
    parse_addr,
    parse_addr_port,
    parse_cidr,
)
from newproxy.engine.htpasswd import (
    UserFiles,
    apr1,
    basic_credentials,
    crypt,
    decode_base64,
    parse_users,
    verify,
)
from nginx_parser import ConfigError, parse_config
from translator.translate import translate


@pytest.mark.parametrize("flag", ["-1", "-apr1", "-5", "-6"])
@pytest.mark.parametrize("password", ["secret", "a" * 40, "with space", "colon:inside", "ümlaut"])
def test_schemes_agree_with_openssl(flag: str, password: str) -> None:
    entry = subprocess.run(["openssl", "passwd", flag, "-salt", "Xy7.q/Z9", password], check=True,
                           capture_output=True).stdout.strip()
    assert crypt(password.encode(), entry) == entry
    assert verify(password.encode(), entry) is True
    assert verify(password.encode() + b"x", entry) is False


def test_apr1_salt_is_cut_at_eight_characters_and_at_a_dollar() -> None:
    long_salt = apr1(b"pw", b"$apr1$abcdefghijk$")
    assert long_salt.startswith(b"$apr1$abcdefgh$")
    assert apr1(b"pw", b"$apr1$ab$rest").startswith(b"$apr1$ab$")


def test_sha_ssha_plain_and_failures() -> None:
    assert verify(b"pw", b"{PLAIN}pw") is True
    assert verify(b"pw", b"{SHA}6GL+4SgQ8OY8/3i9r+NktVgS5ck=") is False
    sha1 = subprocess.run("printf pw | openssl dgst -sha1 -binary | base64", shell=True, check=True,
                          capture_output=True).stdout.strip()
    assert crypt(b"pw", b"{SHA}") == b"{SHA}" + sha1
    ssha = crypt(b"pw", b"{SSHA}" + b"A" * 28 + b"c2FsdA==")  # a salt after the 20-byte digest
    assert ssha is not None and verify(b"pw", ssha) is True
    assert verify(b"pw", b"*") is False  # libxcrypt's failure token never matches
    assert verify(b"pw\x00ignored", b"{PLAIN}pw") is True  # a C string ends at NUL


def test_decode_base64_as_nginx() -> None:
    assert decode_base64(b"YWxpY2U6YWxpY2U=garbage") == b"alice:alice"
    assert decode_base64(b"YWxpY2U6YWxpY2") == b"alice:alic"
    assert decode_base64(b"Y") is None
    assert decode_base64(b"!!!!") is None


def test_basic_credentials() -> None:
    assert basic_credentials([(b"authorization", b"bAsIc    YTpi")]) == (b"a", b"b")
    assert basic_credentials([(b"Authorization", b"Basic OmI=")]) is None  # empty user
    assert basic_credentials([(b"Authorization", b"Basic YQ==")]) is None  # no colon
    assert basic_credentials([(b"Authorization", b"Bearer YTpi")]) is None


def test_user_file_lines(tmp_path: Path) -> None:
    users = parse_users(b"#c:1\n\n\r\nu:{PLAIN}a:comment\nu:{PLAIN}b\nv:{PLAIN}x\r\nnocolon\n w:1\nlast:z")
    assert users == {b"u": b"{PLAIN}a", b"v": b"{PLAIN}x", b" w": b"1", b"last": b"z"}
    files = UserFiles()
    assert files.lookup(str(tmp_path / "missing"), b"u") == 403
    assert files.lookup(str(tmp_path), b"u") == 500
    path = tmp_path / "users"
    path.write_bytes(b"u:{PLAIN}a\n")
    assert files.lookup(str(path), b"u") == b"{PLAIN}a"
    path.write_bytes(b"u:{PLAIN}changed\n")  # a new size: read again
    assert files.lookup(str(path), b"u") == b"{PLAIN}changed"


def test_addresses_as_nginx_prints_them() -> None:
    cases = {"::ffff:1.2.3.4": "::ffff:1.2.3.4", "::102:304": "::1.2.3.4", "::1": "::1", "::2": "::2",
             "2001:db8:0:0:1:0:0:1": "2001:db8::1:0:0:1", "010.001.002.003": "10.1.2.3", "1..2.3": "1.0.2.3"}
    for text, printed in cases.items():
        addr = parse_addr(text)
        assert addr is not None and format_addr(addr) == printed, text
    assert parse_addr("1.2.3") is None and parse_addr("fe80::1%eth0") is None
    assert parse_addr_port("[::1]:80") == ((6, 1), 80)
    assert parse_addr_port("[::1]") is None and parse_addr_port("1.2.3.4:0") is None
    assert parse_cidr("10.2.3.4/16") == ((4, 0xFFFF0000, 0x0A020000), True)
    assert parse_cidr("10.0.0.0/33") is None


def _translate(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        listen 8080;\n" + body + "\n    }\n}\n")
    return translate(parse_config(str(conf)))


def test_translator_inheritance_and_relative_user_file(tmp_path: Path) -> None:
    translation = _translate(tmp_path, """
        allow 10.0.0.0/8; deny all;
        auth_basic "R"; auth_basic_user_file users.txt;
        set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
        location /a/ { }
        location /b/ { deny 10.1.0.0/16; auth_basic off; }
        location /c/ { set_real_ip_from 10.0.0.0/8; }""")
    server = translation.config.servers[0]
    assert server.real_ip is not None and server.real_ip.header == "X-Forwarded-For"
    a, b, c = server.locations
    assert a.access is not None and [r.address for r in a.access.rules] == ["10.0.0.0/8", "all"]
    assert a.access.auth_basic_user_file == str(tmp_path / "users.txt")
    assert a.real_ip is None  # the server's already applied in post-read
    assert b.access is not None and [r.address for r in b.access.rules] == ["10.1.0.0/16"]
    assert b.access.auth_basic is None
    assert c.real_ip is not None and c.real_ip.set_real_ip_from == ["10.0.0.0/8"]


def test_translator_errors_and_gaps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _translate(tmp_path, "        location / { allow 10.0.0.300; }")
    assert 'invalid parameter "10.0.0.300"' in str(info.value) and info.value.line == 5
    with pytest.raises(ConfigError):
        _translate(tmp_path, "        satisfy some;")
    translation = _translate(tmp_path, """
        set_real_ip_from proxy.example.com;
        real_ip_header proxy_protocol;
        location / { limit_except GET { deny all; } auth_request_set $x $sent_http_y; }""")
    gaps = {o.directive: o.reason for o in translation.gaps}
    assert "not resolved" in gaps["set_real_ip_from"]
    assert "PROXY protocol" in gaps["real_ip_header"]
    assert "limit_except" in gaps["deny"]
    assert "sent_http_y" in gaps["auth_request_set"]
