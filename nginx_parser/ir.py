"""The parser's intermediate representation.

Every directive of the config is kept as a ``Directive`` (unknown ones too), with the file and line
it was written at. Typed views (``HttpBlock``, ``Server``, ``Location``, ``Upstream``) sit on top of
that tree; they never drop a directive, they only give the common ones a name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nginx_parser.expr import Condition, parse_condition
from nginx_parser.regex import Regex, compile_regex

# The line of a block the parser made up: the http/server/location wrapped around a snippet parsed in a
# context, as nginx would supply it through the include. Real directives have lines >= 1.
SYNTHETIC_LINE = 0


class Directive(BaseModel):
    """One directive occurrence. ``block`` is its ``{...}`` body; for ``include`` it holds the included directives."""

    model_config = ConfigDict(frozen=True)

    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None
    # The line of the terminating ";" or "{" when it differs from ``line`` (a multi-line directive).
    end_line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def error_line(self) -> int:
        """The line nginx names in an error about this directive: the one its ";" or "{" is on."""
        return self.end_line if self.end_line is not None else self.line

    @property
    def synthetic(self) -> bool:
        return self.line == SYNTHETIC_LINE

    def children(self) -> Iterator[Directive]:
        """The directives of this block as nginx sees them: includes spliced in place."""
        yield from iter_spliced(self.block or [])


_DIRECTIVE_FIELDS = frozenset({"name", "args", "file", "line", "block", "end_line"})


def make_directive(
    name: str, args: list[str], file: str, line: int, block: list[Directive] | None, end_line: int | None
) -> Directive:
    """A Directive without validation, for the loader's hot loop (values are already well typed).

    Same result as ``Directive.model_construct`` with every field given, at a fraction of the cost:
    model_construct walks the field table on each call, which dominated parsing large configs.
    """
    directive = object.__new__(Directive)
    object.__setattr__(directive, "__dict__", {
        "name": name, "args": args, "file": file, "line": line, "block": block, "end_line": end_line,
    })
    object.__setattr__(directive, "__pydantic_fields_set__", set(_DIRECTIVE_FIELDS))
    object.__setattr__(directive, "__pydantic_extra__", None)
    object.__setattr__(directive, "__pydantic_private__", None)
    return directive


def iter_spliced(directives: list[Directive]) -> Iterator[Directive]:
    for directive in directives:
        if directive.name == "include":
            yield from iter_spliced(directive.block or [])
        else:
            yield directive


def walk(directives: list[Directive]) -> Iterator[Directive]:
    """Every directive occurrence, depth first, includes spliced (the include directives themselves too)."""
    for directive in directives:
        yield directive
        if directive.block:
            yield from walk(directive.block)


LocationModifier = Literal["=", "^~", "", "~", "~*", "@"]


class Listen(BaseModel):
    """A parsed ``listen`` directive. ``address`` is ``*`` for every IPv4 address; IPv6 addresses keep no brackets."""

    address: str
    port: int
    default_server: bool = False
    ssl: bool = False
    http2: bool = False
    quic: bool = False  # nginx >= 1.25: a UDP socket for QUIC/HTTP/3, separate from a TCP one on the same port
    ipv6only: bool = True
    unix_path: str | None = None
    options: list[str] = Field(default_factory=list)
    directive: Directive | None = None


class Location(BaseModel):
    modifier: LocationModifier
    path: str
    directive: Directive
    locations: list[Location] = Field(default_factory=list)
    # The enclosing blocks (http, server, outer locations), outermost first, for inheritance.
    # Not serialised: they are the parents already in the tree.
    ancestors: list[Directive] = Field(default_factory=list, exclude=True, repr=False)

    def directives(self) -> Iterator[Directive]:
        """The directives directly inside this location, nested locations excluded."""
        for child in self.directive.children():
            if child.name != "location":
                yield child

    def regex(self) -> Regex | None:
        """The compiled pattern of a ``~``/``~*`` location (nginx's engine choice, see regex.py)."""
        if self.modifier not in ("~", "~*"):
            return None
        return compile_regex(self.path, caseless=self.modifier == "~*")

    def conditions(self) -> list[tuple[Directive, Condition]]:
        """The ``if`` blocks directly in this location, with their parsed conditions."""
        return [(d, parse_condition(d.args)) for d in self.directive.children() if d.name == "if"]


class Server(BaseModel):
    directive: Directive
    listens: list[Listen]
    server_names: list[str]
    locations: list[Location] = Field(default_factory=list)

    def conditions(self) -> list[tuple[Directive, Condition]]:
        """The ``if`` blocks directly in this server, with their parsed conditions."""
        return [(d, parse_condition(d.args)) for d in self.directive.children() if d.name == "if"]

    def directives(self) -> Iterator[Directive]:
        for child in self.directive.children():
            if child.name != "location":
                yield child


class UpstreamServer(BaseModel):
    address: str  # host:port or unix:/path, as written
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    max_conns: int = 0
    backup: bool = False
    down: bool = False
    directive: Directive


class Upstream(BaseModel):
    name: str
    servers: list[UpstreamServer]
    directive: Directive

    def directives(self) -> Iterator[Directive]:
        yield from self.directive.children()


class MapEntry(BaseModel):
    """One ``key value;`` line of a map. ``kind`` says how ``key`` matches."""

    key: str
    value: str
    kind: Literal["exact", "regex", "regex_caseless", "hostname"]
    directive: Directive


class Map(BaseModel):
    source: str  # a complex value, e.g. "$http_host"
    variable: str  # without the "$"
    default: str = ""
    hostnames: bool = False
    volatile: bool = False
    entries: list[MapEntry] = Field(default_factory=list)
    directive: Directive


class GeoEntry(BaseModel):
    network: str  # CIDR, address, or "a-b" range when ``ranges``
    value: str
    delete: bool = False
    directive: Directive


class Geo(BaseModel):
    source: str = "$remote_addr"
    variable: str
    default: str = ""
    ranges: bool = False
    proxy: list[str] = Field(default_factory=list)
    proxy_recursive: bool = False
    entries: list[GeoEntry] = Field(default_factory=list)
    directive: Directive


class SplitBucket(BaseModel):
    percent: float | None  # None for the "*" bucket (the rest)
    value: str
    directive: Directive


class SplitClients(BaseModel):
    source: str
    variable: str
    buckets: list[SplitBucket]
    directive: Directive


class HttpBlock(BaseModel):
    directive: Directive
    servers: list[Server]
    upstreams: list[Upstream]
    maps: list[Map] = Field(default_factory=list)
    geos: list[Geo] = Field(default_factory=list)
    split_clients: list[SplitClients] = Field(default_factory=list)

    def directives(self) -> Iterator[Directive]:
        """Directives directly in http{}, servers and upstreams excluded."""
        for child in self.directive.children():
            if child.name not in ("server", "upstream"):
                yield child


class NginxConfig(BaseModel):
    main_file: str
    files: list[str]
    tree: list[Directive]
    http: HttpBlock | None = None

    def main_directives(self) -> Iterator[Directive]:
        for directive in iter_spliced(self.tree):
            if directive.name not in ("http", "events", "stream", "mail"):
                yield directive

    def all_directives(self) -> Iterator[Directive]:
        """Every directive occurrence except ``include`` itself, which is a loading instruction."""
        for directive in walk(self.tree):
            if directive.name != "include":
                yield directive
