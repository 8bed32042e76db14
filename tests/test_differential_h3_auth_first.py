"""auth_request before the request body over HTTP/3, against real nginx 1.22 over HTTP/2 (and an
answer that does not read the body at all, which comes at the HEADERS too).

nginx 1.22 has no HTTP/3; its HTTP/2 is the reference for what a multiplexed request does (nginx's
HTTP/3 runs the same phases at the HEADERS). The same conversation as
test_differential_h2_auth_first.py (a POST's HEADERS, a pause, then its body) goes to nginx over
HTTP/2 (TLS, ALPN h2) and to newproxy over HTTP/3 and over HTTP/2: the answer each gave before the
body was sent and after it, the requests the recording upstreams had received when the body went
out (the auth subrequest, or nothing), and every upstream request in the end, must be the same.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect

from nginx_parser import parse_config
from shadow.h3 import H3Answer, H3Client, client_configuration
from shadow.rewire import plan
from shadow.runner import started_targets
from tests.test_differential_h2_auth_first import BODY, CASES, CONF, WAIT, _conversation, _seen
from tests.test_h3 import _cert

TLS_CONF = CONF.replace(
    "listen 127.0.0.1:8080 http2;",
    "listen 127.0.0.1:8443 ssl http2;\n        listen 127.0.0.1:8443 quic;\n        http3 on;\n"
    "        ssl_certificate %(crt)s;\n        ssl_certificate_key %(key)s;",
)


def _neutral(talk: dict[str, Any]) -> dict[str, Any]:
    """An HTTP/2 transcript without what only HTTP/2 has (its frames, the stream's reset)."""
    def answer(events: list[Any]) -> tuple[str, bytes] | None:
        status = next((event[1] for event in events if event[0] == "status"), None)
        return None if status is None else (status, b"".join(event[1] for event in events if event[0] == "data"))
    return {"answer before the body": answer(talk["before"]), "answer after the body": answer(talk["after"]),
            "upstream before the body": talk["upstream before the body"],
            "upstream after the body": talk["upstream after the body"]}


async def _h3_conversation(port: int, path: str, extra: tuple[tuple[str, str], ...], midpoint: Any) -> dict[str, Any]:
    async with connect("127.0.0.1", port, configuration=client_configuration("a.test"),
                       create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        loop = asyncio.get_running_loop()
        sid = client._quic.get_next_available_stream_id()
        waiter: asyncio.Future[H3Answer] = loop.create_future()
        client._answers[sid] = (H3Answer(), waiter)
        client.h3.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a.test"),
                                     (b":path", path.encode()), *((n.encode(), v.encode()) for n, v in extra)],
                               end_stream=False)
        client.transmit()
        await asyncio.wait([waiter], timeout=WAIT)
        before = waiter.result() if waiter.done() else None
        upstream_before = midpoint()
        if before is None:
            client.h3.send_data(sid, BODY, end_stream=True)
            client.transmit()
            after: H3Answer | None = await asyncio.wait_for(waiter, 5)
        else:
            after = None
        # The answer's body as the error pages' server name aside (see test_differential_h2_auth_first).
        return {
            "answer before the body": None if before is None else (str(before.status), _page(before.body)),
            "answer after the body": None if after is None else (str(after.status), _page(after.body)),
            "upstream before the body": upstream_before,
        }


def _page(body: bytes) -> bytes:
    return body.replace(b"<center>newproxy</center>", b"<center>nginx</center>")


def test_auth_request_runs_at_the_headers_over_h3_like_nginx_over_h2(tmp_path: Path) -> None:
    crt, key = _cert(tmp_path)
    path = tmp_path / "nginx.conf"
    path.write_text(TLS_CONF % {"crt": crt, "key": key, "root": tmp_path})
    config = parse_config(str(path))
    the_plan = plan(config)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])
    seen: dict[str, dict[str, Any]] = {}
    with started_targets(config, the_plan, str(tmp_path / "run")) as started:
        nginx, newproxy = started.targets
        for label, target, over in (("nginx h2", nginx, "h2"), ("newproxy h2", newproxy, "h2"),
                                    ("newproxy h3", newproxy, "h3")):
            per_case = {}
            for case_path, extra in CASES:
                started.pool.take()
                midpoint = lambda: _seen(started.pool.take())  # noqa: E731
                if over == "h2":
                    talk = _neutral_after(asyncio.run(_conversation(
                        target.listen_ports["127.0.0.1:8443"], case_path, extra, midpoint, tls)), started)
                else:
                    talk = asyncio.run(_h3_conversation(target.listen_ports["127.0.0.1:8443 quic"], case_path,
                                                        extra, midpoint))
                    started.pool.settle()
                    talk["upstream after the body"] = _seen(started.pool.take())
                per_case[case_path + (" with length" if extra else "")] = talk
            seen[label] = per_case
    for case, expected in seen["nginx h2"].items():
        assert seen["newproxy h2"][case] == expected, case
        assert seen["newproxy h3"][case] == expected, case
    # What makes the comparison mean something (as over h2c): a refusal before the body, and the
    # acceptance's subrequest at the auth upstream before the body went out.
    assert seen["nginx h2"]["/deny/a"]["answer before the body"][0] == "401"
    accepted = seen["nginx h2"]["/up/a"]
    assert accepted["answer before the body"] is None and [u[2] for u in accepted["upstream before the body"]] == ["/check"]
    assert accepted["answer after the body"][0] == "200" and accepted["upstream after the body"][0][3] == BODY


def _neutral_after(talk: dict[str, Any], started: Any) -> dict[str, Any]:
    started.pool.settle()
    talk["upstream after the body"] = _seen(started.pool.take())
    return _neutral(talk)
