"""The static memo (newproxy/engine/memo.py): whole answers for small settled files, remembered per
request shape and checked against the file on every request. Against real nginx: repeated requests
of every shape the memo keys on give nginx's answers. In the engine: a file changed, removed or
made unreadable is never served from memory, and requests or locations with anything per request
(conditionals, access logs, add_header...) are not remembered."""

from __future__ import annotations

import os
import time
from pathlib import Path

from newproxy.engine.engine import Engine
from newproxy.engine.types import FileResponse, Request, Response
from shadow.rewire import Plan
from shadow.traffic import Request as ShadowRequest
from tests.differential import assert_equivalent, get, shadow
from translator.adapter import load_nginx_config

CONF = """
events {}
http {
    access_log off;
    types { text/html html; text/css css; }
    default_type application/octet-stream;
    server {
        listen 8080;
        server_name memo.test other.test;
        root ROOT;
        location / { }
        location /logged/ { access_log LOGS/access.log; }
        location /headers/ { add_header X-Extra yes; expires 1h; }
    }
}
"""


def _site(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "site"
    for sub in ("", "logged", "headers"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "a.html").write_text(f"<p>{sub or 'root'}</p>\n")
        (root / sub / "b.css").write_text("body{}\n" * 40)
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in [tmp_path, root, *root.rglob("*"), logs]:
        path.chmod(0o777 if path == logs else 0o755 if path.is_dir() else 0o644)
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.replace("ROOT", str(root)).replace("LOGS", str(logs)))
    time.sleep(2.1)  # the file cache (and so the memo) only takes files settled for 2 s
    return conf, root


def _requests(plan: Plan) -> list[ShadowRequest]:
    listen = next(iter(plan.listens))
    out = []
    for path in ("/a.html", "/b.css", "/logged/a.html", "/headers/b.css", "/a.html?x=1"):
        for _ in range(2):  # the second one is the memo's
            out += [
                get(listen, path, "memo.test", "get"),
                get(listen, path, "other.test", "other host"),
                get(listen, path, "memo.test", "head", method="HEAD"),
                get(listen, path, None, "1.0", version="1.0"),
                get(listen, path, "memo.test", "close", extra=(("Connection", "close"),)),
                get(listen, path, "memo.test", "ims", extra=(("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"),)),
                get(listen, path, "memo.test", "range", extra=(("Range", "bytes=0-3"),)),
            ]
    return out


def test_repeated_requests_match_nginx(tmp_path: Path) -> None:
    conf, _ = _site(tmp_path)
    report = shadow(str(conf), str(tmp_path / "run"), _requests, max_requests=40, guided=False)
    assert_equivalent(report, 70)


def _request(target: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Request(method=b"GET", target=target, version=b"1.1", headers=[(b"Host", b"memo.test"), *headers],
                   body=b"", client_addr=("127.0.0.1", 4000), local_addr=("127.0.0.1", 8080))


def _body(engine: Engine, request: Request) -> tuple[int, bytes]:
    """The status and body bytes, read from the file for a FileResponse (a file just written is not
    settled: the IO layer would send it from its descriptor)."""
    answer = engine.handle(request)
    if isinstance(answer, FileResponse):
        try:
            body = b"".join(part if isinstance(part, bytes) else os.pread(answer.fd, part[1], part[0])
                            for part in answer.parts)
        finally:
            os.close(answer.fd)
        return answer.status, body
    assert isinstance(answer, Response), answer
    return answer.status, answer.body


def test_changed_removed_and_per_request_files_are_not_served_from_memory(tmp_path: Path) -> None:
    conf, root = _site(tmp_path)
    engine = Engine(load_nginx_config(str(conf)))
    memo = engine.memo
    assert memo is not None
    assert _body(engine, _request(b"/a.html")) == (200, b"<p>root</p>\n")
    assert len(memo._entries) == 1
    first = engine.handle(_request(b"/a.html"))
    assert isinstance(first, Response) and b"\r\nDate: " in first.head and first.body == b"<p>root</p>\n"
    # Changed (same size, so only mtime/ctime tell): the new bytes at once.
    (root / "a.html").write_text("<p>ROOT</p>\n")
    assert _body(engine, _request(b"/a.html")) == (200, b"<p>ROOT</p>\n")
    # Removed: 404, as nginx.
    (root / "a.html").unlink()
    assert _body(engine, _request(b"/a.html"))[0] == 404
    # Conditionals, access logs and the headers filter are never remembered.
    engine.handle(_request(b"/b.css", (b"If-Modified-Since", b"Sat, 01 Jan 2000 00:00:00 GMT")))
    engine.handle(_request(b"/logged/a.html"))
    engine.handle(_request(b"/headers/b.css"))
    assert all(key[2] not in (b"/logged/a.html", b"/headers/b.css") for key in memo._entries)
    os.utime(root / "b.css")  # ctime moves: the next request takes the phases again
    assert _body(engine, _request(b"/b.css"))[0] == 200
