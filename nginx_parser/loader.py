"""Load an nginx config into a tree of directives, following includes the way nginx does.

crossplane tokenises each file on its own (``single=True``); we resolve ``include`` ourselves because
crossplane's ``combine=True`` mislabels the file of directives that follow an include and drops
includes inside ``if``/``limit_except``. Every directive keeps the file and line it was written at.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import crossplane  # type: ignore[import-untyped]

from nginx_parser.errors import ConfigError
from nginx_parser.ir import Directive


def _parse_one_file(path: str) -> list[dict]:
    """Tokenise one file with crossplane, without its context checks (we do our own)."""
    payload = crossplane.parse(
        path,
        single=True,
        catch_errors=False,
        check_ctx=False,
        check_args=False,
        comments=False,
    )
    config = payload["config"][0]
    if config["errors"]:
        # crossplane reports some syntax errors in the payload even with catch_errors=False.
        first = config["errors"][0]
        raise ConfigError(_strip_crossplane_location(first["error"]), file=path, line=first.get("line"))
    return config["parsed"]


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


def _strip_crossplane_location(message: str) -> str:
    # crossplane appends " in FILE:LINE" to its messages; we print the position ourselves.
    head, sep, _tail = message.rpartition(" in ")
    return head if sep else message


class Loader:
    """Reads a main config file and every file it includes, detecting include cycles."""

    def __init__(self, main_file: str, prefix: str | None = None) -> None:
        self.main_file = os.path.abspath(main_file)
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
            where = (include_site.file, include_site.line) if include_site else (path, None)
            raise ConfigError(
                f'open() "{path}" failed (2: No such file or directory)', file=where[0], line=where[1]
            )
        try:
            parsed = _parse_one_file(path)
        except crossplane.errors.NgxParserBaseException as exc:
            raise ConfigError(_strip_crossplane_location(exc.strerror), file=path, line=exc.lineno) from None
        except OSError as exc:
            where = (include_site.file, include_site.line) if include_site else (path, None)
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
            raise ConfigError(f"include cycle: {chain}", file=include_site.file, line=include_site.line)
        raw = self._read(path, include_site)
        return self._convert(raw, path, (*stack, path))

    def _convert(self, raw: list[dict], path: str, stack: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for item in raw:
            name = item["directive"]
            if name == "#":
                continue
            block = None
            if "block" in item:
                block = self._convert(item["block"], path, stack)
            directive = Directive(name=name, args=[unescape(a) for a in item.get("args", [])], file=path, line=item["line"], block=block)
            if name == "include":
                out.append(directive.model_copy(update={"block": self._expand_include(directive, stack)}))
            else:
                out.append(directive)
        return out

    def _expand_include(self, site: Directive, stack: tuple[str, ...]) -> list[Directive]:
        if len(site.args) != 1:
            raise ConfigError('invalid number of arguments in "include" directive', site.file, site.line)
        pattern = site.args[0]
        if not os.path.isabs(pattern):
            pattern = os.path.join(self.conf_dir, pattern)
        if glob.has_magic(pattern):
            # nginx sorts glob matches byte-wise (glob(3) without GLOB_NOSORT).
            paths = sorted(glob.glob(pattern), key=os.fsencode)
            paths = [p for p in paths if not Path(p).is_dir()]
        else:
            paths = [pattern]
        included: list[Directive] = []
        for included_path in paths:
            included.extend(self._load_file(os.path.abspath(included_path), stack, include_site=site))
        return included


def load(main_file: str, prefix: str | None = None) -> tuple[list[Directive], list[str]]:
    """Load ``main_file`` with its includes: the directive tree and the list of files read."""
    if not os.path.exists(main_file):
        raise ConfigError(f'open() "{os.path.abspath(main_file)}" failed (2: No such file or directory)')
    loader = Loader(main_file, prefix)
    tree = loader.load()
    return tree, loader.files
