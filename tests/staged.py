"""Staged client scripts against nginx and newproxy, for the proxy_request_buffering off tests
(tests/test_differential_unbuffered_body.py over HTTP/1.1, tests/test_differential_h2_unbuffered_body.py
over HTTP/2) and the client abort test (tests/test_differential_client_abort.py): the time of each
write (a "stage" begins with it), an HTTP/1 script's runner, what the recording upstream's
``/__reads/`` marker received by stage, and the lines of an info-level error log added per target."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from nginx_parser.ir import Directive
from shadow.rewire import access_log_name
from shadow.upstreams import RecordedRequest


class Stages:
    """When each write of a script began: an event's stage is the number of writes begun before it."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def stage(self, at: float) -> int:
        return sum(1 for mark in self.marks if mark <= at)


async def read_for(reader: asyncio.StreamReader, seconds: float, got: Callable[[bytes], None],
                   closed: bool = False) -> bool:
    """Read for ``seconds`` (all of them: the stages keep their spacing after a close), each read
    handed to ``got``. Returns whether the connection is closed (``closed``: already before)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if closed:
            await asyncio.sleep(remaining)
            break
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            break
        except ConnectionError:
            data = b""
        if not data:
            closed = True
            continue
        got(data)
    return closed


# A step of an HTTP/1 client script: bytes sent; seconds (float) read meanwhile; "fin" (a half-close),
# "close" or "reset" (SO_LINGER 0), each ending the script's writes.
Step = bytes | float | str
Noise = list[tuple[re.Pattern[bytes], bytes]]


class SeenBytes(Stages):
    """What an HTTP/1 client script saw: each piece of the answer with the stage it came in, and the
    stage the connection was closed in (None: not before the script's end)."""

    def __init__(self, noise: Noise) -> None:
        super().__init__()
        self.noise = noise  # what differs between the two servers' answers by design (Date...)
        self.got: list[tuple[int, bytes]] = []
        self.closed: int | None = None

    def answer(self) -> list[tuple[int, bytes]]:
        """The answer's bytes by stage (masked)."""
        merged: dict[int, bytes] = {}
        for stage, data in self.got:
            merged[stage] = merged.get(stage, b"") + data
        out = []
        for stage, data in sorted(merged.items()):
            for pattern, replacement in self.noise:
                data = pattern.sub(replacement, data)
            out.append((stage, data))
        return out


async def run_script(port: int, steps: list[Step], noise: Noise) -> SeenBytes:
    """Run an HTTP/1 client script on a connection of its own (each write, FIN, close or reset
    begins a stage)."""
    seen = SeenBytes(noise)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    def got(data: bytes) -> None:
        seen.got.append((seen.stage(time.monotonic()), data))

    for step in steps:
        if isinstance(step, float):
            if await read_for(reader, step, got, seen.closed is not None) and seen.closed is None:
                seen.closed = seen.stage(time.monotonic())
            continue
        seen.marks.append(time.monotonic())
        if isinstance(step, bytes):
            if seen.closed is None:
                try:
                    writer.write(step)
                    await asyncio.wait_for(writer.drain(), 4.0)  # a proxy that reads no more
                except (ConnectionError, TimeoutError):
                    pass
        elif step == "fin":
            writer.write_eof()
        elif step == "close":
            writer.close()
            return seen
        elif step == "reset":  # SO_LINGER 0: close() sends RST
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return seen
    writer.close()
    return seen


def upstream_by_stage(records: list[RecordedRequest], stages: Stages) -> list[tuple[str, int, list[tuple[int, bytes]]]]:
    """Per request the upstream got (in order): its upstream, the connection's request number, and
    the bytes it had received by stage (the head with the body that came in the same stage;
    "<closed>" where the proxy closed the connection)."""
    out = []
    for record in sorted(records, key=lambda r: r.seq):
        merged: dict[int, bytes] = {}
        for at, data in record.reads:
            stage = stages.stage(at)
            merged[stage] = merged.get(stage, b"") + (data if data else b"<closed>")
        out.append((record.upstream, record.connection_seq, sorted(merged.items())))
    return out


def info_log(directory: Path) -> Callable[[list[Directive]], list[Directive]]:
    """A tweak: an info-level error_log into the target's directory, next to the rewiring's own."""
    def tweak(tree: list[Directive]) -> list[Directive]:
        anchor = tree[0]
        return [anchor.model_copy(update={"name": "error_log", "args": [str(directory / "info.log"), "info"],
                                          "block": None}), *tree]
    return tweak


def log_size(directory: Path) -> int:
    path = directory / "info.log"
    return path.stat().st_size if path.exists() else 0


def request_lines(directory: Path, start: int, keep: Callable[[str], bool]) -> list[str]:
    """The info log's lines since ``start`` that ``keep`` picks: "[level] message, context" (time,
    pid and connection number masked)."""
    with open(directory / "info.log", encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read()
    return [re.sub(r"^.*? (\[\w+\]) \d+#\d+: \*\d+ ", r"\1 ", line) for line in text.splitlines() if keep(line)]


def assert_same_views(seen: dict[str, list[object]]) -> None:
    """Each case's views (nginx's first, newproxy's second) are equal; the differing ones shown."""
    differing = {name: views for name, views in seen.items() if views[0] != views[1]}
    assert not differing, "\n\n".join(f"{name}:\n  nginx:    {v[0]!r}\n  newproxy: {v[1]!r}"
                                      for name, v in differing.items())


def access_logs(run: Path, path: str) -> tuple[list[str], list[str]]:
    """nginx's and newproxy's lines of the access_log at ``path`` ("$request $status $body_bytes_sent
    ..."), an error page's length masked: it differs by the server's name in the page."""
    name = access_log_name(path)
    nginx, newproxy = ([re.sub(r"^(\S+ \S+ \S+ [45]\d\d) \d+ ", r"\1 - ", line)
                        for line in (run / label / name).read_text().splitlines()]
                       for label in ("nginx", "newproxy"))
    return nginx, newproxy
