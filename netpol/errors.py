"""Typed errors. Input errors carry where they came from, so the CLI can point at it."""

from __future__ import annotations


class NetpolError(Exception):
    """Base of every error netpol reports to a user (exit code 2, no traceback)."""


class InputError(NetpolError):
    """Bad input: a file, line and field say where."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message, self.file, self.line, self.field = message, file, line, field
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or "<input>"
        if self.line:
            where += f":{self.line}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


class QueryError(NetpolError):
    """A question netpol cannot answer as asked (unknown pod, unresolvable port name)."""
