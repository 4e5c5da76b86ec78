"""Where things come from: a file and line, and a raw object with the line of every field.

Positions belong to the input language, not to the loader: models, lint and the agent use them
without reading files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netpol.errors import InputError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Source:
    file: str
    line: int  # 1-based; 0 when unknown

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class RawObject:
    """One Kubernetes object as plain data, plus the line of each field path."""

    data: dict
    source: Source
    lines: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)
    cols: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)  # 1-based, as lines

    @property
    def kind(self) -> str:
        return str(self.data.get("kind") or "")

    def line_of(self, path: Path_) -> int:
        """The line of a field, or of its closest ancestor we know."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line:
                return line
        return self.source.line

    def position(self, path: Path_) -> tuple[int, int]:
        """(line, column) of a field, or of its closest ancestor we know; column 0 when unknown."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line:
                return line, self.cols.get(tuple(path[:cut]), 0)
        return self.source.line, 0

    def error(self, message: str, path: Path_) -> InputError:
        return InputError(message, self.source.file, self.line_of(path), _dotted(path), tuple(path))


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]+")


def _dotted(path: Path_) -> str:
    """`spec.ingress[0].from`; a key that is not plain text shows quoted, so a crafted key cannot
    forge lines or terminal escapes in a message."""
    out = ""
    for part in path:
        if isinstance(part, int) or not _PLAIN_KEY.fullmatch(part):
            out += f"[{part!r}]" if not isinstance(part, int) else f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
