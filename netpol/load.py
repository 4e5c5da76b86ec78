"""Read Kubernetes objects from files, folders and stdin, keeping file and line for every field."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import InputError

SUFFIXES = (".yaml", ".yml", ".json")
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

    def error(self, message: str, path: Path_) -> InputError:
        return InputError(message, self.source.file, self.line_of(path), _dotted(path))


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _plain(node, path: Path_, lines: dict[Path_, int]):
    """Convert ruamel's round-trip nodes to dicts/lists, recording 1-based lines per path."""
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            sub = path + (str(key),)
            try:
                lines[sub] = node.lc.key(key)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, sub, lines)
        return out
    if isinstance(node, CommentedSeq):
        out = []
        for i, value in enumerate(node):
            sub = path + (i,)
            try:
                lines[sub] = node.lc.item(i)[0] + 1
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            out.append(_plain(value, sub, lines))
        return out
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _split(doc: dict, lines: dict[Path_, int], file: str) -> Iterator[RawObject]:
    """Expand `kind: List` and typed lists (PodList, ...) into their items."""
    kind = str(doc.get("kind") or "")
    items = doc.get("items")
    if kind.endswith("List") and isinstance(items, list):
        item_kind = kind[:-4]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            prefix = ("items", i)
            sub = {p[2:]: ln for p, ln in lines.items() if p[:2] == prefix}
            if item_kind and "kind" not in item:
                item = {**item, "kind": item_kind}
            yield RawObject(item, Source(file, lines.get(prefix, 0)), sub)
        return
    yield RawObject(doc, Source(file, 1 if not lines else min(lines.values())), lines)


def parse_text(text: str, file: str) -> list[RawObject]:
    yaml = YAML(typ="rt")
    try:
        docs = list(yaml.load_all(io.StringIO(text)))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(f"invalid YAML: {exc.problem or exc.context}", file, line) from None
    except YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", file) from None
    out: list[RawObject] = []
    for doc in docs:
        if doc is None:
            continue
        lines: dict[Path_, int] = {}
        plain = _plain(doc, (), lines)
        if not isinstance(plain, dict):
            raise InputError("a document must be a mapping (a Kubernetes object)", file,
                             getattr(getattr(doc, "lc", None), "line", -1) + 1 or None)
        out.extend(_split(plain, lines, file))
    return out


def _files(path: str) -> Iterator[str]:
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(SUFFIXES):
                    yield os.path.join(root, name)
    elif os.path.exists(path):
        yield path
    else:
        raise InputError("no such file or folder", path)


def load_paths(paths: Iterable[str]) -> list[RawObject]:
    """All objects from files, folders (recursive) and `-` (stdin), in a stable order."""
    out: list[RawObject] = []
    for path in paths:
        if path == "-":
            out.extend(parse_text(sys.stdin.read(), "<stdin>"))
            continue
        for file in _files(path):
            try:
                with open(file, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read: {exc}", file) from None
            out.extend(parse_text(text, file))
    return out
