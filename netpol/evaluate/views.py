"""Views of workload connectivity for big clusters: one workload in focus, or namespaces as wholes.

Both read `Connectivity` without copying it: a focused view streams one row and one column of the
grid; the namespace view folds each source row into per-namespace unions of the connection sets it
holds (class ids first, so a row costs numpy work plus one union per namespace and set).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from netpol.errors import QueryError
from netpol.evaluate.conns import ConnSet
from netpol.evaluate.connsets import conn_set
from netpol.evaluate.pairs import PairConns
from netpol.evaluate.workloads import Connectivity, External

OUTSIDE = "(outside)"
DIRECTIONS = ("ingress", "egress")


@dataclass(frozen=True)
class View:
    """What the renderers read: names, external ranges, and sorted (src, dst, set) lines."""

    workloads: tuple[str, ...]
    sources: tuple[External, ...]
    destinations: tuple[External, ...]
    rows: Connectivity | list[tuple[str, str, ConnSet]]
    focus: str | None = None
    direction: str | None = None

    def lines(self) -> Iterator[tuple[str, str, ConnSet]]:
        if isinstance(self.rows, list):
            yield from self.rows
            return
        for s, d, c in self.rows.lines():
            if self.focus is None or (self.direction != "ingress" and s == self.focus) or \
                    (self.direction != "egress" and d == self.focus):
                yield s, d, c


def resolve_focus(result: Connectivity, text: str) -> str:
    """`ns/name[Kind]` as listed, `ns/name`, or a name found in one namespace only."""
    names = result.workloads
    if text in names:
        return text
    hits = [n for n in names if n.rsplit("[", 1)[0] == text] or \
        [n for n in names if n.rsplit("[", 1)[0].split("/", 1)[1] == text]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise QueryError(f"--focus {text!r} is ambiguous: {', '.join(hits[:5])}; give ns/name[Kind]")
    raise QueryError(f"--focus {text!r}: no such workload (matrix --workloads lists them)")


def focused(result: Connectivity, name: str, direction: str | None) -> View:
    """Only the lines into (ingress) or out of (egress) one workload, or both."""
    if direction is not None and direction not in DIRECTIONS:
        raise QueryError(f"--focus-direction {direction!r}: expected ingress or egress")
    return View(result.workloads, result.sources, result.destinations, result, resolve_focus(result, name), direction)


def _namespace(name: str) -> str:
    return OUTSIDE if name.endswith("[External]") else name.split("/", 1)[0]


def by_namespace(result: Connectivity) -> View:
    """Namespace x namespace (and the outside): the union of what the workloads of one may open to the
    workloads of the other, a namespace to itself included (between different workloads)."""
    found: dict[tuple[str, str], set[ConnSet]] = {}
    conns = result.conns
    if isinstance(conns, PairConns) and conns.grid is not None:
        grid = conns.grid
        ns_of = [_namespace(n) for n in conns.names]
        names = sorted(set(ns_of))
        ns_id = np.array([names.index(n) for n in ns_of], np.int64)
        nonempty = np.array([not c.empty for c in grid.conns], bool)
        for i, src in enumerate(conns.names):
            ids = grid.row(i).astype(np.int64)
            keep = nonempty[ids]
            keep[i] = False  # a workload's own pair is not listed
            width = len(grid.conns)
            for key in np.unique(ns_id[keep] * width + ids[keep]).tolist():
                found.setdefault((ns_of[i], names[key // width]), set()).add(grid.conns[key % width])
            for j in (j for s, j in grid.local if s == i):
                found.setdefault((ns_of[i], ns_of[j]), set()).add(conns[(src, conns.names[j])])
        rest: Iterable[tuple[tuple[str, str], ConnSet]] = conns.external.items()
    else:
        rest = conns.items()
    for (s, d), c in rest:
        found.setdefault((_namespace(s), _namespace(d)), set()).add(c)
    rows = [(s, d, _union(sets)) for (s, d), sets in sorted(found.items())]
    spaces = tuple(sorted({_namespace(w) for w in result.workloads}))
    return View(spaces, (), (), rows)


def _union(sets: set[ConnSet]) -> ConnSet:
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in sets:
        for proto, ranges in c.ranges:
            spans.setdefault(proto, []).extend(ranges)
    return conn_set(spans)
