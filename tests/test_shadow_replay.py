"""Access-log and HAR replay (shadow/replay.py) on files the tests make: the access log real nginx
wrote during a shadow run is read back by its log_format and replayed against nginx and newproxy;
a HAR file built from requests with headers and bodies is replayed the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nginx_parser import ConfigError, parse_config
from shadow.replay import COMBINED, from_access_log, from_har, line_pattern
from shadow.rewire import plan
from tests.differential import assert_equivalent, shadow

CONF = """
events {}
http {
    log_format detailed escape=json '{"r":"$request","host":"$host","port":"$server_port",'
                                    '"ua":"$http_user_agent","lang":"$http_accept_language"}';
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name shop.test;
        access_log LOGDIR/combined.log;
        access_log LOGDIR/detailed.log detailed;
        location / { proxy_pass http://app; }
        location /static/ { return 200 "static $uri\\n"; }
        location = /old { return 301 /new; }
    }
    server {
        listen 8080;
        server_name api.test;
        access_log LOGDIR/combined.log;
        access_log LOGDIR/detailed.log detailed;
        location / { proxy_pass http://app/api/; }
    }
}
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "nginx.conf"
    logs = tmp_path / "logs"
    logs.mkdir()
    path.write_text(CONF.replace("LOGDIR", str(logs)))
    return path


def test_line_pattern_reads_combined_with_escapes() -> None:
    pattern, names = line_pattern(COMBINED)
    line = '127.0.0.1 - - [27/Nov/2026:07:00:00 +0000] "GET /a\\x22b HTTP/1.1" 200 5 "-" "curl/8 \\x5Cx"'
    match = pattern.fullmatch(line)
    assert match is not None
    values = dict(zip(names, match.groups()))
    assert values["request"] == "GET /a\\x22b HTTP/1.1" and values["http_user_agent"] == "curl/8 \\x5Cx"


def test_unknown_log_format_is_a_config_error(tmp_path: Path) -> None:
    config = parse_config(str(_config(tmp_path)))
    with pytest.raises(ConfigError, match='unknown log format "nope"'):
        from_access_log(tmp_path / "missing.log", config, plan(config), "nope")


def test_access_log_written_by_nginx_replays_equivalently(tmp_path: Path) -> None:
    path = _config(tmp_path)
    first = shadow(str(path), str(tmp_path / "run1"), max_requests=120)
    assert_equivalent(first, 50)
    # The rewired nginx wrote its logs into its own directory, one file per original path.
    logs = sorted((tmp_path / "run1" / "nginx").glob("access-*combined.log*"))
    detailed_logs = sorted((tmp_path / "run1" / "nginx").glob("access-*detailed.log*"))
    assert logs and detailed_logs, sorted(p.name for p in (tmp_path / "run1" / "nginx").iterdir())
    config = parse_config(str(path))
    the_plan = plan(config)
    combined = from_access_log(logs[0], config, the_plan)
    detailed = from_access_log(detailed_logs[0], config, the_plan, "detailed")
    lines = logs[0].read_text(encoding="latin-1").splitlines()
    assert len(combined.requests) + sum(int(n.split(": ")[1].split()[0]) for n in combined.notes
                                        if "not read" in n) == len(lines)
    assert len(combined.requests) >= 0.9 * len(lines)
    # The detailed format logs the Host and the port: the api.test server's requests go back to it.
    hosts = {dict(r.headers).get("Host") for r in detailed.requests}
    assert {"shop.test", "api.test"} <= hosts
    # Both logs saw the same requests, in the same order.
    assert [(r.method, r.target) for r in combined.requests] == [(r.method, r.target) for r in detailed.requests]
    for replayed in (combined, detailed):
        report = shadow(str(path), str(tmp_path / f"replay-{len(replayed.requests)}-{id(replayed)}"),
                        requests=lambda _plan, r=replayed: r.requests, max_requests=0, guided=False)
        assert_equivalent(report, len(replayed.requests))


def test_har_replays_methods_headers_and_bodies(tmp_path: Path) -> None:
    path = _config(tmp_path)
    entries = []
    for i, (method, url, body) in enumerate([
        ("GET", "http://shop.test:8080/products?page=2", ""),
        ("POST", "http://shop.test:8080/cart", '{"item": 7}'),
        ("PUT", "http://api.test:8080/users/3", "name=x"),
        ("DELETE", "http://api.test/users/3", ""),
        ("GET", "http://shop.test/static/app.js", ""),
        ("GET", "http://shop.test/old", ""),
        ("GET", "https://elsewhere.test/", ""),
    ]):
        request = {"method": method, "url": url, "httpVersion": "HTTP/1.1",
                   "headers": [{"name": ":authority", "value": "x"}, {"name": "Accept-Language", "value": f"fr-{i}"},
                               {"name": "Connection", "value": "keep-alive"}]}
        if body:
            request["postData"] = {"mimeType": "application/json", "text": body}
        entries.append({"request": request, "response": {"status": 200}})
    har = tmp_path / "capture.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
    config = parse_config(str(path))
    replayed = from_har(har, config, plan(config))
    assert [r.method for r in replayed.requests] == ["GET", "POST", "PUT", "DELETE", "GET", "GET", "GET"]
    post = replayed.requests[1]
    assert post.body == b'{"item": 7}' and ("Content-Length", "11") in post.headers
    assert all(not name.startswith(":") and name != "Connection" for r in replayed.requests for name, _ in r.headers)
    report = shadow(str(path), str(tmp_path / "har"), requests=lambda _plan: replayed.requests, max_requests=0,
                    guided=False)
    assert_equivalent(report, len(replayed.requests))
    # What the upstream got for the POST carried the body, on both sides (they are equal).
    assert report.upstream_requests >= 4


def test_not_a_har_file_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path)
    config = parse_config(str(path))
    bad = tmp_path / "bad.har"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a HAR file"):
        from_har(bad, config, plan(config))


def test_cli_replays_a_har_file_only(tmp_path: Path) -> None:
    from shadow.cli import main

    path = _config(tmp_path)
    har = tmp_path / "one.har"
    har.write_text(json.dumps({"log": {"entries": [
        {"request": {"method": "GET", "url": f"http://shop.test:8080/p{i}", "httpVersion": "HTTP/1.1",
                     "headers": []}} for i in range(5)]}}))
    out = tmp_path / "report.json"
    code = main(["shadow", str(path), "--har", str(har), "--max-requests", "0", "--no-guided", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["requests"] == 5 and report["equivalent"] == 5


def test_cli_missing_replay_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shadow.cli import main

    path = _config(tmp_path)
    assert main(["shadow", str(path), "--access-log", str(tmp_path / "nope.log")]) == 1
    assert "nope.log: no such file" in capsys.readouterr().err
    assert main(["mirror", str(path), "--listen", "nowhere"]) == 1
    assert "expected HOST:PORT" in capsys.readouterr().err
