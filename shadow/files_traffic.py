"""Traffic for the files a config serves: for every ``root`` and prefix-location ``alias`` (read
against nginx's prefix, as nginx does), the files on disk become requests, each in the variants that
exercise nginx's static, index, not_modified and range modules: GET, HEAD, POST, a query string,
the file as a directory, If-Modified-Since (the file's own date, a second later, malformed),
If-None-Match and If-Range with the ETag nginx would compute, and single, suffix, multiple and
unsatisfiable ranges. Directories get the request with and without the trailing slash.

The conditional values are read from the files (mtime, size): inputs the two servers must answer
alike, not expected answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from email.utils import formatdate

from nginx_parser import NginxConfig
from shadow.rewire import Plan, listen_name

MAX_FILES_PER_ROOT = 200
UA = (("User-Agent", "shadow/1"), ("Accept", "*/*"))


def _http_date(t: float) -> str:
    return formatdate(int(t), usegmt=True)


def _roots(config: NginxConfig, prefix: str) -> Iterator[tuple[object, str, str]]:
    """(server, URI prefix, directory) for each root/alias the config serves files from."""
    http = config.http
    if http is None:
        return

    def absolute(path: str) -> str:
        return path if path.startswith("/") else os.path.join(prefix, path)

    def root_of(directives: list[object]) -> str | None:
        for directive in directives:
            if getattr(directive, "name", None) == "root" and directive.args and "$" not in directive.args[0]:  # type: ignore[attr-defined]
                return absolute(directive.args[0])  # type: ignore[attr-defined]
        return None

    http_root = root_of(list(http.directive.children())) if getattr(http, "directive", None) is not None else None
    for server in http.servers:
        server_root = root_of(list(server.directive.children())) or http_root or os.path.join(prefix, "html")
        yield server, "/", server_root
        stack = list(server.locations)
        while stack:
            location = stack.pop(0)
            own = list(location.directives())
            root = root_of(own)
            if root is not None:
                yield server, "/", root
            for directive in own:
                if directive.name == "alias" and directive.args and "$" not in directive.args[0] \
                        and location.modifier in ("", "^~"):
                    yield server, location.path, absolute(directive.args[0])
            stack.extend(location.locations)


def _adder(out: list[object], request_type: type, host: str, listen: str, group: str) -> Callable[..., None]:
    def add(method: str, target: str, label: str, *extra: tuple[str, str], version: str = "1.1") -> None:
        headers = (("Host", host), *UA, *extra)
        out.append(request_type(method, target, headers, listen, group, label, version))

    return add


def file_requests(config: NginxConfig, plan: Plan, prefix: str, request_type: type) -> list[list[object]]:
    """Groups of requests (one per root/alias) for the files under each."""
    groups: list[list[object]] = []
    seen: set[tuple[int, str, str]] = set()
    for server, uri_prefix, directory in _roots(config, prefix):
        key = (id(server), uri_prefix, directory)
        if key in seen or not os.path.isdir(directory):
            continue
        seen.add(key)
        listens = [listen_name(l) for l in server.listens]  # type: ignore[attr-defined]
        usable = [n for n in dict.fromkeys(listens) if n in plan.listens and plan.listens[n].plain_http1]
        if not usable:
            continue
        listen = usable[0]
        names = [n for n in server.server_names if n and not n.startswith("~") and "*" not in n]  # type: ignore[attr-defined]
        host = names[0] if names else "shadow.invalid"
        out: list[object] = []
        add = _adder(out, request_type, host, listen, f"files under {directory}")

        count = 0
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, directory)
            base = uri_prefix.rstrip("/") + ("/" if rel_dir == "." else "/" + rel_dir.replace(os.sep, "/") + "/")
            if rel_dir != ".":
                add("GET", base, "dir/")
                add("GET", base[:-1], "dir-no-slash")
                add("GET", base[:-1] + "?a=1", "dir-no-slash?query")
            for name in sorted(filenames):
                if count >= MAX_FILES_PER_ROOT:
                    break
                count += 1
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                target = base + name
                etag = f'"{int(st.st_mtime):x}-{st.st_size:x}"'
                date = _http_date(st.st_mtime)
                add("GET", target, "file")
                add("HEAD", target, "file/HEAD")
                add("POST", target, "file/POST", ("Content-Length", "0"))
                add("GET", target + "?v=1", "file?query")
                add("GET", target + "/", "file/")
                add("GET", target, "file/1.0", version="1.0")
                add("GET", target, "ims", ("If-Modified-Since", date))
                add("GET", target, "ims+1", ("If-Modified-Since", _http_date(st.st_mtime + 1)))
                add("GET", target, "ims-bad", ("If-Modified-Since", "yesterday"))
                add("GET", target, "inm", ("If-None-Match", etag))
                add("HEAD", target, "inm/HEAD", ("If-None-Match", "W/" + etag))
                add("GET", target, "inm-other", ("If-None-Match", '"0-0"'))
                add("GET", target, "range", ("Range", "bytes=0-9"))
                add("GET", target, "range-suffix", ("Range", "bytes=-7"))
                add("GET", target, "range-multi", ("Range", "bytes=0-1,4-6"))
                add("GET", target, "range-416", ("Range", f"bytes={st.st_size + 10}-"))
                add("GET", target, "if-range", ("Range", "bytes=2-5"), ("If-Range", etag))
                add("GET", target, "if-range-date", ("Range", "bytes=2-5"), ("If-Range", date))
        if out:
            groups.append(out)
    return groups


