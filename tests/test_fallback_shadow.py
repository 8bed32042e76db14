"""The strangler fallback end to end: nginx on the original config vs newproxy on its translation
with ``fallback``, whose untranslatable locations are proxied to a third target, legacy nginx on the
original config (shadow.runner ``fallback=True``). 0 differences, and legacy's access log proves it
served exactly the requests of the fallback locations; without the fallback the same run reports
the gaps and the differences they cause.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from shadow.cli import main
from shadow.rewire import Plan
from shadow.runner import run_shadow
from shadow.traffic import Request
from tests.differential import assert_equivalent, get

CONFIG = """\
events {}
http {
    upstream backend { server 127.0.0.1:9001; }
    server {
        listen 127.0.0.1:8080;
        server_name example.com;
        location / { proxy_pass http://backend; }
        # sub_filter is not translated: the body nginx returns differs from the upstream's.
        location /legacy/ {
            sub_filter '"upstream"' '"LEGACY"';
            sub_filter_once off;
            sub_filter_types application/json;
            proxy_set_header Accept-Encoding "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Seen "host=$http_host addr=$remote_addr";
            proxy_pass http://backend;
        }
        # FastCGI is not translated: nginx answers 502 (the harness's FastCGI address refuses).
        location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; }
        # Not translated; legacy answers from the request as the client sent it.
        location /ssi/ { ssi on; return 200 "host=$host uri=$request_uri args=$args\\n"; }
        location /old { rewrite ^/old/(.*)$ /new/$1 last; }
        location /to-php { rewrite ^ /x.php last; }
        location /new/ { return 200 "new $uri\\n"; }
    }
    # A gap at server level: the whole server goes to legacy. Its redirects name the server, not
    # the Host, and carry legacy's port until newproxy puts the client's back.
    server {
        listen 127.0.0.1:8081;
        server_name whole.example;
        server_name_in_redirect on;
        access_log whole.log;
        location /r/ { return 302 /target; }
        location / { proxy_pass http://backend; }
    }
}
"""


def _extra(plan: Plan) -> list[Request]:
    listen, whole = list(plan.listens)
    chunked = (("Transfer-Encoding", "chunked"),)
    return [
        get(listen, "/legacy", "example.com:8080", "auto-redirect, Host with port"),
        get(listen, "/legacy", None, "auto-redirect, no Host", version="1.0"),
        get(listen, "/legacy/x", None, "no Host, HTTP/1.0", version="1.0"),
        get(listen, "/legacy/a%20b/../c?x=%41&y", "example.com", "raw target"),
        get(listen, "/legacy/x", "Example.COM", "forwarded-for",
            extra=(("X-Forwarded-For", "10.1.1.1"), ("x-forwarded-for", "10.2.2.2"))),
        dataclasses.replace(get(listen, "/legacy/x", "example.com", "chunked body", method="POST", extra=chunked),
                            body=b"4\r\nab=c\r\n5\r\n&d=ef\r\n0\r\n\r\n"),
        get(listen, "/to-php", "example.com", "rewrite into a fallback location"),
        get(listen, "/old/x", "example.com", "translated rewrite"),
        get(listen, "/ssi/x?q=%41", "Example.com:8080", "return in a fallback location"),
        get(listen, "/legacy/x", "example.com", "keep-alive 1.0", version="1.0",
            extra=(("Connection", "keep-alive"),)),
        get(whole, "/r/x", "other.example", "server_name_in_redirect"),
        get(whole, "/r", "whole.example", "auto-redirect, whole server"),
        get(whole, "/r/x", None, "server_name_in_redirect, no Host", version="1.0"),
    ]


def _fallback_target(line: str) -> bool:
    """Whether nginx served the request line (from an access log) in a fallback location."""
    match = re.search(r'"[A-Z]+ (\S+) HTTP/1\.[01]"', line)
    assert match is not None, line
    path = match.group(1).partition("?")[0]
    # "/legacy" is the auto-redirect of a location with proxy_pass; "/ssi" (no *_pass) is "/"'s.
    return path.startswith(("/legacy/", "/ssi/", "/to-php")) or path == "/legacy" or path.endswith(".php")


def _request_lines(log: Path, skip_status: tuple[str, ...] = ()) -> Counter[str]:
    lines: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        match = re.search(r'("[A-Z]+ \S+ HTTP/1\.[01]") (\d{3})', line)
        assert match is not None, line
        if match.group(2) not in skip_status:
            lines[match.group(1)] += 1
    return lines


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text(CONFIG)
    return path


def test_fallback_locations_served_by_legacy(conf: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    report = run_shadow(str(conf), against="newproxy", workdir=str(work), max_requests=220, fallback=True,
                        extra_requests=_extra)
    assert_equivalent(report, 150)
    groups = {name: counts.requests for name, counts in report.by_group.items()}
    assert all(groups[g] > 0 for g in groups if "legacy" in g or "php" in g or "ssi" in g), groups
    # Legacy served exactly the requests nginx served in the fallback locations, as the same
    # request lines (raw targets, versions), and nothing else.
    legacy = _request_lines(work / "legacy" / "access.log")
    reference = _request_lines(work / "nginx" / "access.log")
    expected = Counter({line: n for line, n in reference.items() if _fallback_target(line)})
    assert legacy == expected, (legacy - expected, expected - legacy)
    assert report.legacy_requests == sum(legacy.values()) >= 40
    # The whole second server is legacy's, but for what newproxy rejects before choosing a server's
    # location, as nginx does (a 400 for a bad Host or request, a 405 for TRACE).
    whole_legacy = _request_lines(work / "legacy" / "access-whole.log")
    assert whole_legacy == _request_lines(work / "nginx" / "access-whole.log", skip_status=("400", "405"))
    assert sum(whole_legacy.values()) >= 20
    # The summary of a fallback run: those locations are caveats served by legacy, not gaps.
    items = {(i["directive"], i["level"]) for i in report.gaps["items"]}
    assert {("sub_filter", "caveat"), ("fastcgi_pass", "caveat"), ("ssi", "caveat"),
            ("server_name_in_redirect", "caveat")} <= items
    assert report.gaps["unsupported"] == 0
    assert all(i["reason"].startswith("served by legacy nginx via fallback") for i in report.gaps["items"]
               if i["directive"] in ("sub_filter", "fastcgi_pass", "ssi"))
    # What was observed: 502s from legacy's FastCGI, legacy's 301 with the client's port.
    assert report.statuses.get("502", 0) > 0 and report.statuses.get("301", 0) > 0


def test_without_fallback_the_same_run_reports_gaps(conf: Path, tmp_path: Path) -> None:
    report = run_shadow(str(conf), against="newproxy", workdir=str(tmp_path / "run"), max_requests=120,
                        extra_requests=_extra)
    assert report.legacy_requests is None
    items = {(i["directive"], i["level"]) for i in report.gaps["items"]}
    assert {("sub_filter", "unsupported"), ("fastcgi_pass", "unsupported"), ("ssi", "unsupported")} <= items
    different = {name for name, counts in report.by_group.items() if counts.different}
    assert any("/legacy/" in name for name in different), different
    assert any(".php" in name for name in different), different
    assert report.by_label["server_name_in_redirect"].different == 1  # the Host instead of the server name
    # The translated locations are equivalent either way.
    assert not any(name.endswith(("location /old", "location /new/")) for name in different), different


def test_shadow_cli_fallback(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert main(["shadow", str(conf), "--fallback", "--max-requests", "40", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["legacy_requests"] > 0 and data["different"] == 0 and data["requests"] >= 40
    assert "the legacy nginx target served" in capsys.readouterr().out
    # The fallback is a translation setting: shadowing nginx against nginx has none.
    assert main(["shadow", str(conf), "--fallback", "--against", "nginx", "--max-requests", "5"]) == 2
    assert "the strangler fallback is shadowed against newproxy only" in capsys.readouterr().err
