"""The preaccess limits in the sans-IO engine with a fake clock: nginx's integer leaky bucket, exactly.

The claims of equality with nginx are made by tests/test_differential_limits.py; these pin the
arithmetic (milli-requests, whole milliseconds) where wall-clock timing could not.
"""

from __future__ import annotations

from pathlib import Path

from newproxy.engine.engine import Engine
from newproxy.engine.types import Delayed, ProxyPass, Request, Response
from nginx_parser import parse_config
from translator.translate import translate

CONFIG = """
events {}
http {
    limit_req_zone $http_x_key zone=one:1m rate=10r/s;
    limit_req_zone $http_x_key2 zone=two:1m rate=30r/m;
    limit_conn_zone $http_x_key zone=conns:1m;
    server {
        listen 127.0.0.1:8080;
        location /two/ {
            limit_req zone=one burst=5 nodelay;
            limit_req zone=two burst=2;
            limit_req_status 429;
            proxy_pass http://127.0.0.1:9000;
        }
        location /conn/ { limit_conn conns 1; proxy_pass http://127.0.0.1:9000; }
        location /plain/ { proxy_pass http://127.0.0.1:9000; }
    }
}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 5_000_000  # ms of the monotonic clock

    def __call__(self) -> int:
        return self.now


def make(tmp_path: Path) -> tuple[Engine, Clock]:
    path = tmp_path / "nginx.conf"
    path.write_text(CONFIG)
    engine = Engine(translate(parse_config(str(path))).config)
    clock = Clock()
    engine.zones.clock = clock
    return engine, clock


def get(engine: Engine, target: bytes, **headers: str) -> object:
    head = [(b"Host", b"a")] + [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return engine.handle(Request(b"GET", target, b"1.1", head, b"", ("127.0.0.1", 4000), ("127.0.0.1", 8080)))


def test_two_limits_longest_delay_and_no_charge_on_reject(tmp_path: Path) -> None:
    engine, clock = make(tmp_path)
    answers = [get(engine, b"/two/x", X_Key="k", X_Key2="k") for _ in range(4)]
    assert isinstance(answers[0], ProxyPass)
    # zone two: 30r/m is 500 milli-requests per second: excess 1000 waits 2 s, 2000 waits 4 s.
    assert [a.seconds for a in answers[1:3]] == [2.0, 4.0]  # type: ignore[attr-defined]
    assert isinstance(answers[3], Response) and answers[3].status == 429
    # The request zone two rejected was not charged to zone one (nginx unlocks its node).
    assert engine.zones.req["one"].nodes["k"] == [2000, clock.now, 0]
    assert engine.zones.req["two"].nodes["k"] == [2000, clock.now, 0]
    # 1.5 s later: zone two drained 750, so 2000 - 750 + 1000 = 2250 > burst 2000: still rejected.
    clock.now += 1500
    late = get(engine, b"/two/x", X_Key="k", X_Key2="k")
    assert isinstance(late, Response) and late.status == 429
    # A delayed request resumes with the phases after limit_req: its answer is the ProxyPass.
    resumed = answers[1].resume()  # type: ignore[attr-defined]
    assert isinstance(resumed, ProxyPass)


def test_empty_key_is_not_limited(tmp_path: Path) -> None:
    engine, _ = make(tmp_path)
    assert all(isinstance(get(engine, b"/two/x"), ProxyPass) for _ in range(20))
    assert not engine.zones.req["one"].nodes


def test_limit_conn_holds_until_release(tmp_path: Path) -> None:
    engine, _ = make(tmp_path)
    first = get(engine, b"/conn/a", X_Key="c")
    assert isinstance(first, ProxyPass) and first.release is not None
    second = get(engine, b"/conn/a", X_Key="c")
    assert isinstance(second, Response) and second.status == 503
    first.release()
    first.release()  # idempotent: the IO layer may report the end twice
    assert engine.zones.conn["conns"].counts == {}
    assert isinstance(get(engine, b"/conn/a", X_Key="c"), ProxyPass)


def test_no_limits_no_work(tmp_path: Path) -> None:
    engine, _ = make(tmp_path)
    answer = get(engine, b"/plain/x", X_Key="k")
    assert isinstance(answer, ProxyPass) and answer.release is None
    assert not isinstance(answer, Delayed)
