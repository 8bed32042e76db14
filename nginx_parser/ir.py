"""The parser's intermediate representation.

Every directive of the config is kept as a ``Directive`` (unknown ones too), with the file and line
it was written at. Typed views (``HttpBlock``, ``Server``, ``Location``, ``Upstream``) sit on top of
that tree; they never drop a directive, they only give the common ones a name.
"""

from __future__ import annotations

from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field


class Directive(BaseModel):
    """One directive occurrence. ``block`` is its ``{...}`` body; for ``include`` it holds the included directives."""

    model_config = ConfigDict(frozen=True)

    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def children(self) -> Iterator[Directive]:
        """The directives of this block as nginx sees them: includes spliced in place."""
        yield from iter_spliced(self.block or [])


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
    ipv6only: bool = True
    unix_path: str | None = None
    options: list[str] = Field(default_factory=list)
    directive: Directive | None = None


class Location(BaseModel):
    modifier: LocationModifier
    path: str
    directive: Directive
    locations: list[Location] = Field(default_factory=list)

    def directives(self) -> Iterator[Directive]:
        """The directives directly inside this location, nested locations excluded."""
        for child in self.directive.children():
            if child.name != "location":
                yield child


class Server(BaseModel):
    directive: Directive
    listens: list[Listen]
    server_names: list[str]
    locations: list[Location] = Field(default_factory=list)

    def directives(self) -> Iterator[Directive]:
        for child in self.directive.children():
            if child.name != "location":
                yield child


class UpstreamServer(BaseModel):
    address: str  # host:port or unix:/path, as written
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    directive: Directive


class Upstream(BaseModel):
    name: str
    servers: list[UpstreamServer]
    directive: Directive

    def directives(self) -> Iterator[Directive]:
        yield from self.directive.children()


class HttpBlock(BaseModel):
    directive: Directive
    servers: list[Server]
    upstreams: list[Upstream]

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
