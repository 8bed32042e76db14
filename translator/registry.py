"""What the translator does with each nginx directive: the single place the gap report is derived from.

A directive not listed in ``RULES`` is reported as ``unsupported`` when it is in the parser's
directive table (nginx_parser.directives: nginx 1.22–1.27 core and standard modules, and common
third-party modules, said as such) and ``unknown`` otherwise. Adding a rule here without
handling the directive in ``translate.py`` is caught by a test: every ``exact`` name must be read
by the translator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nginx_parser.directives import classify as classify_origin

Level = Literal["exact", "caveat", "ignored", "unsupported", "unknown"]


@dataclass(frozen=True, slots=True)
class Rule:
    level: Level
    reason: str = ""


_BLOCKS = "block structure, translated through its contents"

RULES: dict[str, Rule] = {
    # Structure.
    "http": Rule("exact", _BLOCKS),
    "server": Rule("exact", _BLOCKS),  # also `server` inside upstream{}, see UPSTREAM_RULES
    "location": Rule("exact", "location matching with nginx's precedence"),
    "upstream": Rule("exact", _BLOCKS),
    "events": Rule("ignored", "newproxy's event loop needs no settings"),
    # Core.
    "listen": Rule("exact"),
    "server_name": Rule("exact"),
    "default_type": Rule("exact"),
    "types": Rule("exact", "MIME types by extension, for responses newproxy makes"),
    "client_max_body_size": Rule("exact"),
    "server_tokens": Rule("caveat", "on/off kept; newproxy announces itself as newproxy, not nginx"),
    "pid": Rule("exact"),
    "error_log": Rule("caveat", "main-level file kept; the level and per-block error_log are not applied, "
                                "and newproxy's messages are its own, not nginx's"),
    "worker_processes": Rule("caveat", "newproxy runs one process for now; the value is kept in the config"),
    "user": Rule("ignored", "newproxy does not change user; run it as the user you want"),
    "worker_connections": Rule("ignored", "no fixed connection table in newproxy"),
    "sendfile": Rule("ignored", "a performance switch with no effect on responses"),
    "tcp_nopush": Rule("ignored", "a performance switch with no effect on responses"),
    "tcp_nodelay": Rule("ignored", "a performance switch with no effect on responses"),
    "types_hash_max_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "types_hash_bucket_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "server_names_hash_bucket_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "server_names_hash_max_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "variables_hash_max_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "variables_hash_bucket_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "proxy_headers_hash_max_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "proxy_headers_hash_bucket_size": Rule("ignored", "hash sizing has no meaning for newproxy"),
    "multi_accept": Rule("ignored", "an accept-loop tuning knob"),
    "daemon": Rule("ignored", "newproxy always runs in the foreground; use your service manager"),
    "master_process": Rule("ignored", "newproxy has no master process yet"),
    # Rewrite module.
    "return": Rule("exact"),
    "rewrite": Rule("exact"),
    "set": Rule("exact"),
    "break": Rule("exact"),
    "if": Rule("exact", "conditions run in the rewrite phase; the block is an implicit location, as in nginx"),
    "rewrite_log": Rule("ignored", "only adds notices to the error log; newproxy does not log rewrites"),
    "map": Rule("exact", "exact, wildcard (hostnames) and regex keys, default, volatile; evaluated lazily per request"),
    "geo": Rule("exact", "CIDR and address entries, default, delete; ranges and proxy are reported"),
    "split_clients": Rule("exact", "MurmurHash2 buckets, as nginx computes them"),
    "error_page": Rule("exact", "for the errors newproxy makes itself (return, no location, internal, rewrite "
                                "cycle), upstream failures (502/504) and, with proxy_intercept_errors, upstream errors"),
    "internal": Rule("exact"),
    "merge_slashes": Rule("exact"),
    "try_files": Rule("exact", "file checks, every fallback, and the file found served by the static handler"),
    "root": Rule("exact", "files are served from root + $uri (a relative root is read against Debian's prefix "
                          "/usr/share/nginx)"),
    # Static, index and autoindex modules.
    "alias": Rule("exact", "including regex captures in a regex location"),
    "index": Rule("exact", "internal redirect to the first index file that exists"),
    "etag": Rule("exact"),
    "if_modified_since": Rule("exact"),
    "disable_symlinks": Rule("caveat", "only the default (off) is built"),
    "autoindex": Rule("exact", "html listings"),
    "autoindex_exact_size": Rule("exact"),
    "autoindex_localtime": Rule("exact"),
    "autoindex_format": Rule("exact", "html; json, xml and jsonp are reported"),
    "uninitialized_variable_warn": Rule("ignored", "only affects error-log warnings"),
    # Proxy module.
    "proxy_pass": Rule("exact"),
    "proxy_set_header": Rule("exact"),
    "proxy_http_version": Rule("exact"),
    "proxy_connect_timeout": Rule("exact"),
    "proxy_read_timeout": Rule("exact"),
    "proxy_send_timeout": Rule("exact"),
    "proxy_pass_request_headers": Rule("exact"),
    "proxy_pass_request_body": Rule("exact"),
    "proxy_hide_header": Rule("exact"),
    "proxy_next_upstream": Rule("exact"),
    "proxy_next_upstream_tries": Rule("exact"),
    "proxy_intercept_errors": Rule("caveat", "the error_page replaces the upstream's response; a 401's "
                                             "WWW-Authenticate is not carried over to the page"),
}

# Directives inside upstream{} have their own meaning.
UPSTREAM_RULES: dict[str, Rule] = {
    "server": Rule("exact", "an upstream peer: weight, max_fails, fail_timeout, backup, down"),
    "keepalive": Rule("exact"),
    "keepalive_requests": Rule("exact"),
    "keepalive_timeout": Rule("exact"),
    "zone": Rule("ignored", "newproxy keeps peer state in its single process; nothing to share"),
}

def classify(name: str, in_upstream: bool = False) -> Rule:
    table = UPSTREAM_RULES if in_upstream else RULES
    rule = table.get(name)
    if rule is not None:
        return rule
    origin = classify_origin(name)
    if origin == "third-party":
        return Rule("unsupported", f'"{name}" comes from a third-party nginx module newproxy does not provide')
    if origin == "core":
        return Rule("unsupported", f'"{name}" is not translated yet')
    return Rule("unknown", f'"{name}" is not an nginx directive newproxy knows (third-party module?)')
