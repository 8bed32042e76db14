"""Location lookup with nginx's precedence (ngx_http_core_find_location).

At each level: an ``=`` location equal to the URI wins at once; otherwise the longest prefix
location is remembered and its nested locations are searched; unless that prefix is ``^~``, the
regex locations of the level are then tried in config order and the first match wins (its nested
locations are searched in turn). A prefix location ending in "/" whose content is proxy_pass
answers a URI one "/" short of it with a 301 (nginx's ``auto_redirect``).
"""

from __future__ import annotations

import re
from typing import Final, Generic, TypeVar

L = TypeVar("L")


class LocationNode(Generic[L]):
    """One location of a level. Plain classes here, not dataclasses: compiled (newproxy/native.py),
    the lookup, which runs per request, reads them without Python's generic attribute lookup."""

    def __init__(self, match: str, path: str, value: L, auto_redirect: bool = False,
                 regex: re.Pattern[str] | None = None, children: LocationLevel[L] | None = None) -> None:
        self.match = match  # LocationConfig.match
        self.path = path
        self.value = value
        self.auto_redirect = auto_redirect
        self.regex = regex
        self.children = children
        # The answer for a plain match of this location (no redirect, no captures), made once: the
        # lookup runs per request, and nothing changes a Found once made.
        self.found: Found[L] = Found(value)


class Found(Generic[L]):
    def __init__(self, value: L | None, redirect: bool = False, match: re.Match[str] | None = None) -> None:
        self.value = value
        self.redirect = redirect  # the auto_redirect 301 to ``path + "/"``
        self.match = match


class LocationLevel(Generic[L]):
    def __init__(self) -> None:
        self.exact: dict[str, LocationNode[L]] = {}
        # Prefix locations grouped by length, longest first: a lookup is one dict probe per length.
        self.prefixes_by_length: list[tuple[int, dict[str, LocationNode[L]]]] = []
        self.regexes: list[LocationNode[L]] = []
        self.redirects: dict[str, LocationNode[L]] = {}  # path without its final "/"

    @classmethod
    def build(cls, nodes: list[LocationNode[L]]) -> LocationLevel[L]:
        level: LocationLevel[L] = cls()
        by_length: dict[int, dict[str, LocationNode[L]]] = {}
        for node in nodes:
            if node.match == "exact":
                level.exact.setdefault(node.path, node)
            elif node.match in ("prefix", "prefix_priority"):
                by_length.setdefault(len(node.path), {}).setdefault(node.path, node)
            elif node.match in ("regex", "regex_caseless"):
                level.regexes.append(node)
            if node.auto_redirect and node.path.endswith("/") and node.match != "named":
                level.redirects.setdefault(node.path[:-1], node)
        level.prefixes_by_length = sorted(by_length.items(), key=lambda item: -item[0])
        return level

    def _longest_prefix(self, uri: str) -> LocationNode[L] | None:
        for length, table in self.prefixes_by_length:
            if length <= len(uri):
                node = table.get(uri[:length])
                if node is not None:
                    return node
        return None

    def _find_static(self, uri: str) -> tuple[int, LocationNode[L] | None]:
        """ngx_http_core_find_static_location: OK (exact), AGAIN (prefix), DONE (auto_redirect) or DECLINED."""
        exact = self.exact.get(uri)
        if exact is not None:
            return _OK, exact
        prefix = self._longest_prefix(uri)
        if prefix is not None and len(prefix.path) == len(uri):
            return _AGAIN, prefix
        # A location one "/" longer than the URI beats any shorter prefix (it sits deeper in nginx's tree).
        redirect = self.redirects.get(uri)
        if redirect is not None:
            return _DONE, redirect
        if prefix is not None:
            return _AGAIN, prefix
        return _DECLINED, None

    def _find(self, uri: str, state: list[Found[L] | None]) -> int:
        rc, node = self._find_static(uri)
        noregex = False
        if rc == _OK or rc == _DONE:
            assert node is not None
            state[0] = Found(node.value, redirect=True) if rc == _DONE else node.found
            return rc
        if rc == _AGAIN:
            assert node is not None
            state[0] = node.found
            noregex = node.match == "prefix_priority"
            rc = node.children._find(uri, state) if node.children is not None else _DECLINED
            if rc == _OK or rc == _DONE:
                return rc
        if not noregex:
            for regex_node in self.regexes:
                assert regex_node.regex is not None
                match = regex_node.regex.search(uri)
                if match:
                    state[0] = Found(regex_node.value, match=match)
                    if regex_node.children is not None:
                        regex_node.children._find(uri, state)
                        found = state[0]
                        # nginx returns OK here whatever the nested search said, so no redirect.
                        if found is not None and found.redirect:
                            state[0] = Found(found.value, match=found.match)
                    return _OK
        return rc

    def find(self, uri: str) -> Found[L] | None:
        """The location for ``uri``; None when no location matches at all."""
        state: list[Found[L] | None] = [None]
        self._find(uri, state)
        return state[0]


_OK: Final = 0
_AGAIN: Final = 1
_DONE: Final = 2
_DECLINED: Final = 3
