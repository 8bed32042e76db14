"""gzip against real nginx: bodies are compared decompressed (shadow normalisation rule 6), every
header exactly, so the Content-Encoding decision, Vary, the weak ETag, the missing Content-Length,
chunked (HTTP/1.1) or close (HTTP/1.0) framing and the absent Accept-Ranges must all agree.

Covered: static files (in gzip_types or not, under and over gzip_min_length, a large file, an empty
one, Range and conditional requests, HEAD, HTTP/1.0, etag off), ``return`` text, built-in error
pages (404, 403) and an error_page target, autoindex listings; Accept-Encoding parsing (case,
q=0 and other q values, "x-gzip", lists, "*", several headers), gzip_types ``*``, gzip_comp_level,
gzip_vary off, gzip_http_version 1.0, gzip_disable (regexes, msie6, MSIE 6 with SV1, Opera, and the
msie6 flag's own inheritance), gzip_proxied (off, any, expired, no-cache/no-store/private, auth,
no_last_modified, no_etag) with and without Via, also against expires/add_header Cache-Control on
files; proxied responses: types (charset and other parameters), Content-Length under
gzip_min_length, no length (chunked upstream), an upstream Content-Encoding (empty too), ETag made
weak or dropped, Accept-Ranges dropped, 403/404/500 from upstream, a large body compressed as it
streams, HEAD and HTTP/1.0 (close framing); error_page (file, =200, named proxied location,
proxy_intercept_errors), gzip inside if, a 416 after the gzip filter looked (Vary kept), gzip at
server level for requests matching no location, gzip off at server level. Over 700 requests.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path
from urllib.parse import quote

from nginx_parser import parse_config
from shadow.client import send
from shadow.http1 import header_values
from shadow.rewire import Plan, plan
from shadow.runner import started_targets
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    types { text/html html; text/css css; application/javascript js; text/plain txt; image/png png; }
    default_type application/octet-stream;
    root ROOT;
    gzip on;
    gzip_vary on;
    gzip_types text/css application/javascript text/plain application/json;
    gzip_types text/xml;
    gzip_min_length 100;
    server {
        listen 8080;
        server_name gzip.test;

        location / { }
        location /off/ { gzip off; }
        location /level9/ { gzip_comp_level 9; }
        location /star/ { gzip_types *; gzip_min_length 1; }
        location /novary/ { gzip_vary off; }
        location /v10/ { gzip_http_version 1.0; }
        location /disable/ { gzip_disable "curl/\\d" "bot" msie6; }
        location /msie/ {
            gzip_disable msie6;
            location /msie/inner/ { gzip_disable "spider"; }
        }
        location /noetag/ { etag off; gzip_proxied no_etag; }
        location /snoetag/ { gzip_proxied no_etag; }
        location /snolm/ { gzip_proxied no_last_modified; }
        location /sany/ { gzip_proxied any; }
        location /sauth/ { gzip_proxied auth; }
        location = /ret { default_type text/html; return 200 "<html><body>RETURNED TEXT RETURNED TEXT RETURNED TEXT RETURNED TEXT RETURNED TEXT RETURNED TEXT</body></html>"; }
        location = /retshort { default_type text/html; return 200 "<p>short</p>"; }
        location = /ret403 { default_type text/plain; return 403 "forbidden forbidden forbidden forbidden forbidden forbidden forbidden forbidden forbidden"; }
        location = /ret500 { default_type text/html; return 500 "<html>five hundred five hundred five hundred five hundred five hundred five hundred five hundred</html>"; }
        location = /retbin { return 200 "binary binary binary binary binary binary binary binary binary binary binary binary binary"; }
        location /small/ { gzip_min_length 1; }
        location /errpage/ { error_page 404 /custom404.txt; }
        location = /custom404.txt { internal; }
        location /listing/ { autoindex on; }
        location /px/ { proxy_pass http://127.0.0.1:9001; gzip_proxied any; }
        location /pxoff/ { proxy_pass http://127.0.0.1:9001; }
        location /pxexpired/ { proxy_pass http://127.0.0.1:9001; gzip_proxied expired; }
        location /pxcache/ { proxy_pass http://127.0.0.1:9001; gzip_proxied no-cache no-store private; }
        location /pxnolm/ { proxy_pass http://127.0.0.1:9001; gzip_proxied no_last_modified no_etag; }
        location /pxauth/ { proxy_pass http://127.0.0.1:9001; gzip_proxied auth; }
        location /pxbig/ { proxy_pass http://127.0.0.1:9001; gzip_min_length 100000; }
        location /pxtypes/ { proxy_pass http://127.0.0.1:9001; gzip_types text/plain; }
        location /px10/ { proxy_pass http://127.0.0.1:9001; gzip_http_version 1.0; }
        location /pxintercept/ {
            proxy_pass http://127.0.0.1:9001; proxy_intercept_errors on; error_page 404 /custom404.txt;
        }
        location /pxerr/ { error_page 404 = @px; }
        location @px { proxy_pass http://127.0.0.1:9001; gzip_proxied any; }
        location /eq200/ { error_page 404 =200 /ret; }
        location /iffy/ {
            if ($arg_nogzip) { gzip off; }
        }
        location /sexp/ { alias ROOT/; expires -1; gzip_proxied expired; }
        location /sexpf/ { alias ROOT/; expires 1h; gzip_proxied expired; }
        location /scc/ { alias ROOT/; add_header Cache-Control no-cache; gzip_proxied no-cache; }
        location /sccp/ { alias ROOT/; add_header Cache-Control public; gzip_proxied no-cache; }
        location /iffyon/ { alias ROOT/; gzip off; if ($arg_on) { gzip on; } }
    }
    server {
        listen 8081;
        server_name nolocations.test;
        gzip_types text/css;
        gzip_vary off;
    }
    server {
        listen 8082;
        server_name offserver.test;
        gzip off;
        location / { }
        location /on/ { gzip on; alias ROOT/; }
    }
}
"""

MTIME = 1_700_000_000
ETAG = '"6553f100-'  # the start of every file's ETag (mtime in hex)


def build_root(root: Path) -> None:
    files = {
        "index.html": "<html><body>" + "<p>home page paragraph</p>\n" * 20 + "</body></html>\n",
        "style.css": "body { color: red; margin: 0 }\n" * 40,
        "app.js": "console.log('gzip me please');\n" * 10,
        "small.css": "a{b:c}\n",
        "img.png": "\x89PNG not really an image, but long enough to be compressed if it were typed" * 3,
        "notes.txt": "plain text notes\n" * 30,
        "empty.txt": "",
        "data.xml": "<x>" + "data " * 50 + "</x>",
        "noext": "no extension, default type application/octet-stream " * 5,
        "big.txt": "".join(f"line {i:06d} of a big text file that is sent compressed\n" for i in range(12000)),
        "custom404.txt": "custom not found page, long enough to be compressed by gzip filter " * 3,
        "listing/a.txt": "a",
        "noindexdir/file.txt": "f",
        "listing/b.css": "b" * 50,
    }
    for prefix in ("", "iffy/", "off/", "level9/", "star/", "novary/", "v10/", "disable/", "msie/", "msie/inner/", "noetag/",
                   "snoetag/", "snolm/", "sany/", "sauth/", "small/"):
        for name in ("index.html", "style.css", "small.css", "img.png", "noext"):
            files[prefix + name] = files[name]
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
    for path in [root, *root.rglob("*")]:
        os.utime(path, (MTIME, MTIME))
        path.chmod(0o755 if path.is_dir() else 0o644)


ACCEPT = ["gzip", "gzip, deflate, br", "deflate", "GZIP", "gzip;q=0", "gzip; q=0.5", "x-gzip", "br, gzip",
          "gzip;q=1.0", "identity", "deflate,gzip;q=0", "*", "gzip,deflate", "gzip;q=0.000", "deflate, gzip ;q=0.1",
          "gzip;level=1", "gzipx", "br,gzip, deflate", "gzip;q=", "gzip;q=2", "gzip ", "gzip\t",
          "deflate;q=0.5, gzip;q=0.5", "gzip;q=0.", "gzip;q=1.0001", "gzip;Q=0", "compress, x-gzip, gzip"]


def _header(name: str, value: str) -> str:
    return f"/__header/{name}={quote(value, safe='')}"


def gzip_requests(plan: Plan) -> list[Request]:
    listen = listen_main = next(name for name in plan.listens if name.endswith(":8080"))
    host = "gzip.test"
    out: list[Request] = []

    def add(path: str, label: str, *headers: tuple[str, str], method: str = "GET", version: str = "1.1") -> None:
        out.append(get(listen, path, host, label, method=method, version=version, extra=tuple(headers)))

    gz = ("Accept-Encoding", "gzip")
    # Accept-Encoding parsing, on a static file, a return and a proxied response.
    for value in ACCEPT:
        for path in ("/style.css", "/ret", "/px/echo"):
            add(path, f"AE {value!r} {path}", ("Accept-Encoding", value))
    add("/style.css", "two AE headers, gzip second", ("Accept-Encoding", "deflate"), gz)
    add("/style.css", "two AE headers, gzip first", gz, ("Accept-Encoding", "deflate"))
    # Static files across locations, with and without gzip accepted.
    static = ["/", "/index.html", "/style.css", "/app.js", "/small.css", "/img.png", "/notes.txt", "/empty.txt",
              "/data.xml", "/noext", "/missing.css", "/big.txt"]
    for path in static:
        add(path, f"plain {path}")
        add(path, f"gzip {path}", gz)
    for prefix in ("/off/", "/level9/", "/star/", "/novary/", "/v10/", "/small/"):
        for name in ("style.css", "small.css", "img.png", "noext", "index.html", "nothere.css"):
            add(prefix + name, f"gzip {prefix}{name}", gz)
        add(prefix + "style.css", f"plain {prefix}style.css")
    # Methods, versions, ranges, conditionals.
    for path in ("/style.css", "/index.html", "/missing", "/ret", "/px/echo", "/listing/"):
        add(path, f"HEAD gzip {path}", gz, method="HEAD")
        add(path, f"HEAD {path}", method="HEAD")
        add(path, f"1.0 gzip {path}", gz, version="1.0")
        add(path, f"1.0 keepalive gzip {path}", gz, ("Connection", "keep-alive"), version="1.0")
        add(path, f"1.0 HEAD gzip {path}", gz, method="HEAD", version="1.0")
    for prefix in ("/", "/v10/"):
        add(prefix + "style.css", f"1.0 gzip {prefix}", gz, version="1.0")
        add(prefix + "style.css", f"1.0 keepalive gzip {prefix}", gz, ("Connection", "keep-alive"), version="1.0")
    for path in ("/px10/c/x", "/px10/c/__chunked/x", "/v10/missing", "/listing/"):
        for extra in ((), (("Connection", "keep-alive"),)):
            add(path, f"1.0 gzip {path} {extra}", gz, *extra, version="1.0")
            add(path, f"1.0 HEAD gzip {path} {extra}", gz, *extra, method="HEAD", version="1.0")
    for rng in ("bytes=0-10", "bytes=5-", "bytes=0-1,5-6"):
        add("/style.css", f"range {rng} gzip", gz, ("Range", rng))
        add("/style.css", f"range {rng}", ("Range", rng))
        add("/img.png", f"range {rng} gzip untyped", gz, ("Range", rng))
    add("/style.css", "range unsatisfiable gzip", gz, ("Range", "bytes=99999-"))
    add("/style.css", "range unsatisfiable", ("Range", "bytes=99999-"))
    add("/style.css", "range unsatisfiable gzip q=0", ("Accept-Encoding", "gzip;q=0"), ("Range", "bytes=99999-"))
    add("/style.css", "INM strong", ("If-None-Match", ETAG + '4d8"'))
    add("/style.css", "INM strong gzip", gz, ("If-None-Match", ETAG + '4d8"'))
    add("/style.css", "INM weak gzip", gz, ("If-None-Match", "W/" + ETAG + '4d8"'))
    add("/style.css", "IMS gzip", gz, ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT"))
    add("/style.css", "If-Match gzip", gz, ("If-Match", '"nope"'))
    add("/style.css", "POST gzip", gz, method="POST")
    # gzip_disable.
    agents = ["curl/8.1", "Curl/7", "curl/x", "GoodBot/1.0", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
              "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", "Mozilla/4.0 (compatible; MSIE 5.5; Win)",
              "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", "Opera/9 (MSIE 6.0; x)", "MSIE 6.0",
              "Mozilla/5.0 Spider", "Mozilla/5.0 Firefox/120"]
    for agent in agents:
        for path in ("/disable/style.css", "/msie/style.css", "/msie/inner/style.css", "/style.css"):
            add(path, f"UA {agent!r} {path}", gz, ("User-Agent", agent))
    add("/disable/style.css", "two UA, bot second", gz, ("User-Agent", "Firefox"), ("User-Agent", "bot"))
    # gzip_proxied on static files and returns (Via present).
    via = ("Via", "1.1 cache")
    for path in ("/style.css", "/sany/style.css", "/snoetag/style.css", "/noetag/style.css", "/snolm/style.css",
                 "/sauth/style.css", "/ret"):
        add(path, f"via {path}", gz, via)
        add(path, f"via auth {path}", gz, via, ("Authorization", "Basic eDp5"))
    add("/style.css", "via without gzip", via)
    for path in ("/sexp/style.css", "/sexpf/style.css", "/scc/style.css", "/sccp/style.css", "/sexp/missing"):
        add(path, f"via {path}", gz, via)
        add(path, f"no via {path}", gz)
    # Error pages, returns, listings.
    for path in ("/noindexdir/", "/missing", "/ret403", "/ret500", "/retshort", "/retbin", "/errpage/none", "/listing/",
                 "/listing", "/off/missing", "/small/missing"):
        add(path, f"gzip {path}", gz)
        add(path, f"plain {path}")
    add("/listing/", "1.0 listing gzip", gz, version="1.0")
    # Proxied responses.
    cases = {
        "plain": "",
        "cc-nocache": _header("Cache-Control", "no-cache"),
        "cc-nostore": _header("Cache-Control", "max-age=0, no-store"),
        "cc-private": _header("Cache-Control", "private"),
        "cc-public": _header("Cache-Control", "public, max-age=60"),
        "cc-private-param": _header("Cache-Control", "private=x"),
        "expired": _header("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"),
        "future": _header("Expires", "Thu, 01 Jan 2037 00:00:00 GMT"),
        "bad-expires": _header("Expires", "0"),
        "lm": _header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
        "etag": _header("ETag", '"abc"'),
        "weak-etag": _header("ETag", 'W/"abc"'),
        "bare-etag": _header("ETag", "abc"),
        "ranges": _header("Accept-Ranges", "bytes"),
        "encoded": _header("Content-Encoding", "br"),
        "encoded-empty": _header("Content-Encoding", ""),
        "html": _header("Content-Type", "text/html"),
        "charset": _header("Content-Type", "text/plain; charset=utf-8"),
        "param": _header("Content-Type", "text/plain; foo=bar"),
        "untyped": _header("Content-Type", ""),
        "png": _header("Content-Type", "image/png"),
        "upper": _header("Content-Type", "Text/Plain"),
        "vary": _header("Vary", "Cookie"),
        "chunked": "/__chunked",
        "404": "/__status/404",
        "403": "/__status/403",
        "500": "/__status/500",
    }
    for prefix in ("/px/", "/pxoff/", "/pxexpired/", "/pxcache/", "/pxnolm/", "/pxauth/", "/pxbig/", "/pxtypes/"):
        for label, marker in cases.items():
            path = f"{prefix}c{marker}/x"
            add(path, f"via {prefix} {label}", gz, via)
            if prefix in ("/px/", "/pxbig/", "/pxtypes/"):
                add(path, f"{prefix} {label}", gz)
        add(f"{prefix}auth", f"via auth {prefix}", gz, via, ("Authorization", "Basic eDp5"))
    for label in ("chunked", "etag", "plain"):
        path = f"/px/c{cases[label]}/x"
        add(path, f"1.0 {label}", gz, version="1.0")
        add(path, f"HEAD {label}", gz, method="HEAD")
        add(path, f"no AE {label}", via)
    # A large proxied body (the echo of a large request body): compressed as it streams.
    body = b"0123456789abcdef" * 20000
    for version in ("1.1", "1.0"):
        out.append(Request(method="POST", target="/px/large", headers=(("Host", host), gz, ("Content-Length", str(len(body)))),
                           listen=listen, group="hand-picked", label=f"large proxied {version}", version=version,
                           body=body))
    # error_page and if blocks; other servers (no location at all; gzip off at server level).
    for path in ("/pxintercept/c/__status/404/x", "/pxintercept/c/x", "/pxerr/none", "/eq200/none",
                 "/iffy/style.css", "/iffy/style.css?nogzip=1", "/iffyon/style.css?on=1", "/iffyon/style.css"):
        add(path, f"gzip {path}", gz)
        add(path, f"plain {path}")
    others = [listen for listen in plan.listens if listen != listen_main]
    for other, name in zip(sorted(others), ("nolocations.test", "offserver.test")):
        for path in ("/style.css", "/index.html", "/app.js", "/missing", "/", "/on/style.css", "/on/index.html"):
            out.append(get(other, path, name, f"{name} gzip {path}", extra=(gz,)))
            out.append(get(other, path, name, f"{name} HEAD gzip {path}", method="HEAD", extra=(gz,)))
    return out


def test_gzip_matches_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_root(root)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)))
    report = shadow(str(conf), str(tmp_path / "run"), gzip_requests, max_requests=40)
    assert_equivalent(report, minimum=700)


def test_both_really_compress(tmp_path: Path) -> None:
    """The equivalence above compares decompressed bodies; this shows the compressed path is taken
    at all: on both servers, for a static file (small and large), a return, an error page and a
    proxied echo, the body is gzip data that decompresses to what the uncompressed request gets
    (chunked at HTTP/1.1; until close at HTTP/1.0 under gzip_http_version 1.0)."""
    root = tmp_path / "root"
    build_root(root)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)))
    config = parse_config(str(conf))
    paths = ["/style.css", "/big.txt", "/ret", "/missing", "/px/echo", "/px/c/__chunked/x", "/listing/"]

    async def fetch(port: int, path: str, accept: bool, version: str = "1.1") -> tuple[list[tuple[str, str]], bytes]:
        extra = "Accept-Encoding: gzip\r\n" if accept else ""
        data = f"GET {path} HTTP/{version}\r\nHost: gzip.test\r\n{extra}\r\n".encode()
        resp = await send(data, port, "GET")
        assert resp.status in (200, 404), (path, resp.status, resp.error)
        return resp.headers, resp.body

    with started_targets(config, plan(config), str(tmp_path / "run")) as started:
        for target in started.targets:
            port = target.listen_ports["*:8080"] if "*:8080" in target.listen_ports else \
                next(iter(target.listen_ports.values()))
            for path, version in [(p, "1.1") for p in paths] + [("/v10/style.css", "1.0"), ("/px10/c/x", "1.0")]:
                headers, body = asyncio.run(fetch(port, path, True, version))
                plain_headers, plain = asyncio.run(fetch(port, path, False, version))
                assert header_values(headers, "Content-Encoding") == ["gzip"], (target, path, headers)
                assert header_values(plain_headers, "Content-Encoding") == [], (target, path)
                assert header_values(headers, "Content-Length") == [], (target, path)
                chunked = header_values(headers, "Transfer-Encoding") == ["chunked"]
                assert chunked == (version == "1.1"), (target, path, version, headers)
                assert body[:2] == b"\x1f\x8b" and gzip.decompress(body) != body
                if not path.startswith("/px"):  # the echo shows each request's headers
                    assert gzip.decompress(body) == plain, (target, path)
