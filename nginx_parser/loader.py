"""Load an nginx config into a tree of directives, following includes the way nginx does.

crossplane's lexer tokenises each file on its own and syntax.py assembles the statements; we resolve
``include`` ourselves because crossplane's ``combine=True`` mislabels the file of directives that
follow an include and drops includes inside ``if``/``limit_except``. Loading stops at the first error
in nginx's reading order (``PartialLoad`` keeps what was read before it). Every directive keeps the file and line it was written at.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path

from nginx_parser.directives import lookup
from nginx_parser.errors import ConfigError
from nginx_parser.ir import SYNTHETIC_LINE, Directive, iter_spliced, make_directive
from nginx_parser.syntax import SyntaxProblem, parse_text
from nginx_parser.templates import check_not_template, envsubst


class PartialFile(Exception):
    """A file with a syntax error: the error, and the statements nginx read before reaching it."""

    def __init__(self, error: ConfigError, raw: list[dict]) -> None:
        super().__init__(str(error))
        self.error = error
        self.raw = raw


class PartialLoad(ConfigError):
    """Loading stopped at ``error``; ``tree`` holds everything read before it (for the earlier checks)."""

    def __init__(self, error: ConfigError, tree: list[Directive], files: list[str]) -> None:
        super().__init__(error.message, error.file, error.line)
        self.error = error
        self.tree = tree
        self.files = files

SnippetContext = str  # "main" | "http" | "server" | "location"
SNIPPET_CONTEXTS = ("main", "http", "server", "location")


def _parse_one_file(path: str, env: Mapping[str, str] | None = None) -> list[dict]:
    """One file's statements. Template syntax is refused before tokenising; with ``env`` the envsubst
    placeholders are replaced first (line numbers stay those of the file as written)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    check_not_template(text, path)
    if env:
        text = envsubst(text, env)
    try:
        return parse_text(text)
    except SyntaxProblem as problem:
        raise PartialFile(ConfigError(problem.message, path, problem.line), problem.partial) from None


_ESCAPES = {"\\": "\\", "t": "\t", "r": "\r", "n": "\n", '"': '"', "'": "'"}


def unescape(arg: str) -> str:
    """nginx's token unescaping (ngx_conf_read_token): \\ \t \r \n \" \' ; any other backslash stays.

    crossplane already undoes \" and \' inside quotes but leaves the rest, so we finish the job.
    """
    if "\\" not in arg:
        return arg
    out: list[str] = []
    i = 0
    while i < len(arg):
        char = arg[i]
        if char == "\\" and i + 1 < len(arg) and arg[i + 1] in _ESCAPES:
            out.append(_ESCAPES[arg[i + 1]])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


class Loader:
    """Reads a main config file and every file it includes, detecting include cycles."""

    def __init__(
        self,
        main_file: str,
        prefix: str | None = None,
        env: Mapping[str, str] | None = None,
        sysroot: str | None = None,
    ) -> None:
        self.main_file = os.path.abspath(main_file)
        self.env = env
        # Absolute include paths are read under ``sysroot`` when given: a config taken out of a
        # container image or another machine keeps its /etc/nginx/... includes.
        self.sysroot = sysroot
        # The first error met, in nginx's reading order; loading stops there (see PartialLoad).
        self.pending: ConfigError | None = None
        # nginx resolves relative include paths against the directory of the -c file.
        self.conf_dir = prefix if prefix is not None else os.path.dirname(self.main_file)
        self.files: list[str] = []
        self._cache: dict[str, list[dict]] = {}

    def load(self) -> list[Directive]:
        return self._load_file(self.main_file, stack=())

    def _read(self, path: str, include_site: Directive | None) -> list[dict]:
        if path in self._cache:
            return self._cache[path]
        if not os.path.exists(path):
            where = (include_site.file, include_site.error_line) if include_site else (path, None)
            raise ConfigError(
                f'open() "{path}" failed (2: No such file or directory)', file=where[0], line=where[1]
            )
        if os.path.isdir(path):
            where = (include_site.file, include_site.error_line) if include_site else (path, None)
            raise ConfigError(f'pread() "{path}" failed (21: Is a directory)', file=where[0], line=where[1])
        try:
            parsed = _parse_one_file(path, self.env)
        except PartialFile:
            raise
        except ConfigError as error:  # a template: nothing of it is read
            raise PartialFile(error, []) from None
        except OSError as exc:
            where = (include_site.file, include_site.error_line) if include_site else (path, None)
            raise ConfigError(f'open() "{path}" failed ({exc.strerror})', file=where[0], line=where[1]) from None
        self._cache[path] = parsed
        self.files.append(path)
        return parsed

    def _load_file(
        self, path: str, stack: tuple[str, ...], include_site: Directive | None = None
    ) -> list[Directive]:
        if path in stack:
            assert include_site is not None
            chain = " -> ".join([*stack, path])
            raise ConfigError(f"include cycle: {chain}", file=include_site.file, line=include_site.error_line)
        try:
            raw = self._read(path, include_site)
        except PartialFile as partial:
            # Keep what nginx read before the syntax error; an error inside it comes first.
            tree = self._convert(partial.raw, path, (*stack, path))
            self.pending = self.pending or partial.error
            return tree
        return self._convert(raw, path, (*stack, path))

    def _convert(self, raw: list[dict], path: str, stack: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for item in raw:
            if self.pending is not None:
                break  # nginx stopped reading at the pending error
            name = item["directive"]
            block = None
            if "block" in item:
                block = self._convert(item["block"], path, stack)
            args = [unescape(a) for a in item.get("args", [])]
            if name.endswith("_by_lua_block") and args:
                # the Lua body is read by the Lua module's own reader: nginx's unescaping does not apply
                args[-1] = item["args"][-1]
            # make_directive: no validation, the values are already of the right types; validating
            # 10^5 nodes would dominate the parse time of a large config.
            if name == "include":
                end = item.get("end")
                site = make_directive(name, args, path, item["line"], None, end if end != item["line"] else None)
                try:
                    block = self._expand_include(site, stack)
                except ConfigError as error:
                    self.pending = self.pending or error
                    block = []
            end = item.get("end")
            out.append(make_directive(name, args, path, item["line"], block, end if end != item["line"] else None))
        return out

    def _expand_include(self, site: Directive, stack: tuple[str, ...]) -> list[Directive]:
        if len(site.args) != 1:
            raise ConfigError('invalid number of arguments in "include" directive', site.file, site.error_line)
        pattern = site.args[0]
        if not os.path.isabs(pattern):
            pattern = os.path.join(self.conf_dir, pattern)
        elif self.sysroot is not None:
            pattern = os.path.join(self.sysroot, pattern.lstrip("/"))
        if glob.has_magic(pattern):
            # nginx sorts glob matches byte-wise (glob(3) without GLOB_NOSORT).
            paths = sorted(glob.glob(pattern), key=os.fsencode)
            paths = [p for p in paths if not Path(p).is_dir()]
        else:
            paths = [pattern]
        included: list[Directive] = []
        for included_path in paths:
            if self.pending is not None:
                break
            included.extend(self._load_file(os.path.abspath(included_path), stack, include_site=site))
        return included


_WRAPPERS: dict[str, list[tuple[str, list[str]]]] = {
    "main": [],
    "http": [("http", [])],
    "server": [("http", []), ("server", [])],
    "location": [("http", []), ("server", []), ("location", ["/"])],
}


def detect_context(tree: list[Directive]) -> str:
    """The outermost of main/http/server/location where every known top-level directive is allowed.

    A file holding ``server``/``upstream``/``map`` is http-level, one holding ``location`` server-level,
    one of ``proxy_set_header`` lines alone could be http, server or location: http is picked (valid
    wherever the lines are allowed). Unknown directives do not vote.
    """
    names = {d.name for d in iter_spliced(tree)}
    for context in SNIPPET_CONTEXTS:
        if all(spec is None or context in spec.contexts for spec in map(lookup, names)):
            return context
    return "main"


def context_of(tree: list[Directive]) -> str:
    """The context a loaded tree was read in: how many synthetic wrappers surround it."""
    depth = 0
    while len(tree) == 1 and tree[0].synthetic:
        tree = tree[0].block or []
        depth += 1
    return SNIPPET_CONTEXTS[depth]


def wrap(tree: list[Directive], context: str, path: str) -> list[Directive]:
    """Wrap a snippet the way nginx would include it into ``context``.

    The wrapper blocks are synthetic: they carry the snippet's file and line ``SYNTHETIC_LINE`` (0);
    everything inside keeps its own file:line.
    """
    if context not in _WRAPPERS:
        raise ConfigError(f'unknown context "{context}": use one of {", ".join(SNIPPET_CONTEXTS)}')
    body = tree
    for name, args in reversed(_WRAPPERS[context]):
        body = [make_directive(name, args, path, SYNTHETIC_LINE, body, None)]
    return body


def load(
    main_file: str,
    prefix: str | None = None,
    context: str | None = "main",
    env: Mapping[str, str] | None = None,
    sysroot: str | None = None,
) -> tuple[list[Directive], list[str]]:
    """Load ``main_file`` with its includes: the directive tree and the list of files read.

    ``context`` says where the file's directives live (main/http/server/location; None detects it);
    a snippet is wrapped in synthetic blocks. ``env`` turns on envsubst (see templates.py).
    ``sysroot``: read absolute include paths under this directory.
    """
    if not os.path.exists(main_file):
        raise ConfigError(f'open() "{os.path.abspath(main_file)}" failed (2: No such file or directory)')
    loader = Loader(main_file, prefix, env, sysroot)
    tree = loader.load()
    chosen = detect_context(tree) if context is None else context
    if chosen != "main":
        tree = wrap(tree, chosen, loader.main_file)
    if loader.pending is not None:
        raise PartialLoad(loader.pending, tree, loader.files)
    return tree, loader.files
