"""Normalisation forgives exactly what it documents, and real differences are reported."""

from __future__ import annotations

import json

from shadow.client import Response
from shadow.compare import Normaliser, Observation, compare
from shadow.upstreams import RecordedRequest

NGINX_PAGE = b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
OTHER_PAGE = NGINX_PAGE.replace(b"nginx/1.22.1", b"newproxy/0.1.0")

# Each target has its own listen port for the same logical listen "*:80".
NA = Normaliser({41000: "*:80"}, {"127.0.0.1:42000": "backend:8080"})
NB = Normaliser({41001: "*:80"}, {"127.0.0.1:42000": "backend:8080"})


def resp(status: int = 200, headers: list[tuple[str, str]] | None = None, body: bytes = b"", **kw: str) -> Response:
    return Response(
        outcome=kw.get("outcome", "response"),
        status=status,
        reason=kw.get("reason", "OK"),
        version="1.1",
        headers=headers or [],
        body=body,
        connection=kw.get("connection", "keep-alive"),
    )


def obs(
    norm: Normaliser, r: Response, method: str = "GET", upstream: list[RecordedRequest] | None = None
) -> Observation:
    return Observation(norm.response(r, method), [norm.record(u) for u in upstream or []])


def verdict(a: Response, b: Response, method: str = "GET"):  # type: ignore[no-untyped-def]
    return compare(obs(NA, a, method), obs(NB, b, method))


def test_date_and_server_are_normalised() -> None:
    a = resp(headers=[("Server", "nginx/1.22.1"), ("Date", "Mon, 01 Jan 2024 00:00:00 GMT")])
    b = resp(headers=[("Server", "newproxy/0.1.0"), ("Date", "Mon, 01 Jan 2024 00:00:07 GMT")])
    c = verdict(a, b)
    assert c.verdict == "equivalent", c.diffs


def test_error_page_token_and_content_length() -> None:
    a = resp(
        404,
        [("Server", "nginx/1.22.1"), ("Content-Type", "text/html"), ("Content-Length", str(len(NGINX_PAGE)))],
        NGINX_PAGE,
    )
    b = resp(
        404,
        [("Server", "newproxy/0.1.0"), ("Content-Type", "text/html"), ("Content-Length", str(len(OTHER_PAGE)))],
        OTHER_PAGE,
    )
    assert verdict(a, b).verdict == "equivalent"
    # HEAD: no body, the length is shifted by the token's length.
    ha = resp(
        404, [("Server", "nginx/1.22.1"), ("Content-Type", "text/html"), ("Content-Length", str(len(NGINX_PAGE)))]
    )
    hb = resp(
        404, [("Server", "newproxy/0.1.0"), ("Content-Type", "text/html"), ("Content-Length", str(len(OTHER_PAGE)))]
    )
    assert verdict(ha, hb, "HEAD").verdict == "equivalent"


def test_listen_ports_become_logical_names() -> None:
    a = resp(301, [("Location", "http://example.com:41000/x/")])
    b = resp(301, [("Location", "http://example.com:41001/x/")])
    c = verdict(a, b)
    assert c.verdict == "equivalent"
    assert obs(NA, a).response["headers"] == [["Location", "http://example.com:{listen *:80}/x/"]]


def test_port_only_replaced_as_a_whole_number_after_a_colon() -> None:
    assert NA.text("a:410001 b:41000/ 41000") == "a:410001 b:{listen *:80}/ 41000"


def test_a_header_difference_is_reported() -> None:
    a = resp(headers=[("X-Frame-Options", "DENY"), ("Content-Length", "0")])
    b = resp(headers=[("X-Frame-Options", "SAMEORIGIN"), ("Content-Length", "0")])
    c = verdict(a, b)
    assert c.verdict == "different"
    [d] = c.diffs
    assert d.field == "headers"
    assert d.nginx == [["X-Frame-Options", "DENY"]]
    assert d.other == [["X-Frame-Options", "SAMEORIGIN"]]


def test_header_name_case_is_a_difference() -> None:
    c = verdict(resp(headers=[("X-A", "1")]), resp(headers=[("x-a", "1")]))
    assert c.verdict == "different"


def test_header_order_is_a_note_not_a_difference() -> None:
    c = verdict(resp(headers=[("A", "1"), ("B", "2")]), resp(headers=[("B", "2"), ("A", "1")]))
    assert c.verdict == "equivalent"
    assert [n.field for n in c.notes] == ["headers.order"]


def test_status_body_and_connection_differences() -> None:
    c = verdict(
        resp(200, body=b"x", connection="keep-alive"), resp(502, body=b"y", connection="closed", reason="Bad Gateway")
    )
    assert {d.field for d in c.diffs} == {"status", "reason", "body", "connection"}


def _record(uri: str, headers: list[tuple[str, str]], upstream: str = "backend:8080", seq: int = 1) -> RecordedRequest:
    return RecordedRequest(upstream, b"", "GET", uri, "1.0", headers, b"", seq)


def test_json_echo_bodies_compare_as_json_with_key_names() -> None:
    echo_a = {"upstream": "backend:8080", "uri": "/a", "headers": [["Host", "127.0.0.1:42000"]]}
    echo_b = {"uri": "/a", "upstream": "backend:8080", "headers": [["Host", "127.0.0.1:42000"]]}
    a = resp(body=json.dumps(echo_a).encode(), headers=[("Content-Type", "application/json")])
    b = resp(body=json.dumps(echo_b, indent=2).encode(), headers=[("Content-Type", "application/json")])
    assert verdict(a, b).verdict == "equivalent"
    assert obs(NA, a).response["body"]["json"]["headers"] == [["Host", "{upstream backend:8080}"]]
    echo_b["uri"] = "/b"
    b = resp(body=json.dumps(echo_b).encode(), headers=[("Content-Type", "application/json")])
    assert [d.field for d in verdict(a, b).diffs] == ["body.json.uri"]


def test_upstream_differences() -> None:
    ok = resp()
    a = obs(NA, ok, upstream=[_record("/x", [("Host", "127.0.0.1:42000"), ("Connection", "close")])])
    b = obs(NB, ok, upstream=[_record("/x", [("Host", "127.0.0.1:42000"), ("Connection", "close")])])
    assert compare(a, b).verdict == "equivalent"
    b = obs(NB, ok, upstream=[_record("/y", [("Host", "127.0.0.1:42000")], upstream="other:80")])
    fields = {d.field for d in compare(a, b).diffs}
    assert fields == {"upstream[0].upstream", "upstream[0].uri", "upstream[0].headers"}
    b = obs(NB, ok, upstream=[])
    c = compare(a, b)
    assert [d.field for d in c.diffs] == ["upstream.count", "upstream[0]"]


def test_transport_failure_is_an_error() -> None:
    c = verdict(resp(), Response(outcome="refused", connection="closed"))
    assert c.verdict == "error"
    assert c.diffs


def test_upstream_connection_reuse_is_a_note() -> None:
    ok = resp()
    a = obs(NA, ok, upstream=[_record("/x", [], seq=3)])
    b = obs(NB, ok, upstream=[_record("/x", [], seq=1)])
    c = compare(a, b)
    assert c.verdict == "equivalent"
    assert [n.field for n in c.notes] == ["upstream[0].reused_connection"]


def test_gzip_bodies_compare_decompressed_but_encoding_exactly() -> None:
    """Rule 6: gzip bodies compressed differently (level, flush points) are equal once decompressed;
    whether each side compressed is not forgiven, nor is different content or broken gzip data."""
    import gzip as gz
    import zlib

    text = b"some body text " * 50
    chunked = zlib.compressobj(9, zlib.DEFLATED, 31)
    flushed = chunked.compress(text[:100]) + chunked.flush(zlib.Z_SYNC_FLUSH) + chunked.compress(text[100:]) + \
        chunked.flush()
    encoded = [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
    a = resp(headers=encoded, body=gz.compress(text, 1))
    assert gz.compress(text, 1) != flushed
    assert verdict(a, resp(headers=encoded, body=flushed)).verdict == "equivalent"
    other = verdict(a, resp(headers=encoded, body=gz.compress(text + b"x")))
    assert [d.field for d in other.diffs] == ["body"]
    one_side = verdict(a, resp(headers=[("Content-Length", str(len(text)))], body=text))
    assert one_side.verdict == "different" and "headers" in [d.field for d in one_side.diffs]
    broken = verdict(a, resp(headers=encoded, body=gz.compress(text, 1)[:-4]))
    assert broken.verdict == "different"
    # A body labelled gzip that is not gzip data is compared as it is.
    assert verdict(resp(headers=encoded, body=b"{}"), resp(headers=encoded, body=b"{}")).verdict == "equivalent"
