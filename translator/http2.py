"""Rules for nginx 1.22's http_v2 module: the ``http2`` flag of ``listen`` and the ``http2_*``
directives, written out as ``newproxy.config.Http2Config`` per server (newproxy/http/h2.py).

nginx 1.22 takes a connection's HTTP/2 settings from the default server of its address:port; the
translation writes every server's own, and the front end reads the default server's, as nginx does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newproxy.config import Http2Config
from nginx_parser import ConfigError
from translator.values import number

if TYPE_CHECKING:
    from translator.translate import Translator, _Chain


def http2_config(translator: Translator, chain: _Chain) -> Http2Config:
    """The HTTP/2 settings in force in the server at the end of ``chain``."""
    from translator.translate import parse_size

    config = Http2Config()
    directive = chain.scalar("http2_max_concurrent_streams")
    if directive is not None:
        config.max_concurrent_streams = number(directive)
    directive = chain.scalar("http2_chunk_size")
    if directive is not None:
        size = parse_size(directive.args[0], directive)
        if size <= 0:
            raise ConfigError('the http2 chunk size cannot be zero', directive.file, directive.line)
        config.chunk_size = size
    directive = chain.scalar("http2_body_preread_size")
    if directive is not None:
        config.body_preread_size = min(parse_size(directive.args[0], directive), 2**31 - 1)
    return config
