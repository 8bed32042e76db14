"""The live mirror receiver (shadow/mirror.py) fed by a real nginx ``mirror`` config: a
"production" nginx serves its clients and copies each request to the receiver; the copies,
restored as the clients sent them, are replayed against nginx and newproxy on the config under
test (here a proxying one), with 0 differences."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

from nginx_parser import parse_config
from shadow import client
from shadow.mirror import MirrorReceiver, to_request
from shadow.rewire import plan
from shadow.runner import free_ports
from shadow.targets import NginxTarget
from tests.differential import assert_equivalent, shadow

APP = """
events {}
http {
    upstream app { server 127.0.0.1:9001; }
    server {
        listen 8080;
        server_name shop.test;
        location / { proxy_pass http://app; }
        location /api/ { proxy_pass http://app/v2/; proxy_set_header X-Lang $http_accept_language; }
    }
}
"""


def _production(tmp_path: Path, port: int, snippet: str) -> Path:
    docroot = tmp_path / "site"
    docroot.mkdir(mode=0o755)
    (docroot / "index.html").write_text("home\n")
    os.chmod(tmp_path, 0o755)
    conf = tmp_path / "production.conf"
    conf.write_text(f"""
user root;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        server_name shop.test;
        root {docroot};
{textwrap.indent(snippet, " " * 8)}
    }}
}}
""")
    return conf


def test_mirrored_production_traffic_replays_equivalently(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    sent = [
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: mirror-test\r\nAccept: */*\r\n\r\n",
        b"GET /api/items?page=2 HTTP/1.1\r\nHost: shop.test\r\nAccept-Language: fr\r\n\r\n",
        b"POST /cart HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"item": 7}',
        b"DELETE /api/items/3 HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        b"GET /old HTTP/1.0\r\n\r\n",
    ]
    with MirrorReceiver() as receiver:
        (tmp_path / "prod").mkdir()
        conf = _production(tmp_path / "prod", port, receiver.snippet())
        production = NginxTarget(parse_config(str(conf)).tree, str(tmp_path / "prod" / "run"), {"prod": port},
                                 label="production")
        with production:
            async def send_all() -> list[str]:
                outcomes = []
                for data in sent:
                    exchange = await client.exchange(data, port, data.split(b" ")[0].decode(), timeout=5)
                    outcomes.append((await exchange.finish(0.01)).outcome)
                return outcomes

            outcomes = asyncio.run(send_all())
            assert all(outcome != "timeout" for outcome in outcomes), outcomes
            records = []
            for _ in range(50):  # the mirror subrequests may finish after the main responses
                records += receiver.take()
                if len(records) >= len(sent):
                    break
                asyncio.run(asyncio.sleep(0.05))
    assert [r.method for r in records] == ["GET", "GET", "POST", "DELETE", "GET"]
    app = tmp_path / "app.conf"
    app.write_text(APP)
    config = parse_config(str(app))
    the_plan = plan(config)
    requests = [to_request(record, config, the_plan, i) for i, record in enumerate(records)]
    assert all(r is not None for r in requests)
    restored = [r for r in requests if r is not None]
    assert [r.target for r in restored] == ["/index.html?x=1", "/api/items?page=2", "/cart", "/api/items/3", "/old"]
    first = dict(restored[0].headers)
    assert first["Host"] == "shop.test" and first["User-Agent"] == "mirror-test"
    assert not any(name.lower().startswith("x-mirror") or name.lower() == "connection"
                   for r in restored for name, _ in r.headers)
    assert restored[2].body == b'{"item": 7}'
    assert restored[4].version == "1.0"
    report = shadow(str(app), str(tmp_path / "shadow"), requests=lambda _plan: restored, max_requests=0, guided=False)
    assert_equivalent(report, len(restored))
