"""Shadow over HTTP/3: an aioquic client for newproxy's quic listens, and the protocol-neutral
comparison of its answers with HTTP/1.1 ones.

nginx 1.22 has no HTTP/3, so the harness runs nginx on the config without its quic listens and
HTTP/3 directives (shadow/rewire.py), and for each logical request compares:
- newproxy over h3 with newproxy over HTTP/1.1 (same config, same process);
- newproxy over h3 with nginx over HTTP/1.1.
Status, headers (names case-folded; the HTTP/1.1 connection and framing headers, which HTTP/3
forbids, left out), body (as the shadow normalises it) and the upstream requests recorded must agree.
The reason phrase, version and connection fate have no HTTP/3 counterpart and are not compared.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from shadow.client import Response
from shadow.compare import Comparison, Normaliser, Observation, compare
from shadow.rewire import QUIC_SUFFIX, Plan, plan
from shadow.traffic import Request
from shadow.upstreams import RecordedRequest

# HTTP/1.1-only header lines (RFC 9114 4.2): absent from HTTP/3 answers by definition.
_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"))
H3Headers = list[tuple[bytes, bytes]]


@dataclass
class H3Answer:
    """One HTTP/3 answer as the client saw it; ``reset`` when the server reset the stream."""

    status: int | None = None
    headers: H3Headers = field(default_factory=list)
    body: bytes = b""
    trailers: H3Headers = field(default_factory=list)
    reset: bool = False
    # DATA as it comes, joined into ``body`` once the answer is over (``seal``): appending to bytes
    # copies all of it each time, minutes for an answer of a few tens of MiB.
    parts: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def seal(self) -> H3Answer:
        if self.parts:
            self.body += b"".join(self.parts)
            self.parts.clear()
        return self

    def to_response(self) -> Response:
        """The shadow client's Response, so the comparator's normalisation applies unchanged."""
        if self.status is None:  # reset before any answer: HTTP/1.1's close before a byte (nginx's 444)
            return Response(outcome="no-response", version="HTTP/3")
        if self.reset:  # reset inside the answer: HTTP/1.1's close inside a response
            return Response(outcome="truncated", status=self.status, version="HTTP/3")
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers]
        return Response(outcome="response", status=self.status, version="HTTP/3", headers=headers, body=self.body,
                        raw_body=self.body, connection="h3")


class _ClientH3(H3Connection):
    """aioquic's H3Connection, but a HEAD answer's Content-Length is not held against its (empty)
    body: RFC 9110 9.3.2 lets it announce the GET's length; aioquic's check would close the connection."""

    def __init__(self, quic: Any) -> None:
        super().__init__(quic)
        self.head_streams: set[int] = set()

    def _check_content_length(self, stream: Any) -> None:
        if stream.stream_id not in self.head_streams:
            super()._check_content_length(stream)


class H3Client(QuicConnectionProtocol):
    """aioquic's client protocol with an H3Connection: ``request`` sends one request on a new
    stream and waits for its answer; many may be in flight on one connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = _ClientH3(self._quic)
        self._answers: dict[int, tuple[H3Answer, asyncio.Future[H3Answer]]] = {}

    async def request(self, method: bytes, path: bytes, authority: bytes | None, headers: H3Headers = (),  # type: ignore[assignment]
                      body: bytes = b"", scheme: bytes = b"https") -> H3Answer:
        _, waiter = self.send(method, path, authority, headers, body, scheme)
        return await waiter

    def send(self, method: bytes, path: bytes, authority: bytes | None, headers: H3Headers = (),  # type: ignore[assignment]
             body: bytes = b"", scheme: bytes = b"https") -> tuple[int, asyncio.Future[H3Answer]]:
        """Send a request on a new stream now; its stream id, and the future of its answer."""
        sid = self._quic.get_next_available_stream_id()
        pseudo = [(b":method", method), (b":scheme", scheme), *([(b":authority", authority)] if authority else []),
                  (b":path", path)]
        waiter: asyncio.Future[H3Answer] = self._loop.create_future()
        self._answers[sid] = (H3Answer(), waiter)
        if method == b"HEAD":
            self.h3.head_streams.add(sid)
        self.h3.send_headers(sid, [*pseudo, *headers], end_stream=not body)
        if body:
            self.h3.send_data(sid, body, end_stream=True)
        self.transmit()
        return sid, waiter

    def cancel(self, method: bytes, path: bytes, authority: bytes, after: float) -> asyncio.Future[H3Answer]:
        """Send a request, then ``after`` seconds later cancel it (STOP_SENDING and RESET_STREAM with
        H3_REQUEST_CANCELLED, as a browser does) unless it is complete: the answer so far."""
        sid, waiter = self.send(method, path, authority)

        def stop() -> None:
            entry = self._answers.pop(sid, None)
            if entry is not None:
                self._quic.stop_stream(sid, 0x10C)
                self._quic.reset_stream(sid, 0x10C)
                self.transmit()
                entry[0].reset = True
                if not entry[1].done():
                    entry[1].set_result(entry[0].seal())

        self._loop.call_later(after, stop)
        return waiter

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            for answer, waiter in self._answers.values():
                if not waiter.done():
                    answer.reset = True
                    waiter.set_result(answer.seal())
            self._answers.clear()
            return
        if isinstance(event, StreamReset) and event.stream_id in self._answers:
            answer, waiter = self._answers.pop(event.stream_id)
            answer.reset = True
            if not waiter.done():
                waiter.set_result(answer.seal())
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        entry = self._answers.get(getattr(event, "stream_id", -1))
        if entry is None:
            return
        answer, waiter = entry
        if isinstance(event, HeadersReceived):
            if answer.status is None:
                status = dict(event.headers).get(b":status", b"0")
                answer.status = int(status)
                if 100 <= answer.status < 200:  # interim: wait for the final head
                    answer.status = None
                    return
                answer.headers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
            else:
                answer.trailers = list(event.headers)
        elif isinstance(event, DataReceived):
            answer.parts.append(event.data)
        if getattr(event, "stream_ended", False):
            del self._answers[event.stream_id]  # type: ignore[attr-defined]
            if not waiter.done():
                waiter.set_result(answer.seal())


def client_configuration(server_name: str | None = None) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN), server_name=server_name)
    config.verify_mode = ssl.CERT_NONE  # test certificates: the harness compares answers, not trust
    return config


def h3_parts(request: Request) -> tuple[bytes, bytes, bytes | None, H3Headers, bytes]:
    """The HTTP/3 form of a shadow request: Host becomes :authority (as browsers send it); the
    other headers are sent with lower-case names; HTTP/1.1-only headers are left out."""
    authority = None
    headers: H3Headers = []
    for name, value in request.headers:
        lname = name.lower()
        if lname == "host" and authority is None:
            authority = value.encode("latin-1")
        elif lname not in _HOP and lname != "host":
            headers.append((lname.encode("latin-1"), value.encode("latin-1")))
    return request.method.encode(), request.target.encode("latin-1"), authority, headers, request.body


async def h3_exchanges(port: int, requests: Sequence[Request], *, server_name: str | None = None,
                       timeout: float = 5.0, concurrent: bool = False, host: str = "127.0.0.1") -> list[H3Answer]:
    """Send ``requests`` over ONE HTTP/3 connection to ``host:port`` (one after another, or all at
    once with ``concurrent``) and return the answers in order."""
    async with connect(host, port, configuration=client_configuration(server_name),
                       create_protocol=H3Client) as client:
        proto: H3Client = client  # type: ignore[assignment]

        async def one(request: Request) -> H3Answer:
            method, path, authority, headers, body = h3_parts(request)
            return await asyncio.wait_for(proto.request(method, path, authority, headers, body), timeout)

        if concurrent:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        return [await one(r) for r in requests]


def neutral(response: dict[str, Any]) -> dict[str, Any]:
    """A normalised response (shadow.compare.Normaliser.response) with what differs by protocol taken
    out: reason, version, connection fate, TLS details, HTTP/1.1-only headers; names case-folded."""
    out = dict(response)
    for key in ("reason", "version", "connection", "tls"):
        out[key] = None
    out["headers"] = [[name.lower(), value] for name, value in response["headers"] if name.lower() not in _HOP]
    out["trailers"] = [[name.lower(), value] for name, value in response.get("trailers", [])]
    return out


def compare_neutral(norm_a: Normaliser, resp_a: Response, rec_a: list[RecordedRequest],
                    norm_b: Normaliser, resp_b: Response, rec_b: list[RecordedRequest], method: str) -> Comparison:
    """Compare two answers to the same logical request over different protocols."""
    a = Observation(neutral(norm_a.response(resp_a, method)), [norm_a.record(r) for r in rec_a])
    b = Observation(neutral(norm_b.response(resp_b, method)), [norm_b.record(r) for r in rec_b])
    return compare(a, b)


@dataclass
class H3Result:
    """One logical request: nginx over HTTP/1.1, newproxy over HTTP/1.1 and over HTTP/3, compared."""

    request: Request
    nginx_h1: Comparison  # nginx (h1) against newproxy (h3)
    newproxy_h1: Comparison  # newproxy (h1) against newproxy (h3)
    h1_pair: Comparison  # nginx (h1) against newproxy (h1), the same neutral way: the h1 shadow's verdict
    h3: H3Answer
    nginx_h2: Comparison | None = None  # nginx (h2, its `ssl http2` listen) against newproxy (h3)

    @property
    def equivalent(self) -> bool:
        return self.nginx_h1.verdict == "equivalent" and self.newproxy_h1.verdict == "equivalent" and (
            self.nginx_h2 is None or self.nginx_h2.verdict == "equivalent")

    @property
    def h3_faithful(self) -> bool:
        """newproxy's h3 answer is its h1 answer; a difference with nginx is then one its h1 shares
        (the HTTP/1.1 shadow's to find), not one of the HTTP/3 front end."""
        return self.newproxy_h1.verdict == "equivalent" and (
            self.nginx_h1.verdict == "equivalent" or self.h1_pair.verdict != "equivalent")


async def shadow_h3(started: Any, requests: Sequence[Request], quic_listen: str, *, server_name: str | None = None,
                    timeout: float = 5.0, nginx_h2: bool = False) -> list[H3Result]:
    """Each request over HTTP/1.1 (its own ``listen``, TLS as the request says) to nginx, then to
    newproxy, then over HTTP/3 to newproxy's ``quic_listen``; one at a time, the recording upstreams
    drained after each, so every upstream request is attributed (``started``: shadow.runner's
    StartedTargets, nginx first). With ``nginx_h2`` (the request's listen is `ssl http2` in the
    config) each request also goes to nginx over HTTP/2, the closest protocol nginx 1.22 has to h3."""
    from shadow import client, h2client

    nginx, newproxy = started.targets
    pool = started.pool
    # A quic listen's port reads as its TCP twin's logical name ("127.0.0.1:8443 quic" as
    # "127.0.0.1:8443"): in production both are the same port number (what Alt-Svc announces).
    upstreams = pool.by_address()
    norm_nginx, norm_newproxy = (Normaliser({p: n.removesuffix(QUIC_SUFFIX) for n, p in t.listen_ports.items()},
                                            upstreams) for t in (nginx, newproxy))
    port = newproxy.listen_ports[quic_listen]
    results = []
    async with connect("127.0.0.1", port, configuration=client_configuration(server_name),
                       create_protocol=H3Client) as quic:
        proto: H3Client = quic  # type: ignore[assignment]
        for request in requests:
            h1: list[tuple[Response, list[RecordedRequest]]] = []
            for target in (nginx, newproxy):
                ex = await client.exchange(request.to_bytes(), target.listen_ports[request.listen], request.method,
                                           timeout=timeout, tls=request.tls)
                resp = await ex.finish(0.0)
                pool.settle()
                h1.append((resp, pool.take()))
            h2: tuple[Response, list[RecordedRequest]] | None = None
            if nginx_h2:
                ex2 = await h2client.exchange(h2client.to_h2(request), nginx.listen_ports[request.listen],
                                              timeout=timeout)
                pool.settle()
                h2 = (ex2.response, pool.take())
            method, path, authority, headers, body = h3_parts(request)
            answer = await asyncio.wait_for(proto.request(method, path, authority, headers, body), timeout)
            pool.settle()
            rec_h3 = pool.take()
            resp_h3 = answer.to_response()
            results.append(H3Result(
                request,
                compare_neutral(norm_nginx, h1[0][0], h1[0][1], norm_newproxy, resp_h3, rec_h3, request.method),
                compare_neutral(norm_newproxy, h1[1][0], h1[1][1], norm_newproxy, resp_h3, rec_h3, request.method),
                compare_neutral(norm_nginx, h1[0][0], h1[0][1], norm_newproxy, h1[1][0], h1[1][1], request.method),
                answer,
                None if h2 is None else
                compare_neutral(norm_nginx, h2[0], h2[1], norm_newproxy, resp_h3, rec_h3, request.method)))
    return results


def h3_comparable(requests: Sequence[Request], plan: Plan) -> list[Request]:
    """Of generated requests, those to an address that also has a quic listen, made comparable over
    both protocols: HTTP/1.1 only (1.0 and chunked framing have no HTTP/3 form), with a Host (without
    ``:authority`` nor Host aioquic closes the whole connection, where nginx would answer 400 on the
    stream), no CONNECT, header names lower case (HTTP/3 sends them so; what each proxy forwards is
    then compared name for name), aimed at the quic twin's TCP listen."""
    out = []
    for request in requests:
        if request.listen + QUIC_SUFFIX not in plan.listens or request.version != "1.1" or request.method == "CONNECT":
            continue
        names = [name.lower() for name, _ in request.headers]
        if "host" not in names or "transfer-encoding" in names:
            continue
        out.append(replace(request, headers=tuple((name.lower(), value) for name, value in request.headers)))
    return out


def h3_traffic(config: Any, the_plan: Plan, *, seed: int = 0, max_requests: int = 200,
               extra: list[Request] = ()) -> dict[str, list[Request]]:  # type: ignore[assignment]
    """Per quic listen (logical name), the requests to shadow over HTTP/3: the config's generated
    traffic made comparable (``h3_comparable``) and ``extra``, with TLS as the TCP twin needs it."""
    from shadow.traffic import generate, with_tls

    generated, _ = generate(config, the_plan, seed=seed, max_requests=max_requests)
    requests = with_tls(h3_comparable(generated, the_plan) + list(extra), the_plan)
    return {name: [r for r in requests if r.listen + QUIC_SUFFIX == name]
            for name, info in the_plan.listens.items() if info.quic}


def server_name_of(requests: Sequence[Request]) -> str | None:
    """An SNI name for the h3 connection: the first the requests' TLS settings name."""
    return next((r.tls.server_name for r in requests if r.tls is not None and r.tls.server_name), None)


def run_shadow_h3(path: str, workdir: str, *, max_requests: int = 200, seed: int = 0,
                  extra_requests: Callable[[Plan], list[Request]] | None = None) -> list[H3Result]:
    """``nginx-migrate shadow`` for HTTP/3: ``h3_traffic`` for the config (and ``extra_requests``),
    each request over HTTP/1.1 to nginx and newproxy and over HTTP/3 to newproxy's quic listen on
    the same address (``shadow_h3``). Raises ``HarnessError`` when the config has no quic listen or
    the targets cannot start."""
    from nginx_parser import parse_config
    from shadow.runner import HarnessError, started_targets

    config = parse_config(path)
    the_plan = plan(config)
    traffic = h3_traffic(config, the_plan, seed=seed, max_requests=max_requests,
                         extra=extra_requests(the_plan) if extra_requests else [])
    if not traffic:
        raise HarnessError(f"{path}: no listen ... quic: nothing to shadow over HTTP/3")
    results: list[H3Result] = []
    with started_targets(config, the_plan, workdir) as started:
        for name, requests in traffic.items():
            results += asyncio.run(shadow_h3(started, requests, name, server_name=server_name_of(requests)))
    return results
