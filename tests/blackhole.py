"""A peer that never completes the TCP handshake, for connect timeouts and clients that leave while
the proxy connects.

The "black hole" is a loopback listener with a backlog of 0 whose accept queue is already full
(it never accepts): the kernel drops further SYNs, so a connect to it hangs until the proxy gives
up, as a connect to a dead host does. ``into_hole`` puts it in place of the rewired peer of chosen
config lines (a shadow-harness tweak), in both targets' configs alike.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nginx_parser.ir import Directive


@contextmanager
def black_hole() -> Iterator[int]:
    """The port of a listener whose full accept queue drops every new SYN."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # a backlog of 0 holds one connection; the rest wait in SYN retransmission
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.2)
        try:  # the black hole must swallow a connect, or nothing is tested
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:
            raise AssertionError("the black hole accepted a connection")
        finally:
            probe.close()
        yield port
    finally:
        for sock in fillers + [listener]:
            sock.close()


def into_hole(port: int, lines: set[int]) -> Callable[[list[Directive]], list[Directive]]:
    """A tweak: the rewired peer of each proxy_pass or upstream server directive at ``lines``
    becomes the black hole."""
    def tweak(tree: list[Directive]) -> list[Directive]:
        out = []
        for d in tree:
            if d.line in lines and d.name == "proxy_pass":
                d = d.model_copy(update={"args": [f"http://127.0.0.1:{port}"]})
            elif d.line in lines and d.name == "server":
                d = d.model_copy(update={"args": [f"127.0.0.1:{port}", *d.args[1:]]})
            if d.block is not None:
                d = d.model_copy(update={"block": tweak(d.block)})
            out.append(d)
        return out
    return tweak
