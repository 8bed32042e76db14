"""Access control against real nginx: allow/deny (IPv4, IPv6, CIDR, all, first match, inheritance,
server level, error_page 403), real_ip (X-Forwarded-For recursive and not, X-Real-IP, a custom header,
ports, IPv6 and IPv4-mapped addresses, garbage, untrusted clients, location-level realip in the
preaccess phase), auth_basic (a user file with every scheme: DES crypt, $1$, $apr1$, $5$, $6$, {SHA},
{SSHA}, {PLAIN}, comments, empty and CRLF lines, duplicates, extra fields, broken hashes; right, wrong
and missing credentials; malformed Authorization headers; realm with variables; off; missing and
unreadable files; error_page 401), satisfy any/all, and auth_request (2xx, 401 with the upstream's
WWW-Authenticate, 403, other statuses, a refused auth upstream, auth_request_set with $upstream_status
and $upstream_http_*, a subrequest answered by `return`, satisfy any with auth_request).

Client addresses come from real_ip (headers from a trusted 127.0.0.1) and from the client's own
loopback source address (127.0.0.0/8), so allow/deny see many addresses on one machine.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import subprocess
from pathlib import Path

from shadow.rewire import Plan
from shadow.traffic import Request
from tests.differential import assert_equivalent, get, shadow

CONF = """
events {}
http {
    root ROOT;
    upstream backend { server 127.0.0.1:9301; }
    upstream authsvc { server 127.0.0.1:9302; }
    upstream authka { server 127.0.0.1:9304; keepalive 4; }

    # real_ip from a trusted loopback proxy; allow/deny then see the forwarded address.
    server {
        listen 8080;
        server_name access.test;
        set_real_ip_from 127.0.0.1;
        set_real_ip_from 10.9.0.0/16;
        set_real_ip_from 2001:db8:ffff::/48;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-User $remote_user;

        location = /addr { return 200 "$remote_addr|$realip_remote_addr\\n"; }
        location = /port {
            # $remote_port only where real_ip gave the address (the socket's port differs per target).
            if ($remote_addr = $realip_remote_addr) { return 200 "not forwarded\\n"; }
            return 200 "$remote_addr|$remote_port\\n";
        }
        location /v4/ {
            deny 10.0.0.1;
            allow 10.0.0.0/8;
            allow 192.168.1.0/24;
            deny 172.16.0.0/12;
            allow 2001:db8::/32;
            deny all;
            proxy_pass http://backend;
        }
        location /v6/ {
            allow 2001:db8:1::/48;
            deny 2001:db8::/32;
            allow ::1;
            allow 10.1.0.0/16;
            deny all;
            proxy_pass http://backend;
        }
        location /only6/ {
            deny 2001:db8::1;
            allow ::/0;
            proxy_pass http://backend;
        }
        location /low-bits/ { allow 10.2.3.4/16; deny all; proxy_pass http://backend; }
        location /open/ { proxy_pass http://backend; }
        location /iflocation/ {
            deny 10.0.0.0/8;
            allow all;
            if ($http_x_flag) { set $flagged 1; }
            proxy_set_header X-Flagged $flagged;
            proxy_pass http://backend;
        }
        location /ep403/ {
            deny all;
            error_page 403 /forbidden.txt;
        }
        location = /forbidden.txt { }
        location /ep403named/ {
            deny all;
            error_page 403 = @denied;
        }
        location @denied { return 200 "denied for $remote_addr\\n"; }
        location /nested/ {
            allow 10.0.0.0/8;
            deny all;
            proxy_pass http://backend;
            location /nested/inner/ { proxy_pass http://backend; }
            location /nested/own/ { allow 192.168.0.0/16; deny all; proxy_pass http://backend; }
        }
    }

    # Not recursive, X-Forwarded-For: the last address only.
    server {
        listen 8081;
        server_name flat.test;
        set_real_ip_from 127.0.0.0/8;
        set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For;
        location = /addr { return 200 "$remote_addr|$realip_remote_addr\\n"; }
        location / { allow 10.0.0.0/8; deny all; proxy_pass http://backend; }
    }

    # X-Real-IP (the default header), and a custom header; realip set in a location only.
    server {
        listen 8082;
        server_name xrealip.test;
        set_real_ip_from 127.0.0.1;
        location = /addr { return 200 "$remote_addr|$realip_remote_addr\\n"; }
        location /custom/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Client;
            set $before $remote_addr;
            proxy_set_header X-Before $before;
            proxy_set_header X-After $remote_addr;
            allow 10.5.0.0/16;
            deny all;
            proxy_pass http://backend;
        }
    }

    # Rules at server level: requests that match no location are checked too.
    server {
        listen 8083;
        server_name serverlevel.test;
        allow 127.0.0.2;
        allow 127.0.1.0/24;
        deny all;
        location /own/ { allow all; proxy_pass http://backend; }
    }

    # auth_basic and satisfy.
    server {
        listen 8084;
        server_name auth.test;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        proxy_set_header X-User $remote_user;
        auth_basic "Server $host";
        auth_basic_user_file USERS;

        location /basic/ { proxy_pass http://backend; }
        location /realm/ { auth_basic "Area 51"; proxy_pass http://backend; }
        location /off/ { auth_basic off; proxy_pass http://backend; }
        location /delayed/ { auth_delay 200ms; proxy_pass http://backend; }
        location /missing/ { auth_basic_user_file ROOT/no-such-file; proxy_pass http://backend; }
        location /unreadable/ { auth_basic_user_file ROOT; proxy_pass http://backend; }
        location /ep401/ { error_page 401 /unauthorized.txt; proxy_pass http://backend; }
        location = /unauthorized.txt { auth_basic off; }
        location /ep401ret/ { error_page 401 = @why; proxy_pass http://backend; }
        location @why { return 200 "who are you?\\n"; }
        location /ep401proxy/ { error_page 401 /login-proxy; proxy_pass http://backend; }
        location = /login-proxy { auth_basic off; proxy_pass http://backend/login; }
        location /any/ {
            satisfy any;
            allow 10.0.0.0/8;
            deny all;
            proxy_pass http://backend;
        }
        location /all/ {
            satisfy all;
            allow 10.0.0.0/8;
            deny all;
            proxy_pass http://backend;
        }
        location /static/ { }
    }

    # auth_request.
    server {
        listen 8085;
        server_name subreq.test;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        location /ok/ {
            auth_request /auth-ok;
            auth_request_set $auth_status $upstream_status;
            auth_request_set $auth_user $upstream_http_x_user;
            auth_request_set $auth_type "type=$upstream_http_content_type";
            proxy_set_header X-Auth-Status $auth_status;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header X-Auth-Type $auth_type;
            proxy_pass http://backend;
        }
        location /deny401/ { auth_request /auth-401; proxy_pass http://backend; }
        location /deny403/ { auth_request /auth-403; proxy_pass http://backend; }
        location /weird/ { auth_request /auth-404; proxy_pass http://backend; }
        location /broken/ { auth_request /auth-500; proxy_pass http://backend; }
        location /down/ { auth_request /auth-down; proxy_pass http://backend; }
        location /returned/ {
            auth_request /auth-return;
            auth_request_set $auth_status "[$upstream_status]";
            proxy_set_header X-Auth-Status $auth_status;
            proxy_pass http://backend;
        }
        location /returned401/ { auth_request /auth-return401; proxy_pass http://backend; }
        location /ep/ {
            auth_request /auth-401;
            error_page 401 /unauthorized.txt;
            proxy_pass http://backend;
        }
        location = /unauthorized.txt { }
        location /ep-proxy/ {
            auth_request /auth-401;
            error_page 401 /login-proxy;
            proxy_pass http://backend;
        }
        location = /login-proxy { proxy_pass http://backend/login; }
        location /plain/ {
            auth_request /auth-plain;
            auth_request_set $auth_status $upstream_status;
            add_header X-Auth-Status $auth_status always;
            proxy_pass http://backend;
        }
        location = /auth-plain { proxy_pass http://authsvc; }
        location /ka/ { auth_request /auth-ka; proxy_pass http://backend; }
        location = /auth-ka {
            proxy_pass http://authka/check;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /any/ {
            satisfy any;
            allow 10.0.0.0/8;
            deny all;
            auth_request /auth-401;
            proxy_pass http://backend;
        }
        location /basic-then-request/ {
            auth_basic "both";
            auth_basic_user_file USERS;
            auth_request /auth-ok;
            proxy_pass http://backend;
        }
        location /any-basic-request/ {
            satisfy any;
            auth_basic "either";
            auth_basic_user_file USERS;
            auth_request /auth-403;
            proxy_pass http://backend;
        }
        location /static/ { auth_request /auth-ok; }

        location = /auth-ok {
            internal;
            proxy_pass http://authsvc/check/__header/X-User=alice;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Addr $remote_addr;
        }
        location = /auth-401 {
            proxy_pass http://authsvc/check/__status/401/__header/WWW-Authenticate=Bearer%20realm%3D%22api%22;
        }
        location = /auth-403 { proxy_pass http://authsvc/check/__status/403; }
        location = /auth-404 { proxy_pass http://authsvc/check/__status/404; }
        location = /auth-500 { proxy_pass http://authsvc/check/__status/500; }
        location = /auth-down { proxy_pass http://127.0.0.1:9303/check; }
        location = /auth-return { return 204; }
        location = /auth-return401 { return 401; }
    }
}
"""

PASSWORD = "s3cret pass"


def _libc_crypt(key: str, setting: str) -> str:
    """DES crypt from the C library nginx uses (openssl passwd has no -crypt any more)."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib.crypt(key.encode(), setting.encode()).decode()


def _openssl(flag: str, password: str) -> str:
    return subprocess.run(["openssl", "passwd", flag, "-salt", "saltsalt", password], check=True,
                          capture_output=True, text=True).stdout.strip()


def users_file() -> tuple[str, list[str]]:
    """The user file, and the users whose password is PASSWORD."""
    sha = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    salt = b"\x01\x02salty"
    ssha = base64.b64encode(hashlib.sha1(PASSWORD.encode() + salt).digest() + salt).decode()
    lines = [
        "# a comment line, then an empty one",
        "",
        f"des:{_libc_crypt(PASSWORD, 'ab')}",
        f"md5:{_openssl('-1', PASSWORD)}",
        f"apr:{_openssl('-apr1', PASSWORD)}",
        f"sha256:{_openssl('-5', PASSWORD)}",
        f"sha512:{_openssl('-6', PASSWORD)}",
        f"sha:{{SHA}}{sha}",
        f"ssha:{{SSHA}}{ssha}",
        f"plain:{{PLAIN}}{PASSWORD}",
        f"crlf:{{PLAIN}}{PASSWORD}\r",
        f"fields:{{PLAIN}}{PASSWORD}:Full Name:extra",
        f"dup:{{PLAIN}}{PASSWORD}",
        "dup:{PLAIN}other",
        "#ghost:{PLAIN}" + PASSWORD,
        " spaced:{PLAIN}" + PASSWORD,
        "broken:*",
        "weird:$9$nothing",
        "colon:{PLAIN}a:b",
        "empty:",
        "alice:{PLAIN}alice",
        f"last:{{PLAIN}}{PASSWORD}",  # no newline at the end of the file
    ]
    users = ["des", "md5", "apr", "sha256", "sha512", "sha", "ssha", "plain", "crlf", "fields", "dup", "last"]
    return "\n".join(lines), users


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def build(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "static").mkdir(parents=True)
    (root / "static" / "page.txt").write_text("static page\n")
    (root / "forbidden.txt").write_text("<p>go away</p>\n")
    (root / "unauthorized.txt").write_text("<p>log in first</p>\n")
    (root / "index.html").write_text("home\n")
    text, _ = users_file()
    (tmp / "users").write_text(text)
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.replace("USERS", str(tmp / "users")).replace("ROOT", str(root)))
    return conf


def access_requests(plan: Plan) -> list[Request]:
    listens = {name.rsplit(":", 1)[-1]: name for name in plan.listens}
    out: list[Request] = []

    def add(port: str, target: str, host: str, label: str, headers: tuple[tuple[str, str], ...] = (),
            method: str = "GET", source: str | None = None, version: str = "1.1") -> None:
        request = get(listens[port], target, host, label, method=method, version=version, extra=headers)
        if source is not None:
            request = Request(method=request.method, target=request.target, headers=request.headers,
                              listen=request.listen, group=request.group, label=request.label,
                              version=request.version, source=source)
        out.append(request)

    # real_ip, recursive X-Forwarded-For, and the address it gives.
    xff_values = ["10.1.2.3", "10.0.0.1", "10.3.3.3:8080", "192.168.1.9", "192.168.2.9", "172.16.5.5",
                  "8.8.8.8", "2001:db8::5", "[2001:db8:1::7]:443", "2001:db8:1::9", "::1", "::ffff:10.1.1.1",
                  "::ffff:8.8.8.8", "::102:304", "garbage", "", " , ", "10.1.1.1, 8.8.8.8",
                  "8.8.8.8, 10.1.1.1", "8.8.8.8, 10.9.1.1", "10.1.1.1, 10.9.0.5", "8.8.8.8 10.9.0.1,",
                  "8.8.8.8, 2001:db8:ffff::1", "1.2.3.4,,  10.9.9.9", "010.001.002.003", "10.1.1", "300.1.1.1",
                  "10.1.1.1%eth0", "fe80::1%eth0"]
    for value in xff_values:
        add("8080", "/addr", "access.test", f"xff {value!r}: address", (("X-Forwarded-For", value),))
        for path in ("/v4/x", "/v6/x"):
            add("8080", path, "access.test", f"xff {value!r}: {path}", (("X-Forwarded-For", value),))
    for value in ("1.2.3.4:5678", "[2001:db8::1]:99", "10.0.0.9"):
        add("8080", "/port", "access.test", f"port from {value}", (("X-Forwarded-For", value),))
    # Several X-Forwarded-For headers: recursive walks them from the last.
    for values in (("8.8.8.8", "10.9.1.1"), ("10.1.1.1", "10.9.1.1, 10.9.2.2"), ("10.1.1.1", "junk"),
                   ("junk", "10.1.1.1")):
        headers = tuple(("X-Forwarded-For", v) for v in values)
        add("8080", "/addr", "access.test", f"xff headers {values}", headers)
        add("8080", "/v4/y", "access.test", f"xff headers {values}: /v4/", headers)
    for value in ("2001:db8::1", "2001:db8::2", "10.1.1.1", "::ffff:10.1.1.1"):
        add("8080", "/only6/a", "access.test", f"only IPv6 rules, {value}", (("X-Forwarded-For", value),))
    for value in ("10.2.9.9", "10.3.0.1"):
        add("8080", "/low-bits/a", "access.test", f"low address bits, {value}", (("X-Forwarded-For", value),))
    for value in ("10.4.4.4", "8.8.8.8"):
        xff = (("X-Forwarded-For", value),)
        add("8080", "/open/a", "access.test", f"no rules, proxied X-Real-IP/X-Forwarded-For, {value}", xff)
        add("8080", "/ep403/a", "access.test", f"deny with error_page to a file, {value}", xff)
        add("8080", "/ep403named/a", "access.test", f"deny with error_page to a named location, {value}", xff)
        add("8080", "/ep403/a", "access.test", f"deny with error_page, HEAD, {value}", xff, method="HEAD")
    for value in ("10.4.4.4", "192.168.3.3", "8.8.8.8"):
        xff = (("X-Forwarded-For", value),)
        for path in ("/nested/a", "/nested/inner/a", "/nested/own/a"):
            add("8080", path, "access.test", f"nested inheritance {path}, {value}", xff)
    for value in ("10.4.4.4", "8.8.8.8"):
        for flag in ((), (("X-Flag", "1"),)):
            add("8080", "/iflocation/a", "access.test", f"rules in a location with an if, {value}, {flag}",
                (("X-Forwarded-For", value),) + flag)
    # Clients that are not trusted: their headers are ignored.
    for source in ("127.0.0.2", "127.0.0.3"):
        add("8080", "/addr", "access.test", f"untrusted client {source}", (("X-Forwarded-For", "10.1.1.1"),),
            source=source)
        add("8080", "/v4/z", "access.test", f"untrusted client {source}, /v4/", (("X-Forwarded-For", "10.1.1.1"),),
            source=source)

    # Not recursive: only the last address.
    for value in ("10.1.1.1", "8.8.8.8, 10.1.1.1", "10.1.1.1, 8.8.8.8", "8.8.8.8, 127.0.0.1", "garbage, 10.2.2.2"):
        add("8081", "/addr", "flat.test", f"flat xff {value!r}", (("X-Forwarded-For", value),))
        add("8081", "/p", "flat.test", f"flat xff {value!r}: allow/deny", (("X-Forwarded-For", value),))

    # X-Real-IP (first one wins, last item of it), and a custom header set in a location.
    for values in (("10.5.1.1",), ("10.5.1.1, 8.8.8.8",), ("8.8.8.8", "10.5.1.1"), ("[::1]:80",), ("",)):
        headers = tuple(("X-Real-IP", v) for v in values)
        add("8082", "/addr", "xrealip.test", f"x-real-ip {values}", headers)
    for client, real in (("10.5.1.1", "8.8.8.8"), ("10.6.1.1", "10.5.9.9"), ("8.8.8.8", None)):
        headers: tuple[tuple[str, str], ...] = (("X-Client", client),)
        if real is not None:
            headers += (("X-Real-IP", real),)
        add("8082", "/custom/a", "xrealip.test", f"X-Client {client}, X-Real-IP {real}", headers)

    # Server-level rules, by the client's own loopback address.
    for source in ("127.0.0.1", "127.0.0.2", "127.0.1.5", "127.0.2.1"):
        add("8083", "/index.html", "serverlevel.test", f"server-level rules from {source}", source=source)
        add("8083", "/own/x", "serverlevel.test", f"location overrides server rules from {source}", source=source)

    # auth_basic: every scheme, right and wrong passwords.
    _, users = users_file()
    for user in users:
        add("8084", "/basic/a", "auth.test", f"user {user}, right password", (("Authorization", _basic(user, PASSWORD)),))
        add("8084", "/basic/a", "auth.test", f"user {user}, wrong password", (("Authorization", _basic(user, "nope")),))
    odd_users = [("dup", "other"), ("ghost", PASSWORD), ("#ghost", PASSWORD), ("spaced", PASSWORD),
                 (" spaced", PASSWORD), ("broken", "*"), ("broken", ""), ("weird", "x"), ("colon", "a:b"),
                 ("colon", "a"), ("empty", ""), ("nobody", PASSWORD), ("alice", "alice"), ("alice", "alice\x00x"),
                 ("ali", "alice"), ("alicex", "alice"), ("ALICE", "alice")]
    for user, password in odd_users:
        add("8084", "/basic/a", "auth.test", f"user {user!r} password {password!r}",
            (("Authorization", _basic(user, password)),))
    alice = _basic("alice", "alice")
    malformed = ["", "Basic", "Basic ", "Basic    " + alice[6:], "basic " + alice[6:], "BASIC " + alice[6:],
                 "Bearer abc", "Basic !!!!", "Basic YWxpY2U=", "Basic OmFsaWNl", "Basic YWxpY2U6YWxpY2U",
                 "Basic YWxpY2U6YWxpY2U=garbage", "Basic YWxpY2U6YWxpY2", "Basic " + alice[6:] + "   ",
                 "Basic\t" + alice[6:], "Basic YQ", "Basic Y"]
    for value in malformed:
        add("8084", "/basic/a", "auth.test", f"Authorization {value!r}", (("Authorization", value),))
    add("8084", "/basic/a", "auth.test", "no Authorization")
    add("8084", "/basic/a", "auth.test", "two Authorization headers", (("Authorization", alice), ("Authorization", alice)))
    add("8084", "/basic/a", "auth.test", "right password, HEAD", (("Authorization", alice),), method="HEAD")
    add("8084", "/basic/a", "auth.test", "no credentials, HEAD", method="HEAD")
    add("8084", "/basic/a", "auth.test", "no credentials, HTTP/1.0", version="1.0")
    add("8084", "/basic/a", "Other.Host", "realm with $host", (("Authorization", _basic("alice", "x")),))
    for path in ("/realm/a", "/off/a", "/delayed/a", "/missing/a", "/unreadable/a", "/ep401/a", "/ep401ret/a", "/ep401proxy/a",
                 "/static/page.txt",
                 "/static/nothing", "/nowhere"):
        add("8084", path, "auth.test", f"{path} without credentials")
        add("8084", path, "auth.test", f"{path} with alice", (("Authorization", alice),))
        add("8084", path, "auth.test", f"{path} with a wrong password", (("Authorization", _basic("alice", "x")),))
    add("8084", "/ep401/a", "auth.test", "error_page 401, HEAD", method="HEAD")
    # satisfy any / all with allow/deny.
    for path in ("/any/a", "/all/a"):
        for addr in ("10.1.1.1", "8.8.8.8"):
            xff = (("X-Forwarded-For", addr),)
            add("8084", path, "auth.test", f"{path} from {addr}, no credentials", xff)
            add("8084", path, "auth.test", f"{path} from {addr}, alice", xff + (("Authorization", alice),))
            add("8084", path, "auth.test", f"{path} from {addr}, wrong password",
                xff + (("Authorization", _basic("alice", "no")),))

    # auth_request.
    for path in ("/ok/a?x=1", "/deny401/a", "/deny403/a", "/weird/a", "/broken/a", "/down/a", "/returned/a",
                 "/returned401/a", "/ep/a", "/ep-proxy/a", "/plain/a%20b?c=d", "/static/page.txt",
                 "/static/missing"):
        add("8085", path, "subreq.test", f"auth_request {path}")
        add("8085", path, "subreq.test", f"auth_request {path}, HEAD", method="HEAD")
    add("8085", "/ok/b", "subreq.test", "auth_request, HTTP/1.0", version="1.0")
    for i in range(4):
        add("8085", f"/ka/{i}", "subreq.test", f"auth_request to a keep-alive upstream #{i}")
    add("8085", "/ok/c", "subreq.test", "auth_request, forwarded client", (("X-Forwarded-For", "10.7.7.7"),))
    out.append(Request(method="POST", target="/ok/post", headers=(("Host", "subreq.test"), ("Content-Length", "5")),
                       listen=listens["8085"], group="hand-picked", label="auth_request, POST with a body",
                       body=b"hello"))
    for addr in ("10.1.1.1", "8.8.8.8"):
        add("8085", "/any/a", "subreq.test", f"satisfy any with auth_request, from {addr}",
            (("X-Forwarded-For", addr),))
    for path in ("/basic-then-request/a", "/any-basic-request/a"):
        add("8085", path, "subreq.test", f"{path} without credentials")
        add("8085", path, "subreq.test", f"{path} with alice", (("Authorization", alice),))
        add("8085", path, "subreq.test", f"{path} with a wrong password", (("Authorization", _basic("alice", "x")),))
    return out


def test_access_matches_nginx(tmp_path: Path) -> None:
    conf = build(tmp_path)
    report = shadow(str(conf), str(tmp_path / "run"), access_requests, max_requests=200,
                    refuse=frozenset({"127.0.0.1:9303"}))
    assert_equivalent(report, minimum=480)
