"""The strangler fallback's translation side: which locations go to legacy, what the YAML and the
summary say, and the CLI's errors (`nginx-migrate convert --fallback`).

The end-to-end proof that a fallback location answers like nginx is tests/test_fallback_shadow.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from newproxy.config import NewproxyConfig
from nginx_parser import parse_config
from shadow.cli import main
from translator.fallback import FallbackError, parse_fallback
from translator.translate import translate

CONFIG = """\
events {}
http {
    upstream backend { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080;
        server_name example.com;
        location / { proxy_pass http://backend; }
        location /legacy/ {
            sub_filter 'upstream' 'LEGACY';
            proxy_pass http://backend;
            location /legacy/inner/ { proxy_pass http://backend; }
        }
        location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; }
        location /tuned/ { log_not_found off; proxy_pass http://backend; }
        location /old { rewrite ^/old/(.*)$ /new/$1 last; }
        location /new/ { return 200 "new $uri\\n"; }
    }
    server {
        listen 127.0.0.1:8081;
        server_name whole.example;
        ssi on;
        location / { return 200 "static"; }
    }
}
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text(CONFIG)
    return path


def _by_path(config: NewproxyConfig, server: int = 0) -> dict[str, object]:
    out: dict[str, object] = {}

    def visit(locations: list) -> None:  # type: ignore[type-arg]
        for location in locations:
            out[location.path] = location
            visit(location.locations)

    visit(config.servers[server].locations)
    return out


def _levels(translation: object, name: str) -> set[str]:
    return {o.level for o in translation.occurrences if o.directive == name}  # type: ignore[attr-defined]


def test_without_fallback_nothing_changes(conf: Path) -> None:
    translation = translate(parse_config(str(conf)))
    assert _levels(translation, "sub_filter") == {"unsupported"}
    assert _levels(translation, "fastcgi_pass") == {"unsupported"}
    assert _levels(translation, "ssi") == {"unsupported"}
    assert "pass_through: true" not in translation.config.dump_yaml()
    assert all(u.name != "legacy_nginx" for u in translation.config.upstreams)


def test_fallback_locations_and_levels(conf: Path) -> None:
    translation = translate(parse_config(str(conf)), fallback=parse_fallback("http://legacy:8080"))
    locations = _by_path(translation.config)
    for path in ("/legacy/", "/legacy/inner/", r"\.php$"):
        proxy = locations[path].proxy  # type: ignore[attr-defined]
        assert proxy is not None and proxy.pass_through and proxy.upstream == "legacy_nginx", path
        # Nothing of the location runs in newproxy: legacy runs the original config on the request.
        assert locations[path].rewrite == [] and locations[path].try_files is None  # type: ignore[attr-defined]
    # Translated locations, and a gap that does not change responses, stay newproxy's.
    for path in ("/", "/tuned/", "/old", "/new/"):
        proxy = locations[path].proxy  # type: ignore[attr-defined]
        assert proxy is None or not proxy.pass_through, path
    assert _levels(translation, "log_not_found") == {"unsupported"}
    # A gap at server level sends the whole server: one catch-all location, no server rewrites.
    whole = translation.config.servers[1]
    assert [(loc.match, loc.path) for loc in whole.locations] == [("prefix", "/")]
    assert whole.locations[0].proxy is not None and whole.locations[0].proxy.pass_through
    for name in ("sub_filter", "fastcgi_pass", "ssi"):
        assert _levels(translation, name) == {"caveat"}, name
        reasons = {o.reason for o in translation.occurrences if o.directive == name}
        assert all(r.startswith("served by legacy nginx via fallback (http://legacy:8080)") for r in reasons)
    legacy = translation.config.upstream("legacy_nginx")
    assert [(s.host, s.port) for s in legacy.servers] == [("legacy", 8080)]


def test_convert_cli_writes_and_prints_fallback(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "proxy.yaml"
    assert main(["convert", str(conf), "-o", str(out), "--fallback", "http://legacy:8080"]) == 0
    data = yaml.safe_load(out.read_text())
    config = NewproxyConfig.model_validate(data)  # the written YAML loads back as a newproxy config
    assert _by_path(config)["/legacy/"].proxy.pass_through  # type: ignore[attr-defined]
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "Served by legacy nginx via fallback (http://legacy:8080)" in text
    assert "location /legacy/" in text and "location ~ \\.php$" in text and "whole.example" in text


@pytest.mark.parametrize(("value", "message"), [
    ("legacy:8080", "it is not a URL"),
    ("https://legacy:8443", 'the scheme "https" is not supported'),
    ("http://legacy:8080/app", "expected http://HOST:PORT with no path"),
    ("http://legacy:70000", "port 70000 is out of range"),
    ("http://", "expected http://HOST:PORT"),
])
def test_bad_fallback_value(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
                            message: str) -> None:
    with pytest.raises(FallbackError, match=message.replace("(", r"\(")):
        parse_fallback(value)
    assert main(["convert", str(conf), "-o", str(tmp_path / "p.yaml"), "--fallback", value]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_good_fallback_values() -> None:
    assert (parse_fallback("http://legacy:8080").host, parse_fallback("http://legacy:8080").port) == ("legacy", 8080)
    assert parse_fallback("http://10.0.0.5").port is None
    assert parse_fallback("http://[::1]:8080/").host == "::1"


def test_fallback_without_port_uses_each_server_s_listen_port(conf: Path) -> None:
    # Legacy runs the original config unchanged on another host: each server is reached on its own
    # port there, so legacy picks the same server by address as the original nginx.
    translation = translate(parse_config(str(conf)), fallback=parse_fallback("http://legacy"))
    first = _by_path(translation.config)["/legacy/"].proxy  # type: ignore[attr-defined]
    whole = translation.config.servers[1].locations[0].proxy
    assert whole is not None
    peers = {name: [(s.host, s.port) for s in translation.config.upstream(name).servers]
             for name in (first.upstream, whole.upstream)}
    assert peers == {"legacy_nginx_8080": [("legacy", 8080)], "legacy_nginx_8081": [("legacy", 8081)]}


def test_fallback_upstream_name_does_not_clash(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp { upstream legacy_nginx { server 127.0.0.1:9001; }\n"
                    "server { listen 8080; location / { proxy_pass http://legacy_nginx; }\n"
                    "location /x/ { fastcgi_pass 127.0.0.1:9000; } } }\n")
    config = translate(parse_config(str(path)), fallback=parse_fallback("http://legacy:8080")).config
    proxy = _by_path(config)["/x/"].proxy  # type: ignore[attr-defined]
    assert proxy.upstream == "legacy_nginx_" and config.upstream("legacy_nginx_").servers[0].host == "legacy"
    assert config.upstream("legacy_nginx").servers[0].port == 9001
