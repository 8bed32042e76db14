"""$upstream_bytes_received, $upstream_response_length and $upstream_bytes_sent in the access log,
against real nginx: per attempt (", " between peers, " : " between two proxied passes), after the
answer. Compared line for line: buffered and unbuffered answers, Content-Length, chunked and
HEAD answers, request bodies (one in a temporary file, sent from it), a kept-alive connection's
second request (nginx counts what was sent on it for this request only), the next peer after a
502 (the first attempt keeps its head's count), an intercepted error (the head's count, no
length), and an X-Accel-Redirect to another proxied location. And in add_header, where nginx
reads them before the answer's end: the head's count, 0 and 0 (a failed attempt's are set). And
$upstream_http_NAME / $upstream_cookie_NAME in the log: found, empty, absent, not proxied."""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan, access_log_name
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

FORMAT = "$request|$status|$upstream_addr|$upstream_status|$upstream_bytes_received|$upstream_response_length|" \
         "$upstream_bytes_sent"

CONF = """
events {}
http {
    log_format bytes '%(format)s';
    log_format answer '$request|$upstream_http_x_up|$upstream_cookie_k|$upstream_http_x_none|$upstream_cookie_none';
    access_log logs/bytes.log bytes;
    access_log logs/answer.log answer;
    client_max_body_size 1m;
    upstream pair { server 127.0.0.1:9002; server 127.0.0.1:9001; }
    upstream kept { server 127.0.0.1:9001; keepalive 4; }
    server {
        listen 8080;
        server_name bytes.test;
        location /buf/ { proxy_pass http://127.0.0.1:9001; }
        location /unbuf/ { proxy_pass http://127.0.0.1:9001; proxy_buffering off; }
        location /kept/ { proxy_pass http://kept; proxy_http_version 1.1; proxy_set_header Connection ""; }
        location /next/ {
            proxy_pass http://pair;
            proxy_next_upstream error http_502;
            add_header X-Bytes "$upstream_bytes_received|$upstream_response_length|$upstream_bytes_sent";
        }
        location /hdr/ {
            proxy_pass http://127.0.0.1:9001;
            add_header X-Bytes "$upstream_bytes_received|$upstream_response_length|$upstream_bytes_sent";
        }
        location /icpt/ { proxy_pass http://127.0.0.1:9001; proxy_intercept_errors on; error_page 503 /page; }
        location = /page { return 200 "page\\n"; }
        location /accel/ { proxy_pass http://127.0.0.1:9001; }
    }
}
"""


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for base in ("/buf/", "/unbuf/", "/kept/", "/hdr/"):
        out.append(get(listen, f"{base}a", "bytes.test", f"{base} GET"))
        out.append(get(listen, f"{base}__big/64/b", "bytes.test", f"{base} 64 KiB"))
        out.append(get(listen, f"{base}__chunked/c", "bytes.test", f"{base} chunked"))
        out.append(get(listen, f"{base}h", "bytes.test", f"{base} HEAD", method="HEAD"))
        for size in (1000, 100000):
            out.append(Request(method="POST", target=f"{base}p{size}",
                               headers=(("Host", "bytes.test"), ("Content-Length", str(size))), listen=listen,
                               group="hand-picked", label=f"{base} POST {size}", body=b"b" * size))
    out.append(get(listen, "/next/__at/9002/__status/502/x", "bytes.test", "a 502, then the next peer"))
    out.append(get(listen, "/icpt/__status/503/x", "bytes.test", "an intercepted 503"))
    out.append(get(listen, "/accel/__header/X-Accel-Redirect=%2Fbuf%2Fthere/x", "bytes.test", "X-Accel-Redirect"))
    # The upstream's headers in the log: found, empty, absent; a request that was not proxied.
    out.append(get(listen, "/hdr/__header/X-Up=one/__header/Set-Cookie=k%3Dv1%3B%20Path%3D%2F/x", "bytes.test",
                   "an upstream header and cookie"))
    out.append(get(listen, "/hdr/__header/X-Up=/__header/Set-Cookie=k%3D/y", "bytes.test", "empty ones"))
    out.append(get(listen, "/page", "bytes.test", "not proxied"))
    out.append(get(listen, "/icpt/__header/X-Up=err/__status/503/z", "bytes.test", "an intercepted answer's header"))
    return out


def test_upstream_byte_counts_in_the_log_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF % {"format": FORMAT})
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0)
    assert_equivalent(report, minimum=4 * 6 + 7)  # the requests above
    name = access_log_name("logs/bytes.log")
    nginx, newproxy = ((tmp_path / "run" / target / name).read_text().splitlines() for target in ("nginx", "newproxy"))
    assert newproxy == nginx
    # What makes the comparison mean something: byte counts past the head, several attempts, a
    # second pass, a request body in the count.
    fields = [line.split("|") for line in nginx]
    assert any(int(f[5].split(", ")[-1].split(" : ")[-1]) > 65536 for f in fields if f[5] != "-"), nginx
    assert any(", " in f[4] for f in fields) and any(" : " in f[4] for f in fields), nginx
    assert any(int(f[6]) > 100000 for f in fields if f[6].isdigit()), nginx
    name = access_log_name("logs/answer.log")
    nginx, newproxy = ((tmp_path / "run" / target / name).read_text().splitlines() for target in ("nginx", "newproxy"))
    assert newproxy == nginx
    assert "GET /hdr/__header/X-Up=one/__header/Set-Cookie=k%3Dv1%3B%20Path%3D%2F/x HTTP/1.1|one|v1|-|-" in nginx, nginx

