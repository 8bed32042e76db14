"""try_files against real nginx, where newproxy can follow it: files checked on disk under root,
then the fallback (=code, a named location, a URI with or without args). The files that exist sit in
locations that proxy, where nginx proxies with the file's name as $uri (serving files is in
test_differential_static.py)."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    default_type text/plain;
    root ROOT;
    server {
        listen 8080;
        server_name try.test;
        error_page 404 /errors/404;

        location /errors/ { internal; return 200 "error page $uri\\n"; }
        location /app/ {
            try_files $uri $uri/ @backend;
        }
        location @backend {
            proxy_pass http://127.0.0.1:9001;
        }
        location /code/ {
            try_files /nonexistent$uri =404;
        }
        location /code2/ {
            try_files /nonexistent$uri =418;
        }
        location /php/ {
            try_files $uri /index-target?q=$uri&$args;
        }
        location /plain/ {
            try_files $uri /index-target;
        }
        location = /index-target {
            return 200 "fallback uri=$uri args=$args request_uri=$request_uri\\n";
        }
        location /exists/ {
            try_files $uri $uri/ /index-target;
            proxy_pass http://127.0.0.1:9001;
        }
        location /maint/ {
            if (-f $document_root/exists/file.txt) {
                return 503 "maintenance under $document_root\\n";
            }
            return 200 "open\\n";
        }
        location /front/ {
            if (!-e $request_filename) {
                rewrite ^ /index-target last;
            }
            proxy_pass http://127.0.0.1:9001;
        }
        location /elsewhere/ {
            root /nonexistent-root;
            if (-d $document_root) {
                return 200 "has a root\\n";
            }
            return 200 "no such root $request_filename\\n";
        }
        location / {
            return 200 "root $uri\\n";
        }
    }
}
"""


def try_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    paths = ["/app/x", "/app/x?a=1", "/app/dir/", "/code/x", "/code2/x", "/php/x?y=1", "/php/x", "/plain/x?y=1",
             "/exists/file.txt", "/exists/file.txt?k=v", "/exists/sub", "/exists/sub/", "/exists/none",
             "/exists/file.txt/", "/exists/sub/inner.txt", "/maint/x", "/front/x?a=1", "/front/y?a=1",
             "/elsewhere/y"]
    return [get(listen, path, "try.test", f"GET {path}") for path in paths]


def test_try_files_matches_nginx(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "exists" / "sub").mkdir(parents=True)
    (root / "exists" / "file.txt").write_text("x")
    (root / "exists" / "sub" / "inner.txt").write_text("y")
    (root / "front").mkdir()
    (root / "front" / "x").write_text("z")
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)))
    report = shadow(str(conf), str(tmp_path / "run"), try_requests, max_requests=100)
    assert_equivalent(report, minimum=100)
