"""Rules for nginx's static, index and autoindex modules: root/alias, index, autoindex, etag,
if_modified_since, written out as ``newproxy.config.StaticConfig``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import StaticConfig
from newproxy.engine.variables import variable_names

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain



def static_config(translator: Translator, chain: _Chain) -> StaticConfig:
    config = StaticConfig()
    # root and alias are one setting in nginx (ngx_http_core_merge_loc_conf copies both together):
    # the innermost block that has either decides.
    for scope in reversed(chain.scopes):
        alias = scope.last("alias")
        if alias is not None:
            path = alias.args[0]
            if not all(name.isdigit() for name in variable_names(path)):
                translator.note(alias, "unsupported", "alias with variables other than regex captures is not translated")
            config.alias = path if path.startswith("/") else translator.prefix + path
            config.source = alias.where
            break
        if scope.last("root") is not None:
            break
    index = chain.array("index")
    if index:
        config.index = [arg for directive in index for arg in directive.args]
        for directive in index:
            if any("$" in arg for arg in directive.args):
                translator.note(directive, "unsupported", "index with variables is not translated")
    autoindex = chain.scalar("autoindex")
    if autoindex is not None:
        config.autoindex = autoindex.args[0] == "on"
    for name in ("autoindex_exact_size", "autoindex_localtime"):
        directive = chain.scalar(name)
        if directive is not None:
            setattr(config, name, directive.args[0] == "on")
    fmt = chain.scalar("autoindex_format")
    if fmt is not None and fmt.args[0] != "html":
        translator.note(fmt, "unsupported", f"autoindex_format {fmt.args[0]} is not built (html is)")
    symlinks = chain.scalar("disable_symlinks")
    if symlinks is not None and symlinks.args[0] != "off":
        translator.note(symlinks, "unsupported", "only disable_symlinks off is built")
    etag = chain.scalar("etag")
    if etag is not None:
        config.etag = etag.args[0] == "on"
    ims = chain.scalar("if_modified_since")
    if ims is not None:
        config.if_modified_since = ims.args[0]  # type: ignore[assignment]
    return config
