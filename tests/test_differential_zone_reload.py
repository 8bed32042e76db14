"""limit_req/limit_conn zones over a reload, with one worker: nginx and newproxy reloaded alike.

Both run ``worker_processes 1`` (the rewiring's). Each reload rewrites both targets' configs (the
rewired trees, edited the same way) and sends SIGHUP to each master; it has taken effect when the
``/marker`` location, whose ``return`` body each reload changes, answers the new body on both.
What must match nginx (each case uses keys of its own, so the cases do not see each other's state):

- limit_req, rate=1r/m burst=2 nodelay (a bucket that does not drain during the test): the burst
  is spent before the reload; after it, the unchanged zone still rejects the key, and the zone whose
  size the reload changed passes the key's burst again (nginx allocates a new zone).
- limit_conn 1: a request held by the upstream across the reload still counts on the new worker
  (the old worker serves it to its end), and its release, by the old worker, frees the key for
  the new one.
- a reload that keeps a zone's name and size but changes its key fails on both (nginx's init_zone
  refuses it, logged at emerg): the old config serves on, its zone state intact.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from nginx_parser import parse_config
from nginx_parser.ir import Directive
from shadow.rewire import plan
from shadow.runner import StartedTargets, started_targets

CONFIG = """
events {}
http {
    limit_req_zone $http_x_key zone=kept:1m rate=1r/m;
    limit_req_zone $http_x_key zone=resized:1m rate=1r/m;
    limit_conn_zone $http_x_key zone=conns:1m;
    server {
        listen 127.0.0.1:8080;
        location /kept/ { limit_req zone=kept burst=2 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /resized/ { limit_req zone=resized burst=2 nodelay; proxy_pass http://127.0.0.1:9000; }
        location /conn/ { limit_conn conns 1; proxy_pass http://127.0.0.1:9000; }
        location = /marker { return 200 "generation 0"; }
    }
}
"""

Edit = Callable[[Directive], Directive]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartedTargets]:
    tmp = tmp_path_factory.mktemp("zone-reload")
    path = tmp / "nginx.conf"
    path.write_text(CONFIG)
    config = parse_config(str(path))
    with started_targets(config, plan(config), str(tmp / "run")) as run:
        yield run


def ports(run: StartedTargets) -> list[int]:
    return [target.listen_ports["127.0.0.1:8080"] for target in run.targets]


def request(port: int, path: str, key: str = "") -> tuple[int, bytes]:
    """GET on a fresh connection: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: reload.test\r\nX-Key: {key}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def statuses(run: StartedTargets, path: str, key: str, n: int) -> list[list[int]]:
    """``n`` requests one after another to each target: the statuses, nginx's then newproxy's."""
    return [[request(port, path, key)[0] for _ in range(n)] for port in ports(run)]


def edit_tree(tree: list[Directive], edit: Edit) -> list[Directive]:
    out = []
    for directive in tree:
        directive = edit(directive)
        if directive.block is not None:
            directive = directive.model_copy(update={"block": edit_tree(directive.block, edit)})
        out.append(directive)
    return out


def marker(generation: int, *more: Edit) -> Edit:
    """An edit that sets /marker's body to ``generation N``, then applies ``more``."""
    def edit(directive: Directive) -> Directive:
        if directive.name == "return" and directive.args and directive.args[-1].startswith("generation "):
            directive = directive.model_copy(update={"args": ["200", f"generation {generation}"]})
        for other in more:
            directive = other(directive)
        return directive
    return edit


def zone_arg(old: str, new: str) -> Edit:
    """Replace one argument of a ``limit_*_zone`` directive."""
    def edit(directive: Directive) -> Directive:
        if directive.name.endswith("_zone") and old in directive.args:
            return directive.model_copy(update={"args": [new if a == old else a for a in directive.args]})
        return directive
    return edit


GENERATION = [0]  # the marker body each target serves now


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def reload(run: StartedTargets, *edits: Edit, expect_applied: bool = True, old_gone: bool = True) -> None:
    """Rewrite both targets' configs with ``edits`` and a new marker, SIGHUP both masters, and wait
    until both serve the new marker (or, for a reload that must fail, until both logged the emerg
    line and still serve the old one). With ``old_gone``, also until the old workers have exited:
    until then an old worker may still accept a connection (nginx's do, with its old zones)."""
    olds = [children(target.process.pid) for target in run.targets]  # type: ignore[attr-defined]
    GENERATION[0] += 1
    edit = marker(GENERATION[0], *edits)
    starts = [os.path.getsize(target.workdir / "error.log") for target in run.targets]  # type: ignore[attr-defined]
    before = [target.tree for target in run.targets]  # type: ignore[attr-defined]
    for target in run.targets:
        target.tree = edit_tree(target.tree, edit)  # type: ignore[attr-defined]
        target.write_config()  # type: ignore[attr-defined]
        os.kill(target.process.pid, signal.SIGHUP)  # type: ignore[attr-defined]
    if not expect_applied:  # the trees go back to what each target still serves
        GENERATION[0] -= 1
        for target, tree in zip(run.targets, before, strict=True):
            target.tree = tree  # type: ignore[attr-defined]
    want = f"generation {GENERATION[0]}".encode()
    deadline = time.monotonic() + 15
    for port, target, start in zip(ports(run), run.targets, starts, strict=True):
        while True:
            done = request(port, "/marker")[1] == want
            if not expect_applied:
                done = "[emerg]" in new_log(target.workdir / "error.log", start)  # type: ignore[attr-defined]
            if done:
                break
            assert time.monotonic() < deadline, f"{target.label}: the reload did not show"  # type: ignore[attr-defined]
            time.sleep(0.05)
    while old_gone and expect_applied:
        alive = [old & children(target.process.pid) for target, old in zip(run.targets, olds, strict=True)]  # type: ignore[attr-defined]
        if not any(alive):
            break
        assert time.monotonic() < deadline, f"old workers still running: {alive}"
        time.sleep(0.05)


def new_log(path: os.PathLike[str], start: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        return f.read()


def test_limit_req_zone_state_over_reload(started: StartedTargets) -> None:
    """The burst (3 pass, the 4th is rejected) is spent in both zones; after a reload that changes
    only the size of "resized", "kept" still rejects the key while "resized" passes 3 again."""
    assert statuses(started, "/kept/x", "a", 4) == [[200, 200, 200, 503]] * 2
    assert statuses(started, "/resized/x", "a", 4) == [[200, 200, 200, 503]] * 2
    reload(started, zone_arg("zone=resized:1m", "zone=resized:2m"))
    assert statuses(started, "/kept/x", "a", 2) == [[503, 503]] * 2
    assert statuses(started, "/kept/x", "b", 4) == [[200, 200, 200, 503]] * 2  # another key: its own bucket
    assert statuses(started, "/resized/x", "a", 4) == [[200, 200, 200, 503]] * 2
    reload(started)  # unchanged zones, twice in a row: still kept
    assert statuses(started, "/kept/x", "a", 1) == statuses(started, "/resized/x", "a", 1) == [[503]] * 2


def test_limit_conn_count_over_reload(started: StartedTargets) -> None:
    """limit_conn 1: a request the upstream holds 2.5 s, sent before the reload, still counts after
    it (503 for the key on the new worker); once it is answered the key passes again."""
    held: list[list[int]] = [[], []]

    def hold(side: int, port: int) -> None:
        held[side].append(request(port, "/conn/__delay/2500", "held")[0])
    threads = [threading.Thread(target=hold, args=(side, port)) for side, port in enumerate(ports(started))]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert statuses(started, "/conn/x", "held", 1) == [[503]] * 2  # before the reload
    reload(started, old_gone=False)  # the old worker serves the held request to its end
    assert statuses(started, "/conn/x", "held", 1) == [[503]] * 2
    assert statuses(started, "/conn/x", "other", 1) == [[200]] * 2
    for thread in threads:
        thread.join(10)
    assert held == [[200], [200]]
    assert statuses(started, "/conn/x", "held", 1) == [[200]] * 2


EMERG = re.compile(r"\[emerg\] \d+#\d+: (.*)")


def test_new_key_same_size_fails_the_reload(started: StartedTargets) -> None:
    """A reload giving "kept" (same name and size) another key, and "conns" too: nginx refuses it
    with the first zone's emerg line and goes on with the old config; newproxy the same."""
    statuses(started, "/kept/x", "c", 3)  # c's burst spent
    starts = [os.path.getsize(target.workdir / "error.log") for target in started.targets]  # type: ignore[attr-defined]
    reload(started, zone_arg("$http_x_key", "$uri"), expect_applied=False)
    lines = [EMERG.findall(new_log(target.workdir / "error.log", start))  # type: ignore[attr-defined]
             for target, start in zip(started.targets, starts, strict=True)]
    assert lines[0] == lines[1] == ['limit_req "kept" uses the "$uri" key while previously it used the "$http_x_key" key']
    assert [request(port, "/marker")[1] for port in ports(started)] == [f"generation {GENERATION[0]}".encode()] * 2
    assert statuses(started, "/kept/x", "c", 1) == [[503]] * 2  # the old zone, its state intact
    reload(started)  # and a good config after it applies, the zone still kept
    assert statuses(started, "/kept/x", "c", 1) == [[503]] * 2
