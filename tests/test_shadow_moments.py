"""Headers made from per-response variables are masked by the shadow harness (shadow/moments.py),
with the reason in the report; everything else about them is still compared."""

from __future__ import annotations

from pathlib import Path

from nginx_parser import parse_config
from shadow.moments import MASK, moment_rules
from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name t.test;
        add_header X-Time $request_time always;
        add_header X-Conn "c=${connection}";
        add_header X-Uri $uri;
        add_header X-Echo "[$host|$uri|$args|$request_method]" always;
        location / {
            proxy_set_header X-Start "t=${msec}";
            proxy_pass http://app;
        }
        location = /r { return 200 "r\\n"; }
    }
}
"""


def test_rules_name_each_header_made_from_a_per_response_variable(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    rules = {rule.header: rule for rule in moment_rules(parse_config(str(path))).rules}
    assert set(rules) == {"X-Time", "X-Conn", "X-Start"}  # not X-Uri: $uri is the request's
    assert rules["X-Conn"].mask == MASK and "$connection" in rules["X-Conn"].reason
    assert f"{path}:" in rules["X-Time"].reason


def test_shadow_masks_them_and_says_so(tmp_path: Path) -> None:
    """$connection numbers differ between the two servers and $request_time/$msec between any two
    responses: without the masks every request below would differ. The generated requests include
    400s answered before a server is chosen (no Host): their ``always`` headers are rendered with
    what nginx knows of the request (X-Echo), as nginx does."""
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)

    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        return [get(listen, target, "t.test", f"moments {target}") for target in ("/r", "/a", "/b?x=1", "/r")]

    report = shadow(str(path), str(tmp_path / "run"), requests, max_requests=40)
    assert_equivalent(report, 4)
    assert report.statuses.get("400", 0) >= 1, report.statuses
    assert sum(note.startswith("masked: ") for note in report.notes) == 3, report.notes
