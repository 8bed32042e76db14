"""Connection and request counters for the whole server (nginx's stub_status numbers).

nginx keeps ``accepted, handled, requests, active, reading, writing`` in shared memory that every
worker updates with atomic adds. Here the block is one anonymous ``MAP_SHARED`` mmap created when
this module is imported, i.e. in the master before it forks any worker, so every worker inherits
the same pages. No locks: the block is cut into ``SLOTS`` slots of ``FIELDS`` signed 64-bit
integers, each worker writes only its own slot (``own``, called by the master's fork child), and a
reader (the stub_status handler, in any worker) sums the slots. A single writer per slot and
aligned 8-byte stores make a reader see each value whole; the sum is a snapshot as nginx's is
(its fields are read one after another too).

Slots are handed out by the master (``claim``/``release``): a worker that dies gives its slot back
with its gauges (active, reading, writing) zeroed, since its connections died with it; its totals
stay, so the accepted/handled/requests counts never go down. A process that forks nothing
(``master_process off``, tests) uses slot 0. Waiting is not counted: it is active - reading -
writing (an accepted connection with no request bytes yet is waiting in nginx too, in
ngx_http_wait_request_handler).

A second block of the same shape holds, per slot, one counter per response status (100-599;
the index is the status): the status line of every final response head written to a client is
counted (newproxy/http/h1.py ``_write``), for the Prometheus endpoint (newproxy/http/metrics.py).
Its pages are touched only for the statuses a worker sends, so its size costs no memory.

Cost per request: a few integer adds on a memoryview; per connection: three.
"""

from __future__ import annotations

import mmap
from typing import Final

# PARKED: idle connections among the active ones that newproxy/http/parking.py holds without a transport.
ACCEPTED: Final = 0
HANDLED: Final = 1
REQUESTS: Final = 2
ACTIVE: Final = 3
READING: Final = 4
WRITING: Final = 5
PARKED: Final = 6
COUNTED: Final = 7
FIELDS: Final = 8  # 7 used; 8 keeps a slot on a 64-byte cache line of its own
SLOTS: Final = 256  # workers alive at once, over every generation still draining
_GAUGES: Final = (ACTIVE, READING, WRITING, PARKED)

STATUSES: Final = 600  # response status counters per slot, indexed by the status (100-599 used)

_block = mmap.mmap(-1, SLOTS * FIELDS * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
_all = memoryview(_block).cast("q")
_status_block = mmap.mmap(-1, SLOTS * STATUSES * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
_statuses = memoryview(_status_block).cast("q")
_used: set[int] = {0}  # slots the master gave out (slot 0: the master_process off / in-process server)

# This process's counters, written by newproxy/http/h1.py: ``stats.C[REQUESTS] += 1``.
C: memoryview = _all[0:FIELDS]
S: memoryview = _statuses[0:STATUSES]  # this process's responses by status


def claim() -> int:
    """The master: a free slot for the worker it is about to fork."""
    for slot in range(1, SLOTS):
        if slot not in _used:
            _used.add(slot)
            return slot
    raise RuntimeError(f"more than {SLOTS - 1} worker processes alive")


def release(slot: int) -> None:
    """The master: the worker on ``slot`` is gone; its connections are gone with it."""
    base = slot * FIELDS
    for field in _GAUGES:
        _all[base + field] = 0
    _used.discard(slot)


def own(slot: int) -> None:
    """The forked worker: count into ``slot`` from now on."""
    global C, S
    C = _all[slot * FIELDS:(slot + 1) * FIELDS]
    S = _statuses[slot * STATUSES:(slot + 1) * STATUSES]


def connection_opened() -> None:
    """A client connection accepted (any protocol): stub_status's accepts, handled and active."""
    c = C
    c[ACCEPTED] += 1
    c[HANDLED] += 1
    c[ACTIVE] += 1


def totals() -> list[int]:
    """The sums over every slot: [accepted, handled, requests, active, reading, writing, parked]."""
    out = [0] * COUNTED
    for base in range(0, SLOTS * FIELDS, FIELDS):
        if _all[base]:  # a slot that never accepted has nothing to add
            for field in range(COUNTED):
                out[field] += _all[base + field]
    return out


def count_status(head: bytes) -> None:
    """A final response head (``HTTP/1.1 200 OK...``) went to a client: count its status."""
    if len(head) < 12:
        return
    # Digit by digit: compiled, indexing bytes is native where isdigit() and int() are generic calls.
    hundreds, tens, units = head[9] - 48, head[10] - 48, head[11] - 48
    if 0 <= hundreds <= 9 and 0 <= tens <= 9 and 0 <= units <= 9:
        code = hundreds * 100 + tens * 10 + units
        if 100 <= code < STATUSES:
            S[code] += 1


def statuses() -> dict[int, int]:
    """Responses sent by status, summed over every slot that ever accepted a connection."""
    out: dict[int, int] = {}
    for slot in range(SLOTS):
        if not _all[slot * FIELDS + ACCEPTED]:
            continue
        row = _statuses[slot * STATUSES:(slot + 1) * STATUSES].tolist()
        for code in range(100, STATUSES):
            if row[code]:
                out[code] = out.get(code, 0) + row[code]
    return out


def connections() -> tuple[int, int, int, int]:
    """active, reading, writing, waiting, as stub_status and ``$connections_*`` show them."""
    t = totals()
    active, reading, writing = t[ACTIVE], t[READING], t[WRITING]
    return active, reading, writing, max(0, active - reading - writing)


def stub_status_text() -> bytes:
    """ngx_http_stub_status_handler's body, spacing included (a space before each newline)."""
    t = totals()
    active, reading, writing = t[ACTIVE], t[READING], t[WRITING]
    waiting = max(0, active - reading - writing)
    return (f"Active connections: {active} \nserver accepts handled requests\n"
            f" {t[ACCEPTED]} {t[HANDLED]} {t[REQUESTS]} \n"
            f"Reading: {reading} Writing: {writing} Waiting: {waiting} \n").encode()
