"""Server selection and location precedence: newproxy against real nginx, through the shadow harness.

Each location and server answers with a probe naming itself (``return 200 "… $uri"``), so a request
that lands elsewhere under newproxy than under nginx shows as a body difference.
"""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

DATA = Path(__file__).parent / "data" / "differential"


def location_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    paths = [
        "/", "/docs", "/docs/", "/docsx", "/docs/index", "/docs/index/", "/docs/indexx", "/assets/a.png",
        "/assets/", "/images/a.png", "/images/a.gif", "/images/icons/a.png", "/images/icons/x", "/images/",
        "/x/a.PNG", "/x/a.jpg", "/x/A.JpG", "/api/v1/users", "/api/v1/users/7", "/api/v22/x", "/api/v2/admin/x",
        "/api/x", "/glued", "/glued/", "/x/style.css", "/x/style.CsS", "/Case", "/case", "/CASE/x",
        "/a/../docs/", "/docs/./index", "//docs//index", "/%64ocs/", "/docs%2Findex", "/x?y=1&z=2",
        "/images/../assets/a.png", "/a.png?x=.jpg",
    ]
    return [get(listen, path, "loc.test", f"hand-picked {path}") for path in paths]


def test_location_precedence_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "locations.conf"), str(tmp_path), location_requests, max_requests=300)
    assert_equivalent(report, minimum=300)


def server_requests(plan: Plan) -> list[Request]:
    out = []
    hosts = [
        "first.test", "FIRST.TEST", "first.test.", "first.test:8080", "default.test", "nobody.test",
        "a.wild.test", "x.y.wild.test", "wild.test", "a.deep.wild.test", "www.trail.com", "www.trail.co.uk",
        "dot.test", "a.dot.test", "abc.re.test", "api12.test", "api.test", "other.test", "",
        # ngx_http_validate_host's corners, checked against the binary:
        ".first.test", "a\\b", "[::1", "[::1]:8080", "a b", "a\tb", "first..test", "first.test:80.", "a.:1.2",
        "x/y", ":8080", ".",
    ]
    for listen in plan.listens:
        for host in hosts:
            out.append(get(listen, "/", host, f"host {host!r} on {listen}"))
        out.append(get(listen, "/", None, f"no Host on {listen}", version="1.0"))
        out.append(get(listen, "http://other.test/abs", "first.test", f"absolute URI on {listen}"))
    return out


def test_server_selection_matches_nginx(tmp_path: Path) -> None:
    report = shadow(str(DATA / "servers.conf"), str(tmp_path), server_requests, max_requests=200)
    assert_equivalent(report, minimum=200)


# Every status nginx treats specially, and a sample of the rest.
CODES = [200, 201, 203, 204, 206, 299, 300, 301, 302, 303, 304, 305, 307, 308, 399, 400, 401, 402, 403, 404, 405,
         406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 429, 444, 451, 494, 495, 496, 497,
         498, 499, 500, 501, 502, 503, 504, 505, 506, 507, 508, 599]


def test_return_forms_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "nginx.conf").write_text((DATA / "returns.conf").read_text())
    lines = [f"location = /c/{code} {{ return {code}; }}\nlocation = /t/{code} {{ return {code} \"text {code}\"; }}"
             for code in CODES]
    (conf / "returns-codes.inc").write_text("\n".join(lines) + "\n")

    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        out = []
        for prefix in ("c", "t"):
            for code in CODES:
                for method in ("GET", "HEAD"):
                    out.append(get(listen, f"/{prefix}/{code}", "ret.test", f"{method} /{prefix}/{code}", method))
        for path in ("/url?q=1", "/scheme", "/rel301", "/rel302", "/empty301", "/text", "/page.html",
                     "/image.JPG", "/typed", "/typed.json", "/close"):
            out.append(get(listen, path, "ret.test", f"GET {path}"))
            out.append(get(listen, path, "Ret.Test:8080", f"GET {path} odd Host"))
            out.append(get(listen, path, None, f"GET {path} HTTP/1.0 no Host", version="1.0"))
        return out

    report = shadow(str(conf / "nginx.conf"), str(tmp_path / "run"), requests, max_requests=50)
    assert_equivalent(report, minimum=4 * len(CODES))


def test_conflicting_server_names_match_nginx(tmp_path: Path) -> None:
    def requests(plan: Plan) -> list[Request]:
        listen = next(iter(plan.listens))
        hosts = ["exact.test", "a.exact.test", "star.test", "a.star.test", ".star.test", ".exact.test", "fresh.test",
                 "a.fresh.test", "upper.test", "UPPER.test", "www.trail.com", "ab.caseless.test", "AB.CASELESS.TEST",
                 "12.digits.test", "x.nondigit.test", "x1.nondigit.test", "X.NONDIGIT.TEST", "other.test"]
        return [get(listen, "/", host, f"host {host}") for host in hosts]

    report = shadow(str(DATA / "server_conflicts.conf"), str(tmp_path), requests, max_requests=0)
    assert_equivalent(report, minimum=18)
