"""Helpers for the differential tests: run the shadow harness, fail with the diffs in view."""

from __future__ import annotations

import json
from typing import Callable

from shadow.rewire import Plan
from shadow.runner import ShadowReport, run_shadow
from shadow.traffic import Request


def get(listen: str, target: str, host: str | None, label: str, method: str = "GET",
        version: str = "1.1", extra: tuple[tuple[str, str], ...] = ()) -> Request:
    headers = ((("Host", host),) if host is not None else ()) + extra
    return Request(method=method, target=target, headers=headers, listen=listen, group="hand-picked", label=label,
                   version=version)


def assert_equivalent(report: ShadowReport, minimum: int) -> None:
    problems = [{"curl": e.get("curl"), "diffs": e.get("diffs")} for e in report.diffs if e.get("verdict") != "equivalent"]
    assert report.requests >= minimum, report.requests
    assert (report.different, report.errors) == (0, 0), json.dumps(problems[:6], indent=1, default=str)


def shadow(path: str, tmp: str, requests: Callable[[Plan], list[Request]] | None = None,
           max_requests: int = 400, **kwargs: object) -> ShadowReport:
    return run_shadow(path, against="newproxy", workdir=tmp, max_requests=max_requests,
                      extra_requests=requests, **kwargs)  # type: ignore[arg-type]
