"""The headers filter against real nginx: add_header (status filter, ``always``, variables, empty
values, ETag/Last-Modified/Cache-Control/Link handling, inheritance reset at http, server, location
and ``if`` level), expires in every form (off, epoch, max, a time, negative, 0, ``modified``,
``@time`` of day, a variable value, replacing a proxied Expires/Cache-Control) and add_trailer
(static files, autoindex, returns, error pages, proxied length and chunked bodies, HTTP/1.0, HEAD), on every
kind of response: static files (200, 206, 304, 412, 416, the 301 for a directory), ``return``
(200, 201, 204, 301, 302, 303, 307, 308, 400, 404, 500), built-in error pages, error_page targets
(URI, =200, named, intercepted), the proxy's auto-redirect and proxied responses (200, passed-through
4xx/5xx). ``server_tokens off`` is set too (its token is normalised: shadow/compare.py rule 2).
Expires and max-age are compared relative to Date (shadow/compare.py rule 6).
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
    root ROOT;
    server_tokens off;
    types { text/html html; text/plain txt; }
    add_header X-Http http-level;
    expires 1h;

    server {
        listen 8080;
        server_name headers.test;
        add_header X-Server srv;
        add_header X-Server-Always "srv always" always;

        location / { }
        location /files/ { expires 30d; add_header X-Loc loc; add_header X-Always yes always; }
        location /epoch/ { alias ROOT/files/; expires epoch; }
        location /max/ { alias ROOT/files/; expires max; add_header Cache-Control public; }
        location /neg/ { alias ROOT/files/; expires -1; }
        location /zero/ { alias ROOT/files/; expires 0; }
        location /off/ { alias ROOT/files/; expires off; }
        location /plus/ { alias ROOT/files/; expires +2d; }
        location /mod/ { alias ROOT/files/; expires modified 1h; }
        location /modlong/ { alias ROOT/files/; expires modified 10y; }
        location /modneg/ { alias ROOT/files/; expires modified -1h; }
        location /daily/ { alias ROOT/files/; expires @15h30m; }
        location /var/ { alias ROOT/files/; expires $arg_e; }
        location /varmod/ { alias ROOT/files/; expires modified $arg_e; }
        location /modret/ { expires modified 1h; return 200 "no file\\n"; }
        location /special/ {
            alias ROOT/files/;
            add_header Cache-Control no-store;
            add_header Link "</style.css>; rel=preload";
            add_header X-Multi one;
            add_header X-Multi two;
            add_header x-lower-case "Mixed Case";
        }
        location /etag/ { alias ROOT/files/; add_header ETag '"custom"'; add_header Last-Modified ""; }
        location /etag2/ { alias ROOT/files/; add_header Last-Modified "Wed, 01 Jan 2020 00:00:00 GMT"; add_header ETag ""; }
        location /vars/ {
            add_header X-Uri $uri;
            add_header X-Arg $arg_v;
            add_header X-Both "u=$uri v=$arg_v" always;
            add_header X-Empty "";
            return 200 "vars\\n";
        }
        location /ret/ {
            add_header X-Ret ret;
            add_header X-Ret-Always ret always;
            location = /ret/200 { return 200 "ok\\n"; }
            location = /ret/201 { return 201 "created\\n"; }
            location = /ret/204 { return 204; }
            location = /ret/301 { return 301 /target; }
            location = /ret/302 { return 302 http://example.com/x; }
            location = /ret/303 { return 303 /target; }
            location = /ret/307 { return 307 /target; }
            location = /ret/308 { return 308 /target; }
            location = /ret/400 { return 400 "bad\\n"; }
            location = /ret/404 { return 404; }
            location = /ret/500 { return 500; }
            location = /ret/202 { return 202 "accepted\\n"; }
            location = /ret/empty { return 200; }
        }
        location /nested/ {
            add_header X-Outer outer;
            location /nested/inner/ { return 200 "inner\\n"; }
            location /nested/own/ { add_header X-Own own; return 200 "own\\n"; }
        }
        location /if/ {
            add_header X-Loc loc;
            add_header X-Loc-Always loc always;
            if ($arg_x) { add_header X-If if-x; }
            if ($arg_y) { set $seen y; }
            if ($arg_z) { expires epoch; }
            return 200 "if\\n";
        }
        location /ifstatic/ {
            alias ROOT/files/;
            add_header X-Loc loc;
            if ($arg_x) { add_header X-If if-x always; }
        }
        location /errp/ { add_header X-Err e always; add_header X-Err-Plain e; error_page 404 /target.txt; }
        location /errp200/ { add_header X-Err e; error_page 404 =200 /target.txt; }
        location /errnamed/ { error_page 404 @named; }
        location @named { add_header X-Named n; add_header X-Named-Always n always; return 200 "named\\n"; }
        location = /target.txt { add_header X-Target t; add_header X-Target-Always ta always; expires modified 1h; }
        location /noerr/ { add_header X-Plain p; }
        location /errurl/ { add_header X-U u; error_page 404 http://example.com/nf; }
        location /rewrite/ { add_header X-Rw rw; rewrite ^/rewrite/(.*)$ /files/$1 redirect; }
        location /proxy/ {
            proxy_pass http://127.0.0.1:9001;
            add_header X-P p;
            add_header X-P-Always pa always;
            add_header Cache-Control extra;
            expires 1h;
        }
        location /proxyetag/ { proxy_pass http://127.0.0.1:9001; add_header ETag '"mine"'; add_header Last-Modified ""; }
        location /proxymod/ { proxy_pass http://127.0.0.1:9001; expires modified 1d; }
        location /proxynone/ { proxy_pass http://127.0.0.1:9001; }
        location /small/ {
            proxy_pass http://127.0.0.1:9001;
            client_max_body_size 10;
            add_header X-Small s;
            add_header X-Small-Always sa always;
        }
        location /down/ { proxy_pass http://127.0.0.1:9002; add_header X-D d; add_header X-D-Always da always; }
        location /downpage/ { proxy_pass http://127.0.0.1:9002; error_page 502 =200 @named; }
        location /intercept/ {
            proxy_pass http://127.0.0.1:9001;
            proxy_intercept_errors on;
            error_page 503 /target.txt;
            add_header X-I i always;
        }
        location /trail/ {
            alias ROOT/files/;
            add_trailer X-T t;
            add_trailer X-T-Always ta always;
            add_trailer X-T-Empty "";
            add_header X-H h;
        }
        location /trailindex/ { alias ROOT/files/; autoindex on; add_trailer X-T t; add_header X-H h; }
        location /trailret/ { add_trailer X-T "$uri"; return 200 "trail\\n"; }
        location /trailalways/ { add_trailer X-T-Always ta always; return 404; }
        location /trailempty/ { add_trailer X-T-Empty ""; return 200 "empty trailers\\n"; }
        location /trailproxy/ { proxy_pass http://127.0.0.1:9001; add_trailer X-T t; add_trailer X-TA ta always; }
    }

    server {
        listen 8081;
        server_name inherit.test;
        expires epoch;
        location /own/ { add_header X-Own own; }
        location /exp/ { expires off; }
        location /files/ { }
    }

    server {
        listen 8080;
        server_name second.test;
        location / { return 200 "second\\n"; }
    }
}
"""

MTIME = 1_700_000_000


def build_root(root: Path) -> None:
    files = {
        "index.html": "<h1>home</h1>\n",
        "target.txt": "custom target page\n",
        "files/a.txt": "abcdefghijklmnopqrstuvwxyz",
        "files/page.html": "<p>page</p>\n",
        "files/empty.txt": "",
        "files/sub/index.html": "sub\n",
        "own/a.txt": "own\n",
        "exp/a.txt": "exp\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "files" / "big.bin").write_bytes(bytes(range(256)) * 4096 * 2)  # 2 MiB: sent from the file
    for path in [root, *root.rglob("*")]:
        os.utime(path, (MTIME, MTIME))


ETAG = '"6553f100-1a"'
STATIC = ("/files/a.txt", "/epoch/a.txt", "/max/a.txt", "/neg/a.txt", "/zero/a.txt", "/off/a.txt", "/plus/a.txt",
          "/mod/a.txt", "/modlong/a.txt", "/modneg/a.txt", "/daily/a.txt", "/special/a.txt", "/etag/a.txt",
          "/etag2/a.txt")


def header_requests(plan: Plan) -> list[Request]:
    main, other = list(plan.listens)[:2]
    host = "headers.test"
    out: list[Request] = []

    def add(path: str, label: str = "", **kwargs: object) -> None:
        out.append(get(main, path, host, label or f"{kwargs.get('method', 'GET')} {path}", **kwargs))  # type: ignore[arg-type]

    # Static files in every expires form: 200, HEAD, 304, 206, 416, 412, 404, 405, the 301 for a directory.
    for path in STATIC:
        add(path)
        add(path, method="HEAD")
        add(path, f"304 {path}", extra=(("If-None-Match", ETAG),))
        add(path, f"206 {path}", extra=(("Range", "bytes=0-4"),))
        add(path, f"416 {path}", extra=(("Range", "bytes=100-200"),))
    for path in ("/files/", "/files/sub", "/files/missing", "/files/page.html", "/files/empty.txt", "/files/big.bin",
                 "/", "/index.html", "/nothing", "/epoch/missing", "/special/sub", "/special/missing"):
        add(path)
    add("/files/a.txt", "412 /files/a.txt", extra=(("If-Match", '"nope"'),))
    add("/files/a.txt", "405 PUT", method="PUT")
    add("/files/a.txt", "HTTP/1.0", version="1.0")
    add("/files/a.txt", "multipart 206", extra=(("Range", "bytes=0-1,4-5"),))
    # expires with a variable, plain and "modified".
    for value in ("1h", "epoch", "max", "off", "bogus", "@1h", "@25h", "-5m", "0", "+2d", "1d12h", "30", "5ms", ""):
        add(f"/var/a.txt?e={value}")
        add(f"/varmod/a.txt?e={value}")
    add("/modret/x")
    # add_header forms.
    for query in ("", "?v=1", "?v=", "?v=a%0Db"):
        add(f"/vars/x{query}")
    # return with each status, GET and HEAD.
    for code in ("200", "201", "202", "204", "301", "302", "303", "307", "308", "400", "404", "500", "empty"):
        add(f"/ret/{code}")
        add(f"/ret/{code}", method="HEAD")
    add("/ret/other-404")
    # Inheritance: nested locations, if blocks, a server without add_header, a location with expires off.
    add("/nested/inner/x")
    add("/nested/own/x")
    add("/nested/x")
    for query in ("", "?x=1", "?y=1", "?x=1&y=1", "?z=1", "?x=1&z=1", "?y=1&x=1"):
        add(f"/if/{query}")
    for query in ("", "?x=1"):
        add(f"/ifstatic/a.txt{query}")
        add(f"/ifstatic/missing{query}")
    for path in ("/own/a.txt", "/own/missing", "/exp/a.txt", "/files/a.txt", "/files/missing", "/nolocation", "/"):
        out.append(get(other, path, "inherit.test", f"inherit.test {path}"))
    # Errors before a server is chosen: the default server's "always" headers.
    out.append(get(main, "/files/a.txt", None, "400: HTTP/1.1 without Host"))
    add("/files/a.txt", "400: two Host headers", extra=(("Host", "other.test"),))
    add("/../../x", "400: a URI above the root")
    out.append(get(other, "/files/a.txt", None, "400 on a server without add_header"))
    add("/a b", "400: a space in the request line")
    add("/files/a.txt", "400: a header without a colon", extra=(("Broken header", ""),))
    # Errors found once the head is read (ngx_http_process_request_header) are answered by the
    # server the Host chose: second.test has no "always" headers, the default server has.
    for vhost in (host, "second.test"):
        out.append(get(main, "/files/a.txt", vhost, f"405: TRACE to {vhost}", method="TRACE"))
        out.append(get(main, "/files/a.txt", vhost, f"501: Transfer-Encoding gzip to {vhost}",
                       extra=(("Transfer-Encoding", "gzip"),)))
        out.append(get(main, "/../../x", vhost, f"400: a URI above the root, Host {vhost}"))
    # Error pages: built-in, error_page URI, =200, named.
    for path in ("/errp/missing", "/errp200/missing", "/errnamed/missing", "/noerr/missing", "/target.txt",
                 "/errp/missing?x", "/noerr/", "/errurl/missing", "/rewrite/a.txt"):
        add(path)
        add(path, method="HEAD")
    add("/errp200/missing", "error_page =200 and If-None-Match", extra=(("If-None-Match", ETAG),))
    add("/errp200/missing", "error_page =200 and Range", extra=(("Range", "bytes=0-4"),))
    # Proxied: plain, with the upstream's Expires/Cache-Control/Last-Modified/ETag, passed-through
    # errors, chunked, intercepted, the auto-redirect of /proxy.
    for path in ("/proxy/a", "/proxy/__cache/a", "/proxy/__status/404", "/proxy/__status/503", "/proxy/__chunked/a",
                 "/proxy/__cache/__status/500", "/proxyetag/__cache/a", "/proxyetag/a", "/proxymod/__cache/a",
                 "/proxymod/a", "/proxynone/__cache/a", "/intercept/__status/503", "/intercept/a", "/proxy",
                 "/down/a", "/downpage/a"):
        add(path)
    add("/proxy/__cache/a", "HEAD proxied", method="HEAD")
    for size in (5, 20):
        out.append(Request(method="POST", target="/small/a", headers=(("Host", host), ("Content-Length", str(size))),
                           listen=main, group="hand-picked", label=f"POST {size} bytes, limit 10", body=b"x" * size))
    add("/proxy/__cache/a", "HTTP/1.0 proxied", version="1.0")
    # Trailers: files, returns, error pages, proxied (length and chunked), HTTP/1.0, HEAD, 304.
    for path in ("/trail/a.txt", "/trail/empty.txt", "/trail/big.bin", "/trail/missing", "/trail/sub",
                 "/trailret/x", "/trailalways/x", "/trailempty/x", "/trailproxy/a", "/trailproxy/__chunked/a",
                 "/trailproxy/__status/502", "/trail/", "/trailindex/", "/trailindex/sub/"):
        add(path)
        add(path, f"HTTP/1.0 {path}", version="1.0")
        add(path, method="HEAD")
    add("/trail/a.txt", "304 trailer", extra=(("If-None-Match", ETAG),))
    add("/trail/a.txt", "206 trailer", extra=(("Range", "bytes=0-4"),))
    return out


def test_headers_filter_matches_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_root(root)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)))
    report = shadow(str(conf), str(tmp_path / "run"), header_requests, max_requests=40,
                    refuse={"127.0.0.1:9002"})
    assert_equivalent(report, 250)
    # Order-sensitive too: the added headers come after nginx's own, before the range filter's.
    orders = [(e.get("curl"), n) for e in report.diffs for n in e.get("notes") or [] if n["field"].endswith(".order")]
    assert not orders, orders[:3]
