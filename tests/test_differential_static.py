"""Serving files against real nginx: root (inherited, per location), alias (prefix, exact and regex
with captures), index (several names, absolute last), try_files serving what it found, the 301 for a
directory, types/default_type, etag on/off, Last-Modified, If-Modified-Since (exact, before, off),
If-None-Match (alone and with If-Modified-Since), If-Match/If-Unmodified-Since (412, then close),
Range (single, suffix, open, multiple, If-Range, unsatisfiable, ignored), HEAD, methods, 403 for a
directory without index, 404 for missing files, symlinks (disable_symlinks off: followed, dangling,
looping), error_page on a static 404, autoindex (exact and human sizes, escaping, long names,
hidden files, HTTP/1.0), large files (sent with sendfile). Over 500 requests, generated and named.
"""

from __future__ import annotations

import os
from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    types { text/html html; text/css css; application/javascript js; image/png png; }
    default_type application/octet-stream;
    root ROOT;
    server {
        listen 8080;
        server_name static.test;

        location / { }
        location /docs/ { index missing.html other.htm; }
        location /abs/ { index missing.html /docs/other.htm; }
        location /alias/ { alias ROOT/docs/; }
        location ~ ^/rx/(\\w+)/(.+)$ { alias ROOT/$1/$2; }
        location /noetag/ { etag off; if_modified_since before; }
        location /imsoff/ { if_modified_since off; }
        location /spa/ { try_files $uri $uri/ /spa/index.html; }
        location /typed/ { default_type text/plain; types { } }
        location /other/ { root ROOT/docs; }
        location /err/ { error_page 404 /errpage.txt; }
        location = /errpage.txt { }
        location /listing/ { autoindex on; }
        location = /exact { alias ROOT/docs/page.html; }
        location = /exactdir { alias ROOT/docs; }
        location /human/ { alias ROOT/listing/; autoindex on; autoindex_exact_size off; index none; }
    }
}
"""

MTIME = 1_700_000_000  # fixed, so that the conditional requests below can name it
LM = "Tue, 14 Nov 2023 22:13:20 GMT"


def build_root(root: Path) -> None:
    files = {
        "index.html": "<h1>home</h1>\n",
        "style.css": "body { color: red }\n" * 20,
        "app.js": "console.log(1);\n",
        "img.png": "\x89PNG fake image bytes 0123456789",
        "noext": "no extension here\n",
        "empty.txt": "",
        "docs/other.htm": "other index\n",
        "docs/page.html": "a page\n",
        "docs/sub/index.html": "sub index\n",
        "noindex/file.txt": "x\n",
        "noetag/a.txt": "abcdefghijklmnopqrstuvwxyz",
        "imsoff/a.txt": "abcdefghijklmnopqrstuvwxyz",
        "spa/index.html": "<div id=app></div>\n",
        "spa/main.js": "spa();\n",
        "typed/a.html": "typed\n",
        "typed/b.unknownext": "typed2\n",
        "err/present.txt": "present\n",
        "errpage.txt": "custom not found\n",
        "rx/one.txt": "regex alias one\n",
        "big.bin": "",
        "listing/a file & <b>.txt": "x" * 10,
        "listing/.hidden": "h",
        "listing/sub/inner.txt": "i",
        "listing/Zeta.txt": "z" * 12000,
        "listing/" + "long-name-" * 6 + ".txt": "l",
        "listing/" + "d" * 49 + "/x": "",
        "listing/" + "e" * 50 + "/x": "",
        "listing/caf\xc3\xa9.txt": "utf-8 name",
        "listing/index.html.bak": "not an index",
        "listing/mid.bin": "m" * 2_000_000,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
    (root / "big.bin").write_bytes(bytes(range(256)) * 4096 * 3)  # 3 MiB: the sendfile path
    (root / "links").mkdir()
    (root / "links" / "to-file").symlink_to(root / "docs" / "page.html")
    (root / "links" / "to-dir").symlink_to(root / "docs")
    (root / "links" / "dangling").symlink_to(root / "nowhere")
    (root / "links" / "loop").symlink_to(root / "links" / "loop")
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.utime(path, (MTIME, MTIME))
        path.chmod(0o755 if path.is_dir() else 0o644)


def static_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    host = "static.test"
    paths = ["/", "/index.html", "/style.css", "/app.js", "/img.png", "/noext", "/empty.txt", "/missing",
             "/docs", "/docs/", "/docs?a=1", "/docs/sub", "/docs/sub/", "/docs/page.html", "/docs/nope/",
             "/abs/", "/noindex/", "/noindex", "/noindex/file.txt/", "/alias/page.html", "/alias/", "/alias/sub",
             "/alias/sub/", "/alias/none", "/rx/rx/one.txt", "/rx/docs/page.html", "/rx/docs/none",
             "/spa/", "/spa/main.js", "/spa/deep/link?x=1", "/spa/index.html", "/typed/a.html",
             "/typed/b.unknownext", "/other/page.html", "/other/", "/err/none", "/err/present.txt",
             "/%69ndex.html", "/docs/../style.css", "/big.bin", "/index.html?x=y",
             "/listing/", "/listing/sub/", "/listing/none/", "/listing", "/listing/?x=1", "/human/", "/human/sub/",
             "/exact", "/exactdir", "/exact/", "/links/to-file", "/links/to-dir", "/links/to-dir/", "/links/dangling",
             "/links/loop", "/links/to-dir/page.html", "/listing/a%20file%20%26%20%3Cb%3E.txt", "/listing/a file",
             "/docs/page.html%00x", "/docs/page.html?", "/docs/page.HTML", "/STYLE.css"]
    out = [get(listen, p, host, f"GET {p}") for p in paths]
    for method in ("HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        for p in ("/index.html", "/", "/docs", "/missing", "/noindex/", "/docs/"):
            out.append(get(listen, p, host, f"{method} {p}", method=method))
    conditional = [
        ("If-Modified-Since", LM), ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:21 GMT"),
        ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:19 GMT"), ("If-Modified-Since", "garbage"),
        ("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT"), ("If-Modified-Since", "Tue Nov 14 22:13:20 2023"),
        ("If-None-Match", '"6553f100-1a"'), ("If-None-Match", 'W/"6553f100-1a"'), ("If-None-Match", '"x", "6553f100-1a"'),
        ("If-None-Match", "*"), ("If-None-Match", '"nope"'), ("If-Match", '"nope"'), ("If-Match", "*"),
        ("If-Match", '"6553f100-1a"'), ("If-Unmodified-Since", "Tue, 14 Nov 2023 22:13:19 GMT"),
        ("If-Unmodified-Since", LM),
        ("Range", "bytes=0-4"), ("Range", "bytes=-5"), ("Range", "bytes=20-"), ("Range", "bytes=0-0,5-9,20-"),
        ("Range", "bytes=100-200"), ("Range", "bytes=5-2"), ("Range", "bytes=x"), ("Range", "bytes=0-100"),
        ("Range", "bytes=0-10,5-15"), ("Range", "bytes=0-30,0-30"), ("Range", "items=0-1"), ("Range", "bytes= 1 - 2 "),
        ("Range", "bytes=1-2,"), ("Range", "bytes=,1-2"), ("Range", "bytes=-0"), ("Range", "bytes=-100"),
    ]
    for name, value in conditional:
        for p in ("/noetag/a.txt", "/imsoff/a.txt", "/typed/a.html"):
            out.append(get(listen, p, host, f"{name}: {value} {p}", extra=((name, value),)))
    for name, value in (("If-None-Match", '"6553f100-1a"'), ("Range", "bytes=0-4")):
        out.append(get(listen, "/imsoff/a.txt", host, f"HEAD {name}", method="HEAD", extra=((name, value),)))
    for both in ((LM, '"6553f100-1a"'), (LM, '"other"'), ("Tue, 14 Nov 2023 22:13:19 GMT", '"6553f100-1a"')):
        out.append(get(listen, "/imsoff/a.txt", host, f"IMS+INM {both}",
                       extra=(("If-Modified-Since", both[0]), ("If-None-Match", both[1]))))
        out.append(get(listen, "/noetag/a.txt", host, f"IMS+INM noetag {both}",
                       extra=(("If-Modified-Since", both[0]), ("If-None-Match", both[1]))))
    for if_range in (LM, '"6553f100-1a"', '"other"', "Tue, 14 Nov 2023 22:13:21 GMT"):
        for p in ("/imsoff/a.txt", "/noetag/a.txt"):
            out.append(get(listen, p, host, f"If-Range {if_range} {p}",
                           extra=(("Range", "bytes=1-3"), ("If-Range", if_range))))
    out.append(get(listen, "/big.bin", host, "big range", extra=(("Range", "bytes=1000-2000000"),)))
    out.append(get(listen, "/index.html", None, "HTTP/1.0 file", version="1.0"))
    for method in ("HEAD", "POST", "DELETE"):
        out.append(get(listen, "/listing/", host, f"{method} listing", method=method))
    out.append(get(listen, "/listing/", None, "HTTP/1.0 listing", version="1.0"))
    return out


def test_static_files_match_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_root(root)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)))
    report = shadow(str(conf), str(tmp_path / "run"), static_requests, max_requests=300)
    assert_equivalent(report, minimum=500)
