"""The IO side of auth_request: run the subrequest upstream, hand its status and headers back.

The engine answers an access phase that needs a subrequest with an ``AuthSubrequest``. Its
ProxyPass goes through the ordinary upstream client (peer choice, retries, timeouts, keep-alive), in
an ``AuthExchange`` that only keeps the response head; nothing reaches the client. When the exchange
is over (``upstream_done``), failed (``upstream_error``: 502/504) or broke after its head
(``upstream_abort``), ``done`` is called with the status and headers, and the front end asks
``AuthSubrequest.resume`` for the request's real answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from newproxy.http.upstream import Exchange

if TYPE_CHECKING:
    from newproxy.engine.types import ProxyPass
    from newproxy.http.upstream import ClientSink, UpstreamClient, UpstreamConn

Done = Callable[[int, "list[tuple[bytes, bytes]]"], None]


class AuthExchange(Exchange):
    """An exchange that records the final response head (status and headers as received)."""

    __slots__ = ("answer",)
    follows_accel = False  # the subrequest's status is the upstream's, X-Accel-Redirect or not

    def __init__(self, client: UpstreamClient, pp: ProxyPass, sink: ClientSink) -> None:
        super().__init__(client, pp, sink)
        self.answer: tuple[int, list[tuple[bytes, bytes]]] | None = None

    def on_head(self, conn: UpstreamConn, status: int) -> None:
        if status >= 200:
            self.answer = (status, list(conn.headers))
        super().on_head(conn, status)


class AuthSink:
    """The ClientSink of an AuthExchange: drops the body, reports the outcome once."""

    __slots__ = ("conn_id", "done", "exchange", "finished")

    def __init__(self, conn_id: int, done: Done) -> None:
        self.conn_id = conn_id
        self.done = done
        self.exchange: AuthExchange | None = None
        self.finished = False

    def write(self, data: bytes) -> None:
        pass  # the subrequest's answer is not sent (nginx: header_only)

    def _report(self, status: int) -> None:
        if self.finished:
            return
        self.finished = True
        answer = self.exchange.answer if self.exchange is not None else None
        if answer is not None:
            self.done(answer[0], answer[1])
        else:
            self.done(status, [])

    def upstream_done(self, keepalive: bool) -> None:
        self._report(500)

    def upstream_error(self, status: int) -> None:
        if self.exchange is not None:
            self.exchange.answer = None  # no head was taken from this failed exchange
        self._report(status)

    def upstream_abort(self) -> None:
        self._report(502)  # the head arrived (it decides), the body broke off: nginx had stopped reading
