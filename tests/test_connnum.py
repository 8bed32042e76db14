"""newproxy/connnum.py: the connection counter shared by forked workers hands out each number once."""

from __future__ import annotations

import os

from newproxy import connnum


def _take_in_children(counter: connnum.SharedCounter, children: int, each: int) -> list[int]:
    """Fork ``children`` processes that install ``counter`` and take ``each`` numbers at once (they
    start together on a pipe); every number they got."""
    go_read, go_write = os.pipe()
    outs = []
    pids = []
    for _ in range(children):
        out_read, out_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(go_write)
                os.read(go_read, 1)
                connnum.install(counter)
                numbers = [connnum.take() for _ in range(each)]
                os.write(out_write, " ".join(map(str, numbers)).encode())
            finally:
                os._exit(0)
        os.close(out_write)
        outs.append(out_read)
        pids.append(pid)
    os.write(go_write, b"x" * children)
    got: list[int] = []
    for out in outs:
        data = b""
        while chunk := os.read(out, 1 << 16):
            data += chunk
        os.close(out)
        got += [int(n) for n in data.split()]
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    os.close(go_read)
    os.close(go_write)
    return got


def test_workers_under_the_lock_never_share_a_number() -> None:
    counter = connnum.SharedCounter()
    counter.set_users(3)  # what the master writes before it forks three workers
    got = _take_in_children(counter, 3, 20000)
    assert sorted(got) == list(range(1, 60001))


def test_the_count_goes_on_in_the_next_workers() -> None:
    """A later generation takes from the same block: its numbers follow the earlier ones'."""
    counter = connnum.SharedCounter()
    counter.set_users(1)  # one worker: no lock
    assert _take_in_children(counter, 1, 5) == [1, 2, 3, 4, 5]
    counter.set_users(2)
    assert sorted(_take_in_children(counter, 2, 5)) == list(range(6, 16))


def test_a_lone_process_counts_from_one_in_its_own_memory() -> None:
    start = connnum.take()  # other tests in this process may have taken some
    assert [connnum.take() for _ in range(3)] == [start + 1, start + 2, start + 3]
