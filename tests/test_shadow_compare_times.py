"""shadow/compare.py rule 7 (Expires and max-age against Date) forgives exactly a clock tick, and
trailers of chunked bodies are compared."""

from __future__ import annotations

from shadow.client import Response
from shadow.compare import Normaliser, Observation, compare

NA = Normaliser({41000: "*:80"})
NB = Normaliser({41001: "*:80"})
D0, D1 = "Fri, 27 Nov 2026 07:00:00 GMT", "Fri, 27 Nov 2026 07:00:01 GMT"


def resp(headers: list[tuple[str, str]], raw_body: bytes = b"") -> Response:
    return Response(outcome="response", status=200, reason="OK", version="1.1", headers=headers,
                    body=b"x" if raw_body else b"", raw_body=raw_body, connection="keep-alive")


def fields(a: Response, b: Response) -> list[str]:
    result = compare(Observation(NA.response(a, "GET"), []), Observation(NB.response(b, "GET"), []))
    return [d.field for d in result.diffs]


def test_expires_relative_to_date_is_forgiven() -> None:
    a = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 08:00:00 GMT"), ("Cache-Control", "max-age=3600")])
    b = resp([("Date", D1), ("Expires", "Fri, 27 Nov 2026 08:00:01 GMT"), ("Cache-Control", "max-age=3600")])
    assert fields(a, b) == []


def test_fixed_expiry_with_ageing_max_age_is_forgiven() -> None:
    a = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 09:00:00 GMT"), ("Cache-Control", "max-age=7200")])
    b = resp([("Date", D1), ("Expires", "Fri, 27 Nov 2026 09:00:00 GMT"), ("Cache-Control", "max-age=7199")])
    assert fields(a, b) == []


def test_real_time_differences_still_count() -> None:
    a = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 08:00:00 GMT"), ("Cache-Control", "max-age=3600")])
    later = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 08:00:01 GMT"), ("Cache-Control", "max-age=3600")])
    assert fields(a, later) == ["headers"]
    age = resp([("Date", D1), ("Expires", "Fri, 27 Nov 2026 08:00:01 GMT"), ("Cache-Control", "max-age=3601")])
    assert fields(a, age) == ["headers"]
    extra = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 08:00:00 GMT"), ("Cache-Control", "max-age=3600, public")])
    assert fields(a, extra) == ["headers"]
    no_cache = resp([("Date", D0), ("Expires", "Fri, 27 Nov 2026 08:00:00 GMT"), ("Cache-Control", "no-cache")])
    assert fields(a, no_cache) == ["headers"]


def test_trailers_are_compared() -> None:
    chunked = [("Transfer-Encoding", "chunked")]
    a = resp(chunked, b"1\r\nx\r\n0\r\nX-T: t\r\n\r\n")
    assert fields(a, resp(chunked, b"1\r\nx\r\n0\r\nX-T: t\r\n\r\n")) == []
    assert fields(a, resp(chunked, b"1\r\nx\r\n0\r\n\r\n")) == ["trailers"]
    assert fields(a, resp(chunked, b"1\r\nx\r\n0\r\nX-T: other\r\n\r\n")) == ["trailers"]
