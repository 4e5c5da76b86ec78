"""Read Kubernetes objects from files, folders and stdin, keeping file and line for every field."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import yaml

from .errors import InputError
from .gcpause import gc_paused

SUFFIXES = (".yaml", ".yml", ".json")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
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
        return InputError(message, self.source.file, self.line_of(path), _dotted(path))


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_CONSTRUCT = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.ScalarNode):
    """A scalar as YAML 1.1 reads it (what kubectl's YAML decoder does: `yes` is a boolean)."""
    tag = node.tag
    if tag == "tag:yaml.org,2002:str":
        return node.value
    return _CONSTRUCT.construct_object(node, deep=True)


_STR = "tag:yaml.org,2002:str"


def _plain(node, path: Path_, lines: dict[Path_, int], cols: dict[Path_, int]):
    """Convert composed YAML nodes to dicts/lists, recording 1-based lines and columns per path."""
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == _STR else str(_plain(key_node, (), {}, {}))
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            sub = path + (key,)
            mark = key_node.start_mark
            lines[sub] = mark.line + 1
            cols[sub] = mark.column + 1
            # strings are most values: skip the call for them
            out[key] = value_node.value if value_node.tag == _STR and isinstance(value_node, yaml.ScalarNode) \
                else _plain(value_node, sub, lines, cols)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, value_node in enumerate(node.value):
            sub = path + (i,)
            mark = value_node.start_mark
            lines[sub] = mark.line + 1
            cols[sub] = mark.column + 1
            out.append(_plain(value_node, sub, lines, cols))
        return out
    return _scalar(node)


def _split(doc: dict, lines: dict[Path_, int], file: str,
           cols: dict[Path_, int] | None = None) -> Iterator[RawObject]:
    """Expand `kind: List` and typed lists (PodList, ...) into their items."""
    kind = str(doc.get("kind") or "")
    items = doc.get("items")
    cols = cols or {}
    if kind.endswith("List") and isinstance(items, list):
        item_kind = kind[:-4]
        per_item: dict[int, tuple[dict, dict]] = {}
        for p, ln in lines.items():  # one pass, not one per item
            if len(p) > 2 and p[0] == "items":
                sub_lines, sub_cols = per_item.setdefault(p[1], ({}, {}))
                sub_lines[p[2:]] = ln
                sub_cols[p[2:]] = cols.get(p, 0)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            if item_kind and "kind" not in item:
                item = {**item, "kind": item_kind}
            sub_lines, sub_cols = per_item.get(i, ({}, {}))
            yield RawObject(item, Source(file, lines.get(("items", i), 0)), sub_lines, sub_cols)
        return
    yield RawObject(doc, Source(file, 1 if not lines else min(lines.values())), lines, cols)


def _yaml_error(exc: yaml.YAMLError, file: str) -> InputError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return InputError(f"invalid YAML: {exc.problem or exc.context}", file, mark.line + 1 if mark else None)
    return InputError(f"invalid YAML: {exc}", file)


def _documents(text: str, file: str) -> list:
    try:
        return list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        if file.endswith(".json"):  # JSON that YAML refuses (tabs): read it without line numbers
            try:
                return [json.loads(text)]
            except ValueError as jexc:
                raise InputError(f"invalid JSON: {jexc.args[0]}", file, getattr(jexc, "lineno", None)) from None
        raise _yaml_error(exc, file) from None
    except ValueError as exc:  # a scalar the constructor cannot read
        raise InputError(f"invalid YAML: {exc}", file) from None


def parse_text(text: str, file: str) -> list[RawObject]:
    with gc_paused():
        return _parse_text(text, file)


def _parse_text(text: str, file: str) -> list[RawObject]:
    out: list[RawObject] = []
    for doc in _documents(text, file):
        if doc is None or (isinstance(doc, yaml.ScalarNode) and doc.tag == "tag:yaml.org,2002:null"):
            continue  # an empty document
        lines: dict[Path_, int] = {}
        cols: dict[Path_, int] = {}
        try:
            plain = doc if not isinstance(doc, yaml.Node) else _plain(doc, (), lines, cols)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file) from None
        if not isinstance(plain, dict):
            line = doc.start_mark.line + 1 if isinstance(doc, yaml.Node) else None
            raise InputError("a document must be a mapping (a Kubernetes object)", file, line)
        out.extend(_split(plain, lines, file, cols))
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
