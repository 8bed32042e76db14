"""Rewiring: listens and upstreams mapped to loopback, harness-owned directives replaced."""

from __future__ import annotations

import subprocess
from pathlib import Path


from nginx_parser import format_tree, parse_config
from nginx_parser.ir import walk
from shadow.rewire import Wiring, plan, rewire

CONF = Path(__file__).parent / "data" / "shadow" / "rewire.conf"


def _wiring(tmp_path: Path, for_nginx: bool = True):  # type: ignore[no-untyped-def]
    config = parse_config(str(CONF))
    the_plan = plan(config)
    wiring = Wiring(
        workdir=str(tmp_path),
        listen_ports={name: 41000 + i for i, name in enumerate(the_plan.listens)},
        upstream_addrs={name: f"127.0.0.1:{42000 + i}" for i, name in enumerate(the_plan.upstreams)},
        for_nginx=for_nginx,
        conf_dir=str(CONF.parent),
    )
    return config, the_plan, wiring


def test_plan_names_listens_and_upstreams(tmp_path: Path) -> None:
    _config, the_plan, _ = _wiring(tmp_path)
    assert list(the_plan.listens) == ["*:80", "[::]:80", "127.0.0.1:8080"]
    assert list(the_plan.upstreams) == [
        "app1.internal:8080",
        "app2.internal:80",
        "unix:/run/app.sock",
        "legacy.internal:8081",
        "secure.internal:443",
        "127.0.0.1:9000",
    ]
    assert the_plan.upstreams["127.0.0.1:9000"].refuse
    assert not the_plan.upstreams["legacy.internal:8081"].refuse
    notes = "\n".join(the_plan.notes)
    assert "proxy_pass with variables" in notes and "https upstream" in notes and "fastcgi_pass" in notes


def _by_name(tree, name):  # type: ignore[no-untyped-def]
    return [d for d in walk(tree) if d.name == name]


def test_rewired_tree(tmp_path: Path) -> None:
    config, the_plan, wiring = _wiring(tmp_path)
    tree = rewire(config, the_plan, wiring)
    listens = [d.args for d in _by_name(tree, "listen")]
    # Servers sharing "listen 80" share a port; the listen-less server gets *:80 written out.
    assert listens == [
        ["127.0.0.1:41000", "default_server"],
        ["127.0.0.1:41001"],
        ["127.0.0.1:41000"],
        ["127.0.0.1:41002"],
        ["127.0.0.1:41000"],
    ]
    assert [d.args for d in _by_name(tree, "server") if d.block is None] == [
        ["127.0.0.1:42000", "weight=2"],
        ["127.0.0.1:42001", "max_fails=3"],
        ["127.0.0.1:42002", "backup"],
    ]
    assert [d.args[0] for d in _by_name(tree, "proxy_pass")] == [
        "http://backend",
        "http://127.0.0.1:42003/y/",
        "http://127.0.0.1:42004/",
        "http://$host",
        "http://127.0.0.1:42000",
    ]
    assert [d.args for d in _by_name(tree, "fastcgi_pass")] == [["127.0.0.1:42005"]]
    main = {d.name: d.args for d in tree if d.block is None}
    assert main["pid"] == [f"{tmp_path}/nginx.pid"]
    assert main["worker_processes"] == ["1"]
    assert "daemon" not in main
    assert [d.args[0] for d in _by_name(tree, "error_log")] == [f"{tmp_path}/error.log"]
    assert [d.args for d in _by_name(tree, "access_log")] == [
        [f"{tmp_path}/access-var_log_nginx_access.log"],
        [f"{tmp_path}/access-var_log_nginx_a.log", "combined"],
    ]
    assert [d.args for d in _by_name(tree, "root")] == [["/usr/share/nginx/html"]]
    temp = {d.name: d.args for d in _by_name(tree, "client_body_temp_path")}
    assert temp == {"client_body_temp_path": [f"{tmp_path}/client_body_temp"]}


def test_newproxy_tree_has_no_nginx_only_directives(tmp_path: Path) -> None:
    config, the_plan, wiring = _wiring(tmp_path, for_nginx=False)
    tree = rewire(config, the_plan, wiring)
    names = {d.name for d in walk(tree)}
    assert "user" not in names
    # The harness adds nginx's temp paths for nginx only; newproxy is given the config's own.
    assert [d.args for d in _by_name(tree, "client_body_temp_path")] == [["/var/cache/nginx/body"]]
    assert [d.args for d in tree if d.name == "pid"] == [[f"{tmp_path}/newproxy.pid"]]


def test_nginx_accepts_the_rewired_config(tmp_path: Path) -> None:
    config, the_plan, wiring = _wiring(tmp_path)
    (tmp_path / "nginx.conf").write_text(format_tree(rewire(config, the_plan, wiring)))
    result = subprocess.run(
        ["nginx", "-t", "-p", f"{tmp_path}/", "-c", f"{tmp_path}/nginx.conf", "-e", f"{tmp_path}/error.log"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_variable_hosts_are_unsafe_but_a_variable_scheme_is_rewired(tmp_path: Path) -> None:
    """Only a proxy_pass whose host comes from variables can reach a real backend: ``$scheme://`` with a
    literal address is rewired (the scheme kept), one naming an upstream block is left to the block's
    rewired servers; a unix socket upstream is written back in proxy_pass's ``unix:PATH:URI`` form."""
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n upstream backend { server 10.0.0.1:80; }\n server {\n"
                    "  location /a/ { proxy_pass $scheme://backend; }\n"
                    "  location /b/ { proxy_pass $scheme://10.0.0.2:8080/b/; }\n"
                    "  location /c/ { proxy_pass http://$host; }\n"
                    "  location /d/ { proxy_pass https://10.0.0.3/${uri}x; }\n"
                    "  location /e/ { proxy_pass http://unix:/run/e.sock:/e/; }\n"
                    " }\n}\n")
    config = parse_config(str(path))
    the_plan = plan(config)
    assert the_plan.unsafe == [f"{path}:7: proxy_pass http://$host"]
    wiring = Wiring(workdir=str(tmp_path), listen_ports={name: 41000 for name in the_plan.listens},
                    upstream_addrs={"10.0.0.1:80": "127.0.0.1:42000", "10.0.0.2:8080": "127.0.0.1:42001",
                                    "10.0.0.3:443": "127.0.0.1:42002", "unix:/run/e.sock": "unix:/tmp/u/0.sock"},
                    tls_upstreams=frozenset({"10.0.0.3:443"}))
    tree = rewire(config, the_plan, wiring)
    assert [d.args[0] for d in _by_name(tree, "proxy_pass")] == [
        "$scheme://backend", "$scheme://127.0.0.1:42001/b/", "http://$host", "https://127.0.0.1:42002/${uri}x",
        "http://unix:/tmp/u/0.sock:/e/"]
