"""The fast path for JSON input (`kubectl get -o json` snapshots): objects decoded by the C JSON
decoder, lines and columns found only when a message needs them.

A snapshot is one JSON object, usually a List whose `items` are the objects. The top level is walked
with `raw_decode`, which gives each item's span in the text; an item's positions are computed the
first time one is asked for, by reading just that span the slow, position-keeping way (JSON is YAML).
Anything the fast path is not sure about (duplicate keys, NaN, huge numbers, deep nesting, a shape
other than one object) returns None, and the caller reads the file the slow way, which gives the
located error or the same data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from netpol.k8s.source import Path_, RawObject, Source

_WS = " \t\n\r"


class _Refused(Exception):
    """Not for the fast path: read it the slow way."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Refused  # a duplicate key: the slow path says where
    return out


def _constant(name: str) -> Any:
    raise _Refused  # NaN and Infinity are not JSON values Kubernetes accepts


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


class LazyPositions(Mapping[Path_, int]):
    """Lines (or columns) of one object's fields, computed on first use from its span of the text."""

    def __init__(self, shared: _Span, columns: bool) -> None:
        self._shared, self._columns = shared, columns

    def _table(self) -> dict[Path_, int]:
        lines, cols = self._shared.positions()
        return cols if self._columns else lines

    def __getitem__(self, key: Path_) -> int:
        return self._table()[key]

    def __iter__(self) -> Iterator[Path_]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


class _Span:
    def __init__(self, text: str, start: int, end: int, line: int, read: Callable[[str], tuple[dict, dict]]) -> None:
        self.text, self.start, self.end, self.line, self._read = text, start, end, line, read
        self._found: tuple[dict, dict] | None = None

    def positions(self) -> tuple[dict, dict]:
        if self._found is None:
            line0 = self.line - 1
            col0 = self.start - (self.text.rfind("\n", 0, self.start) + 1)
            lines, cols = self._read(self.text[self.start:self.end])
            # the span's first line starts mid-line in the file: shift columns on it only
            self._found = ({p: ln + line0 for p, ln in lines.items()},
                           {p: c + (col0 if lines.get(p) == 1 else 0) for p, c in cols.items()})
        return self._found


def parse(text: str, file: str, read: Callable[[str], tuple[dict, dict]]) -> list[RawObject] | None:
    """The objects of a JSON file, or None when the slow path must read it. `read` gives (lines,
    cols) of one object's text, 1-based, as the slow path records them."""
    try:
        i = _skip(text, 0)
        if i >= len(text) or text[i] != "{":
            return None
        doc, end = _DECODER.raw_decode(text, i)
        if _skip(text, end) != len(text) or not isinstance(doc, dict):
            return None
        items = doc.get("items")
        kind = str(doc.get("kind") or "")
        if not (kind.endswith("List") and isinstance(items, list)):
            return [_raw(doc, _Span(text, i, end, text.count("\n", 0, i) + 1, read), file)]
        return list(_items(text, i, file, kind[:-4], read))
    except (_Refused, ValueError, RecursionError):
        return None


def _raw(data: dict, span: _Span, file: str) -> RawObject:
    return RawObject(data, Source(file, span.line), LazyPositions(span, False),  # type: ignore[arg-type]
                     LazyPositions(span, True))  # type: ignore[arg-type]


def _items(text: str, i: int, file: str, item_kind: str, read: Callable[[str], tuple[dict, dict]]
           ) -> Iterator[RawObject]:
    """Walk the top-level object to the `items` array and decode its items one by one, with spans."""
    line, counted = 1, 0  # lines counted up to `counted`: one pass over the text in all

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line
    i = _skip(text, i + 1)
    while text[i] != "}":
        key, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i] != ":":
            raise _Refused
        i = _skip(text, i + 1)
        if key == "items":
            i = _skip(text, i + 1)  # past "["
            while text[i] != "]":
                item, end = _DECODER.raw_decode(text, i)
                if isinstance(item, dict):
                    if item_kind and "kind" not in item:
                        item = {**item, "kind": item_kind}
                    yield _raw(item, _Span(text, i, end, line_at(i), read), file)
                i = _skip(text, end)
                if text[i] == ",":
                    i = _skip(text, i + 1)
            i = _skip(text, i + 1)
        else:
            _, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
        if text[i] == ",":
            i = _skip(text, i + 1)
