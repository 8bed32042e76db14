"""Real traffic as shadow requests: access-log lines (read by the config's own ``log_format``) and
HAR files.

Replaying is safe whatever the method: both targets only ever reach the harness's recording
upstreams, never a real backend, so POST, PUT and DELETE are replayed like GET.

What a source does not carry is not invented: an access log has no request headers beyond the
``$http_*`` variables its format logs and no bodies (a request whose method usually has one is sent
with an empty body, and a note says how many); a HAR entry has everything but the connection.
Which logical listen a request goes to: the one whose port the log's ``$server_port`` (or the HAR
URL's port) names, else the first listen of the server whose ``server_name`` matches the Host,
else the config's first listen.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nginx_parser import ConfigError, NginxConfig
from shadow.rewire import Plan, listen_name
from shadow.traffic import Request

COMBINED = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" ' \
           '"$http_user_agent"'
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_ESCAPED = re.compile(r"\\x([0-9A-Fa-f]{2})")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer",
               "proxy-connection"}


@dataclass
class Replayed:
    requests: list[Request] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def log_format(config: NginxConfig, name: str) -> tuple[str, str]:
    """The format string and escape mode of ``log_format name`` (``combined`` is predefined)."""
    if name == "combined":
        return COMBINED, "default"
    for directive in config.all_directives():
        if directive.name == "log_format" and directive.args and directive.args[0] == name:
            args = directive.args[1:]
            escape = "default"
            if args and args[0].startswith("escape="):
                escape, args = args[0][len("escape="):], args[1:]
            return "".join(args), escape
    raise ConfigError(f'unknown log format "{name}"', config.main_file, 0)


def line_pattern(fmt: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex for lines written with ``fmt``: its literal text as is, each variable a group.
    A variable followed by a literal character stops at that character's first occurrence, so
    quoted fields end at their quote (nginx escapes quotes inside values)."""
    names: list[str] = []
    pattern = ""
    position = 0
    for match in _VARIABLE.finditer(fmt):
        pattern += re.escape(fmt[position:match.start()])
        names.append(match.group(1) or match.group(2))
        following = fmt[match.end():match.end() + 1]
        pattern += f"([^{re.escape(following)}]*)" if following else "(.*)"
        position = match.end()
    pattern += re.escape(fmt[position:])
    return re.compile(pattern), names


def _unescape(value: str, escape: str) -> str:
    if escape == "json":
        try:
            return json.loads(f'"{value}"')  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            return value
    if escape == "none":
        return value
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)


def _name_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("~"):
        try:
            return re.search(pattern[1:], host) is not None
        except re.error:
            return False
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return fnmatch.fnmatchcase(host, pattern.lower())


def choose_listen(config: NginxConfig, plan: Plan, host: str, port: int | None) -> str | None:
    """The logical listen a request for ``host`` (on ``port``, when known) goes to."""
    usable = [name for name, info in plan.listens.items() if info.plain_http1]
    if port is not None:
        by_port = [name for name in usable if plan.listens[name].port == port]
        if by_port:
            usable = by_port
    if not usable:
        return None
    servers = config.http.servers if config.http is not None else []
    for server in servers:
        if any(_name_matches(name, host.lower()) for name in server.server_names if name):
            for listen in server.listens:
                if listen_name(listen) in usable:
                    return listen_name(listen)
    return usable[0]


def _headers(host: str, pairs: list[tuple[str, str]], body: bytes, method: str) -> tuple[tuple[str, str], ...]:
    headers = [("Host", host)] if host else []
    headers += [(n, v) for n, v in pairs if n.lower() != "host" and n.lower() not in _HOP_BY_HOP]
    if body or method in _BODY_METHODS:
        headers.append(("Content-Length", str(len(body))))
    return tuple(headers)


def from_access_log(path: str | Path, config: NginxConfig, plan: Plan, format_name: str = "combined",
                    limit: int | None = None) -> Replayed:
    """Requests from an access log written with ``log_format format_name`` of ``config``."""
    fmt, escape = log_format(config, format_name)
    pattern, names = line_pattern(fmt)
    out = Replayed()
    unparsed = bodiless = 0
    for number, line in enumerate(Path(path).read_text(encoding="latin-1").splitlines(), 1):
        if limit is not None and len(out.requests) >= limit:
            break
        match = pattern.fullmatch(line)
        if match is None:
            unparsed += 1
            continue
        values = {name: _unescape(value, escape) for name, value in zip(names, match.groups(), strict=True)}
        request_line = values.get("request", "")
        parts = request_line.split(" ")
        if len(parts) == 3 and parts[2].startswith("HTTP/"):
            method, target, version = parts[0], parts[1], parts[2][5:]
        elif "request_method" in values and "request_uri" in values:
            method, target, version = values["request_method"], values["request_uri"], "1.1"
        else:
            unparsed += 1  # e.g. "-" or a request nginx itself refused as malformed
            continue
        host = values.get("http_host") or values.get("host") or ""
        host = "" if host == "-" else host
        pairs = [(name[5:].replace("_", "-").title(), value) for name, value in values.items()
                 if name.startswith("http_") and name != "http_host" and value not in ("-", "")]
        port = int(values["server_port"]) if values.get("server_port", "").isdigit() else None
        listen = choose_listen(config, plan, host.split(":")[0], port)
        if listen is None:
            unparsed += 1
            continue
        if method in _BODY_METHODS:
            bodiless += 1
        version = version if version in ("1.0", "1.1") else "1.1"
        if not host and version == "1.1":
            version = "1.0"  # nginx refuses an HTTP/1.1 request without Host
        out.requests.append(Request(method, target, _headers(host, pairs, b"", method), listen, "replay: access log",
                                    f"log:{number}", version))
    if unparsed:
        out.notes.append(f"{path}: {unparsed} line(s) not read as requests of log_format {format_name}")
    if bodiless:
        out.notes.append(f"{path}: {bodiless} request(s) replayed with an empty body (access logs carry no bodies)")
    return out


def from_har(path: str | Path, config: NginxConfig, plan: Plan, limit: int | None = None) -> Replayed:
    """Requests from a HAR file (``log.entries[].request``)."""
    try:
        har: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = har["log"]["entries"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a HAR file: {exc}", str(path), 0) from None
    out = Replayed()
    skipped = 0
    for number, entry in enumerate(entries, 1):
        if limit is not None and len(out.requests) >= limit:
            break
        request = entry.get("request", {})
        url = urlsplit(request.get("url", ""))
        if url.scheme not in ("http", "https") or not url.hostname:
            skipped += 1
            continue
        pairs = [(h["name"], h["value"]) for h in request.get("headers", []) if not h["name"].startswith(":")]
        host = next((v for n, v in pairs if n.lower() == "host"), url.netloc)
        post = request.get("postData") or {}
        body = str(post.get("text", "")).encode("utf-8")
        listen = choose_listen(config, plan, url.hostname, url.port)
        if listen is None:
            skipped += 1
            continue
        method = request.get("method", "GET").upper()
        version = "1.0" if str(request.get("httpVersion", "")).upper() == "HTTP/1.0" else "1.1"
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        out.requests.append(Request(method, target, _headers(host, pairs, body, method), listen, "replay: HAR",
                                    f"har:{number}", version, body))
    if skipped:
        out.notes.append(f"{path}: {skipped} entry(ies) skipped (not http(s), or no listen to send them to)")
    return out

