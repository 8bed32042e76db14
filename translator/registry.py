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
    "client_body_buffer_size": Rule("exact", "a body read whole (for proxy_pass) is kept in memory up to this, then "
                                             "in a temporary file, with nginx's warning "
                                             "(tests/test_differential_request_body_file.py)"),
    "client_body_temp_path": Rule("caveat", "the directory of those files (made if missing; a relative path is "
                                            "read against nginx's prefix); the levels are not used, and the files "
                                            "are unlinked as soon as they are made"),
    "server_tokens": Rule("caveat", "http-level on/off/build kept (build is on); newproxy announces itself as "
                                    "newproxy, not nginx, and a server/location-level value is not applied (both "
                                    "only change the Server header and the error-page signature, which the shadow "
                                    "comparator normalises: shadow/compare.py rule 2)"),
    "pid": Rule("exact"),
    "error_log": Rule("caveat", "file and level at main, http, server and location level, as nginx's "
                                "(a request's messages go to its location's log); nginx's own lines for "
                                "upstream connect()/timeout errors, access forbidden by rule, open() failed, "
                                "directory index forbidden, limiting requests/connections and delaying "
                                "requests (tests/test_differential_errorlog.py), a peer temporarily disabled at "
                                "max_fails and no live upstreams (tests/test_differential_upstream_errorlog.py); "
                                "the info lines about HTTP/1 clients that close, reset or time out before their "
                                "request is read, or while it is answered, and about dropped invalid header lines "
                                "(tests/test_differential_cut_head_log.py, tests/test_differential_cut_answer.py, "
                                "tests/test_differential_client_abort.py, tests/test_differential_parking.py); "
                                "other messages are "
                                "newproxy's own; several error_log in one block: each gets the messages its level "
                                "admits, as nginx's (tests/test_differential_errorlog_multi.py); syslog: and "
                                "memory: are files here"),
    # Process model (translator/process.py, newproxy/process.py, newproxy/worker.py): tests/test_process_model.py.
    "worker_processes": Rule("caveat", "a master and N workers on the listening sockets the master binds, as "
                                       "nginx's (auto: the CPUs newproxy may run on); limit_req/limit_conn zones "
                                       "and upstream zones are shared between workers in shared memory, as "
                                       "nginx's (tests/test_differential_shared_zones.py). On reload, an old worker's idle keep-alive connections get 1 s to send one "
                                       "more request, answered with Connection: close (nginx closes them at once). "
                                       "$connection and the error log's *N come from one counter shared by every "
                                       "worker and kept over reloads, counting client accepts, upstream connects and "
                                       "resolver sockets, as nginx's (tests/test_differential_connection_numbers.py)"),
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
    # HTTP/2 (nginx 1.22 http_v2; translator/http2.py, newproxy/http/h2.py): tests/test_differential_h2.py
    # compares newproxy with nginx over h2c and TLS-ALPN h2.
    "http2_max_concurrent_streams": Rule("exact", "streams over the limit are refused with RST_STREAM REFUSED_STREAM"),
    "http2_chunk_size": Rule("exact", "the largest DATA frame newproxy sends"),
    "http2_body_preread_size": Rule("caveat", "announced as the initial stream window; newproxy acknowledges "
                                              "body data at once instead of buffering what nginx preread (a "
                                              "grpc_pass body's window opens as the peer takes it)"),
    "http2_recv_buffer_size": Rule("ignored", "a per-worker read buffer in nginx: no behaviour to carry over"),
    "http2_idle_timeout": Rule("ignored", "obsolete in nginx 1.22, which ignores it too (keepalive_timeout applies)"),
    "http2_max_field_size": Rule("ignored", "obsolete in nginx 1.22, which ignores it too "
                                            "(large_client_header_buffers applies)"),
    "http2_max_header_size": Rule("ignored", "obsolete in nginx 1.22, which ignores it too "
                                             "(large_client_header_buffers applies)"),
    "http2_max_requests": Rule("ignored", "obsolete in nginx 1.22, which ignores it too (keepalive_requests applies)"),
    "http2_recv_timeout": Rule("ignored", "obsolete in nginx 1.22, which ignores it too (client_header_timeout "
                                          "applies)"),
    "http2_push": Rule("unsupported", "newproxy does not push resources (server push)"),
    "http2_push_preload": Rule("unsupported", "newproxy does not push resources named by Link: preload"),
    "http2_max_concurrent_pushes": Rule("ignored", "newproxy never pushes, so no push is ever over the limit"),
    # HTTP/3 (nginx >= 1.25; translator/http3.py, newproxy/http/h3.py): tests/test_h3.py compares newproxy
    # over h3 with newproxy and nginx 1.22 over HTTP/1.1 on the same config (shadow/h3.py).
    "http3": Rule("exact", "off: the QUIC handshake offers no h3 ALPN and fails, as nginx's (the default server's "
                           "setting of the address:port)"),
    "http3_max_concurrent_streams": Rule("exact", "the QUIC initial_max_streams_bidi, raised as streams end"),
    "http3_stream_buffer_size": Rule("caveat", "the per-stream flow-control window; nginx's buffering differs"),
    "http3_hq": Rule("exact", "off, nginx's default, is what newproxy does; on (hq-interop, HTTP/0.9 over QUIC) "
                              "is reported unsupported"),
    "quic_retry": Rule("exact", "address validation with a Retry packet before the handshake"),
    "quic_gso": Rule("ignored", "newproxy batches a connection's datagrams per loop turn, without UDP GSO"),
    "quic_host_key": Rule("caveat", "newproxy makes a key per process: retry tokens do not survive a restart"),
    "quic_active_connection_id_limit": Rule("ignored", "aioquic's connection id limit (8) applies"),
    "ssl_early_data": Rule("caveat", "0-RTT is not accepted (over TCP nor QUIC): clients fall back to a full "
                                     "handshake, so requests arrive one round trip later; nothing is replayable"),
    "quic_bpf": Rule("ignored", "no eBPF routing of QUIC packets between workers: run one worker with quic"),
    # Log module (translator/logs.py, newproxy/engine/logformat.py, newproxy/http/accesslog.py):
    # tests/test_differential_accesslog.py compares the lines with nginx's.
    "log_format": Rule("exact", "escape=default|json|none and the variables nginx logs; a format using a "
                                "variable newproxy lacks, or $pipe/$request_length/$gzip_ratio, is reported"),
    "access_log": Rule("caveat", "several per block, per location and if, off, if=, buffer= and flush=, lines "
                                 "equal to nginx's apart from timing fields; a request line the HTTP parser refuses "
                                 "logs \"-\" as $request, and a file sent by sendfile() counts whole in $bytes_sent "
                                 "even if the client left early; over HTTP/2 $bytes_sent counts the frames as nginx "
                                 "(its frames of a proxied answer follow its reads, so a large one may count "
                                 "otherwise); syslog, gzip and paths with variables are reported"),
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
                                "cycle), upstream failures (502/504) and, with proxy_intercept_errors, upstream errors; "
                                "a request body is discarded as nginx does (tests/test_differential_discard.py), "
                                "except where a page's target has variables: read whole before the answer"),
    "internal": Rule("exact"),
    "stub_status": Rule("exact", "in a location, and at server level for requests that match no location; the "
                                 "counts are summed over the workers (newproxy/stats.py)"),
    "merge_slashes": Rule("exact"),
    # Read while parsing the head (newproxy/http/h1parse.py, h2.py): the default server's setting
    # of the address:port (the SNI server's under TLS) until the request line's host or the Host
    # header picks a server, whose setting applies to the lines after it, as in nginx.
    "underscores_in_headers": Rule("exact", "a header name with '_' is kept (HTTP/1.x and HTTP/2)"),
    "ignore_invalid_headers": Rule("exact", "off: a header name with '_', '.', '@', a byte over 0x7f... is "
                                            "kept and forwarded (HTTP/1.x and HTTP/2)"),
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
    "proxy_pass": Rule("caveat", "URI rules, the request and response headers, bodies and upgrades as nginx; an "
                                 "upstream's X-Accel-Redirect is followed as nginx does (the copied headers, GET, "
                                 "named locations: tests/test_differential_accel_redirect.py) and its "
                                 "X-Accel-Limit-Rate paces the answer, or the redirect's file or proxied answer "
                                 "(tests/test_differential_accel_limit_rate.py; over HTTP/2 nginx's pacing ends "
                                 "up to ~0.5 s later than newproxy's), "
                                 "but an auth_request subrequest's X-Accel-Redirect is not followed (nginx does "
                                 "both). Also unix: sockets "
                                 "(tests/test_differential_unix_upstreams.py), https:// "
                                 "(tests/test_differential_proxy_ssl.py) and URLs with variables: an upstream "
                                 "block, a literal proxy_pass's group, an IP address, else `resolver` "
                                 "(tests/test_differential_proxy_variables.py)"),
    "resolver": Rule("exact", "newproxy's own DNS client over UDP (not getaddrinfo, not /etc/hosts, as nginx): "
                              "A and AAAA, valid=, ipv4=/ipv6=; a failed lookup is kept for valid= or 10 s; "
                              "servers given by name are reported; status_zone is ignored. Every address of "
                              "an answer is used: tried in order, the next on error, a cached answer rotated "
                              "at random as nginx's (tests/test_differential_resolver_rotation.py)"),
    "resolver_timeout": Rule("exact"),
    "proxy_ssl_server_name": Rule("exact", "SNI off by default; never for an IP address"),
    "proxy_ssl_name": Rule("exact", "with variables ($host...), rendered per request; its port is stripped"),
    "proxy_ssl_verify": Rule("exact", "the chain during the handshake, then the name (DNS names, else the CN; "
                                      "wildcards in the leftmost label) also when no SNI is sent; nginx's "
                                      "`upstream SSL certificate verify error: (N:...)` lines, except that a lone "
                                      "certificate of an untrusted issuer is logged with 20 where nginx logs 21 "
                                      "(tests/test_differential_proxy_ssl_depth.py)"),
    "proxy_ssl_trusted_certificate": Rule("exact"),
    "proxy_ssl_verify_depth": Rule("exact", "checked on the chain after the handshake (Python's ssl has no depth "
                                            "setter): at most N intermediates, else nginx's error 20 "
                                            "(tests/test_differential_proxy_ssl_depth.py)"),
    "proxy_ssl_certificate": Rule("exact", "a client certificate from a file (no variables)"),
    "proxy_ssl_certificate_key": Rule("exact"),
    "proxy_ssl_protocols": Rule("caveat", "bounded by min/max (a list with a hole is widened); SSLv2/3 never"),
    "proxy_ssl_ciphers": Rule("exact", "the OpenSSL cipher string of the client context"),
    "proxy_ssl_session_reuse": Rule("exact", "on (the default): one session per peer of a group, saved when the "
                                             "upstream hands one out (TLSv1.3 tickets too) and offered on the next "
                                             "connection to it, not for a group made per request from an address "
                                             "(tests/test_differential_proxy_ssl_sessions.py); across locations "
                                             "only when their proxy_ssl_* context settings agree, and per worker "
                                             "with a zone (both reported where they apply)"),
    "proxy_set_header": Rule("exact"),
    "proxy_http_version": Rule("exact"),
    "proxy_connect_timeout": Rule("exact"),
    "proxy_read_timeout": Rule("exact"),
    "proxy_send_timeout": Rule("exact", "from the last progress while a write to the peer is blocked: 504 (or the "
                                        "next peer) while the request is sent, a close in a WebSocket/Upgrade "
                                        "tunnel (tests/test_differential_send_timeout.py); checked every 50 ms"),
    "proxy_pass_request_headers": Rule("exact"),
    "proxy_pass_request_body": Rule("exact"),
    "proxy_hide_header": Rule("exact"),
    "proxy_pass_header": Rule("exact", "takes the name out of the hidden set (nginx's defaults too: Date, "
                                       "Server, X-Accel-*), caselessly"),
    "proxy_ignore_headers": Rule("exact", "X-Accel-Redirect: the upstream's answer is relayed instead of followed; "
                                          "X-Accel-Limit-Rate: the answer is not paced by it; X-Accel-Buffering: "
                                          "it does not switch proxy_buffering (tests/test_differential_slow_"
                                          "client.py); newproxy has no cache and does not act on the other values "
                                          "(-Expires, -Charset, Expires, Cache-Control, Set-Cookie, Vary), which is "
                                          "what ignoring them does without a cache (the headers still reach the "
                                          "client unless hidden); values are checked"),
    "proxy_buffer_size": Rule("exact", "the most an upstream's response head may take: past it, 502 (\"upstream "
                                       "sent too big header\", or the next peer with proxy_next_upstream "
                                       "invalid_header), at nginx's byte, and nginx's quirk for a head that "
                                       "fills it exactly when the answer is buffered (proxy_buffering, or the "
                                       "upstream's X-Accel-Buffering): the head, then a close "
                                       "(tests/test_differential_upstream_limits.py)"),
    "proxy_buffering": Rule("caveat", "on, as nginx: an answer the client cannot take as fast as the upstream "
                                      "sends it is read on into proxy_buffers and an unnamed temporary file "
                                      "(proxy_max_temp_file_size in all), so a slow client does not hold the "
                                      "upstream, and an upstream's X-Accel-Buffering yes/no switches it per answer "
                                      "(tests/test_differential_slow_client.py, over HTTP/1.1, HTTP/2 and HTTP/3); off, "
                                      "the upstream waits for the client. The bytes and framing a client gets are "
                                      "nginx's (tests/test_differential_proxy_body.py), and so are the quirk for a "
                                      "head filling proxy_buffer_size exactly and the error line for a reset "
                                      "mid-body (readv() on, recv() off). But newproxy passes the answer on as it "
                                      "arrives where nginx passes it in full buffers (proxy_buffer_size less the "
                                      "head, then proxy_buffers; a partial one once it holds the rest of a "
                                      "Content-Length answer, or the chunked parser's minimum, or at the "
                                      "upstream's close): with an upstream that sends slowly a client gets bytes "
                                      "earlier, and when the upstream resets (or times out) mid-body, newproxy "
                                      "has relayed every byte read where nginx drops its partial buffer "
                                      "(tests/test_differential_upstream_faultlines.py)"),
    "proxy_buffers": Rule("caveat", "number x size is what an answer held for a slow client keeps in memory before "
                                    "the temporary file (proxy_buffering); values checked as nginx checks them with "
                                    "proxy_buffer_size and proxy_busy_buffers_size. The size does not cut the answer "
                                    "into buffers as nginx does (see proxy_buffering)"),
    "proxy_max_temp_file_size": Rule("exact", "the bytes the temporary file of one answer may take in all (0: "
                                              "none): past them the upstream is read only as the client takes the "
                                              "answer (tests/test_differential_slow_client.py)"),
    "proxy_temp_path": Rule("caveat", "the directory of the temporary files (made if missing; a relative path is "
                                      "read against nginx's prefix); the files have no names, so the levels do "
                                      "not apply"),
    "proxy_busy_buffers_size": Rule("ignored", "checked as nginx checks it; how much of an answer nginx keeps "
                                               "being sent to the client at once is the client transport's own "
                                               "buffer in newproxy (no effect on the bytes)"),
    "proxy_temp_file_write_size": Rule("ignored", "checked as nginx checks it; newproxy writes each read to the "
                                                  "temporary file as it comes (no effect on the bytes)"),
    "proxy_request_buffering": Rule("caveat", "off: over HTTP/1.1 and HTTP/2 the body goes upstream as the client "
                                              "sends it, as nginx sends it (tests/test_differential_unbuffered_body"
                                              ".py, tests/test_differential_h2_unbuffered_body.py): with the head "
                                              "what came of it, then a read at a time (without a length: a chunk "
                                              "per read), the client read no more while the peer takes nothing, no "
                                              "other peer tried once it was sent, nginx's statuses and lines for a "
                                              "client that closes (400; 499 while the peer is still being "
                                              "connected to) or stalls (408) or whose HTTP/2 body breaks "
                                              "its Content-Length (400); the upstream request's framing is nginx's "
                                              "(tests/test_differential_request_streaming.py). Over HTTP/3 "
                                              "(which nginx 1.22 lacks) newproxy reads the whole body first. An "
                                              "error_page or X-Accel-Redirect to another proxy_pass after a "
                                              "streamed body sends the head and what is left of the body (nginx "
                                              "cannot send it again either; not compared)"),
    "proxy_method": Rule("exact", "with variables; also replaces the GET an error_page redirect makes"),
    "proxy_set_body": Rule("exact", "with variables, for any method: Content-Length is the value's length "
                                    "and the client's body (read and checked against client_max_body_size) "
                                    "is not sent"),
    "proxy_next_upstream": Rule("exact", "error, timeout, invalid_header, http_500/502/503/504/403/404/429, "
                                         "non_idempotent, off: the same retry targets in the same order "
                                         "(tests/test_differential_next_upstream.py)"),
    "proxy_next_upstream_tries": Rule("exact"),
    "proxy_next_upstream_timeout": Rule("exact", "counted from the first try; a retry is not started once it "
                                                 "has passed (the running attempt is not cut short)"),
    "proxy_redirect": Rule("exact", "default, off, explicit and regex rules on Location and Refresh; a rewritten "
                                    "relative Location is made absolute as nginx's header filter does"),
    "proxy_cookie_domain": Rule("exact", "Set-Cookie Domain attributes; the cookie is written again as nginx does"),
    "proxy_cookie_path": Rule("exact", "Set-Cookie Path attributes; the cookie is written again as nginx does"),
    "proxy_ignore_client_abort": Rule("caveat", "on: a client that closes its connection (or half-closes it) "
                                                "while the upstream works does not end the request: the answer "
                                                "is read and written all the same, as nginx does; after a reset "
                                                "(RST) the answer is read, and its write fails as nginx's does "
                                                "(its status logged, nothing sent) "
                                                "(tests/test_differential_client_abort.py). Over HTTP/2 a client's "
                                                "RST_STREAM does not end it either: the answer is read on, past "
                                                "the connection's close, and logged with its status and nothing "
                                                "sent, as nginx does (same test); over HTTP/3 (which nginx 1.22 "
                                                "lacks) a reset stream likewise (tests/test_h3.py)"),
    "proxy_intercept_errors": Rule("exact", "the error_page replaces the upstream's response; an intercepted "
                                            "401 carries its first WWW-Authenticate over to the page, as nginx "
                                            "1.22 (tests/test_differential_upstream_errors.py)"),
    # gRPC module (translator/grpc.py, newproxy/engine/grpc.py, newproxy/http/grpc_upstream.py):
    # tests/test_differential_grpc.py compares the upstream's h2 request and the client's answer with nginx's.
    "grpc_pass": Rule("caveat", "grpc://, grpcs:// (TLS, ALPN h2), an address or an upstream name; the HTTP/2 "
                                "request headers, messages and the trailers relayed as nginx does (in the last "
                                "chunk for HTTP/1.1 clients), upstream keepalive reusing h2 connections; an HTTP/2 "
                                "client's body goes to the peer as it comes (bidirectional calls, with flow "
                                "control both ways; client_body_timeout's 408 for a client that stalls "
                                "mid-body), except in a location or server with rewrite directives or "
                                "try_files, and from HTTP/1.1 clients, where it is read whole first; variables and "
                                "unix sockets are reported"),
    "grpc_set_header": Rule("exact", "with nginx's defaults (Content-Length, TE: trailers when the client's TE has "
                                     "it, Host/Connection/... hidden); Host replaces :authority"),
    "grpc_hide_header": Rule("exact"),
    "grpc_pass_header": Rule("exact", "takes the name out of the hidden set (Date, Server, X-Accel-*), caselessly"),
    "grpc_connect_timeout": Rule("exact"),
    "grpc_read_timeout": Rule("exact", "between two reads from the peer (checked every 50 ms)"),
    "grpc_send_timeout": Rule("exact", "between two writes the peer accepts (checked every 50 ms)"),
    "grpc_next_upstream": Rule("caveat", "error, timeout, invalid_header (RST_STREAM or GOAWAY before the "
                                         "answer) and non_idempotent retry the next peer; the http_* statuses "
                                         "are not acted on for grpc"),
    "grpc_next_upstream_tries": Rule("exact"),
    "grpc_next_upstream_timeout": Rule("exact", "counted from the first try; a retry is not started once it "
                                                "has passed (tests/test_differential_grpc.py)"),
    "grpc_intercept_errors": Rule("caveat", "the error_page replaces the upstream's answer (a status >= 300 that "
                                            "has one), as proxy_intercept_errors"),
    "grpc_ignore_headers": Rule("exact", "newproxy has no cache and acts on none of these headers (X-Accel-*, "
                                         "Expires, Cache-Control, Set-Cookie, Vary): ignoring them is what it "
                                         "does anyway; values are checked"),
    "grpc_buffer_size": Rule("ignored", "buffer sizing: no effect on what the client gets"),
    "grpc_ssl_server_name": Rule("exact", "SNI off by default, as nginx"),
    "grpc_ssl_name": Rule("exact", "a name without variables"),
    "grpc_ssl_verify": Rule("caveat", "the chain against grpc_ssl_trusted_certificate, then the name (grpc_ssl_name, "
                                      "else the grpc_pass host) as X509_check_host, with or without SNI "
                                      "(newproxy/http/upstream_tls.py); grpc_ssl_verify_depth is not applied"),
    "grpc_ssl_trusted_certificate": Rule("exact"),
    "grpc_ssl_verify_depth": Rule("caveat", "kept in the config, not applied: Python's ssl has no depth setter"),
    "grpc_ssl_certificate": Rule("exact", "a client certificate from a file (no variables)"),
    "grpc_ssl_certificate_key": Rule("exact"),
    "grpc_ssl_protocols": Rule("caveat", "bounded by min/max (a list with a hole is widened); SSLv2/3 never"),
    "grpc_ssl_ciphers": Rule("exact", "the OpenSSL cipher string of the client context"),
    "grpc_ssl_session_reuse": Rule("caveat", "newproxy never resumes a session (a full handshake per call); "
                                             "nginx's default (on) resumes per peer, across the locations that "
                                             "share it"),
    # Headers filter module (translator/headers.py, newproxy/engine/headers.py).
    "add_header": Rule("exact", "the status filter, always, variables, empty values, ETag/Last-Modified replaced, "
                                "inheritance replaced whole (if blocks too); on files, returns, redirects, error "
                                "pages and proxied responses; $upstream_* as nginx has them when the head goes out "
                                "(the attempt relayed has no $upstream_response_time yet)"),
    "expires": Rule("exact", "off, epoch, max, times, negative, modified, @time of day, variable values; replaces "
                             "a proxied Expires/Cache-Control"),
    "add_trailer": Rule("exact", "sent with chunked HTTP/1.1 bodies, which it makes chunked as nginx does, and "
                                 "over HTTP/2 in a trailing HEADERS frame"),
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
    "limit_req_zone": Rule("caveat", "shared by all workers as nginx's zone (newproxy/zones.py) and kept "
                                     "over a reload when its name, size and key are unchanged, with any "
                                     "worker_processes (tests/test_differential_zone_reload.py); a new size "
                                     "starts it afresh, a new key with the same size fails the reload, as "
                                     "nginx's; with master_process off a reload starts it afresh; how many "
                                     "keys a zone holds is estimated from its size"),
    "limit_req": Rule("exact", "nginx's leaky bucket ported in integers: burst, nodelay, delay=, several per "
                               "block, empty key not limited; a delay waits without blocking"),
    "limit_req_status": Rule("exact"),
    "limit_req_dry_run": Rule("exact", "nothing delayed or rejected; $limit_req_status tells what would have been"),
    "limit_req_log_level": Rule("exact", "the level of the limiting/delaying lines in the error log"),
    "limit_conn_zone": Rule("caveat", "shared by all workers as nginx's zone (newproxy/zones.py) and kept "
                                      "over a reload when its name, size and key are unchanged, with any "
                                      "worker_processes (tests/test_differential_zone_reload.py); a new size "
                                      "starts it afresh, a new key with the same size fails the reload, as "
                                      "nginx's; with master_process off a reload starts it afresh; how many "
                                      "keys a zone holds is estimated from its size"),
    "limit_conn": Rule("caveat", "counts requests in flight until a proxied or file answer is sent; an answer "
                                 "made in memory (return, error page) is counted as over once written"),
    "limit_conn_status": Rule("exact"),
    "limit_conn_dry_run": Rule("exact"),
    "limit_conn_log_level": Rule("exact", "the level of the limiting lines in the error log"),
    "limit_rate": Rule("caveat", "file and proxied answers are paced as nginx paces them (also $limit_rate set by "
                                 "`set`, or by an upstream's X-Accel-Limit-Rate); answers made in "
                                 "memory (return, error pages) are not"),
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
                                   "GET, the client's Content-Length as nginx sends it); a proxied one goes through "
                                   "the upstream client, others are answered at once; the subrequest goes out before "
                                   "the request body is read, a refusal is answered at once and the body discarded, "
                                   "as nginx does (HTTP/1, HTTP/2, and HTTP/3 as nginx's HTTP/2); a "
                                   "client that closes, resets or cancels its stream while the subrequest "
                                   "is at work ends it as nginx does, the line naming the subrequest "
                                   "(tests/test_differential_client_abort.py); "
                                   "proxy_intercept_errors in the auth location is not applied; a limit_req "
                                   "delay inside it is answered 500"),
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
    "reset_timedout_connection": Rule("exact", "a request that timed out is closed with RST; an idle connection "
                                               "(nothing of a request read yet) still with FIN, as nginx does"),
    "large_client_header_buffers": Rule("exact", "the longest request line (414) and header line (494), and how "
                                                 "many large buffers a head may take (newproxy/http/h1parse.py)"),
    "client_header_buffer_size": Rule("exact", "the first buffer a request head is read into: where a line moves "
                                               "to a large buffer decides 414/494 at the edges, as in nginx"),
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
    "zone": Rule("exact"),  # peer state shared between workers like nginx's (newproxy/zones.py)
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
    "listen": "serve it from newproxy over a TCP port (unix sockets are not built yet)",
    "add_header": "set the header in the upstream application, or keep this location on nginx",
    "expires": "let the upstream send Cache-Control/Expires, or keep this location on nginx",
    "gzip_static": "turn gzip on for those types (newproxy compresses on the fly), or keep this location on nginx",
    "access_log": "log to a file (syslog: forward the file with your log shipper); drop variables from the path",
    "fastcgi_pass": "put a FastCGI-to-HTTP bridge (e.g. php-fpm behind a small HTTP server) behind proxy_pass",
    "uwsgi_pass": "run the application with an HTTP server (uwsgi --http) and use proxy_pass",
    "proxy_pass": "use a literal address, an upstream block, or variables newproxy provides",
    "proxy_cache": "put a cache (Varnish, CDN) in front, or keep this location on nginx",
    "grpc_pass": "use a literal grpc:// or grpcs:// address or an upstream block (no variables, no unix sockets)",
    "allow": "filter addresses in a firewall or in the upstream, or keep this location on nginx",
    "deny": "filter addresses in a firewall or in the upstream, or keep this location on nginx",
    "auth_basic": "authenticate in the upstream, or keep this location on nginx",
    "auth_request": "call the auth service from the upstream, or keep this location on nginx",
    "limit_req": "rate-limit in front of newproxy or in the upstream, or keep this location on nginx",
    "limit_conn": "limit connections in front of newproxy, or keep this location on nginx",
    "server_tokens": "nothing to do unless clients parse the Server header",
    "worker_processes": "clients of a reloaded server see its idle keep-alive connections closed after 1 s, "
                        "not at once",
    "error_log": "log parsing that expects nginx's wording works for the common request errors; check "
                 "rules that match rarer messages",
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
