"""Load lint input: every readable object becomes a model next to its raw object; bad input becomes findings.

`parse.build_cluster` stops at the first error, as the other commands want. Lint wants all errors and the
rest of the input, so a failing build is retried object by object to find and drop the culprits.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from netpol.errors import InputError
from netpol.k8s.load import _files, parse_text, read_file, read_text, stdin
from netpol.k8s.model import Cluster, NetworkPolicy, Pod
from netpol.k8s.parse import CLUSTER_SCOPED, build_cluster
from netpol.k8s.source import RawObject
from netpol.lint.registry import Location


@dataclass
class Input:
    cluster: Cluster
    raws: list[RawObject]
    errors: list[tuple[Location, str]]
    duplicates: list[tuple[Location, str]] = field(default_factory=list)  # Services defined twice (a warning)

    def __post_init__(self) -> None:
        self._by_ident = {_ident(r): r for r in self.raws}

    def raw_of(self, kind: str, namespace: str, name: str) -> RawObject | None:
        return self._by_ident.get((kind, namespace if kind not in CLUSTER_SCOPED else "", name))

    def policy_raw(self, policy: NetworkPolicy) -> RawObject | None:
        return self.raw_of("NetworkPolicy", policy.namespace, policy.name)

    def pod_raw(self, pod: Pod) -> RawObject | None:
        return self.raw_of(pod.kind, pod.namespace, pod.name)


def _ident(raw: RawObject) -> tuple[str, str, str]:
    meta = raw.data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    ns = "" if raw.kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return raw.kind, ns, str(meta.get("name") or "")


def _error(exc: InputError, raw: RawObject | None = None) -> tuple[Location, str]:
    col = 0
    if raw is not None and exc.path:
        line, col = raw.position(exc.path)
        col = col if line == exc.line else 0
    what = f"{exc.field}: " if exc.field else ""
    return Location(exc.file or "<input>", exc.line or 0, col, None), what + exc.message


def _excluded(file: str, patterns: tuple[str, ...], root: str) -> bool:
    rel = os.path.relpath(file, root)
    return any(fnmatch.fnmatch(f, p) for p in patterns for f in (file, rel, os.path.basename(file)))


def read(paths: Iterable[str], exclude: tuple[str, ...] = (), root: str = ".") -> tuple[list[RawObject], list]:
    """All objects from the paths; unreadable files and paths become errors, the rest goes on."""
    raws: list[RawObject] = []
    errors: list[tuple[Location, str]] = []
    excluded = False
    paths = list(paths)
    seen: set[str] = set()  # a file named twice (in a folder and alone) is read once
    for path in paths:
        try:
            files = ["-"] if path == "-" else [os.path.normpath(f) for f in _files(path)]
        except InputError as exc:
            errors.append(_error(exc))
            continue
        for file in files:
            if file in seen:
                continue
            seen.add(file)
            if file != "-" and _excluded(file, exclude, root):
                excluded = True
                continue
            try:
                text = read_text(stdin(), "<stdin>") if file == "-" else read_file(file)
                raws.extend(parse_text(text, "<stdin>" if file == "-" else file))
            except InputError as exc:
                errors.append(_error(exc))
    if not raws and not errors and not excluded:  # excluded by configuration: nothing was asked
        errors.append((Location(", ".join(paths) or "<input>"), "no Kubernetes objects in the input "
                       "(files ending .yaml, .yml or .json)"))
    return raws, errors


def build(raws: list[RawObject]) -> tuple[Cluster, list[RawObject], list, list]:
    """The cluster of the valid objects, those objects, an error for each invalid one, and a finding for
    each Service defined twice (np-guard's corpus has one; the API server would keep one of them)."""
    try:
        return build_cluster(raws), raws, [], []
    except InputError:
        pass
    good: list[RawObject] = []
    errors: list[tuple[Location, str]] = []
    duplicates: list[tuple[Location, str]] = []
    for raw in raws:  # errors within one object
        try:
            build_cluster([raw])
            good.append(raw)
        except InputError as exc:
            errors.append(_error(exc, raw))
    while True:  # errors between objects (duplicates): drop the object the error points at
        try:
            return build_cluster(good), good, errors, duplicates
        except InputError as exc:
            culprit = next((r for r in good if r.source.file == exc.file
                            and r.line_of(("metadata", "name")) == exc.line), None)
            if culprit is None:
                raise
            good.remove(culprit)
            twice = culprit.kind == "Service" and exc.message.startswith("duplicate Service")
            (duplicates if twice else errors).append(_error(exc, culprit))


def load(paths: Iterable[str], exclude: tuple[str, ...] = (), root: str = ".") -> Input:
    raws, errors = read(paths, exclude, root)
    cluster, good, more, duplicates = build(raws)
    return Input(cluster, good, errors + more, duplicates)
