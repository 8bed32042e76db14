"""A conf.d snippet (no main/http/events around it) converts and shadows as it is: its context is detected."""

from __future__ import annotations

from pathlib import Path

from shadow.cli import main
from tests.differential import assert_equivalent, shadow

SNIPPET = """\
upstream app { server 127.0.0.1:9300; }
server {
    listen 8080;
    server_name snippet.test;
    location = /ping { return 200 "pong\\n"; }
    location / { proxy_pass http://app; }
}
"""


def test_http_context_snippet_is_equivalent(tmp_path: Path) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text(SNIPPET)
    report = shadow(str(conf), str(tmp_path / "run"), max_requests=120, context=None)
    assert_equivalent(report, minimum=50)


def test_snippet_converts_with_detected_context(tmp_path: Path) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text(SNIPPET)
    out = tmp_path / "proxy.yaml"
    assert main(["convert", str(conf), "-o", str(out)]) == 0
    assert "snippet.test" in out.read_text()
    assert main(["convert", str(conf), "--context", "main", "-o", str(out)]) == 1
