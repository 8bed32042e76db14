"""Normalise what each target produced, then diff field by field.

Normalisation (the only differences the harness forgives; everything else counts):

1. ``Date`` header values become ``<date>``: time passes between the two requests.
2. ``Server`` header values become ``<server>`` (rules 1 and 2 are data: shadow/data/
   accepted_builtin.yaml, extended by a user's ``--accept`` file), and the server token in built-in error pages
   (``<hr><center>nginx/1.22.1</center>`` vs ``<hr><center>newproxy/0.1.0</center>``) becomes
   ``<hr><center><server></center>``: the products have different names.
3. A ``Content-Length`` that was the length of the body becomes the length of the normalised body
   (else rule 2 would show as a length difference). For bodiless answers (HEAD) of HTML pages with
   a status >= 300, it is shifted by the length difference between the ``Server`` value and
   ``<server>`` (the built-in page embeds that token). A custom HTML error page answering HEAD
   would thus be off by that shift on both sides alike only if both servers name themselves with
   tokens of the same length: such a diff is a harness artefact, not a behaviour difference.
4. Each target's real listen ports are replaced by the logical listen names (``:{listen *:80}``)
   wherever they follow a colon (Location headers, echoed Host headers); recording upstream
   addresses (``127.0.0.1:PORT``) by ``{upstream NAME}`` as written in the original config.
5. Bodies that parse as JSON (the recording upstreams' echoes) are compared as JSON values.
6. A body sent with ``Content-Encoding: gzip`` is decompressed before it is compared (the compressed
   bytes depend on zlib settings and flush points); the Content-Encoding header itself, and
   Content-Length/Transfer-Encoding, are compared as sent, so whether each side compressed must
   agree exactly. Data that does not decompress is compared as it is.
7. Times relative to ``Date`` (``expires``): two ``Expires`` values that differ as written are equal
   when they lie at the same offset from their own response's ``Date`` (``expires 1h`` answered a
   second apart); two ``max-age=N`` in ``Cache-Control`` that differ are equal when ``Date + N`` is
   the same moment (``expires modified 1h``: the expiry is fixed by the file, the age by the clock).
   Everything else in those headers must match exactly, and an ``Expires`` that is fixed on one side
   and relative on the other (``modified`` against ``access``) still differs.

Compared, per request: transport outcome, status, reason phrase, HTTP version, the header list as a
multiset (an order-only difference is a *note*, reported but not counted), the trailers of a chunked
body (likewise), the body, what happened to the connection afterwards, and the list of requests
each target sent upstream (which logical upstream, method, URI, version, headers as above, body). Whether an upstream request reused a
kept-alive connection is a note too (keepalive pool behaviour, invisible to the upstream's answer).
"""

from __future__ import annotations

import calendar
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate
from typing import Any

from shadow.accepted import builtin
from shadow.client import TRANSPORT_FAILURES, Response
from shadow.http1 import has_token, header_values
from shadow.upstreams import RecordedRequest

SERVER = "<server>"
_ERROR_PAGE_TOKEN = re.compile(rb"<hr><center>[^<]*</center>")


@dataclass
class Normaliser:
    """What must be rewritten in one target's output to compare it with another target's."""

    listen_ports: dict[int, str]  # this target's real port -> logical listen name
    upstreams: dict[str, str] = field(default_factory=dict)  # "127.0.0.1:port" -> logical upstream name
    # Lower-case header name -> the value it gets on both sides (shadow/accepted.py: Date, Server, and
    # the user's --accept rules).
    masks: dict[str, str] = field(default_factory=lambda: builtin().masks())

    def __post_init__(self) -> None:
        subs: list[tuple[re.Pattern[str], str]] = []
        for addr, name in self.upstreams.items():
            subs.append((re.compile(re.escape(addr) + r"(?![0-9])"), f"{{upstream {name}}}"))
        for port, name in self.listen_ports.items():
            subs.append((re.compile(rf"(?<=:){port}(?![0-9])"), f"{{listen {name}}}"))
        self._subs = subs

    def text(self, value: str) -> str:
        for pattern, replacement in self._subs:
            value = pattern.sub(replacement, value)
        return value

    def body(self, body: bytes) -> bytes:
        body = _ERROR_PAGE_TOKEN.sub(b"<hr><center>" + SERVER.encode() + b"</center>", body)
        return self.text(body.decode("latin-1")).encode("latin-1")

    def headers(self, headers: list[tuple[str, str]]) -> list[list[str]]:
        out: list[list[str]] = []
        masks = self.masks
        for name, value in headers:
            mask = masks.get(name.lower())
            out.append([name, mask if mask is not None else self.text(value)])
        return out

    def response(self, resp: Response, method: str) -> dict[str, Any]:
        body = self.body(_gunzip(resp))
        headers = self.headers(resp.headers)
        _fix_content_length(headers, resp, body)
        dates = header_values(resp.headers, "Date")
        return {
            "outcome": resp.outcome,
            "status": resp.status,
            "reason": resp.reason,
            "version": resp.version,
            "headers": headers,
            "trailers": self.headers(_trailers(resp)),
            "body": self._echo_masked(_body_value(body)),
            "connection": resp.connection,
            "tls": resp.tls,  # the handshake: certificate, protocol, cipher, resumption (or its failure)
            "date": _http_time(dates[0]) if dates else None,  # for rule 7, not compared itself
        }

    def _echo_masked(self, body: dict[str, Any]) -> dict[str, Any]:
        """A recording upstream's JSON echo repeats the headers it got: mask them there too, so a
        masked header does not come back through the body."""
        echo = body.get("json")
        if isinstance(echo, dict) and isinstance(echo.get("headers"), list) and "upstream" in echo:
            masks = self.masks
            echo["headers"] = [[h[0], masks[h[0].lower()]] if isinstance(h, list) and len(h) == 2
                               and isinstance(h[0], str) and h[0].lower() in masks else h for h in echo["headers"]]
        return body

    def record(self, rec: RecordedRequest) -> dict[str, Any]:
        return {
            "upstream": rec.upstream,
            "connection_seq": rec.connection_seq,
            "method": rec.method,
            "uri": self.text(rec.uri),
            "version": rec.version,
            "headers": self.headers(rec.headers),
            "body": _body_value(self.body(rec.body)),
            # Over TLS: whether the proxy resumed a session (also in the echo, where it is compared).
            "tls_resumed": bool(rec.tls and rec.tls.get("resumed")),
        }


def _gunzip(resp: Response) -> bytes:
    """The body, decompressed when the response says ``Content-Encoding: gzip`` and it is gzip data
    (rule 6): two servers' zlib settings and flush points give different bytes for the same content.
    Data that does not decompress (an upstream's mislabelled body) is compared as it is."""
    if not resp.body or not any(value.strip().lower() == "gzip" for value in header_values(resp.headers,
                                                                                          "Content-Encoding")):
        return resp.body
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = inflater.decompress(resp.body) + inflater.flush()
    except zlib.error:
        return resp.body
    if not inflater.eof or inflater.unused_data:
        return resp.body  # truncated or trailing bytes: a difference to show, not to hide
    return data


def _fix_content_length(headers: list[list[str]], resp: Response, body: bytes) -> None:
    server = header_values(resp.headers, "Server")
    content_type = " ".join(header_values(resp.headers, "Content-Type"))
    for pair in headers:
        if pair[0].lower() != "content-length" or not pair[1].isdigit():
            continue
        length = int(pair[1])
        if resp.body and length == len(resp.body):
            pair[1] = str(len(body))
        elif not resp.body and server and "text/html" in content_type and (resp.status or 0) >= 300:
            pair[1] = str(length - len(server[0]) + len(SERVER))


def _trailers(resp: Response) -> list[tuple[str, str]]:
    """The trailer fields after the last chunk of a chunked body (shadow.http1 keeps them raw), or
    the HTTP/2 trailers (shadow/h2client.py)."""
    if resp.trailers:
        return list(resp.trailers)
    if not has_token(resp.headers, "Transfer-Encoding", "chunked"):
        return []
    raw, pos = resp.raw_body, 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return []
        try:
            size = int(raw[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return []
        pos = eol + 2
        if size == 0:
            break
        pos += size + 2
    out = []
    for line in raw[pos:].split(b"\r\n"):
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        out.append((name, value.strip()))
    return out


def _http_time(value: str) -> int | None:
    parsed = parsedate(value)
    return calendar.timegm(parsed) if parsed is not None else None


_MAX_AGE = re.compile(r"max-age=(\d+)")


def _align_times(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """Rule 7: ``b``'s headers, with an Expires or a max-age that names the same time as ``a``'s
    (relative to each response's Date) given ``a``'s value."""
    headers = [list(h) for h in b["headers"]]
    date_a, date_b = a.get("date"), b.get("date")
    if date_a is None or date_b is None:
        return headers
    for name in ("expires", "cache-control"):
        mine = [h for h in a["headers"] if h[0].lower() == name]
        theirs = [h for h in headers if h[0].lower() == name]
        for x, y in zip(mine, theirs):
            if x[1] == y[1]:
                continue
            if name == "expires":
                ta, tb = _http_time(x[1]), _http_time(y[1])
                if ta is not None and tb is not None and ta - date_a == tb - date_b:
                    y[1] = x[1]
                continue
            ma, mb = _MAX_AGE.search(x[1]), _MAX_AGE.search(y[1])
            if ma is None or mb is None or _MAX_AGE.sub("", x[1]) != _MAX_AGE.sub("", y[1]):
                continue
            if date_a + int(ma.group(1)) == date_b + int(mb.group(1)):
                y[1] = x[1]
    return headers


def _body_value(body: bytes) -> Any:
    if body[:1] in (b"{", b"["):
        try:
            return {"json": json.loads(body)}
        except ValueError:
            pass
    return {"text": body.decode("latin-1")}


@dataclass
class Diff:
    field: str
    nginx: Any  # the reference target's value
    other: Any  # the target under test's value

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "nginx": self.nginx, "other": self.other}


def _diff_headers(prefix: str, a: list[list[str]], b: list[list[str]], diffs: list[Diff], notes: list[Diff]) -> None:
    ca, cb = Counter(map(tuple, a)), Counter(map(tuple, b))
    if ca != cb:
        only_a = sorted((ca - cb).elements())
        only_b = sorted((cb - ca).elements())
        diffs.append(Diff(prefix, [list(h) for h in only_a], [list(h) for h in only_b]))
    elif a != b:
        notes.append(Diff(f"{prefix}.order", [h[0] for h in a], [h[0] for h in b]))


def _is_echo(value: Any) -> bool:
    """A recording upstream's JSON echo (shadow/upstreams.py echo_body)."""
    return isinstance(value, dict) and "upstream" in value and isinstance(value.get("headers"), list) \
        and all(isinstance(h, list) and len(h) == 2 for h in value["headers"])


def _diff_value(prefix: str, a: Any, b: Any, diffs: list[Diff]) -> None:
    """Recursive for JSON objects, so an echo difference names the key (body.json.headers)."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            _diff_value(f"{prefix}.{key}", a.get(key), b.get(key), diffs)
        return
    diffs.append(Diff(prefix, a, b))


def diff_responses(a: dict[str, Any], b: dict[str, Any], diffs: list[Diff], notes: list[Diff]) -> None:
    for key in ("outcome", "status", "reason", "version"):
        if a[key] != b[key]:
            diffs.append(Diff(key, a[key], b[key]))
    _diff_headers("headers", a["headers"], _align_times(a, b), diffs, notes)
    _diff_headers("trailers", a.get("trailers", []), b.get("trailers", []), diffs, notes)
    if a["body"] != b["body"]:
        if "json" in a["body"] and "json" in b["body"]:
            echo_a, echo_b = a["body"]["json"], b["body"]["json"]
            if _is_echo(echo_a) and _is_echo(echo_b):
                # The upstream's echo of the headers it got: compared like header lists (an order-only
                # difference is a note), so the echo does not count what the upstream request's own
                # comparison only notes.
                _diff_headers("body.json.headers", echo_a["headers"], echo_b["headers"], diffs, notes)
                echo_a = {k: v for k, v in echo_a.items() if k != "headers"}
                echo_b = {k: v for k, v in echo_b.items() if k != "headers"}
            _diff_value("body.json", echo_a, echo_b, diffs)
        else:
            diffs.append(Diff("body", _clip(a["body"]), _clip(b["body"])))
    if a["connection"] != b["connection"]:
        diffs.append(Diff("connection", a["connection"], b["connection"]))
    if a.get("tls") != b.get("tls"):
        _diff_value("tls", a.get("tls"), b.get("tls"), diffs)


def diff_upstream(a: list[dict[str, Any]], b: list[dict[str, Any]], diffs: list[Diff], notes: list[Diff]) -> None:
    if len(a) != len(b):
        diffs.append(Diff("upstream.count", len(a), len(b)))
    for i, (ra, rb) in enumerate(zip(a, b, strict=False)):
        prefix = f"upstream[{i}]"
        for key in ("upstream", "method", "uri", "version"):
            if ra[key] != rb[key]:
                diffs.append(Diff(f"{prefix}.{key}", ra[key], rb[key]))
        _diff_headers(f"{prefix}.headers", ra["headers"], rb["headers"], diffs, notes)
        if ra["body"] != rb["body"]:
            _diff_value(f"{prefix}.body", ra["body"], rb["body"], diffs)
        # Whether the request reused a kept-alive upstream connection: a performance behaviour
        # (the keepalive pool), not what the upstream receives, so a note.
        if (ra["connection_seq"] > 1) != (rb["connection_seq"] > 1):
            notes.append(Diff(f"{prefix}.reused_connection", ra["connection_seq"] > 1, rb["connection_seq"] > 1))
    # Requests one side sent and the other did not, shown whole.
    for i in range(len(b), len(a)):
        diffs.append(Diff(f"upstream[{i}]", a[i], None))
    for i in range(len(a), len(b)):
        diffs.append(Diff(f"upstream[{i}]", None, b[i]))


def _clip(value: Any, limit: int = 2000) -> Any:
    if isinstance(value, dict) and "text" in value and len(value["text"]) > limit:
        return {"text": value["text"][:limit] + f"... ({len(value['text'])} chars)"}
    return value


@dataclass
class Observation:
    """One target's normalised answer to one request."""

    response: dict[str, Any]
    upstream: list[dict[str, Any]]


@dataclass
class Comparison:
    verdict: str  # "equivalent", "different", "error"
    diffs: list[Diff]
    notes: list[Diff]


def compare(a: Observation, b: Observation) -> Comparison:
    """Diff the reference target's observation ``a`` against ``b``."""
    diffs: list[Diff] = []
    notes: list[Diff] = []
    diff_responses(a.response, b.response, diffs, notes)
    diff_upstream(a.upstream, b.upstream, diffs, notes)
    if a.response["outcome"] in TRANSPORT_FAILURES or b.response["outcome"] in TRANSPORT_FAILURES:
        verdict = "error"
    else:
        verdict = "different" if diffs else "equivalent"
    return Comparison(verdict, diffs, notes)
