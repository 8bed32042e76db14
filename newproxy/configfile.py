"""Loading newproxy's own YAML/JSON config with errors a user can act on: ``file:line: message``.

``NewproxyConfig.load_file`` is the plain loader; this one maps YAML syntax errors and pydantic
validation errors back to the line they are about, so the command line never shows a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from newproxy.config import NewproxyConfig


class ConfigError(Exception):
    """One or more ``file:line: message`` lines, one per problem."""


def load_newproxy_config(path: str) -> NewproxyConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})') from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1: the file is not UTF-8 text ({exc.reason})") from None
    data: Any
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "invalid YAML"
            raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}:1: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping (version, servers, upstreams, ...)")
    try:
        return NewproxyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(path, text, exc, data))) from None


def _describe(path: str, text: str, exc: ValidationError, data: Any) -> list[str]:
    try:
        root: yaml.Node | None = yaml.compose(text)
    except yaml.YAMLError:
        root = None
    lines = []
    for error in exc.errors():
        loc = error.get("loc", ())
        where = field_path(loc, data)
        line = _line_of(root, loc)
        message = error.get("msg", "invalid value")
        if error.get("type") == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{path}:{line}: {where}: {message}")
    return lines


def field_path(loc: tuple[Any, ...], data: Any) -> str:
    """pydantic's error location as a user reads it: ``servers[0].locations[2].proxy.connect_timeout``.

    Read against the data: a part that is the ``kind`` of the node it is about (the tag of a rewrite
    step or a variable) is not a field of the file, and is left out."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue  # a union tag: same node, nothing printed
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The line of the deepest YAML node ``loc`` reaches (a missing key points at its parent)."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    # An unknown key is reported at the key itself, anything else at its value.
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                continue  # a discriminator tag or a missing key: stay at this node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
