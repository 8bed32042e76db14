"""translator: root/alias/index/autoindex/etag/if_modified_since written out explicitly (relative
paths against nginx's prefix, root and alias inherited together), and what is not built reported."""

from __future__ import annotations

from pathlib import Path

from nginx_parser import parse_config
from translator.translate import translate


def conf(tmp_path: Path, http_body: str) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return path


def test_static_settings_are_explicit_and_inherited(tmp_path: Path) -> None:
    path = conf(tmp_path, """index a.html b.htm; etag off;
    server { listen 80; root site;
        location /x/ { alias files/x/; if_modified_since before; autoindex on; autoindex_exact_size off;
            location /x/y/ { root /abs; } }
        location ~ ^/c/(.+)$ { alias /srv/$1; index /fallback.html; }
    }""")
    translation = translate(parse_config(str(path)), prefix="/opt/p")
    server = translation.config.servers[0]
    assert server.root == "/opt/p/site" and server.static.alias is None
    assert server.static.index == ["a.html", "b.htm"] and server.static.etag is False
    x = server.locations[0]
    assert x.static.alias == "/opt/p/files/x/" and x.static.if_modified_since == "before"
    assert x.static.autoindex and not x.static.autoindex_exact_size
    inner = x.locations[0]
    assert inner.static.alias is None and inner.root == "/abs"  # root and alias: the innermost wins
    regex = server.locations[1]
    assert regex.static.alias == "/srv/$1" and regex.static.index == ["/fallback.html"]
    assert not [g for g in translation.gaps if g.level in ("unsupported", "unknown")]


def test_unbuilt_static_settings_are_reported(tmp_path: Path) -> None:
    path = conf(tmp_path, """server { listen 80;
        location /a/ { alias /srv/$host/; }
        location /b/ { autoindex on; autoindex_format json; }
        location /c/ { disable_symlinks on; }
        location /d/ { alias /srv/; try_files $uri =404; }
    }""")
    found = {(g.directive, g.line): g.level for g in translate(parse_config(str(path))).gaps}
    assert found[("alias", 4)] == "unsupported"
    assert found[("autoindex_format", 5)] == "unsupported"
    assert found[("disable_symlinks", 6)] == "unsupported"
    assert found[("try_files", 7)] == "unsupported"
    # Without a prefix, relative paths are read against Debian's /usr/share/nginx, as its nginx does.
    assert translate(parse_config(str(conf(tmp_path, "server { listen 80; root r; }")))).config.servers[0].root \
        == "/usr/share/nginx/r"
