"""examples/static/nginx.conf, the static site + single-page app, must shadow with 0 differences over
at least 1,000 requests: what ``nginx-migrate shadow -p examples/static examples/static/nginx.conf
--max-requests 1000`` runs (the relative ``root site`` is read against the prefix, as nginx -p does),
bounded in time. Most of the traffic is generated from the files under the docroot."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from shadow.runner import run_shadow

EXAMPLE_DIR = Path(__file__).parent.parent / "examples" / "static"


def test_static_example_is_equivalent_under_newproxy(tmp_path: Path) -> None:
    # nginx's workers must be able to read the docroot whatever user they run as.
    for path in [EXAMPLE_DIR / "site", *(EXAMPLE_DIR / "site").rglob("*")]:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH and (not path.is_dir() or mode & stat.S_IXOTH), path
    report = run_shadow(str(EXAMPLE_DIR / "nginx.conf"), against="newproxy", workdir=str(tmp_path),
                        max_requests=1000, max_seconds=150, nginx_prefix=os.fspath(EXAMPLE_DIR))
    assert report.requests >= 1000, report.requests
    problems = [{"curl": e["curl"], "diffs": e["diffs"]} for e in report.diffs if e["verdict"] != "equivalent"]
    assert (report.different, report.errors) == (0, 0), json.dumps(problems[:5], indent=1)
    # Issue 7: every location of the example is reached by the traffic that was compared.
    assert report.coverage["by_kind"]["location"]["percent"] == 100.0, report.coverage["uncovered"]
    bad = [item for item in report.gaps["items"] if item["level"] in ("unsupported", "unknown")]
    assert not bad, bad
