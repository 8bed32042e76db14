"""The directive table: for every nginx directive, where it may appear, how many arguments it takes
and how its value is inherited into inner blocks. The single source of truth about directives.

The base is crossplane's table (``crossplane.analyzer.DIRECTIVES``: bitmasks copied from nginx's own
``ngx_command_t`` arrays), decoded once at import. crossplane 0.5.8 stops around nginx 1.19, so the
directives of 1.19–1.27 it lacks are added below by hand from nginx's sources/docs, and so are the
common third-party modules (flagged ``origin="third-party"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crossplane import analyzer as _cp  # type: ignore[import-untyped]

Context = Literal[
    "main", "events", "http", "server", "location", "upstream", "if_in_server", "if_in_location",
    "limit_except", "mail", "mail_server", "stream", "stream_server", "stream_upstream",
]
Inherit = Literal["scalar", "array", "none"]
Origin = Literal["core", "third-party"]

# Bit of crossplane's mask -> our context name.
_CONTEXT_BITS: dict[int, Context] = {
    _cp.NGX_MAIN_CONF: "main",
    _cp.NGX_EVENT_CONF: "events",
    _cp.NGX_MAIL_MAIN_CONF: "mail",
    _cp.NGX_MAIL_SRV_CONF: "mail_server",
    _cp.NGX_STREAM_MAIN_CONF: "stream",
    _cp.NGX_STREAM_SRV_CONF: "stream_server",
    _cp.NGX_STREAM_UPS_CONF: "stream_upstream",
    _cp.NGX_HTTP_MAIN_CONF: "http",
    _cp.NGX_HTTP_SRV_CONF: "server",
    _cp.NGX_HTTP_LOC_CONF: "location",
    _cp.NGX_HTTP_UPS_CONF: "upstream",
    _cp.NGX_HTTP_SIF_CONF: "if_in_server",
    _cp.NGX_HTTP_LIF_CONF: "if_in_location",
    _cp.NGX_HTTP_LMT_CONF: "limit_except",
}
_BIT_OF = {name: bit for bit, name in _CONTEXT_BITS.items()}

HTTP_LEVELS: frozenset[Context] = frozenset({"http", "server", "location"})


@dataclass(frozen=True, slots=True)
class Form:
    """One way a directive may be written (nginx allows a few directives, e.g. ``server``, several)."""

    contexts: frozenset[Context]
    nargs: frozenset[int]  # exact argument counts allowed (0..7)
    any_args: bool = False
    one_more: bool = False
    two_more: bool = False
    flag: bool = False  # exactly one argument, "on" or "off"
    block: bool = False

    def accepts_count(self, count: int) -> bool:
        return (
            count in self.nargs
            or self.any_args
            or (self.one_more and count >= 1)
            or (self.two_more and count >= 2)
            or (self.flag and count == 1)
        )


@dataclass(frozen=True, slots=True)
class DirectiveSpec:
    name: str
    forms: tuple[Form, ...]
    inherit: Inherit
    origin: Origin

    @property
    def contexts(self) -> frozenset[Context]:
        out: set[Context] = set()
        for form in self.forms:
            out |= form.contexts
        return frozenset(out)

    @property
    def arity(self) -> str:
        """Human-readable argument count, e.g. ``1``, ``1-3``, ``0+``, ``flag``."""
        parts: list[str] = []
        for form in self.forms:
            if form.flag:
                parts.append("flag")
            elif form.any_args:
                parts.append("0+")
            elif form.one_more:
                parts.append("1+")
            elif form.two_more:
                parts.append("2+")
            elif form.nargs:
                low, high = min(form.nargs), max(form.nargs)
                parts.append(str(low) if low == high else f"{low}-{high}")
        return "|".join(dict.fromkeys(parts))

    @property
    def is_block(self) -> bool:
        return any(form.block for form in self.forms)


def _decode(mask: int) -> Form:
    return Form(
        contexts=frozenset(name for bit, name in _CONTEXT_BITS.items() if mask & bit),
        nargs=frozenset(n for n in range(8) if mask >> n & 1),
        any_args=bool(mask & _cp.NGX_CONF_ANY),
        one_more=bool(mask & _cp.NGX_CONF_1MORE),
        two_more=bool(mask & _cp.NGX_CONF_2MORE),
        flag=bool(mask & _cp.NGX_CONF_FLAG),
        block=bool(mask & _cp.NGX_CONF_BLOCK),
    )


def _form(contexts: str, args: str, block: bool = False) -> Form:
    """Compact spelling for the hand-written additions: ``_form("http server", "1")``.

    ``args`` is ``flag``, ``0+``, ``1+``, ``2+`` or a list of counts such as ``1 2``.
    """
    ctx = frozenset(contexts.split())  # type: ignore[arg-type]
    if args == "flag":
        return Form(ctx, frozenset(), flag=True, block=block)
    if args == "0+":
        return Form(ctx, frozenset(), any_args=True, block=block)
    if args == "1+":
        return Form(ctx, frozenset(), one_more=True, block=block)
    if args == "2+":
        return Form(ctx, frozenset(), two_more=True, block=block)
    return Form(ctx, frozenset(int(n) for n in args.split()), block=block)


_HSL = "http server location"
_SL = "server location"
_HS = "http server"
_STREAM = "stream stream_server"

# Core/standard-module directives of nginx 1.19–1.27 that crossplane 0.5.8 does not know.
_CORE_ADDITIONS: dict[str, list[Form]] = {
    "http2": [_form(_HS, "flag")],
    "http3": [_form(_HS, "flag")],
    "http3_hq": [_form(_HS, "flag")],
    "http3_max_concurrent_streams": [_form(_HS, "1")],
    "http3_stream_buffer_size": [_form(_HS, "1")],
    "quic_active_connection_id_limit": [_form(_HS, "1")],
    "quic_bpf": [_form("main", "flag")],
    "quic_gso": [_form(_HS, "flag")],
    "quic_host_key": [_form(_HS, "1")],
    "quic_retry": [_form(_HS, "flag")],
    "keepalive_time": [_form(_HSL, "1"), _form("upstream", "1")],
    "ssl_reject_handshake": [_form(_HS, "flag"), _form(_STREAM, "flag")],
    "ssl_conf_command": [_form(_HS, "2"), _form(_STREAM, "2"), _form("mail mail_server", "2")],
    "proxy_ssl_conf_command": [_form(_HSL, "2"), _form(_STREAM, "2")],
    "grpc_ssl_conf_command": [_form(_HSL, "2")],
    "uwsgi_ssl_conf_command": [_form(_HSL, "2")],
    "proxy_cookie_flags": [_form(_HSL, "1 2 3 4 5 6 7")],
    "ssl_ocsp": [_form(_HS, "1"), _form(_STREAM, "1")],
    "ssl_ocsp_cache": [_form(_HS, "1"), _form(_STREAM, "1")],
    "ssl_key_log": [_form(_HS, "1"), _form(_STREAM, "1")],
    "proxy_ssl_key_log": [_form(_HSL, "1"), _form(_STREAM, "1")],
    "ssl_certificate_cache": [_form(_HS, "1 2 3"), _form(_STREAM, "1 2 3")],
    "proxy_ssl_certificate_cache": [_form(_HSL, "1 2 3"), _form(_STREAM, "1 2 3")],
    "ssl_object_cache_inheritable": [_form("main", "flag")],
    "proxy_pass_trailers": [_form(_HSL, "flag")],
    "auth_delay": [_form(_HSL, "1")],
    "mp4_start_key_frame": [_form(_HSL, "flag")],
    "userid_flags": [_form(_HSL, "1 2 3")],
    # crossplane took nginx Plus's arity (a 4th "sync" parameter); the open-source module takes 3
    "limit_req_zone": [_form("http", "3")],
    "limit_req_dry_run": [_form(_HSL, "flag")],
    "limit_conn_dry_run": [_form(_HSL, "flag"), _form(_STREAM, "flag")],
    # known to nginx 1.22's binary (obsolete no-ops or rarely documented), missing from crossplane
    "epoll_events": [_form("events", "1")],
    "gzip_hash": [_form(_HSL, "1")],
    "gzip_window": [_form(_HSL, "1")],
    "gzip_no_buffer": [_form(_HSL, "flag")],
    "http2_pool_size": [_form(_HS, "1")],
    "http2_streams_index_size": [_form(_HS, "1")],
    "max_headers": [_form(_HS, "1")],
    "open_file_cache_events": [_form(_HSL, "flag")],
    "post_action": [_form(_HSL + " if_in_location", "1")],
    "postpone_gzipping": [_form(_HSL, "1")],
    "ssi_ignore_recycled_buffers": [_form(_HSL, "flag")],
    "ssl_ocsp_responder": [_form(_HS, "1"), _form(_STREAM, "1")],
    "uwsgi_string": [_form(_HSL, "1")],
}

# Common third-party modules: known, so not "unknown", but never treated as nginx core.
_THIRD_PARTY: dict[str, list[Form]] = {
    # headers-more
    "more_set_headers": [_form(_HSL + " if_in_location", "1+")],
    "more_clear_headers": [_form(_HSL + " if_in_location", "1+")],
    "more_set_input_headers": [_form(_HSL + " if_in_location", "1+")],
    "more_clear_input_headers": [_form(_HSL + " if_in_location", "1+")],
    # brotli
    "brotli": [_form(_HSL + " if_in_location", "flag")],
    "brotli_static": [_form(_HSL, "1")],
    "brotli_types": [_form(_HSL, "1+")],
    "brotli_comp_level": [_form(_HSL, "1")],
    "brotli_buffers": [_form(_HSL, "2")],
    "brotli_window": [_form(_HSL, "1")],
    "brotli_min_length": [_form(_HSL, "1")],
    # geoip2
    "geoip2": [_form("http stream", "1", block=True)],
    "geoip2_proxy": [_form("http", "1")],
    "geoip2_proxy_recursive": [_form("http", "flag")],
    # ModSecurity-nginx
    "modsecurity": [_form(_HSL, "flag")],
    "modsecurity_rules": [_form(_HSL, "1")],
    "modsecurity_rules_file": [_form(_HSL, "1")],
    "modsecurity_rules_remote": [_form(_HSL, "2")],
    "modsecurity_transaction_id": [_form(_HSL, "1")],
    # set-misc
    **{
        name: [_form(_SL + " if_in_server if_in_location", "1 2")]
        for name in (
            "set_escape_uri", "set_unescape_uri", "set_quote_sql_str", "set_quote_json_str",
            "set_quote_pgsql_str", "set_md5", "set_sha1", "set_encode_base64", "set_decode_base64",
            "set_encode_hex", "set_decode_hex", "set_encode_base32", "set_decode_base32", "set_if_empty",
            "set_random", "set_secure_random_alphanum", "set_secure_random_lcalpha", "set_local_today",
            "set_formatted_gmt_time", "set_formatted_local_time", "set_hashed_upstream", "set_hmac_sha1",
            "set_hmac_sha256",
        )
    },
    "set_misc_base32_padding": [_form(_HSL, "flag")],
    # lua-nginx-module (OpenResty)
    "lua_shared_dict": [_form("http", "2")],
    "lua_package_path": [_form("http", "1")],
    "lua_package_cpath": [_form("http", "1")],
    "lua_code_cache": [_form(_HSL, "flag")],
    "lua_need_request_body": [_form(_HSL, "flag")],
    "lua_socket_log_errors": [_form(_HSL, "flag")],
    **{
        # crossplane's Lua lexer hands a *_by_lua_block body over as one argument, not a block.
        f"{phase}_by_lua{kind}": [_form(_HSL + " if_in_location", "2" if (phase, kind) == ("set", "_block") else "1+")]
        for phase in (
            "set", "rewrite", "access", "content", "header_filter", "body_filter", "log", "balancer",
            "ssl_certificate", "ssl_session_fetch", "ssl_session_store",
        )
        for kind in ("", "_block", "_file")
    },
    "init_by_lua": [_form("http", "1")],
    "init_by_lua_block": [_form("http", "1")],
    "init_by_lua_file": [_form("http", "1")],
    "init_worker_by_lua": [_form("http", "1")],
    "init_worker_by_lua_block": [_form("http", "1")],
    "init_worker_by_lua_file": [_form("http", "1")],
    # njs is maintained by nginx but is not a standard module: flagged third-party for migration purposes.
    **{
        name: [_form(_HSL, "1+")]
        for name in (
            "js_import", "js_content", "js_set", "js_var", "js_header_filter", "js_body_filter",
            "js_path", "js_preload_object", "js_fetch_trusted_certificate", "js_shared_dict_zone",
        )
    },
    # nginx-module-vts
    "vhost_traffic_status": [_form(_HSL, "flag")],
    "vhost_traffic_status_zone": [_form("http", "0+")],
    "vhost_traffic_status_display": [_form(_SL, "0")],
}

# Array-type directives: several occurrences accumulate; an inner block inherits the outer list only
# when it defines none of its own (ngx_conf_merge_ptr_value on an array, or the headers merge).
_ARRAY: frozenset[str] = frozenset({
    "add_header", "add_trailer", "more_set_headers", "more_clear_headers",
    "proxy_set_header", "proxy_hide_header", "proxy_pass_header", "proxy_set_body",
    "grpc_set_header", "grpc_hide_header", "grpc_pass_header",
    "fastcgi_param", "fastcgi_hide_header", "fastcgi_pass_header",
    "uwsgi_param", "uwsgi_hide_header", "uwsgi_pass_header",
    "scgi_param", "scgi_hide_header", "scgi_pass_header",
    "access_log", "error_log", "error_page", "allow", "deny", "limit_req", "limit_conn",
    "ssl_certificate", "ssl_certificate_key", "ssl_conf_command", "proxy_ssl_conf_command",
    "sub_filter", "set_real_ip_from", "proxy_cookie_path", "proxy_cookie_domain", "proxy_redirect",
    "proxy_cookie_flags", "proxy_store_access", "log_subrequest", "ssi_types", "secure_link_md5",
    "mirror", "auth_request_set", "userid_flags",
})

# Directives that act where they are written or only define something; nothing to inherit.
_NOT_INHERITED: frozenset[str] = frozenset({
    "include", "set", "rewrite", "return", "break", "if", "try_files", "proxy_pass", "fastcgi_pass",
    "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass", "alias", "internal", "listen",
    "server_name", "location", "limit_except", "stub_status", "auth_request", "empty_gif", "flv", "mp4",
    "perl", "js_content", "content_by_lua", "content_by_lua_block", "content_by_lua_file",
    "rewrite_by_lua", "rewrite_by_lua_block", "rewrite_by_lua_file", "access_by_lua",
    "access_by_lua_block", "access_by_lua_file", "set_escape_uri", "set_unescape_uri", "set_md5",
    "set_sha1", "set_if_empty", "set_random", "random_index", "autoindex_exact_size",
})


def _inherit_kind(name: str, forms: list[Form]) -> Inherit:
    if name in _NOT_INHERITED or any(form.block for form in forms):
        return "none"
    contexts: set[Context] = set()
    for form in forms:
        contexts |= form.contexts
    # Merging only happens between http, server and location levels.
    if len(contexts & HTTP_LEVELS) < 2:
        return "none"
    return "array" if name in _ARRAY else "scalar"


def _build_table() -> dict[str, DirectiveSpec]:
    table: dict[str, DirectiveSpec] = {}
    for name, masks in _cp.DIRECTIVES.items():
        forms = [_decode(mask) for mask in masks]
        table[name] = DirectiveSpec(name, tuple(forms), _inherit_kind(name, forms), "core")
    for name, forms in _CORE_ADDITIONS.items():
        table[name] = DirectiveSpec(name, tuple(forms), _inherit_kind(name, forms), "core")
    for name, forms in _THIRD_PARTY.items():
        table[name] = DirectiveSpec(name, tuple(forms), _inherit_kind(name, forms), "third-party")
    return table


TABLE: dict[str, DirectiveSpec] = _build_table()

# Blocks whose bodies are data entries (``text/html html;``, ``~^/a 1;``), not directives: nothing
# inside is checked against the table.
DATA_BLOCKS: frozenset[str] = frozenset({"map", "types", "geo", "split_clients", "charset_map", "match", "geoip2"})


def lookup(name: str) -> DirectiveSpec | None:
    return TABLE.get(name)


def classify(name: str) -> Literal["core", "third-party", "unknown"]:
    spec = TABLE.get(name)
    return spec.origin if spec is not None else "unknown"


def enter_block(directive: str, context: Context | None) -> Context | None:
    """The context of a block's body, as nginx's ``cmd->type`` sees it; None where it is not a context."""
    if context is None:
        return None
    if directive == "if":
        return {"server": "if_in_server", "location": "if_in_location", "if_in_location": "if_in_location"}.get(context)  # type: ignore[return-value]
    nested: dict[tuple[Context, str], Context] = {
        ("main", "events"): "events",
        ("main", "http"): "http",
        ("main", "mail"): "mail",
        ("main", "stream"): "stream",
        ("http", "server"): "server",
        ("http", "upstream"): "upstream",
        ("server", "location"): "location",
        ("location", "location"): "location",
        ("if_in_location", "location"): "location",
        ("location", "limit_except"): "limit_except",
        ("mail", "server"): "mail_server",
        ("stream", "server"): "stream_server",
        ("stream", "upstream"): "stream_upstream",
    }
    return nested.get((context, directive))


def check(name: str, args: list[str], has_block: bool, context: Context) -> str | None:
    """nginx's placement and arity checks for one occurrence: the error message, or None when fine.

    Unknown directives pass (they are reported, not rejected).
    """
    spec = TABLE.get(name)
    if spec is None:
        return None
    forms = [form for form in spec.forms if context in form.contexts]
    if not forms:
        return f'"{name}" directive is not allowed here'
    reason = ""
    # nginx reports the last failing reason; like crossplane, try the first form last.
    for form in reversed(forms):
        if form.block and not has_block:
            reason = f'directive "{name}" has no opening "{{"'
            continue
        if not form.block and has_block:
            reason = f'directive "{name}" is not terminated by ";"'
            continue
        only_flag = not (1 in form.nargs or form.any_args or form.one_more)
        if form.flag and only_flag and len(args) == 1 and args[0].lower() not in ("on", "off"):
            reason = f'invalid value "{args[0]}" in "{name}" directive, it must be "on" or "off"'
            continue
        if form.accepts_count(len(args)):
            return None
        reason = f'invalid number of arguments in "{name}" directive'
    return reason
