"""Read Kubernetes objects from files, folders and stdin, keeping file and line for every field."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import yaml

from netpol.errors import InputError
from netpol.gcpause import gc_paused
from netpol.k8s import jsonfast
from netpol.k8s.source import Path_, RawObject, Source

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 * 1024 * 1024
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


_CONSTRUCT = yaml.constructor.SafeConstructor()


# Scalars become JSON values, as kubectl's decoder makes them: null, booleans, numbers and strings.
# A timestamp stays the text it was written as; any other tag is refused.
_JSON_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float")}
_TEXT_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"}


def _scalar(node: yaml.Node) -> Any:
    """A scalar as YAML 1.1 reads it (what kubectl's YAML decoder does: `yes` is a boolean), or a
    located error for one that is not a JSON value (`!!int abc`, a 5,000-digit number)."""
    tag = node.tag
    if tag in _TEXT_TAGS:
        return node.value
    if tag in _JSON_TAGS and isinstance(node, yaml.ScalarNode):
        try:
            return _CONSTRUCT.construct_object(node, deep=True)
        except (ValueError, KeyError, OverflowError):
            pass
    what = tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag
    raise yaml.constructor.ConstructorError(
        None, None, f"{str(node.value)[:40]!r} is not a valid {what}", node.start_mark)


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
MAX_DEPTH = 200  # nesting levels: far beyond any Kubernetes object, far within the stack
# Fields a document may expand to, per input character, through aliases (plus a floor): without
# aliases a document has fewer fields than characters, so only a YAML alias bomb reaches it.
ALIAS_FACTOR, ALIAS_FLOOR = 10, 100_000


class _Converter:
    """Composed YAML nodes -> dicts/lists, recording 1-based lines and columns per path, with merge
    keys (`<<`, as kubectl reads them) and bounds on nesting and on what aliases may expand to."""

    def __init__(self, budget: int) -> None:
        self.lines: dict[Path_, int] = {}
        self.cols: dict[Path_, int] = {}
        self.budget = budget

    def _mark(self, path: Path_, mark) -> None:
        self.lines[path] = mark.line + 1
        self.cols[path] = mark.column + 1

    def plain(self, node, path: Path_):
        self.budget -= 1
        if self.budget < 0:
            raise yaml.constructor.ConstructorError(
                None, None, "the document expands to too many fields (excessive aliasing)", node.start_mark)
        if len(path) > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, value_node in enumerate(node.value):
                self._mark(path + (i,), value_node.start_mark)
                out.append(self.plain(value_node, path + (i,)))
            return out
        return _scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict:
        out: dict = {}
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = key_node.value if key_node.tag == _STR else str(self.plain(key_node, ()))
            if key in out:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            self._mark(path + (key,), key_node.start_mark)
            # strings are most values: skip the call for them
            out[key] = value_node.value if value_node.tag == _STR and isinstance(value_node, yaml.ScalarNode) \
                else self.plain(value_node, path + (key,))
        for value_node in merges:
            self._merge(out, value_node, path)
        return out

    def _merge(self, out: dict, value_node, path: Path_) -> None:
        """`<<: *base` or `<<: [*a, *b]`: keys the mapping lacks, earlier sources first; their lines
        are where the source defines them."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a merge key (<<) takes a mapping or a list of mappings", src.start_mark)
            inner = _Converter(self.budget)
            merged = inner.plain(src, path)
            self.budget = inner.budget
            fresh = {k for k in merged if k not in out}
            for k in fresh:
                out[k] = merged[k]
            for p, line in inner.lines.items():
                if len(p) > len(path) and p[len(path)] in fresh:
                    self.lines[p], self.cols[p] = line, inner.cols.get(p, 0)


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
            if len(p) > 2 and p[0] == "items" and isinstance(p[1], int):
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


def _positions(text: str) -> tuple[dict[Path_, int], dict[Path_, int]]:
    """Lines and columns of one object's text (for the JSON fast path, when a message needs them)."""
    conv = _Converter(ALIAS_FACTOR * len(text) + ALIAS_FLOOR)
    try:
        for doc in _documents(text, "<json>"):
            conv.plain(doc, ())
    except (InputError, yaml.YAMLError):  # JSON that YAML refuses (tabs): positions stay unknown
        return {}, {}
    return conv.lines, conv.cols


def _parse_text(text: str, file: str) -> list[RawObject]:
    if text.lstrip()[:1] == "{":  # JSON: the C decoder, positions when asked for
        fast = jsonfast.parse(text, file, _positions)
        if fast is not None:
            return fast
    out: list[RawObject] = []
    budget = ALIAS_FACTOR * len(text) + ALIAS_FLOOR
    for doc in _documents(text, file):
        if doc is None or (isinstance(doc, yaml.ScalarNode) and doc.tag == "tag:yaml.org,2002:null"):
            continue  # an empty document
        conv = _Converter(budget)  # one budget for the file: documents cannot each take all of it
        try:
            plain = doc if not isinstance(doc, yaml.Node) else conv.plain(doc, ())
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file) from None
        lines, cols, budget = conv.lines, conv.cols, conv.budget
        if not isinstance(plain, dict):
            line = doc.start_mark.line + 1 if isinstance(doc, yaml.Node) else None
            raise InputError("a document must be a mapping (a Kubernetes object)", file, line)
        out.extend(_split(plain, lines, file, cols))
    return out


def max_file_bytes() -> int:
    """The largest input file read (NETPOL_MAX_FILE_BYTES overrides): a bound on memory, not on clusters
    (a 30k-pod snapshot as kubectl prints it is well under it)."""
    try:
        return int(os.environ.get("NETPOL_MAX_FILE_BYTES", "")) or MAX_FILE_BYTES
    except ValueError:
        return MAX_FILE_BYTES


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# files that say a folder holds templates, not objects: what to run to get the objects
TEMPLATES = {"Chart.yaml": "a Helm chart: render it first, e.g. `helm template NAME {} | netpol ... -f -`",
             "kustomization.yaml": "a Kustomize base: build it first, e.g. `kubectl kustomize {} | netpol ... -f -`",
             "kustomization.yml": "a Kustomize base: build it first, e.g. `kubectl kustomize {} | netpol ... -f -`"}


def _not_a_template(folder: str, names: list[str]) -> None:
    """Templates are not Kubernetes objects: say what they are instead of failing on `{{ ... }}`."""
    for marker, hint in TEMPLATES.items():
        if marker in names:
            raise InputError(f"{folder} is {hint.format(folder)}", os.path.join(folder, marker))


def _files(path: str) -> Iterator[str]:
    """Regular files only: a FIFO or a device (/dev/zero) named by mistake or by malice is refused,
    and a folder's other entries are skipped."""
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs.sort()
            _not_a_template(root, names)
            for name in sorted(names):
                full = os.path.join(root, name)
                if name.endswith(SUFFIXES) and _regular(full):
                    yield full
    elif _regular(path):
        yield path
    elif os.path.exists(path):
        raise InputError("not a regular file", path)
    else:
        raise InputError("no such file or folder", path)


def read_text(stream: IO[bytes] | IO[str], file: str) -> str:
    """A whole input as UTF-8, refused past the size limit before it is all in memory."""
    limit = max_file_bytes()
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"larger than {limit} bytes (set NETPOL_MAX_FILE_BYTES to read it)", file)
    if isinstance(data, str):  # a text stream (a test's stdin): the size was counted in characters
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read: not UTF-8 ({exc.reason} at byte {exc.start})", file) from None


def stdin() -> IO[bytes] | IO[str]:
    return getattr(sys.stdin, "buffer", sys.stdin)


def read_file(file: str) -> str:
    try:
        with open(file, "rb") as fh:
            return read_text(fh, file)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file) from None


def load_paths(paths: Iterable[str]) -> list[RawObject]:
    """All objects from files, folders (recursive) and `-` (stdin), in a stable order."""
    out: list[RawObject] = []
    for path in paths:
        if path == "-":
            out.extend(parse_text(read_text(stdin(), "<stdin>"), "<stdin>"))
            continue
        for file in _files(path):
            out.extend(parse_text(read_file(file), file))
    return out
