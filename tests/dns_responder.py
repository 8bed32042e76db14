"""A tiny authoritative DNS responder on loopback UDP for tests of ``resolver``: A records from a
table (AAAA: no answer, NOERROR), NXDOMAIN for unknown names, no answer at all for names in
``silent`` (resolver_timeout). Every question is recorded as (name, type)."""

from __future__ import annotations

import socket
import struct
import threading

A, AAAA = 1, 28


def _question(data: bytes) -> tuple[str, int, int]:
    """(name, qtype, end of the question) of a query."""
    labels = []
    at = 12
    while data[at]:
        labels.append(data[at + 1:at + 1 + data[at]].decode("ascii"))
        at += 1 + data[at]
    qtype = struct.unpack_from("!H", data, at + 1)[0]
    return ".".join(labels).lower(), qtype, at + 5


class DnsResponder:
    def __init__(self, records: dict[str, list[str]], silent: frozenset[str] = frozenset(), ttl: int = 300) -> None:
        self.records = {name.lower(): addrs for name, addrs in records.items()}
        self.silent = silent
        self.ttl = ttl
        self.questions: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-responder", daemon=True)

    def __enter__(self) -> DnsResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 17:
                continue
            name, qtype, end = _question(data)
            self.questions.append((name, qtype))
            if name in self.silent:
                continue
            qid = struct.unpack_from("!H", data)[0]
            addrs = self.records.get(name)
            answers = b""
            count = 0
            if addrs is not None and qtype == A:
                for addr in addrs:
                    answers += b"\xc0\x0c" + struct.pack("!HHIH", A, 1, self.ttl, 4) + socket.inet_aton(addr)
                    count += 1
            rcode = 3 if addrs is None else 0
            header = struct.pack("!HHHHHH", qid, 0x8400 | rcode, 1, count, 0, 0)
            self.sock.sendto(header + data[12:end] + answers, peer)
