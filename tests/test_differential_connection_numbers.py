"""$connection numbers with 2 workers, and over a reload: nginx's counter against newproxy's.

nginx numbers connections from one counter in shared memory (ngx_connection_counter): accepted
client connections and upstream connects take numbers from it, whichever worker makes them, and it
lives on across a reload. newproxy's workers share one counter the same way (newproxy/connnum.py).
Both run ``worker_processes 2``; the same schedule goes to each:

- a batch of 60 client connections from 6 concurrent clients (every third keeps alive for 3
  requests; half of the requests are proxied, the upstream holding each 30 ms so that connections
  overlap and both workers accept): on each side both workers served some, every request of one
  client connection logged one number (with $connection_requests 1, 2, 3), and no two client
  connections share a number; a request for a missing file on each connection of one client puts
  the same number in the error log's ``*N`` as in the access log;
- a probe request after the batch, alone, gets exactly the probe's before it plus the numbers the batch took, plus one
  (client connections plus one per proxied request: the upstream connects take numbers too);
- SIGHUP (same config) and the old workers gone: the next connection's number follows on (nginx's
  counter is kept over the reload), and a second concurrent batch on the new workers is again unique,
  above the probe, and the probe after it is again exact.

Two more, with one worker: the resolver's socket to a server takes a number at its first query
only (probes around proxied requests whose host is looked up count 3, then 2 when cached or asked
on the open socket), and on an ssl listen the number is taken at accept (a failed handshake, plain
HTTP there, a connection closed at once each take one).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nginx_parser import parse_config
from nginx_parser.ir import Directive
from shadow.rewire import access_log_name, plan
from shadow.runner import StartedTargets, started_targets
from tests.dns_responder import DnsResponder
from tests.test_differential_proxy_variables import _free_ports

CONFIG = """
events {}
http {
    log_format conn '$connection $connection_requests $pid $uri';
    access_log logs/conn.log conn;
    server {
        listen 127.0.0.1:8080;
        location /p/ { proxy_pass http://127.0.0.1:9000; }
        location /r/ { return 200 "ok\\n"; }
        location /missing/ { root /nonexistent-connnum; }
        location = /n { return 200 "$connection"; }
    }
}
"""

CLIENTS = 6
CONNECTIONS = 10  # per client
KEEPALIVE = 3  # requests on every third connection
LINE = re.compile(r"^(\d+) (\d+) (\d+) (\S+)$")
MISSING = re.compile(r'\*(\d+) open\(\) "/nonexistent-connnum(/missing/\S+)" failed')


def two_workers(tree: list[Directive]) -> list[Directive]:
    return [d.model_copy(update={"args": ["2"]}) if d.name == "worker_processes" else d for d in tree]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartedTargets]:
    tmp = tmp_path_factory.mktemp("connnum")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run"),
                         tweak_reference=two_workers, tweak_other=two_workers) as run:
        yield run


def port(target: object) -> int:
    return target.listen_ports["127.0.0.1:8080"]  # type: ignore[attr-defined]


def workdir(target: object) -> Path:
    return Path(target.workdir)  # type: ignore[attr-defined]


def schedule(tag: str) -> list[list[list[str]]]:
    """Per client, per connection, the paths sent on it (all unique: the URI names the connection)."""
    out = []
    for c in range(CLIENTS):
        conns = []
        for k in range(CONNECTIONS):
            paths = []
            for j in range(KEEPALIVE if k % 3 == 0 else 1):
                name = f"{tag}-{c}-{k}-{j}"
                if c == 0 and j == 0:
                    paths.append(f"/missing/{name}")
                elif (k + j) % 2:
                    paths.append(f"/p/__delay/30/{name}")
                else:
                    paths.append(f"/r/{name}")
            conns.append(paths)
        out.append(conns)
    return out


async def _connection(port: int, paths: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, path in enumerate(paths):
            close = "close" if i == len(paths) - 1 else "keep-alive"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: connnum\r\nConnection: {close}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = re.search(rb"\r\nContent-Length: (\d+)", head, re.IGNORECASE)
            assert length is not None, head
            await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the last one
    finally:
        writer.close()


def send_batch(ports: list[int], plan_: list[list[list[str]]]) -> None:
    """The schedule to both targets at once: each client's connections one after another, the
    clients concurrently."""
    async def client(port: int, conns: list[list[str]]) -> None:
        for paths in conns:
            await _connection(port, paths)

    async def both() -> None:
        await asyncio.gather(*(client(p, conns) for p in ports for conns in plan_))
    asyncio.run(both())


def probe(p: int) -> int:
    """A request alone on a new connection: its $connection."""
    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", p)
        writer.write(b"GET /n HTTP/1.1\r\nHost: connnum\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return int(data.partition(b"\r\n\r\n")[2])
    return asyncio.run(one())


def log_lines(target: object) -> dict[str, tuple[int, int, int]]:
    """uri -> ($connection, $connection_requests, $pid) from the target's access log."""
    out = {}
    with open(workdir(target) / access_log_name("logs/conn.log")) as f:
        for line in f:
            m = LINE.match(line.strip())
            assert m is not None, line
            out[m.group(4)] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return out


def check_batch(target: object, plan_: list[list[list[str]]], above: int) -> tuple[set[int], int]:
    """The batch's log lines on one target: one number per client connection, unique, all above
    ``above``; returns the pids that served it and how many numbers the batch took (client
    connections plus proxied requests)."""
    label = target.label  # type: ignore[attr-defined]
    lines = log_lines(target)
    numbers: list[int] = []
    pids: set[int] = set()
    proxied = 0
    for conns in plan_:
        for paths in conns:
            got = [lines[path] for path in paths]
            assert {n for n, _, _ in got} == {got[0][0]}, (label, paths, got)  # one number per connection
            assert [r for _, r, _ in got] == list(range(1, len(paths) + 1)), (label, paths, got)
            numbers.append(got[0][0])
            pids |= {pid for _, _, pid in got}
            proxied += sum(1 for path in paths if path.startswith("/p/"))
    assert len(set(numbers)) == len(numbers), (label, sorted(numbers))
    assert min(numbers) > above, (label, above, sorted(numbers))
    errors = (workdir(target) / "error.log").read_text()
    logged = {uri: int(n) for n, uri in MISSING.findall(errors)}
    missing = [paths[0] for paths in plan_[0]]
    assert {uri: logged.get(uri) for uri in missing} == {uri: lines[uri][0] for uri in missing}, label
    return pids, len(numbers) + proxied


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def reload(run: StartedTargets) -> None:
    """SIGHUP each master with its config unchanged; wait until its old workers are gone and two new
    ones run (no request is sent meanwhile, so no number is taken)."""
    masters = [target.process.pid for target in run.targets]  # type: ignore[attr-defined]
    olds = [children(pid) for pid in masters]
    for pid in masters:
        os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    for pid, old in zip(masters, olds, strict=True):
        while True:
            now = children(pid)
            if not now & old and len(now) == 2:
                break
            assert time.monotonic() < deadline, (pid, old, now)
            time.sleep(0.05)


def test_connection_numbers_unique_across_workers_and_reload(started: StartedTargets) -> None:
    targets = started.targets
    ports = [port(t) for t in targets]
    base = [probe(p) for p in ports]  # the harness's readiness checks took some already
    assert base[0] == base[1]
    first = schedule("a")
    send_batch(ports, first)
    taken = []
    for target in targets:
        pids, count = check_batch(target, first, base[0])
        assert len(pids) == 2, (target.label, pids)  # type: ignore[attr-defined]  # both workers accepted
        taken.append(count)
    assert taken[0] == taken[1]
    last = base[0] + taken[0] + 1
    assert [probe(p) for p in ports] == [last] * 2  # upstream connects took numbers too

    reload(started)
    after = [probe(p) for p in ports]
    assert after == [last + 1] * 2  # the counter went on over the reload

    second = schedule("b")
    send_batch(ports, second)
    counts = [check_batch(target, second, after[0])[1] for target in targets]
    assert counts[0] == counts[1]
    assert [probe(p) for p in ports] == [after[0] + counts[0] + 1] * 2


RESOLVER_CONFIG = """
events {}
http {
    server {
        listen 127.0.0.1:8080;
        location /up { proxy_pass http://127.0.0.1:%(p)d; }
        location /dns/ {
            resolver 127.0.0.1:%(dns)d valid=30s;
            proxy_pass http://$arg_to;
        }
        location = /n { return 200 "$connection"; }
    }
}
"""


def test_resolver_socket_takes_a_number_once(tmp_path: Path) -> None:
    """One worker each. The numbers a proxied request takes, measured by probes around it: the
    first one whose name is looked up takes three (client, resolver socket to the server, upstream);
    the next, cached, two; another name, looked up on the socket already open, two again."""
    (p,) = _free_ports(1)
    conf = tmp_path / "nginx.conf"
    steps = [f"/dns/a?to=one.test:{p}", f"/dns/b?to=one.test:{p}", f"/dns/c?to=other.test:{p}", "/up/d"]
    taken: list[list[int]] = []
    with DnsResponder({"one.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}) as dns:
        conf.write_text(RESOLVER_CONFIG % {"p": p, "dns": dns.port})
        config = parse_config(str(conf))
        with started_targets(config, plan(config), str(tmp_path / "run"),
                             upstream_binds={f"127.0.0.1:{p}": ("127.0.0.1", p)}) as run:
            for target in run.targets:
                numbers = [probe(port(target))]
                for path in steps:
                    assert get_status(port(target), path) == 200, (target.label, path)  # type: ignore[attr-defined]
                    numbers.append(probe(port(target)))
                taken.append([b - a - 1 for a, b in itertools.pairwise(numbers)])
    assert taken[0] == taken[1] == [3, 2, 2, 2], taken


def get_status(p: int, path: str) -> int:
    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", p)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: connnum\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return int(data.split(b" ", 2)[1])
    return asyncio.run(one())


TLS_CONFIG = """
events {}
http {
    server {
        listen 127.0.0.1:8443 ssl;
        ssl_certificate %(crt)s;
        ssl_certificate_key %(key)s;
        location = /n { return 200 "$connection"; }
    }
}
"""


def tls_probe(p: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", p), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="connnum") as sock:
        sock.sendall(b"GET /n HTTP/1.1\r\nHost: connnum\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.partition(b"\r\n\r\n")[2])


def raw_exchange(p: int, data: bytes) -> None:
    """A connection that sends ``data`` (nothing: closes at once) and reads until the server closes."""
    with socket.create_connection(("127.0.0.1", p), timeout=10) as sock:
        if data:
            sock.sendall(data)
            while sock.recv(65536):
                pass


def test_tls_connections_take_their_number_at_accept(tmp_path: Path) -> None:
    """On an ssl listen nginx numbers a connection when it accepts it: a failed handshake, plain
    HTTP sent there (497) and a connection closed before its first byte each take one, as a good
    handshake does; the probes around them count the same on both."""
    crt, key = tmp_path / "c.crt", tmp_path / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-subj", "/CN=connnum", "-days", "2"],
                   check=True, capture_output=True, timeout=30)
    conf = tmp_path / "nginx.conf"
    conf.write_text(TLS_CONFIG % {"crt": crt, "key": key})
    config = parse_config(str(conf))
    steps = [b"\x16\x03\x01\x00\x04oops", b"GET /n HTTP/1.1\r\nHost: connnum\r\n\r\n", b""]
    taken: list[list[int]] = []
    with started_targets(config, plan(config), str(tmp_path / "run")) as run:
        for target in run.targets:
            p = target.listen_ports["127.0.0.1:8443"]  # type: ignore[attr-defined]
            numbers = [tls_probe(p)]
            for data in steps:
                raw_exchange(p, data)
                numbers.append(tls_probe(p))
            taken.append([b - a for a, b in itertools.pairwise(numbers)])
    assert taken[0] == taken[1] == [2, 2, 2], taken
