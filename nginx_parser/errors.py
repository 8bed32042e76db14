"""The one error type the parser raises: a position in a config file and what is wrong there."""

from __future__ import annotations


class ConfigError(Exception):
    """A problem in an nginx config, reported as ``file:line: message`` like nginx does."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"
