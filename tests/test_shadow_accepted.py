"""Accepted differences as data (shadow/accepted.py, --accept) and noise calibration (--calibrate):
both against real nginx. A difference the user accepts, or that two nginx show between themselves,
is reported as a note and not counted; every other difference still is."""

from __future__ import annotations

from pathlib import Path

import pytest

from newproxy.config import NewproxyConfig
from shadow.accepted import AcceptedError, builtin, load
from shadow.cli import main
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    upstream app { server 127.0.0.1:9001; }
    # Through a map, so that the harness's own masks (shadow/moments.py) do not see the random id.
    map $request_id $request_key { default $request_id; }
    server {
        listen 8080;
        server_name acc.test;
        location = /moved { return 301 /new; }
        location = /clock { default_type text/plain; return 200 "now=$msec id=$request_id\\n"; }
        location / { proxy_pass http://app; proxy_set_header X-Request-Id $request_key; }
    }
}
"""


def _conf(tmp_path: Path) -> Path:
    path = tmp_path / "nginx.conf"
    path.write_text(CONF)
    return path


def _requests(plan: object) -> list:
    listen = next(iter(plan.listens))  # type: ignore[attr-defined]
    return [get(listen, "/moved", "acc.test", "moved"), get(listen, "/clock", "acc.test", "clock"),
            get(listen, "/app/x", "acc.test", "app")]


def redirect_302(config: NewproxyConfig) -> NewproxyConfig:
    config.servers[0].locations[0].rewrite[0].status = 302  # type: ignore[union-attr]
    return config


def test_builtin_rules_are_date_and_server() -> None:
    assert builtin().masks() == {"date": "<date>", "server": "<server>"}


@pytest.mark.parametrize("text, message", [
    ("- header: X\n", "every rule needs a `reason`"),
    ("- header: X\n  field: status\n  reason: r\n", "give either `header` or `field`"),
    ("- field: status\n  reason: r\n  colour: red\n", "unknown key(s) colour"),
    ("- header: X\n  target: /a\n  reason: r\n", "a header rule applies to every request"),
    ("{a: 1}\n", "expected a list of rules"),
])
def test_bad_rules_files_name_the_rule(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "accept.yaml"
    path.write_text(text)
    with pytest.raises(AcceptedError, match=f"{path}.*{message.replace('(', '.').replace(')', '.')}"):
        load(path)


def test_field_and_header_rules_forgive_only_what_they_name(tmp_path: Path) -> None:
    path = _conf(tmp_path)
    # $msec and $request_id differ between any two servers: without rules, /clock and the upstream
    # header differ, and the seeded 302 too.
    plain = shadow(str(path), str(tmp_path / "plain"), _requests, max_requests=0, guided=False,
                   mutate_translation=redirect_302)
    assert plain.different == 3, [e["diffs"] for e in plain.diffs]
    rules = tmp_path / "accept.yaml"
    rules.write_text("""
- header: X-Request-Id
  reason: a random id per request
- field: body
  target: /clock
  reason: the body shows the time and a random id
""")
    accepted = shadow(str(path), str(tmp_path / "accepted"), _requests, max_requests=0, guided=False,
                      mutate_translation=redirect_302, accept=load(rules))
    assert accepted.different == 1  # the seeded 302 is still a difference
    left = [e for e in accepted.diffs if e["verdict"] == "different"]
    assert left[0]["request"]["target"] == "/moved"
    assert any(n["field"].startswith("accepted:body") for e in accepted.diffs for n in e["notes"])


def test_calibration_reports_noise_apart(tmp_path: Path) -> None:
    path = _conf(tmp_path)
    report = shadow(str(path), str(tmp_path / "cal"), _requests, max_requests=0, guided=False, calibrate=True,
                    mutate_translation=redirect_302)
    assert report.calibrated and report.noise == 2  # /clock's body, the upstream's X-Request-Id
    assert report.different == 1  # the 302 never differs between two nginx: it is not noise
    clean = shadow(str(path), str(tmp_path / "clean"), _requests, max_requests=0, guided=False, calibrate=True)
    assert_equivalent(clean, 3)


def test_cli_accept_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _conf(tmp_path)
    assert main(["shadow", str(path), "--accept", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: No such file or directory" in capsys.readouterr().err


def reversed_proxy_headers(config: NewproxyConfig) -> NewproxyConfig:
    proxy = config.servers[0].locations[-1].proxy
    assert proxy is not None
    proxy.headers = list(reversed(proxy.headers))
    return config


def test_header_order_is_a_note_unless_strict(tmp_path: Path) -> None:
    path = _conf(tmp_path)
    rules = tmp_path / "accept.yaml"
    rules.write_text("- header: X-Request-Id\n  reason: random\n")
    requests = lambda plan: _requests(plan)[2:]  # noqa: E731 - the proxied request only
    lenient = shadow(str(path), str(tmp_path / "lenient"), requests, max_requests=0, guided=False,
                     mutate_translation=reversed_proxy_headers, accept=load(rules))
    assert lenient.different == 0 and lenient.noted == 1
    assert any(kind.endswith(".order") for kind in lenient.note_kinds)
    strict = shadow(str(path), str(tmp_path / "strict"), requests, max_requests=0, guided=False,
                    mutate_translation=reversed_proxy_headers, accept=load(rules), strict_order=True)
    assert strict.different == 1


def test_a_config_that_could_reach_real_backends_needs_allow_unsafe(tmp_path: Path) -> None:
    from shadow.runner import HarnessError, run_shadow

    path = tmp_path / "unsafe.conf"
    path.write_text("events {}\nhttp {\n    server {\n        listen 8080;\n"
                    "        location / { proxy_pass http://$http_x_backend; }\n    }\n}\n")
    with pytest.raises(HarnessError, match=rf"{path}:5: proxy_pass http://\$http_x_backend.*--allow-unsafe"):
        run_shadow(str(path), workdir=str(tmp_path / "refused"), max_requests=5)
    assert main(["shadow", str(path), "--max-requests", "5"]) == 2
    # Allowed: it runs (nginx has no resolver for the variable host: it answers 502 without any traffic).
    report = run_shadow(str(path), workdir=str(tmp_path / "allowed"), max_requests=5, guided=False,
                        allow_unsafe=True)
    assert report.requests == 5
