"""Access logs against real nginx: every line newproxy writes equals nginx's line for the same request.

One shadow run (generated traffic plus hand-picked requests with quotes, backslashes, control bytes
and non-ASCII bytes in the URI and headers) over a config with the predefined ``combined`` format,
a custom format with most of the variables nginx logs, a json-escaped and an unescaped format,
``if=``, ``buffer=``/``flush=``, per-server and per-location ``access_log`` and ``off``. The harness
sends each request to nginx, then to newproxy, one at a time, so the lines of each log pair up in
order. Only timing fields are masked, by their position in the format, never by pattern on the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import newproxy
from shadow.rewire import Plan, access_log_name
from shadow.traffic import Request
from tests.differential import get, shadow

# The variables whose values depend on when or on which connection a request ran.
TIMING = frozenset({"request_time", "msec", "time_local", "time_iso8601", "connection",
                    "upstream_response_time", "upstream_connect_time", "upstream_header_time"})

DETAIL = ("$remote_addr|$remote_user|[$time_local]|$time_iso8601|$msec|\"$request\"|$status|$body_bytes_sent|"
          "$bytes_sent|\"$http_referer\"|\"$http_user_agent\"|$http_x_custom|$sent_http_content_type|"
          "$sent_http_location|$request_time|$request_length|$upstream_addr|$upstream_status|"
          "$upstream_response_time|$upstream_connect_time|$upstream_header_time|$connection|"
          "$connection_requests|$pipe|$server_name|$host|$uri|$args|$request_uri|$scheme|$server_protocol|"
          "$request_method|$gzip_ratio|${status}x|$arg_q|$cookie_sid|$content_length")
JSON = ('{"addr":"$remote_addr","user":"$remote_user","req":"$request","status":$status,"ua":"$http_user_agent",'
        '"ref":"$http_referer","uri":"$uri","args":"$args","x":"$http_x_custom","up":"$upstream_addr",'
        '"ups":"$upstream_status","t":"$request_time","len":$request_length}')
RAW = "$request ~ $http_user_agent ~ $status ~ $args"

FORMATS = {"combined": None, "detail": DETAIL, "js": JSON, "raw": RAW}

CONFIG = """
events {}
http {
    log_format detail '%(detail)s';
    log_format js escape=json '%(js)s';
    log_format raw escape=none '%(raw)s';
    map $request_method $loggable { HEAD 0; default 1; }
    access_log logs/all.log;
    access_log logs/detail.log detail;
    access_log logs/js.log js;
    access_log logs/buffered.log combined buffer=4k flush=1s;
    server {
        listen 8080;
        server_name logs.test;
        location / { return 200 "ok\\n"; }
        location /proxy/ { proxy_pass http://127.0.0.1:9301; }
        location /flaky/ { proxy_pass http://flaky; }
        location /quiet/ { access_log off; return 204; }
        location /only/ {
            access_log logs/only.log detail;
            access_log logs/raw.log raw if=$loggable;
            return 404;
        }
        location /cond/ { access_log logs/cond.log raw if=$arg_log; return 200 "c"; }
        location /redir { return 301 /elsewhere; }
        location /nested/ {
            location /nested/off/ { access_log off; return 200 "n"; }
            return 403;
        }
        location /down/ { proxy_pass http://127.0.0.1:9302; }
        location /dead/ { proxy_pass http://dead; }
        location /again/ { proxy_pass http://127.0.0.1:9302; error_page 502 = /proxy/fallback; }
        location /files/ { alias %(files)s/; }
        location /iffy/ {
            if ($arg_x) { access_log logs/iffy.log js; return 418; }
            return 200 "i";
        }
    }
    server {
        listen 8080;
        server_name other.test;
        access_log logs/other.log detail;
        location / { return 200 "other"; }
        location /p/ { proxy_pass http://127.0.0.1:9301; }
    }
    upstream dead {
        server 127.0.0.1:9303 down;
    }
    upstream flaky {
        server 127.0.0.1:9302 max_fails=0;
        server 127.0.0.1:9301;
    }
}
"""

# Log file (as the harness names it in both work dirs) -> its format.
LOGS = {
    "logs/all.log": "combined", "logs/detail.log": "detail", "logs/js.log": "js", "logs/buffered.log": "combined",
    "logs/only.log": "detail", "logs/raw.log": "raw", "logs/cond.log": "raw", "logs/iffy.log": "js",
    "logs/other.log": "detail",
}
NGINX_TOKEN = "nginx/1.22.1"
NEWPROXY_TOKEN = f"newproxy/{newproxy.__version__}"
COMBINED = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'

# Control bytes other than tab reach the log through the URI ($uri is percent-decoded): newproxy's
# HTTP parser refuses them in header values (400) where nginx accepts them, a front-end gap.
NASTY_HEADERS = (
    ("User-Agent", 'quote " back \\ tab\t latin \xe9\xff'),
    ("Referer", 'http://ref.test/"x"\\y\xe2\x82\xac'),
    ("X-Custom", "tab\there \\x07 \x80"),
    ("Cookie", "sid=abc\"1; other=2"),
)


def log_requests(plan: Plan) -> list[Request]:
    listen = next(iter(plan.listens))
    out: list[Request] = []
    targets = ["/", "/proxy/a?b=1", "/flaky/x", "/flaky/y?q=2", "/quiet/x", "/only/x?q=z", "/cond/x?log=1",
               "/cond/x?log=0", "/cond/x", "/redir", "/nested/x", "/nested/off/y", "/iffy/a?x=1", "/iffy/a",
               '/q"uote\\back?a="b"', "/caf%C3%A9/%FF?q=%E9", "/pct%22%5C%01/x?q=%00", "/sp%20ace?", "/x?",
               "/only/%E2%82%AC%7F?q=\"\\", "/proxy/%7f%22?\\", "/iffy/%0a%09?x=%22", "/ctl%1F%1b%08%0c%0d/x",
               "/iffy/%08%0C%0D%1B%22%5C%C3%A9?x=1"]
    for target in targets:
        for host in ("logs.test", "other.test"):
            out.append(get(listen, target, host, f"plain {target}"))
            out.append(get(listen, target, host, f"nasty headers {target}", extra=NASTY_HEADERS))
        out.append(get(listen, target, "logs.test", f"HEAD {target}", method="HEAD", extra=NASTY_HEADERS))
        out.append(get(listen, target, "logs.test", f"HTTP/1.0 {target}", version="1.0"))
    # Volume: every location again with numbered paths and query strings, on both servers.
    locations = ["/", "/proxy/", "/flaky/", "/only/", "/cond/", "/nested/", "/iffy/", "/p/", "/redir", "/down/",
                 "/dead/", "/again/", "/files/"]
    for i in range(610):
        where = locations[i % len(locations)]
        host = ("logs.test", "other.test", "unknown.test", "LOGS.test:8080")[i % 4]
        extra = NASTY_HEADERS if i % 3 == 0 else (("User-Agent", f"agent/{i}"), ("X-Custom", f"#{i}"))
        method = ("GET", "HEAD", "DELETE", "OPTIONS", "GET")[i % 5]
        target = f"{where}n{i}?log={i % 2}&x={i % 3}&q=v{i}" if i % 7 else f"{where}n{i}"
        out.append(get(listen, target, host, f"volume {where}", method=method, extra=extra,
                       version="1.0" if i % 11 == 0 else "1.1"))
    for name in ("small.txt", "big.bin", "missing", ""):
        out.append(get(listen, f"/files/{name}", "logs.test", f"file {name}"))
        out.append(get(listen, f"/files/{name}", "logs.test", f"file {name} HEAD", method="HEAD"))
        out.append(get(listen, f"/files/{name}", "logs.test", f"file {name} range", extra=(("Range", "bytes=2-5"),)))
    out.append(get(listen, "/", "logs.test", "basic auth", extra=(("Authorization", "Basic dXNlcjpwYXNz"),)))
    out.append(get(listen, "/", "logs.test", "basic auth, user with quote",
                   extra=(("Authorization", "Basic dSJzZXI6cA=="),)))
    out.append(get(listen, "/", "logs.test", "bad basic auth", extra=(("Authorization", "Basic !!!"),)))
    out.append(get(listen, "/", "logs.test", "bearer", extra=(("Authorization", "Bearer x"),)))
    out.append(get(listen, "/", "logs.test", "empty referer", extra=(("Referer", ""), ("User-Agent", ""))))
    out.append(Request(method="POST", target="/proxy/post", headers=(("Host", "logs.test"), ("Content-Length", "5")),
                       listen=listen, group="hand-picked", label="POST body", body=b"hello"))
    out.append(Request(method="POST", target="/proxy/chunked",
                       headers=(("Host", "logs.test"), ("Transfer-Encoding", "chunked")), listen=listen,
                       group="hand-picked", label="chunked POST", body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    return out


def _pattern(fmt: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex splitting a line of ``fmt`` into its variables' values (non-greedy, anchored)."""
    parts: list[str] = []
    names: list[str] = []
    pos = 0
    for match in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", fmt):
        parts.append(re.escape(fmt[pos:match.start()]))
        names.append(match.group(1) or match.group(2))
        parts.append("(.*?)")
        pos = match.end()
    parts.append(re.escape(fmt[pos:]))
    return re.compile("".join(parts), re.DOTALL), names


def _fields(line: str, fmt: str) -> dict[str, str]:
    """The line's values by variable (repeats get a #n suffix), timing fields masked."""
    pattern, names = _pattern(fmt)
    match = pattern.fullmatch(line)
    assert match is not None, f"line does not follow its format: {line!r}"
    out: dict[str, str] = {}
    for name, value in zip(names, match.groups()):
        key = name if name not in out else f"{name}#{len(out)}"
        out[key] = "<timing>" if name in TIMING else value
    return out


def _server_token_shift(ours: dict[str, str], theirs: dict[str, str]) -> dict[str, str]:
    """The shadow harness's Server rule for byte counts: each response names its server in the
    Server header (and a built-in error page in its body too), "nginx/1.22.1" against newproxy's
    token. The header is always shifted by the length difference; a body (status >= 300) may be."""
    shift = len(NEWPROXY_TOKEN) - len(NGINX_TOKEN)
    fixed = dict(ours)
    if "bytes_sent" in ours and ours["bytes_sent"].isdigit() and ours.get("status") not in ("444", "499"):
        sent = int(ours["bytes_sent"])
        if sent:
            fixed["bytes_sent"] = str(sent - shift)
    body, their_body = ours.get("body_bytes_sent", ""), theirs.get("body_bytes_sent", "")
    if body.isdigit() and their_body.isdigit() and int(ours.get("status", "0")) >= 300 \
            and int(body) - shift == int(their_body):
        fixed["body_bytes_sent"] = their_body
        if "bytes_sent" in fixed and fixed["bytes_sent"].isdigit():
            fixed["bytes_sent"] = str(int(fixed["bytes_sent"]) - shift)
    return fixed


def _lines(path: Path, port: int) -> list[str]:
    """The lines of a log, with the target's own listen port (in Location, Host) named as the
    harness names it: the only per-target value that is not a timing."""
    if not path.exists():
        return []
    text = path.read_bytes().decode("latin-1").replace(f":{port}", ":{listen}")
    return text.split("\n")[:-1]


def test_access_log_lines_match_nginx(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    files = tmp_path / "files"
    files.mkdir()
    (files / "small.txt").write_bytes(b"small file\n")
    (files / "big.bin").write_bytes(b"x" * 300_000)  # past the inline limit: sent by sendfile()
    conf.write_text(CONFIG % {"detail": DETAIL, "js": JSON, "raw": RAW, "files": files}, encoding="latin-1")
    report = shadow(str(conf), str(tmp_path / "run"), log_requests, max_requests=1000,
                    refuse=frozenset({"127.0.0.1:9302"}))
    assert report.requests >= 1000, report.requests
    text = {name: (FORMATS[fmt] or COMBINED) for name, fmt in LOGS.items()}
    total = 0
    for original, fmt in text.items():
        name = access_log_name(original)
        ours = _lines(tmp_path / "run" / "newproxy" / name, report.listens["newproxy"]["*:8080"])
        theirs = _lines(tmp_path / "run" / "nginx" / name, report.listens["nginx"]["*:8080"])
        assert theirs, f"nginx wrote nothing to {original}: the test's config does not exercise it"
        assert len(ours) == len(theirs), (original, len(ours), len(theirs))
        diffs = []
        for i, (a, b) in enumerate(zip(theirs, ours)):
            them = _fields(a, fmt)
            if _server_token_shift(_fields(b, fmt), them) != them:
                diffs.append((i, a, b))
        assert not diffs, f"{original}: {len(diffs)} lines differ; first: " + "\n".join(
            f"#{i}\nnginx:    {a!r}\nnewproxy: {b!r}" for i, a, b in diffs[:4])
        total += len(theirs)
    # Every request but those to `access_log off` locations is in detail.log or other.log.
    detailed = sum(len(_lines(tmp_path / "run" / "nginx" / access_log_name(f"logs/{n}.log"), 0)) for n in ("detail", "other"))
    assert detailed >= 1000, detailed
    assert total >= 3000
