"""newproxy's Prometheus endpoint (newproxy/http/metrics.py): config ``metrics: {address, port, path}``.

newproxy runs as an operator runs it (master and 2 workers, a YAML config); the output must pass
prometheus_client's text-format parser and its values must move by what the test sent, summed over
both workers.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from newproxy.config import MetricsConfig
from newproxy.configfile import ConfigError, load_newproxy_config
from tests.io_upstream import FakeUpstream, free_port
from tests.processes import stop_group
from tests.test_process_model import _wait, get
from translator.adapter import load_nginx_config

NGINX_CONF = """
events {}
http {
    upstream backend { server 127.0.0.1:%(upstream)d; }
    server {
        listen 127.0.0.1:%(port)d;
        server_name metrics.test;
        location / { return 200 "ok"; }
        location /teapot { return 418; }
        location = /status { stub_status; }
        location ^~ /up/ { proxy_pass http://backend/; }
        location ~ ^/missing { error_page 404 = @fallback; return 404; }
        location @fallback { return 204; }
    }
}
"""
UPSTREAM_DELAY = 0.3  # FakeUpstream's /slow


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    tmp = tmp_path_factory.mktemp("metrics")
    port, metrics_port = free_port(), free_port()
    upstream = FakeUpstream(delay=UPSTREAM_DELAY).__enter__()
    request.addfinalizer(lambda: upstream.__exit__(None, None, None))
    (tmp / "nginx.conf").write_text(NGINX_CONF % {"port": port, "upstream": upstream.port})
    config = load_nginx_config(str(tmp / "nginx.conf"))
    config = config.model_copy(update={
        "worker_processes": 2, "pid": str(tmp / "np.pid"), "error_log": str(tmp / "error.log"),
        "metrics": MetricsConfig(address="127.0.0.1", port=metrics_port),
    })
    (tmp / "proxy.yaml").write_text(config.dump_yaml())
    with open(tmp / "stderr.log", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "newproxy", "-c", str(tmp / "proxy.yaml")],
                                   stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        def up() -> bool:
            try:
                return get(metrics_port, "/metrics", timeout=1) is not None
            except OSError:
                return process.poll() is not None
        _wait(up, 15, "newproxy")
        assert process.poll() is None, (tmp / "stderr.log").read_text()
        yield port, metrics_port
    finally:
        stop_group(process)
        if process.poll() is None:
            process.wait(timeout=5)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by prometheus_client: (name, labels) -> value."""
    reply = get(port, "/metrics")
    assert reply is not None and reply[0] == 200
    samples = {}
    families = list(text_string_to_metric_families(reply[1].decode()))
    types = {family.name: family.type for family in families}
    assert types["newproxy_connections_accepted"] == "counter"
    assert types["newproxy_connections_active"] == "gauge"
    for family in families:
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_parses_and_moves_with_traffic(ports: tuple[int, int]) -> None:
    port, metrics_port = ports
    before = scrape(metrics_port)
    for _ in range(15):
        assert get(port, "/") == (200, b"ok")
    for _ in range(4):
        assert get(port, "/teapot")[0] == 418  # type: ignore[index]
    after = scrape(metrics_port)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    # 19 proxied-port requests, and the first scrape itself (counted like a stub_status request).
    assert moved("newproxy_http_requests_total") == 19 + 1
    assert moved("newproxy_connections_accepted_total") == 19 + 1
    assert moved("newproxy_connections_handled_total") == 19 + 1
    assert moved("newproxy_http_responses_total", code="200") == 15 + 1
    assert moved("newproxy_http_responses_total", code="418") == 4
    assert after[("newproxy_connections_active", ())] >= 1
    assert after[("newproxy_connections", (("state", "writing"),))] >= 1  # the scrape in progress


def test_requests_by_server_location_status_and_upstream_times(ports: tuple[int, int]) -> None:
    """Known traffic over both workers: each request is counted once on its location's row with its
    status (a named location reached by error_page on the named row), and every proxied attempt in
    backend's histogram: 3 quick ones under 0.25 s, 2 slow ones (0.3 s) between 0.25 and 0.5 s."""
    port, metrics_port = ports
    before = scrape(metrics_port)
    for _ in range(6):
        assert get(port, "/teapot")[0] == 418  # type: ignore[index]
    for _ in range(3):
        assert get(port, "/up/quick")[0] == 200  # type: ignore[index]
    for _ in range(2):
        assert get(port, "/up/slow")[0] == 200  # type: ignore[index]
    for _ in range(4):
        assert get(port, "/missing/x")[0] == 204  # type: ignore[index]
    after = scrape(metrics_port)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    row = {"server": "metrics.test", "listen": f"127.0.0.1:{port}"}
    assert moved("newproxy_requests_total", location="/teapot", code="418", **row) == 6
    assert moved("newproxy_requests_total", location="^~ /up/", code="200", **row) == 5
    assert moved("newproxy_requests_total", location="@fallback", code="204", **row) == 4
    assert moved("newproxy_requests_total", location="~ ^/missing", code="404", **row) == 0
    total = sum(after[k] - before.get(k, 0) for k in after if k[0] == "newproxy_requests_total")
    assert total == 6 + 5 + 4
    up = {"upstream": "backend"}
    assert moved("newproxy_upstream_response_seconds_count", **up) == 5
    assert moved("newproxy_upstream_response_seconds_bucket", le="0.25", **up) == 3
    assert moved("newproxy_upstream_response_seconds_bucket", le="0.5", **up) == 5
    assert moved("newproxy_upstream_response_seconds_bucket", le="+Inf", **up) == 5
    assert 2 * UPSTREAM_DELAY <= moved("newproxy_upstream_response_seconds_sum", **up) < 2 * UPSTREAM_DELAY + 0.5


def test_agrees_with_stub_status(ports: tuple[int, int]) -> None:
    """The stub_status location and /metrics read the same counters."""
    port, metrics_port = ports
    reply = get(port, "/status")
    assert reply is not None
    requests = int(reply[1].split(b"\n")[2].split()[2])
    samples = scrape(metrics_port)
    assert samples[("newproxy_http_requests_total", ())] == requests + 1  # the scrape


@pytest.mark.parametrize("method,path,status", [("GET", "/other", 404), ("POST", "/metrics", 405)])
def test_other_requests(ports: tuple[int, int], method: str, path: str, status: int) -> None:
    with socket.create_connection(("127.0.0.1", ports[1]), timeout=5) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(f"HTTP/1.1 {status} ".encode())


def test_bad_metrics_config_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("version: 1\nmetrics:\n  address: 127.0.0.1\n  port: 99999\n")
    with pytest.raises(ConfigError) as info:
        load_newproxy_config(str(path))
    assert str(info.value).startswith(f"{path}:4:")
