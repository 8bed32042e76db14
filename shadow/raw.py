"""Raw mode: the same bytes, byte for byte, to nginx and to newproxy over a plain socket.

The generated traffic of ``runner`` is made of well-formed requests; this mode is for the ones that
are not (issue 11's malformed-request and smuggling corpus): bare LF, obs-fold, CL with TE, odd
chunk sizes, NUL bytes, pipelines. For each case it records what the client saw, as a list of
responses (status, headers, body) and the fate of the connection afterwards (closed by the server,
reset, or still open after ``idle`` seconds of silence), and the exact bytes each proxy forwarded to
the recording upstreams. Two targets agree on a case when all of that is equal after the usual
normalisation (Date, Server, the listen and upstream ports).

Responses are read with the framing the server announced (Content-Length, chunked, or until close);
a case whose method is HEAD reads heads only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shadow.compare import SERVER, Normaliser
from shadow.http1 import FramingError, header_values, parse_head, read_body, read_head
from shadow.targets import Target
from shadow.upstreams import UpstreamPool


RAW_CONFIG = Path(__file__).parent / "data" / "h1_raw.conf"  # the corpus's own config (Host raw.test)


@dataclass(frozen=True)
class RawCase:
    """One corpus entry: ``data`` is sent as is to the listen named ``listen``."""

    name: str
    data: bytes
    listen: str = ""
    head_only: bool = False  # the case's requests are HEAD: responses carry no body
    family: str = ""


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class RawOutcome:
    responses: list[RawResponse] = field(default_factory=list)
    fate: str = "open"  # closed | reset | open (nothing more after ``idle`` seconds) | garbage
    garbage: bytes = b""  # bytes that were not a response (HTTP/0.9 bodies, broken framing)
    forwarded: list[bytes] = field(default_factory=list)  # raw upstream requests, in arrival order
    elapsed: float = 0.0


async def exchange_raw(port: int, data: bytes, head_only: bool = False, idle: float = 0.3,
                       quiet: float = 0.05, limit: float = 5.0) -> RawOutcome:
    """Send ``data`` on a new connection to 127.0.0.1:``port`` and read every response until the
    server closes, resets, or goes silent: ``idle`` seconds before anything arrives (a server
    waiting for the rest of a request), ``quiet`` seconds after a response (a pipeline's next
    answer follows at once on loopback). ``limit`` bounds the whole read."""
    outcome = RawOutcome()
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError:
        outcome.fate = "refused"
        return outcome
    try:
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        deadline = start + limit
        while True:
            remaining = min(quiet if outcome.responses else idle, deadline - time.monotonic())
            if remaining <= 0:
                break
            try:
                first = await asyncio.wait_for(reader.read(1), remaining)
            except asyncio.TimeoutError:
                break  # silence: the connection is still open
            if not first:
                outcome.fate = "closed"
                break
            if first != b"H":  # not a status line: an HTTP/0.9 body, or junk
                rest = await _drain(reader, idle, deadline)
                outcome.garbage = first + rest
                outcome.fate = "garbage"
                break
            response = await asyncio.wait_for(_read_response(first, reader, head_only), max(0.1, deadline - time.monotonic()))
            if response is None:
                outcome.fate = "garbage"
                break
            outcome.responses.append(response)
    except ConnectionResetError:
        outcome.fate = "reset"
    except (asyncio.TimeoutError, FramingError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        outcome.fate = "garbage"
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    outcome.elapsed = time.monotonic() - start
    return outcome


async def _drain(reader: asyncio.StreamReader, idle: float, deadline: float) -> bytes:
    data = bytearray()
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), idle)
        except asyncio.TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def _read_response(first: bytes, reader: asyncio.StreamReader, head_only: bool) -> RawResponse | None:
    head = first + await read_head(reader)
    start, headers = parse_head(head)
    if len(start) < 2 or not start[0].startswith("HTTP/") or not start[1].isdigit():
        return None
    status = int(start[1])
    body = b""
    if not head_only and status >= 200 and status not in (204, 304):
        until_close = not header_values(headers, "Content-Length") and not header_values(headers, "Transfer-Encoding")
        _, body = await read_body(reader, headers, until_close=until_close)
    return RawResponse(status, headers, body)


async def run_case(case: RawCase, target: Target, pool: UpstreamPool, idle: float = 0.3) -> RawOutcome:
    port = target.listen_ports[case.listen] if case.listen else next(iter(target.listen_ports.values()))
    outcome = await exchange_raw(port, case.data, case.head_only, idle)
    pool.settle()
    outcome.forwarded = [record.raw for record in pool.take()]
    return outcome


def observed(outcome: RawOutcome, norm: Normaliser) -> dict[str, Any]:
    """What is compared between the two targets, normalised."""
    return {
        "responses": [_normalised(r, norm) for r in outcome.responses],
        "fate": outcome.fate,
        "garbage": norm.body(outcome.garbage).decode("latin-1"),
        "forwarded": [norm.text(raw.decode("latin-1")) for raw in outcome.forwarded],
    }


def _normalised(response: RawResponse, norm: Normaliser) -> dict[str, Any]:
    body = norm.body(response.body)
    headers = norm.headers(response.headers)
    # The Server token inside error pages differs in length: a Content-Length that counted the
    # original body counts the normalised one; for a bodiless answer (HEAD) of an HTML page, it is
    # shifted by the token's length difference, as shadow/compare.py does (its rule 3).
    server = [value for name, value in response.headers if name.lower() == "server"]
    html = any(name.lower() == "content-type" and "text/html" in value for name, value in response.headers)
    for header in headers:
        if header[0].lower() != "content-length":
            continue
        if header[1] == str(len(response.body)) and response.body:
            header[1] = str(len(body))
        elif not response.body and server and html and response.status >= 300 and header[1].isdigit():
            header[1] = str(int(header[1]) - len(server[0]) + len(SERVER))
    return {"status": response.status, "headers": headers, "body": body.decode("latin-1")}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two observations of one case part: statuses first, then the rest."""
    out: list[str] = []
    statuses_a = [r["status"] for r in a["responses"]]
    statuses_b = [r["status"] for r in b["responses"]]
    if statuses_a != statuses_b:
        out.append(f"statuses {statuses_a} vs {statuses_b}")
    if a["fate"] != b["fate"]:
        out.append(f"connection {a['fate']} vs {b['fate']}")
    if a["forwarded"] != b["forwarded"]:
        out.append(f"forwarded {a['forwarded']!r:.400} vs {b['forwarded']!r:.400}")
    if not out and a["responses"] != b["responses"]:
        out.append(f"responses {a['responses']!r:.400} vs {b['responses']!r:.400}")
    if a["garbage"] != b["garbage"]:
        out.append(f"non-HTTP bytes {a['garbage']!r:.200} vs {b['garbage']!r:.200}")
    return out


@dataclass
class CaseResult:
    case: RawCase
    nginx: dict[str, Any]
    other: dict[str, Any]
    diffs: list[str]


def run_raw(config_path: str, cases: list[RawCase] | tuple[RawCase, ...], *, idle: float = 0.3,
            workdir: str | None = None, against: str = "newproxy") -> list[CaseResult]:
    """Start nginx and ``against`` on ``config_path`` (rewired as ``run_shadow`` does) and send every
    case to both, one case at a time; a case's ``listen`` defaults to the config's first listen."""
    import tempfile

    from nginx_parser import parse_config
    from shadow.rewire import plan
    from shadow.runner import started_targets

    config = parse_config(config_path)
    the_plan = plan(config)
    base = workdir or tempfile.mkdtemp(prefix="shadow-raw-")
    with started_targets(config, the_plan, base, against=against) as started:  # type: ignore[arg-type]
        pool, (reference, other) = started.pool, started.targets
        upstreams = pool.by_address()
        norm_a = Normaliser({p: n for n, p in reference.listen_ports.items()}, upstreams)
        norm_b = Normaliser({p: n for n, p in other.listen_ports.items()}, upstreams)

        async def drive() -> list[CaseResult]:
            results = []
            for case in cases:
                pool.take()
                a = observed(await run_case(case, reference, pool, idle), norm_a)
                b = observed(await run_case(case, other, pool, idle), norm_b)
                results.append(CaseResult(case, a, b, differences(a, b)))
            return results

        return asyncio.run(drive())
