"""Rules for nginx's log module: ``log_format`` and ``access_log``, written out as
``newproxy.config.LogFormatConfig`` / ``AccessLogConfig`` with inheritance resolved
(ngx_http_log_merge_loc_conf): a block's logs are those of the innermost level that has any
``access_log`` (``off`` included); with none anywhere, nginx's built-in default
(``/var/log/nginx/access.log combined`` in Debian's build).

A relative path is resolved against nginx's prefix, as ngx_conf_open_file does. What newproxy does
not build is a gap on the occurrence: paths with variables, syslog, gzip compression, and formats
using variables nginx has but newproxy does not compute.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from newproxy.config import AccessLogConfig, LogFormatConfig
from newproxy.engine.logformat import LogFormatError, compile_format
from newproxy.engine.variables import variable_names
from nginx_parser import ConfigError, Directive, parse_time

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain

DEFAULT_ACCESS_LOG = "/var/log/nginx/access.log"  # Debian's --http-log-path
_SIZE = re.compile(r"^(\d+)([kKmM]?)$")

# Variables nginx 1.22 has that newproxy does not compute (yet): a format using one is a gap, not
# a config error. Anything neither knows is nginx's "unknown variable" error.
_NGINX_ONLY = frozenset({
    "bytes_received", "request_body", "request_body_file",
    "request_completion", "sent_trailer", "tcpinfo_rtt", "tcpinfo_rttvar", "tcpinfo_snd_cwnd",
    "tcpinfo_rcv_space", "upstream_cache_status",
    "upstream_first_byte_time", "upstream_queue_time", "upstream_session_time",
    "ssl_ciphers", "ssl_curves", "ssl_session_id", "ssl_client_cert", "ssl_client_raw_cert", "ssl_client_escaped_cert",
    "ssl_client_s_dn", "ssl_client_i_dn", "ssl_client_serial", "ssl_client_fingerprint",
    "ssl_client_verify", "ssl_client_v_start", "ssl_client_v_end", "ssl_client_v_remain", "ssl_early_data",
    "ssl_alpn_protocol", "http2", "http3", "limit_rate", "limit_req_status", "limit_conn_status", "realip_remote_addr",
    "realip_remote_port", "proxy_protocol_addr", "proxy_protocol_port", "proxy_protocol_server_addr",
    "proxy_protocol_server_port", "secure_link", "secure_link_expires", "date_local", "date_gmt",
    "uid_got", "uid_set", "uid_reset", "invalid_referer", "fastcgi_script_name", "fastcgi_path_info",
    "memcached_key", "geoip_country_code", "original_uri", "nginx_version", "modern_browser",
    "ancient_browser", "msie", 
})
_NGINX_ONLY_PREFIXES = ("upstream_trailer_", "sent_trailer_", "jwt_")


# Variables whose value can differ from nginx's in corner cases (said on the log_format occurrence).
_CAVEATS = {
    "gzip_ratio": '$gzip_ratio is always "-": newproxy does not report the compression ratio yet',
    "pipe": '$pipe is "p" when the request came in the same read as the end of the one before it, '
            "which is what nginx's buffer holds in the common cases, not in every one",
    "request_length": "$request_length counts line ends as CRLF and chunk extensions as absent",
}


def parse_size(value: str) -> int | None:
    match = _SIZE.match(value)
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]


class LogRules:
    """The log_format table of the http block, and access_log per block."""

    def __init__(self, translator: Translator, http: _Chain) -> None:
        self.translator = translator
        self.formats: list[LogFormatConfig] = []
        # lower-cased name (access_log looks formats up ignoring case) -> usable by newproxy
        self.usable: dict[str, bool] = {"combined": True}
        self.names: set[str] = set()
        for directive in http.scopes[0].all("log_format"):
            self._format(directive)

    def _format(self, directive: Directive) -> None:
        args = list(directive.args)
        if len(args) < 2:
            raise ConfigError('invalid number of arguments in "log_format" directive', directive.file, directive.line)
        name = args.pop(0)
        if name in self.names or name == "combined":
            raise ConfigError(f'duplicate "log_format" name "{name}"', directive.file, directive.line)
        self.names.add(name)
        escape = "default"
        if args[0].startswith("escape="):
            escape = args.pop(0)[7:]
            if escape not in ("default", "json", "none"):
                raise ConfigError(f'unknown log format escaping "{escape}"', directive.file, directive.line)
        text = "".join(args)
        missing = [v for v in variable_names(text) if v in _NGINX_ONLY or v.startswith(_NGINX_ONLY_PREFIXES)]
        if missing:
            self.translator.note(directive, "unsupported",
                                 f"uses variables newproxy does not compute yet: {', '.join(sorted(set(missing)))}; "
                                 "the access_log lines using this format are dropped")
            self.usable[name.lower()] = False
            return
        try:  # nginx's own checks: unknown variables, a missing closing bracket
            compile_format(name, text, escape, frozenset(self.translator.capture_names),
                           {v: (lambda ctx: "") for v in self._computed()})
        except LogFormatError as exc:
            raise ConfigError(str(exc), directive.file, directive.line) from None
        caveats = [_CAVEATS[v] for v in dict.fromkeys(variable_names(text)) if v in _CAVEATS]
        if caveats:
            self.translator.note(directive, "caveat", "; ".join(caveats))
        self.usable[name.lower()] = True
        self.formats.append(LogFormatConfig(name=name, escape=escape, format=text,  # type: ignore[arg-type]
                                            source=directive.where))

    def _computed(self) -> list[str]:
        http = self.translator.nginx.http
        names: list[str] = []
        for block in [*getattr(http, "maps", []), *getattr(http, "split_clients", []), *getattr(http, "geos", [])]:
            variable = getattr(block, "variable", None)
            if variable:
                names.append(variable.lstrip("$"))
        return names

    def access_logs(self, chain: _Chain) -> list[AccessLogConfig]:
        """The logs of the innermost block of ``chain``: the innermost level with any access_log."""
        for scope in reversed(chain.scopes):
            found = scope.all("access_log")
            if not found:
                continue
            if any(d.args and d.args[0] == "off" for d in found):
                for d in found:
                    if d.args and d.args[0] == "off" and len(d.args) > 1:
                        raise ConfigError(f'invalid parameter "{d.args[1]}"', d.file, d.line)
                return []
            return [log for log in (self._access_log(d) for d in found) if log is not None]
        return [AccessLogConfig(path=DEFAULT_ACCESS_LOG)]

    def _access_log(self, directive: Directive) -> AccessLogConfig | None:
        args = directive.args
        if not args:
            raise ConfigError('invalid number of arguments in "access_log" directive', directive.file, directive.line)
        path = args[0]
        fmt = args[1] if len(args) > 1 else "combined"
        usable = self.usable.get(fmt.lower())
        if usable is None:
            raise ConfigError(f'unknown log format "{fmt}"', directive.file, directive.line)
        buffer = 0
        flush = 0.0
        condition = None
        for arg in args[2:]:
            if arg.startswith("buffer="):
                size = parse_size(arg[7:])
                if not size:
                    raise ConfigError(f'invalid buffer size "{arg[7:]}"', directive.file, directive.line)
                buffer = size
            elif arg.startswith("flush="):
                try:
                    flush = parse_time(arg[6:], directive)
                except ConfigError:
                    flush = 0
                if not flush:
                    raise ConfigError(f'invalid flush time "{arg[6:]}"', directive.file, directive.line)
            elif arg == "gzip" or arg.startswith("gzip="):
                self.translator.note(directive, "caveat", "gzip is not applied: newproxy writes the log uncompressed")
                buffer = buffer or 64 * 1024
            elif arg.startswith("if="):
                condition = arg[3:]
                if not self.translator._variables_ok(directive, condition):
                    return None
                # Evaluated at the log phase: the variables whose log-time value newproxy lacks are
                # gaps here as in a format.
                missing = [v for v in variable_names(condition) if v in _NGINX_ONLY or v.startswith(_NGINX_ONLY_PREFIXES)]
                if missing:
                    self.translator.note(directive, "unsupported", "the condition uses variables newproxy does not "
                                                                   f"compute at the log phase: {', '.join(missing)}")
                    return None
            else:
                raise ConfigError(f'invalid parameter "{arg}"', directive.file, directive.line)
        if flush and not buffer:
            raise ConfigError(f'no buffer is defined for access_log "{path}"', directive.file, directive.line)
        if path.startswith("syslog:"):
            self.translator.note(directive, "unsupported", "logging to syslog is not built yet; this log is dropped")
            return None
        if "$" in path:
            self.translator.note(directive, "unsupported",
                                 "a log path with variables is not built yet; this log is dropped")
            return None
        if not usable:
            self.translator.note(directive, "unsupported",
                                 f'the format "{fmt}" uses variables newproxy lacks; this log is dropped')
            return None
        if not path.startswith("/"):
            path = self.translator.prefix + path
        return AccessLogConfig(path=path, format=fmt, buffer=buffer, flush=flush, condition=condition,
                               source=directive.where)
