"""What the translator does with each nginx directive: the single place the gap report is derived from.

A directive not listed in ``RULES`` is reported as ``unsupported`` when it is in the parser's
directive table (nginx_parser.directives: nginx 1.22–1.27 core and standard modules, and common
third-party modules, said as such) and ``unknown`` otherwise. Adding a rule here without
handling the directive in ``translate.py`` is caught by a test: every ``exact`` name must be read
by the translator.

``SUGGESTIONS`` (per directive) and ``DEFAULT_SUGGESTIONS`` (per level) are the actionable texts the
gap report (translator/report) shows next to each occurrence that is not translated exactly.
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
    "include": Rule("ignored", "spliced in by the parser: the included directives are reported where they are written"),
    # Core.
    "listen": Rule("exact"),
    "server_name": Rule("exact"),
    "default_type": Rule("exact"),
    "types": Rule("exact", "MIME types by extension, for responses newproxy makes"),
    "client_max_body_size": Rule("exact"),
    "server_tokens": Rule("caveat", "http-level on/off/build kept (build is on); newproxy announces itself as "
                                    "newproxy, not nginx, and a server/location-level value is not applied (both "
                                    "only change the Server header and the error-page signature, which the shadow "
                                    "comparator normalises: shadow/compare.py rule 2)"),
    "pid": Rule("exact"),
    "error_log": Rule("caveat", "main-level file kept; the level and per-block error_log are not applied, "
                                "and newproxy's messages are its own, not nginx's"),
    # Process model (translator/process.py, newproxy/process.py, newproxy/worker.py): tests/test_process_model.py.
    "worker_processes": Rule("caveat", "a master and N workers on the listening sockets the master binds, as "
                                       "nginx's (auto: the CPUs newproxy may run on); 1 is exact, but with N > 1 "
                                       "each worker keeps its own limit_req/limit_conn zones and upstream peer "
                                       "state, which nginx shares in memory: limits then apply per worker. On "
                                       "reload, an old worker's idle keep-alive connections get 1 s to send one "
                                       "more request, answered with Connection: close (nginx closes them at once)"),
    "worker_shutdown_timeout": Rule("exact", "the connections a stopping worker still has are closed at the timeout"),
    "worker_rlimit_nofile": Rule("exact", "setrlimit(RLIMIT_NOFILE) in each worker; a refusal is logged, as nginx does"),
    "user": Rule("ignored", "newproxy does not change user; run it as the user you want"),
    "worker_connections": Rule("caveat", "caps the client connections of each worker (one over the cap is closed "
                                         "at accept and logged, as nginx does); nginx also counts its upstream "
                                         "connections against the cap, newproxy does not, and connections "
                                         "accepted in one burst are checked against the count before it"),
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
    "master_process": Rule("exact", "off: one process serves, without workers (nginx's debugging mode)"),
    # SSL module (translator/tls.py, newproxy/http/tls.py): tests/test_differential_tls.py compares the
    # handshake outcomes (certificate, protocol, cipher, alerts) and the $ssl_* answers with nginx's.
    "ssl_certificate": Rule("exact", "several per server (RSA + ECDSA: OpenSSL picks by the client's signature "
                                     "algorithms); names with variables, data: or engine: are reported"),
    "ssl_certificate_key": Rule("exact"),
    "ssl_protocols": Rule("exact", "a list with a hole (TLSv1 TLSv1.2) is reported: newproxy bounds by min/max"),
    "ssl_ciphers": Rule("exact", "the OpenSSL cipher string, set as nginx sets it (TLSv1.2 and below)"),
    "ssl_prefer_server_ciphers": Rule("caveat", "applied on the server whose context starts the handshake (the "
                                                "default server of the port); nginx also ORs in the SNI server's"),
    "ssl_session_tickets": Rule("caveat", "on (resumption by ticket, compared with nginx) and off are applied; with "
                                          "off and no ssl_session_cache nginx resumes nothing, while newproxy's "
                                          "in-process OpenSSL cache may still resume by session id"),
    "ssl_session_cache": Rule("caveat", "newproxy keeps OpenSSL's in-process session cache whatever the value: "
                                        "sizes, shared zones and none/off are not applied"),
    "ssl_session_timeout": Rule("caveat", "kept in the config but not applied: Python's ssl has no setter (OpenSSL's "
                                          "default, 300 s, is nginx's default too)"),
    "ssl_dhparam": Rule("caveat", "loaded into the context (DHE ciphers); not compared with nginx in a test"),
    "ssl_ecdh_curve": Rule("caveat", "auto or one curve; of a list only the first is offered"),
    "ssl_reject_handshake": Rule("exact", "the unrecognized_name alert for names (or no name) that pick the server"),
    "ssl": Rule("caveat", "obsolete; translated as listen ... ssl on the server's listens"),
    # Log module (translator/logs.py, newproxy/engine/logformat.py, newproxy/http/accesslog.py):
    # tests/test_differential_accesslog.py compares the lines with nginx's.
    "log_format": Rule("exact", "escape=default|json|none and the variables nginx logs; a format using a "
                                "variable newproxy lacks, or $pipe/$request_length/$gzip_ratio, is reported"),
    "access_log": Rule("caveat", "several per block, per location and if, off, if=, buffer= and flush=, lines "
                                 "equal to nginx's apart from timing fields; a request line the HTTP parser refuses "
                                 "logs \"-\" as $request, and a file sent by sendfile() counts whole in $bytes_sent "
                                 "even if the client left early; syslog, gzip and paths with variables are reported"),
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
    "stub_status": Rule("exact", "in a location, and at server level for requests that match no location; the "
                                 "counts are summed over the workers (newproxy/stats.py)"),
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
    "proxy_pass": Rule("caveat", "URI rules, the request and response headers, bodies and upgrades as nginx; "
                                 "an upstream's X-Accel-Redirect is not followed (nginx does, unless "
                                 "proxy_ignore_headers X-Accel-Redirect)"),
    "proxy_set_header": Rule("exact"),
    "proxy_http_version": Rule("exact"),
    "proxy_connect_timeout": Rule("exact"),
    "proxy_read_timeout": Rule("exact"),
    "proxy_send_timeout": Rule("exact"),
    "proxy_pass_request_headers": Rule("exact"),
    "proxy_pass_request_body": Rule("exact"),
    "proxy_hide_header": Rule("exact"),
    "proxy_pass_header": Rule("exact", "takes the name out of the hidden set (nginx's defaults too: Date, "
                                       "Server, X-Accel-*), caselessly"),
    "proxy_ignore_headers": Rule("exact", "newproxy has no cache and never acts on X-Accel-Redirect, -Expires, "
                                          "-Limit-Rate, -Buffering, -Charset, Expires, Cache-Control, Set-Cookie "
                                          "or Vary, which is what ignoring them does without a cache (the headers "
                                          "still reach the client unless hidden); values are checked. Without it, "
                                          "nginx follows an upstream's X-Accel-Redirect internally: newproxy "
                                          "drops the header and relays the answer (a gap of proxy_pass)"),
    "proxy_buffering": Rule("ignored", "newproxy always streams the answer as it arrives (nginx's off); on only "
                                       "changes timing and when the upstream connection is freed, not the bytes "
                                       "or framing the client gets (compared in tests/test_differential_proxy_body.py)"),
    "proxy_request_buffering": Rule("caveat", "newproxy reads the whole request body before connecting; with off, "
                                              "proxy_http_version 1.1 and a chunked body still arriving after the "
                                              "head, nginx sends it upstream chunked as it comes (newproxy: with "
                                              "Content-Length). A body by length, one that came with the head, or "
                                              "an HTTP/1.0 upstream gets the same upstream request (tested)"),
    "proxy_method": Rule("exact", "with variables; also replaces the GET an error_page redirect makes"),
    "proxy_set_body": Rule("exact", "with variables, for any method: Content-Length is the value's length "
                                    "and the client's body (read and checked against client_max_body_size) "
                                    "is not sent"),
    "proxy_next_upstream": Rule("exact"),
    "proxy_next_upstream_tries": Rule("exact"),
    "proxy_redirect": Rule("exact", "default, off, explicit and regex rules on Location and Refresh; a rewritten "
                                    "relative Location is made absolute as nginx's header filter does"),
    "proxy_cookie_domain": Rule("exact", "Set-Cookie Domain attributes; the cookie is written again as nginx does"),
    "proxy_cookie_path": Rule("exact", "Set-Cookie Path attributes; the cookie is written again as nginx does"),
    "proxy_intercept_errors": Rule("caveat", "the error_page replaces the upstream's response; a 401's "
                                             "WWW-Authenticate is not carried over to the page"),
    # Headers filter module (translator/headers.py, newproxy/engine/headers.py).
    "add_header": Rule("exact", "the status filter, always, variables, empty values, ETag/Last-Modified replaced, "
                                "inheritance replaced whole (if blocks too); on files, returns, redirects, error "
                                "pages and proxied responses"),
    "expires": Rule("exact", "off, epoch, max, times, negative, modified, @time of day, variable values; replaces "
                             "a proxied Expires/Cache-Control"),
    "add_trailer": Rule("exact", "sent with chunked HTTP/1.1 bodies, which it makes chunked as nginx does"),
    # gzip filter (translator/gzip.py, newproxy/engine/gzip.py): tests/test_differential_gzip.py.
    "gzip": Rule("exact", "static files, return/error pages, autoindex and proxied responses (streamed); the "
                          "compressed bytes are zlib's, not nginx's (they decompress to the same body); a "
                          "compressed file is compressed in memory, not sent with sendfile"),
    "gzip_types": Rule("exact", "text/html always included; * for any type"),
    "gzip_min_length": Rule("exact", "by Content-Length; responses without one are compressed"),
    "gzip_comp_level": Rule("exact", "the zlib level used; compressed bytes differ from nginx's"),
    "gzip_vary": Rule("exact"),
    "gzip_proxied": Rule("exact", "decided by the request's Via and the response's Expires, Cache-Control, "
                                  "Last-Modified, ETag and the request's Authorization, as nginx does"),
    "gzip_disable": Rule("exact", "caseless regexes on User-Agent (Python re) and msie6"),
    "gzip_http_version": Rule("exact"),
    "gzip_buffers": Rule("ignored", "buffer sizing; no effect on what the client gets"),
    "gzip_window": Rule("ignored", "changes only the compressed bytes, not what they decompress to"),
    "gzip_hash": Rule("ignored", "changes only the compressed bytes, not what they decompress to"),
    "postpone_gzipping": Rule("ignored", "buffering before compression; no effect on what the client gets"),
    "gzip_static": Rule("unsupported", "serving precompressed .gz files is not built; with gzip on, files are "
                                       "compressed on the fly instead"),
    # limit_req, limit_conn, limit_rate (translator/limits.py, newproxy/engine/limits.py):
    # tests/test_differential_limits.py.
    "limit_req_zone": Rule("caveat", "state lives in each worker process: with worker_processes 1 as nginx's "
                                     "shared zone, but with N > 1 every worker has its own zone, so the rate "
                                     "applies per worker (up to N times it overall), and a reload starts the "
                                     "zone afresh (nginx keeps it); how many keys a zone holds "
                                     "is estimated from its size"),
    "limit_req": Rule("exact", "nginx's leaky bucket ported in integers: burst, nodelay, delay=, several per "
                               "block, empty key not limited; a delay waits without blocking"),
    "limit_req_status": Rule("exact"),
    "limit_req_dry_run": Rule("exact", "nothing delayed or rejected; $limit_req_status tells what would have been"),
    "limit_req_log_level": Rule("ignored", "only the error-log level of limit messages, which newproxy does not write"),
    "limit_conn_zone": Rule("caveat", "state lives in each worker process: with worker_processes 1 as nginx's "
                                      "shared zone, but with N > 1 every worker counts its own connections, so "
                                      "the limit applies per worker, and a reload starts the zone afresh; how "
                                      "many keys a zone holds is estimated "
                                      "from its size"),
    "limit_conn": Rule("caveat", "counts requests in flight until a proxied or file answer is sent; an answer "
                                 "made in memory (return, error page) is counted as over once written"),
    "limit_conn_status": Rule("exact"),
    "limit_conn_dry_run": Rule("exact"),
    "limit_conn_log_level": Rule("ignored", "only the error-log level of limit messages, which newproxy does not "
                                            "write"),
    "limit_rate": Rule("caveat", "file and proxied answers are paced as nginx paces them (also $limit_rate set by "
                                 "`set`); answers made in memory (return, error pages) are not, nor does an "
                                 "upstream's X-Accel-Limit-Rate change the rate"),
    "limit_rate_after": Rule("caveat", "as limit_rate: file and proxied answers"),
    # access, auth_basic, auth_request, realip (translator/access.py, newproxy/engine/access.py,
    # realip.py, htpasswd.py; newproxy/http/authrequest.py): tests/test_differential_access.py.
    "allow": Rule("exact", "IPv4, IPv6 (IPv4-mapped as IPv4), CIDR, all, unix:; first match per family; "
                           "inherited whole from the innermost level with any rule"),
    "deny": Rule("exact", "as allow; 403 through error_page"),
    "satisfy": Rule("exact", "all and any over allow/deny, auth_basic and auth_request, in nginx's order"),
    "auth_basic": Rule("exact", "realm with variables, off; 401 with WWW-Authenticate, kept through an "
                                "error_page (a file, return, a named or a proxied location)"),
    "auth_basic_user_file": Rule("exact", "crypt (libc crypt_r: DES, $1$, $5$, $6$...), $apr1$, {SHA}, {SSHA}, "
                                          "{PLAIN}; comments and empty lines; a missing file is 403, an unreadable "
                                          "one 500; a relative path is read against the config's directory"),
    "auth_request": Rule("caveat", "the subrequest runs through the server's phases (no access phase, no body, "
                                   "GET); a proxied one goes through the upstream client, others are answered at "
                                   "once; for a request with a body it sends Content-Length: 0 where nginx sends the "
                                   "client's length without the body (the auth server then waits): set "
                                   "proxy_set_header Content-Length \"\" there, as nginx's docs do; "
                                   "proxy_intercept_errors in the auth location is not applied; a limit_req delay "
                                   "inside it is answered 500"),
    "auth_request_set": Rule("exact", "$upstream_status, $upstream_http_NAME of the subrequest and any variable "
                                      "newproxy provides; $sent_http_* is reported"),
    "set_real_ip_from": Rule("exact", "addresses, CIDR, unix:; a host name is reported"),
    "real_ip_header": Rule("exact", "X-Real-IP, X-Forwarded-For (every such header, last first) or any header; "
                                    "proxy_protocol is reported"),
    "real_ip_recursive": Rule("exact"),
    # Client connections (translator/client.py): one value per process; a server or location with
    # its own value is reported as a caveat by the translation.
    "client_header_timeout": Rule("exact", "reading a request head (and the TLS handshake)"),
    "client_body_timeout": Rule("exact", "between two reads of a request body"),
    "keepalive_timeout": Rule("exact", "an idle kept-alive connection is closed; 0 disables keep-alive"),
    "keepalive_requests": Rule("exact", "the last request allowed on a connection is answered with Connection: close"),
    "send_timeout": Rule("exact", "a client that accepts nothing for this long is disconnected"),
    "lingering_time": Rule("exact"),
    "lingering_timeout": Rule("exact"),
    "large_client_header_buffers": Rule("exact", "the longest request line (414) and header line (400)"),
    "client_header_buffer_size": Rule("ignored", "how nginx sizes its first read buffer: no effect on answers "
                                                 "once large_client_header_buffers is applied"),
    "auth_delay": Rule("caveat", "a 401 from the access phase is answered after the delay (without blocking); "
                                 "what the client sends meanwhile is not read"),
}

# Directives inside upstream{} have their own meaning.
UPSTREAM_RULES: dict[str, Rule] = {
    "server": Rule("exact", "an upstream peer: weight, max_fails, fail_timeout, max_conns, backup, down"),
    "least_conn": Rule("exact", "same peer sequence as nginx without overlap; same distribution under load"),
    "ip_hash": Rule("exact", "nginx's hash of the first 3 octets of IPv4 (whole IPv6) client addresses, "
                             "20 tries then round robin"),
    "hash": Rule("exact", "crc32 with nginx's rehash loop; consistent: the same ketama points, so a key lands "
                          "on the same peer as under nginx"),
    "random": Rule("exact", "weighted random, and two [least_conn]; the same distribution as nginx, not the "
                            "same draws"),
    "keepalive": Rule("exact"),
    "keepalive_requests": Rule("exact"),
    "keepalive_timeout": Rule("exact"),
    "zone": Rule("caveat", "peer state (failures, least_conn counts) lives in each worker process: with "
                           "worker_processes 1 as nginx's zone, with N > 1 per worker, as nginx without zone"),
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


# What a user can do about an occurrence that is not translated exactly: per directive where there is
# something specific to say, else per level (``suggestion``). Shown by every report format.
SUGGESTIONS: dict[str, str] = {
    "ssl_certificate": "load the certificate from a file (one pair per key type), or keep this server on nginx",
    "listen": "serve HTTP/1.1 (plain or ssl) from newproxy; keep HTTP/2 on a terminator in front of it",
    "add_header": "set the header in the upstream application, or keep this location on nginx",
    "expires": "let the upstream send Cache-Control/Expires, or keep this location on nginx",
    "gzip_static": "turn gzip on for those types (newproxy compresses on the fly), or keep this location on nginx",
    "access_log": "log to a file (syslog: forward the file with your log shipper); drop variables from the path",
    "fastcgi_pass": "put a FastCGI-to-HTTP bridge (e.g. php-fpm behind a small HTTP server) behind proxy_pass",
    "uwsgi_pass": "run the application with an HTTP server (uwsgi --http) and use proxy_pass",
    "proxy_pass": "use a literal http:// address or an upstream block; variables and https are not built yet",
    "proxy_cache": "put a cache (Varnish, CDN) in front, or keep this location on nginx",
    "allow": "filter addresses in a firewall or in the upstream, or keep this location on nginx",
    "deny": "filter addresses in a firewall or in the upstream, or keep this location on nginx",
    "auth_basic": "authenticate in the upstream, or keep this location on nginx",
    "auth_request": "call the auth service from the upstream, or keep this location on nginx",
    "limit_req": "rate-limit in front of newproxy or in the upstream, or keep this location on nginx",
    "limit_conn": "limit connections in front of newproxy, or keep this location on nginx",
    "server_tokens": "nothing to do unless clients parse the Server header",
    "worker_processes": "keep worker_processes 1 where limit_req/limit_conn must count across all traffic, or "
                        "limit in front of newproxy",
    "error_log": "newproxy writes its own messages; adjust log parsing that expects nginx's wording",
}
_LUA_SUGGESTION = "port the Lua code to a newproxy plugin: start from the generated stub"
DEFAULT_SUGGESTIONS: dict[Level, str] = {
    "exact": "",
    "caveat": "read the stated difference; shadow this location to see whether it matters for your traffic",
    "ignored": "",
    "unsupported": "keep this location on nginx (strangler fallback) or change the config to what newproxy translates",
    "unknown": "check the spelling, or keep this location on nginx: the directive comes from a module newproxy does "
               "not know",
}


def suggestion(name: str, level: Level) -> str:
    """The actionable text for one occurrence; empty when there is nothing to do (exact, ignored)."""
    if level in ("exact", "ignored"):
        return ""
    if "_by_lua" in name:
        return _LUA_SUGGESTION
    if level == "caveat":  # SUGGESTIONS say what to do about a form that is not translated
        return DEFAULT_SUGGESTIONS[level]
    return SUGGESTIONS.get(name, DEFAULT_SUGGESTIONS[level])
