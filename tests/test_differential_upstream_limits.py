"""An upstream response head longer than proxy_buffer_size, against real nginx: nginx reads the head
into one buffer of that size (4k by default, the page size) and answers 502 ("upstream sent too big
header") when the head is not complete within it, or tries the next peer with ``proxy_next_upstream
invalid_header``. The sizes sweep byte by byte across the boundary for the default, 1k and 8k
buffers, with GET, HEAD and a chunked answer, so the limit is shown to be the same byte on both;
and with an X-Accel-Buffering that switches buffering (and nginx's quirk for a head that fills the
buffer exactly: the head, then a close, only when buffered).
"""

from __future__ import annotations

from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    large_client_header_buffers 4 16k;
    upstream two { server 127.0.0.1:9001; server 127.0.0.1:9002; }
    server {
        listen 8080;
        server_name big.test;
        location /default/ { proxy_pass http://127.0.0.1:9001; }
        location /small/ { proxy_buffer_size 1k; proxy_pass http://127.0.0.1:9001; }
        location /unbuf/ { proxy_buffering off; proxy_buffer_size 1k; proxy_pass http://127.0.0.1:9001; }
        location /large/ { proxy_buffer_size 8k; proxy_pass http://127.0.0.1:9001; }
        location /next/ { proxy_buffer_size 1k; proxy_next_upstream invalid_header; proxy_pass http://two; }
        location /page/ { proxy_buffer_size 1k; error_page 502 = /fallback; proxy_pass http://127.0.0.1:9001; }
        location = /fallback { return 200 "fallback\\n"; }
    }
}
"""

# The recording upstream's head is about 101 bytes plus the X-Big value ("HTTP/1.1 200 OK", its
# Content-Type, Content-Length, X-Big and Connection lines): each sweep of values is centred on
# the buffer's size minus that, so it crosses the limit.
_SWEEPS = {"/default/": (3975, 4015), "/small/": (903, 943), "/large/": (8070, 8110), "/unbuf/": (913, 933),
           # The upstream's X-Accel-Buffering switches buffering for its answer, and with it nginx's
           # quirk for a head that fills the buffer exactly (its line adds 23 or 24 bytes).
           "/small/__header/X-Accel-Buffering=no/": (890, 910),
           "/unbuf/__header/X-Accel-Buffering=yes/": (889, 909)}


def requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    for base, (low, high) in _SWEEPS.items():
        for size in range(low, high):
            target = f"{base}__header/X-Big={'a' * size}/x"
            out.append(get(listen, target, "big.test", f"{base} header of {size}"))
        for size in (low, high):
            target = f"{base}__header/X-Big={'b' * size}/x"
            out.append(get(listen, target, "big.test", f"HEAD {base} {size}", method="HEAD"))
            out.append(get(listen, f"{base}__chunked/__header/X-Big={'c' * size}/x", "big.test",
                           f"chunked {base} {size}"))
    # Many small headers instead of one large one.
    for count in (20, 60):
        markers = "".join(f"/__header/X-H{i}=vvvvvvvvvvvvvvvvvvvv" for i in range(count))
        out.append(get(listen, f"/small{markers}/m", "big.test", f"{count} headers"))
    for base in ("/next/", "/page/"):
        for size in (100, 1000):
            out.append(get(listen, f"{base}__header/X-Big={'d' * size}/x", "big.test", f"{base} {size}"))
    return out


def test_upstream_header_over_proxy_buffer_size_matches_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF)
    report = shadow(str(conf), str(tmp_path / "run"), requests, max_requests=0)
    assert_equivalent(report, minimum=190)
    # Each sweep crossed its limit: a 502 for every size past it (3 sweeps' upper halves, their
    # HEAD and chunked ends, 60 headers, /next/ with both peers), the rest 200.
    assert report.statuses.get("502", 0) >= 60 and report.statuses.get("200", 0) >= 60, report.statuses
