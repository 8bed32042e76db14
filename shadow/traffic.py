"""Requests derived from a config: deterministic for a given config and seed.

For every server: each server name (wildcards instantiated, regex names sampled), an unknown Host,
no Host at HTTP/1.0 and 1.1, Host spelling variants (case, port, trailing dot), odd header
case/duplicates, a chunked body, a few methods and unknown/odd paths. For every location: its path
and the boundaries around it (path+"x", path+"/", path minus its last char, path+"/deeper/x",
case variants), or for regex locations strings sampled from the regex (and their boundaries), each
with GET, HEAD, POST with a body, HTTP/1.0, and a query string.

Each request says which logical listen it goes to and why it was generated (``group`` names the
server/location, ``label`` the variant), so the report can count per location and per label.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any, Iterator
from urllib.parse import quote

from nginx_parser import Location, NginxConfig, Server
from shadow import regex_sample
from shadow.client import TlsClient
from shadow.rewire import Plan, listen_name

Header = tuple[str, str]
_SAFE = "/:@!$&'()*+,;=-._~"
UA: tuple[Header, ...] = (("User-Agent", "shadow/1"), ("Accept", "*/*"))
POST_BODY = b"a=1&b=two"
UNKNOWN_HOST = "unknown.shadow.invalid"
GROUP_SEP = "›"  # between a server's label and a location's in ``Request.group``


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request-target as sent (already percent-encoded)
    headers: tuple[Header, ...]
    listen: str  # logical listen name
    group: str  # the server or location it was derived from
    label: str  # which variant, e.g. "location.path+x/GET"
    version: str = "1.1"
    body: bytes = b""  # as framed on the wire (chunked bodies include their framing)
    # The client's source address (None: the kernel's choice, 127.0.0.1). Any 127.x.y.z works without
    # setup on Linux (all of 127/8 is loopback): how ip_hash sees different clients.
    source: str | None = None
    # TLS for this request (SNI, protocols, ciphers, session resumption); None: plain TCP, or on an
    # ssl listen TLS with the Host as SNI (``with_tls``, applied by the runner).
    tls: TlsClient | None = None

    def to_bytes(self) -> bytes:
        head = f"{self.method} {self.target} HTTP/{self.version}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        return (head + "\r\n").encode("latin-1") + self.body

    def curl(self, listen_port: int | None = None) -> str:
        """A curl command reproducing this request against the original listen address."""
        if self.listen.startswith("unix:"):
            base, where = "http://localhost", ["--unix-socket", self.listen[5:]]
        else:
            host = self.listen.rsplit(":", 1)[0]
            port = listen_port if listen_port is not None else int(self.listen.rsplit(":", 1)[1])
            host = {"*": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
            base, where = f"http://{host}:{port}", []
            tls = self.tls
            if tls is not None and not tls.plain:
                name = tls.server_name
                base = f"https://{name or host}:{port}"
                where = ["-k", *(["--connect-to", f"{name}:{port}:{host}:{port}"] if name else [])]
                if tls.maximum:
                    where += ["--tls-max", tls.maximum[4:]]
        args = ["curl", "-sS", "-i", "--path-as-is", *where]
        if self.source:
            args += ["--interface", self.source]
        if self.version == "1.0":
            args.append("--http1.0")
        elif self.version == "2":  # shadow/h2client.py: TLS with ALPN h2, or h2c with prior knowledge
            args.append("--http2" if self.tls is not None and not self.tls.plain else "--http2-prior-knowledge")
        if self.method == "HEAD":
            args.append("-I")
        elif self.method != "GET" or self.body:
            args += ["-X", self.method]
        names = {n.lower() for n, _ in self.headers}
        if "host" not in names:
            args += ["-H", "Host:"]
        for name, value in self.headers:
            if name.lower() not in ("content-length",):
                args += ["-H", f"{name}: {value}"]
        if self.body:
            chunked = any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in self.headers)
            # curl frames chunks itself: give it the payload, not our framing.
            payload = _dechunk(self.body) if chunked else self.body
            args += ["--data-binary", payload.decode("latin-1")]
        args.append(base + self.target)
        return shlex.join(args)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("latin-1"),
            "listen": self.listen,
            "group": self.group,
            "label": self.label,
            **({"source": self.source} if self.source else {}),
            **({"tls": {k: v for k, v in vars(self.tls).items() if v}} if self.tls else {}),
        }


def _dechunk(body: bytes) -> bytes:
    payload, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        payload, rest = payload + rest[:size], rest[size + 2 :]
    return payload


def encode_path(path: str) -> str:
    return quote(path, safe=_SAFE)


def instantiate_name(name: str, seed: int) -> tuple[list[str], str | None]:
    """Host values that select server_name ``name``, and a note when there is none."""
    if name == "":
        return [], None
    if name.startswith("~"):
        hosts = regex_sample.sample(name[1:], 2, seed, caseless=True)
        # Host names are letters, digits, dots and dashes; samples with anything else are not usable.
        hosts = [h for h in hosts if h and all(c.isalnum() or c in ".-" for c in h)]
        return hosts, None if hosts else f"regex server_name {name} skipped: no usable sample"
    if name.startswith("*."):
        return [f"a{name[1:]}", f"b.c{name[1:]}"], None
    if name.startswith("."):
        return [name[1:], f"www{name}"], None
    if name.endswith(".*"):
        return [f"{name[:-2]}.com"], None
    return [name.replace("*", "a")], None


@dataclass
class _Builder:
    seed: int
    requests: list[list[Request]] = field(default_factory=list)  # one list per group
    notes: list[str] = field(default_factory=list)
    probes: list[tuple[str, str, str]] = field(default_factory=list)  # map/split_clients inputs, see _probes

    def group(self) -> list[Request]:
        self.requests.append([])
        return self.requests[-1]


def _headers(host: str | None, *extra: Header) -> tuple[Header, ...]:
    base: tuple[Header, ...] = (("Host", host),) if host is not None else ()
    return base + UA + extra


def _with_body(body: bytes, *extra: Header) -> tuple[Header, ...]:
    return (("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body))), *extra)


def _variants(
    out: list[Request], target: str, host: str | None, listen: str, group: str, label: str, full: bool
) -> None:
    """GET / HEAD / POST / HTTP/1.0 / query string for one path (``full``) or GET / HEAD / query only."""
    version = "1.1" if host is not None else "1.0"
    out.append(Request("GET", target, _headers(host), listen, group, f"{label}/GET", version))
    out.append(Request("HEAD", target, _headers(host), listen, group, f"{label}/HEAD", version))
    out.append(Request("GET", target + "?a=1&b=two%20x", _headers(host), listen, group, f"{label}/GET?query", version))
    out.append(
        Request(
            "POST", target, _headers(host, *_with_body(POST_BODY)), listen, group, f"{label}/POST", version, POST_BODY
        )
    )
    if full:
        out.append(Request("GET", target, _headers(host), listen, group, f"{label}/GET-1.0", "1.0"))


def _location_paths(location: Location, seed: int, notes: list[str]) -> list[tuple[str, str]]:
    """(label, decoded path) pairs for one location."""
    path, modifier = location.path, location.modifier
    if modifier == "@":
        return []
    if modifier in ("~", "~*"):
        samples = regex_sample.sample(path, 3, seed, caseless=modifier == "~*", prefix="/")
        if not samples:
            notes.append(
                f"{location.directive.where}: regex location {path!r}: no sample found, only boundaries skipped"
            )
            return []
        paths = [(f"regex.sample{i}", s) for i, s in enumerate(samples)]
        first = samples[0]
        paths += [("regex.sample+x", first + "x"), ("regex.sample-last", first[:-1] or "/")]
        if modifier == "~*":
            paths += [(f"regex.case{i}", s.swapcase()) for i, s in enumerate(samples[:2]) if s.swapcase() != s]
        return paths
    paths = [("path", path), ("path+x", path + "x"), ("path+/", path + "/")]
    if len(path) > 1:
        paths.append(("path-last", path[:-1]))
    if modifier != "=":
        paths.append(("path/deeper", path.rstrip("/") + "/deeper/x"))
    if path.swapcase() != path:
        paths.append(("path.case", path.swapcase()))
    return paths


def _iter_locations(locations: list[Location], outer: str = "") -> Iterator[tuple[str, Location]]:
    for location in locations:
        name = f"{outer}location {location.modifier + ' ' if location.modifier else ''}{location.path}"
        yield name, location
        yield from _iter_locations(location.locations, name + " > ")


def _is_default(server: Server, listen: str, servers: list[Server]) -> bool:
    """Whether ``server`` gets the requests of ``listen`` whose Host matches no name."""
    on_listen = [s for s in servers if any(listen_name(l) == listen for l in s.listens)]
    flagged = [s for s in on_listen if any(listen_name(l) == listen and l.default_server for l in s.listens)]
    return (flagged or on_listen)[0] is server


def server_label(server: Server) -> str:
    names = " ".join(n for n in server.server_names if n) or '""'
    return f"server {names} ({os.path.basename(server.directive.file)}:{server.directive.line})"


def _server_requests(b: _Builder, server: Server, servers: list[Server], plan: Plan) -> None:
    listens = [listen_name(l) for l in server.listens]
    usable = [n for n in dict.fromkeys(listens) if plan.listens[n].plain_http1]
    label = server_label(server)
    if not usable:
        b.notes.append(f"{label}: only TLS/HTTP2/proxy_protocol listens, no traffic sent")
        return
    hosts: list[str] = []
    for name in server.server_names:
        instances, note = instantiate_name(name, b.seed)
        hosts += instances
        if note:
            b.notes.append(f"{server.directive.where}: {note}")
    hosts = list(dict.fromkeys(hosts))
    main_listen = usable[0]
    # The Host that reaches this server for location traffic; None: HTTP/1.0 without Host.
    host: str | None = hosts[0] if hosts else ("shadow.invalid" if _is_default(server, main_listen, servers) else None)

    out = b.group()
    for listen in usable:
        for name in hosts[:6]:
            out.append(Request("GET", "/", _headers(name), listen, label, "host.name"))
        out.append(Request("GET", "/", _headers(UNKNOWN_HOST), listen, label, "host.unknown"))
        out.append(Request("GET", "/", _headers(None), listen, label, "host.none-1.0", "1.0"))
        out.append(Request("GET", "/", _headers(None), listen, label, "host.none-1.1"))
    h = host  # None: this server is reached only without a Host, so the requests below use HTTP/1.0
    if h is not None:
        out.append(Request("GET", "/", _headers(h.upper()), main_listen, label, "host.upper"))
        out.append(Request("GET", "/", _headers(f"{h}:8080"), main_listen, label, "host.port"))
        out.append(Request("GET", "/", _headers(f"{h}."), main_listen, label, "host.trailing-dot"))
    version = "1.1" if h is not None else "1.0"
    odd_headers = (
        ("X-Custom-Header", "one"),
        ("x-custom-header", "two"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Accept-Encoding", "gzip"),
        ("Connection", "close"),
    )
    out.append(Request("GET", "/", _headers(h, *odd_headers), main_listen, label, "headers.odd", version))
    out.append(
        Request("GET", "/", _headers(h, ("Connection", "keep-alive")), main_listen, label, "conn.keep-alive-1.0", "1.0")
    )
    out.append(Request("GET", "/", _headers(h, ("Connection", "close")), main_listen, label, "conn.close", version))
    chunked = b"4\r\nab=c\r\n5\r\n&d=ef\r\n0\r\n\r\n"
    out.append(
        Request(
            "POST",
            "/",
            _headers(h, ("Transfer-Encoding", "chunked")),
            main_listen,
            label,
            "body.chunked",
            "1.1",
            chunked,
        )
    )
    for method in ("OPTIONS", "DELETE", "PATCH", "TRACE"):
        out.append(Request(method, "/", _headers(h), main_listen, label, f"method.{method}", version))
    out.append(Request("PUT", "/", _headers(h, *_with_body(b"put")), main_listen, label, "method.PUT", version, b"put"))
    for i, target in enumerate(
        [
            "/__shadow__/unknown",
            "/a//b",
            "/a/./b/../c",
            "/%7Euser/x%20y",
            "/index.html",
            "/favicon.ico",
            "/x?arg=a%20b&arg=2",
            "/%2e%2e/etc",
        ]
    ):
        out.append(Request("GET", target, _headers(h), main_listen, label, f"path.odd{i}", version))
    # Adversarial sizes, inside nginx's default limits (large_client_header_buffers 4 8k): a long
    # header line, a long target, many duplicates of one header.
    out.append(Request("GET", "/", _headers(h, ("X-Long", "v" * 6000)), main_listen, label, "headers.long", version))
    out.append(Request("GET", "/" + "seg/" * 500 + "end?" + "q=1&" * 200, _headers(h), main_listen, label,
                       "path.long", version))
    out.append(Request("GET", "/", _headers(h, *(("X-Dup", str(i)) for i in range(50))), main_listen, label,
                       "headers.many-duplicates", version))

    for name, location in _iter_locations(server.locations):
        group = f"{label} {GROUP_SEP} {name}"
        lout = b.group()
        paths = _location_paths(location, b.seed, b.notes)
        per_path: list[list[Request]] = []
        for i, (path_label, path) in enumerate(paths):
            per_path.append([])
            _variants(per_path[-1], encode_path(path), h, main_listen, group, f"location.{path_label}", full=i == 0)
        # Each path's GET first (both sides of the location's boundary), then each path's HEAD...:
        # when the run is capped, the first requests of a group are the ones that tell most.
        lout.extend(r for variants in itertools.zip_longest(*per_path) for r in variants if r is not None)
        if paths:
            _rewrite_requests(lout, list(location.directives()), paths[0][1], h, main_listen, group, b.seed, version)
    _rewrite_requests(b.group(), list(server.directive.children()), "/", h, main_listen, label, b.seed, version)
    bases = ["/"] + [paths[0][1] for _, loc in _iter_locations(server.locations)
                     if (paths := _location_paths(loc, b.seed, []))]
    _probe_requests(b.group(), b.probes, list(dict.fromkeys(bases)), h, main_listen, label, version)


def _rewrite_requests(out: list[Request], directives: list[Any], base: str, host: str | None, listen: str,
                      group: str, seed: int, version: str) -> None:
    """Requests aimed at the rewrite module: paths sampled from each ``rewrite`` regex, and for each
    ``if`` a request that makes its condition hold (an argument, a header, a method, a path)."""
    for directive in directives:
        if directive.name == "rewrite" and directive.args:
            for i, path in enumerate(regex_sample.sample(directive.args[0], 3, seed, prefix="/")):
                target = encode_path(path)
                out.append(Request("GET", target, _headers(host), listen, group, f"rewrite.sample{i}", version))
                out.append(Request("HEAD", target, _headers(host), listen, group, f"rewrite.sample{i}/HEAD", version))
                out.append(Request("GET", target + "?a=1&id=7", _headers(host), listen, group,
                                   f"rewrite.sample{i}?query", version))
        elif directive.name == "if":
            _if_requests(out, directive.args, base, host, listen, group, seed, version)
            _rewrite_requests(out, list(directive.children()), base, host, listen, group, seed, version)


def _if_requests(out: list[Request], args: list[str], base: str, host: str | None, listen: str, group: str,
                 seed: int, version: str) -> None:
    if len(args) not in (1, 3) or not args[0].startswith("$"):
        return
    variable = args[0][1:].strip("{}")
    values = ["1"]
    if len(args) == 3:
        operator, operand = args[1], args[2]
        if operator.lstrip("!") in ("~", "~*"):
            values = regex_sample.sample(operand, 2, seed, caseless=operator.endswith("*")) or ["x"]
        else:
            values = [operand, operand + "x"]
    target = encode_path(base)
    for i, value in enumerate(values):
        label = f"if.{variable}.{i}"
        if variable.startswith("arg_"):
            query = quote(variable[4:], safe="") + "=" + quote(value, safe="")
            out.append(Request("GET", f"{target}?{query}", _headers(host), listen, group, label, version))
        elif variable in ("args", "query_string"):
            out.append(Request("GET", f"{target}?{quote(value, safe='=&')}", _headers(host), listen, group, label,
                               version))
        elif variable.startswith("http_") and variable != "http_host":
            name = variable[5:].replace("_", "-")
            headers: tuple[Header, ...] = (("Host", host),) if host is not None else ()
            headers += tuple(kv for kv in UA if kv[0].lower() != name.lower()) + ((name, value),)
            out.append(Request("GET", target, headers, listen, group, label, version))
        elif variable in ("host", "http_host") and value and all(c.isalnum() or c in ".-" for c in value):
            out.append(Request("GET", target, _headers(value), listen, group, label, "1.1"))
        elif variable == "request_method" and value.isalpha() and value.isupper():
            out.append(Request(value, target, _headers(host), listen, group, label, version))
        elif variable in ("uri", "request_uri", "document_uri") and value.startswith("/"):
            out.append(Request("GET", encode_path(value), _headers(host), listen, group, label, version))


def probe_inputs(variable: str, values: list[str]) -> list[tuple[str, str, str]]:
    """How a request makes nginx's ``variable`` ("$arg_x", "$http_user_agent"...) take each of
    ``values``: (kind, name, value) with kind "path", "arg", "header" or "method"; values the
    request cannot carry are left out."""
    out: list[tuple[str, str, str]] = []
    name = variable.strip().lstrip("$").strip("{}")
    for value in values:
        if name in ("uri", "document_uri", "request_uri") and value.startswith("/"):
            out.append(("path", "", value))
        elif name.startswith("arg_"):
            out.append(("arg", name[4:], value))
        elif name in ("host", "http_host") and value and all(c.isalnum() or c in ".-" for c in value):
            out.append(("header", "Host", value))
        elif name.startswith("http_"):
            out.append(("header", name[5:].replace("_", "-").title(), value))
        elif name.startswith("cookie_"):
            out.append(("header", "Cookie", f"{name[7:]}={value}"))
        elif name == "request_method" and value.isalpha() and value.isupper():
            out.append(("method", "", value))
    return out


def _probes(config: NginxConfig, seed: int) -> list[tuple[str, str, str]]:
    """(kind, name, value) inputs that select each entry of each ``map`` (and vary each
    ``split_clients`` key): kind "header", "path", "arg" or "method"."""
    out: list[tuple[str, str, str]] = []
    if config.http is None:
        return out

    def add(source: str, values: list[str]) -> None:
        out.extend(probe_inputs(source, values))

    for m in config.http.maps:
        values: list[str] = []
        for entry in m.entries:
            if entry.kind in ("regex", "regex_caseless"):
                values += regex_sample.sample(entry.key, 2, seed, caseless=entry.kind == "regex_caseless")
            elif entry.kind == "hostname":
                values += instantiate_name(entry.key, seed)[0]
            else:
                values += [entry.key, entry.key + "x"]
        add(m.source, [v for v in values if v.isprintable()])
    for split in config.http.split_clients:
        for var in re.findall(r"\$\{?(\w+)", split.source):
            add(var, [f"client-{i}" for i in range(8)])
    return out


def _probe_requests(out: list[Request], probes: list[tuple[str, str, str]], bases: list[str], host: str | None,
                    listen: str, group: str, version: str) -> None:
    """Every map entry (and split_clients key) reached from every location of the server: the value a
    map yields is often what an ``if`` or a proxy header of that location looks at."""
    for i, (kind, name, value) in enumerate(probes):
        label = f"probe{i}.{kind}"
        if kind == "path":
            for method in ("GET", "HEAD"):
                out.append(Request(method, encode_path(value), _headers(host), listen, group, label, version))
            out.append(Request("GET", encode_path(value) + "?a=1", _headers(host), listen, group, label, version))
            out.append(Request("POST", encode_path(value), _headers(host, *_with_body(POST_BODY)), listen, group,
                               label, version, POST_BODY))
            out.append(Request("GET", encode_path(value), _headers(None), listen, group, label, "1.0"))
            continue
        for base in bases:
            target = encode_path(base)
            if kind == "arg":
                query = quote(name, safe="") + "=" + quote(value, safe="")
                out.append(Request("GET", f"{target}?{query}", _headers(host), listen, group, label, version))
                out.append(Request("HEAD", f"{target}?a=1&{query}", _headers(host), listen, group, label, version))
            elif kind == "method":
                out.append(Request(value, target, _headers(host), listen, group, label, version))
            elif name == "Host":
                out.append(Request("GET", target, _headers(value), listen, group, label, "1.1"))
            else:
                headers: tuple[Header, ...] = (("Host", host),) if host is not None else ()
                headers += tuple(kv for kv in UA if kv[0].lower() != name.lower()) + ((name, value),)
                out.append(Request("GET", target, headers, listen, group, label, version))
                out.append(Request("HEAD", target + "?a=1", headers, listen, group, label, version))
                out.append(Request("POST", target, headers + _with_body(POST_BODY), listen, group, label, version,
                                   POST_BODY))


def _dedupe(groups: list[list[Request]]) -> list[list[Request]]:
    seen: set[tuple[Any, ...]] = set()
    out: list[list[Request]] = []
    for group in groups:
        kept = []
        for r in group:
            key = (r.method, r.target, r.headers, r.listen, r.version, r.body)
            if key not in seen:
                seen.add(key)
                kept.append(r)
        if kept:
            out.append(kept)
    return out


def _cap(groups: list[list[Request]], limit: int | None) -> list[Request]:
    """All requests in generation order; over ``limit``, a round-robin pick across groups so each
    server/location keeps some traffic, still sent in generation order."""
    flat = [(gi, ri) for gi, group in enumerate(groups) for ri in range(len(group))]
    if limit is None or len(flat) <= limit:
        return [groups[gi][ri] for gi, ri in flat]
    chosen: set[tuple[int, int]] = set()
    depth = 0
    while len(chosen) < limit:
        for gi, group in enumerate(groups):
            if depth < len(group) and len(chosen) < limit:
                chosen.add((gi, depth))
        depth += 1
    return [groups[gi][ri] for gi, ri in flat if (gi, ri) in chosen]


def generate(
    config: NginxConfig, plan: Plan, *, seed: int = 0, max_requests: int | None = None,
    nginx_prefix: str | None = None,
) -> tuple[list[Request], list[str]]:
    """The requests for ``config`` (at most ``max_requests``) and notes on what could not be generated.
    With ``nginx_prefix``, the files under each root/alias are requested too (shadow/files_traffic.py)."""
    b = _Builder(seed=seed, probes=_probes(config, seed))
    servers = config.http.servers if config.http else []
    for server in servers:
        _server_requests(b, server, servers, plan)
    if nginx_prefix is not None:
        from shadow.files_traffic import file_requests

        b.requests += file_requests(config, plan, nginx_prefix, Request)  # type: ignore[arg-type]
    return _cap(_dedupe(b.requests), max_requests), b.notes


def sni_for(host: str | None) -> str | None:
    """The SNI name a browser sends for a Host: none for an IP address or no Host, else the host
    without its port (as written: nginx's $ssl_server_name shows the case the client sent)."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else ""
    if not name or name.startswith(".") or re.fullmatch(r"[0-9.]+", name):
        return None
    try:
        name.encode("idna")
    except UnicodeError:
        return None
    return name


def with_tls(requests: list[Request], plan: Plan) -> list[Request]:
    """Requests to an ssl listen go over TLS with the Host as SNI unless they say otherwise."""
    ssl_listens = {name for name, info in plan.listens.items() if info.ssl}
    if not ssl_listens:
        return requests
    out = []
    for request in requests:
        if request.tls is None and request.listen in ssl_listens:
            host = next((value for name, value in request.headers if name.lower() == "host"), None)
            request = replace(request, tls=TlsClient(server_name=sni_for(host)))
        out.append(request)
    return out
