"""The live mirror receiver: production nginx copies its requests here with its ``mirror``
directive, and the harness replays the copies against nginx and newproxy.

Production keeps answering its clients; nothing here answers a real client, and the replayed
requests only ever reach the harness's recording upstreams. Add to the production config (once per
server, or in the locations to shadow):

    mirror /__shadow_mirror;
    mirror_request_body on;
    location = /__shadow_mirror {
        internal;
        proxy_pass http://RECEIVER$request_uri;
        proxy_set_header Host $http_host;
        proxy_set_header X-Mirror-Server $server_addr:$server_port;
        proxy_set_header X-Mirror-Protocol $server_protocol;
    }

(``MIRROR_SNIPPET`` below, with the receiver's address filled in.) What the receiver sees is what
nginx's proxy module sends: the client's request line, the original headers after the ones set
above, and the body. It restores the request as the client sent it: the ``X-Mirror-*`` headers and
the proxy's own ``Connection: close`` are taken away, the version and the listen (by the server
port) come from them. A client's ``Connection`` header never reaches the mirror (nginx's proxy
replaces it), so replayed requests use their version's default.
"""

from __future__ import annotations

from nginx_parser import NginxConfig
from shadow.replay import choose_listen
from shadow.rewire import Plan
from shadow.traffic import Request
from shadow.upstreams import RecordedRequest, UpstreamPool

MIRROR_SNIPPET = """\
mirror /__shadow_mirror;
mirror_request_body on;
location = /__shadow_mirror {{
    internal;
    proxy_pass http://{address}$request_uri;
    proxy_set_header Host $http_host;
    proxy_set_header X-Mirror-Server $server_addr:$server_port;
    proxy_set_header X-Mirror-Protocol $server_protocol;
}}
"""

_OWN_HEADERS = {"x-mirror-server", "x-mirror-protocol"}


class MirrorReceiver:
    """Receives mirrored requests on ``host:port`` (a free port when 0) in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._pool = UpstreamPool()
        self._upstream = self._pool.add("mirror", bind=(host, port))

    @property
    def address(self) -> str:
        return self._upstream.hostport

    def snippet(self) -> str:
        return MIRROR_SNIPPET.format(address=self.address)

    def __enter__(self) -> MirrorReceiver:
        self._pool.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.stop()

    def take(self) -> list[RecordedRequest]:
        """The mirrored requests received since the last call, in arrival order."""
        self._pool.settle()
        return self._pool.take()


def to_request(record: RecordedRequest, config: NginxConfig, plan: Plan, number: int) -> Request | None:
    """The client's request a mirrored one was copied from (None: no listen of ``plan`` to send it to)."""
    headers = [(name, value) for name, value in record.headers if name.lower() not in _OWN_HEADERS]
    # nginx's proxy put its own "Connection: close" after the headers it sets; the client's never arrives.
    headers = [(name, value) for name, value in headers if name.lower() != "connection"]
    values = {name.lower(): value for name, value in record.headers}
    protocol = values.get("x-mirror-protocol", "HTTP/1.1")
    version = "1.0" if protocol == "HTTP/1.0" else "1.1"
    server = values.get("x-mirror-server", "")
    port = int(server.rsplit(":", 1)[1]) if server.rsplit(":", 1)[-1].isdigit() else None
    host = values.get("host", "")
    listen = choose_listen(config, plan, host.split(":")[0], port)
    if listen is None:
        return None
    return Request(record.method, record.uri, tuple(headers), listen, "replay: mirror", f"mirror:{number}",
                   version, record.body)
