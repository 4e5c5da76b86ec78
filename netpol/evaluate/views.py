"""Views of workload connectivity for big clusters: one workload in focus, or namespaces as wholes.

Both read `Connectivity` without copying it: a focused view streams one row and one column of the
grid; the namespace view folds each source row into per-namespace unions of the connection sets it
holds (class ids first, so a row costs numpy work plus one union per namespace and set).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


def group_pairs(result: Connectivity, group_of: Callable[[str], str | None]
                ) -> dict[tuple[str, str], tuple[set[ConnSet], tuple[str, str, ConnSet]]]:
    """Per pair of groups (of endpoint names; None: in no group), the connection sets between their
    members, different members only, and one example pair. Grid rows are folded with numpy, never
    expanded pair by pair."""
    found: dict[tuple[str, str], tuple[set[ConnSet], tuple[str, str, ConnSet]]] = {}

    def add(g: tuple[str, str], conn: ConnSet, src: str, dst: str) -> None:
        found.setdefault(g, (set(), (src, dst, conn)))[0].add(conn)
    conns = result.conns
    if isinstance(conns, PairConns) and conns.grid is not None:
        grid, width = conns.grid, len(conns.grid.conns)
        group = [group_of(n) for n in conns.names]
        names = sorted({g for g in group if g is not None})
        gid = np.array([names.index(g) if g is not None else -1 for g in group], np.int64)
        nonempty = np.array([not c.empty for c in grid.conns], bool)
        for i, src in enumerate(conns.names):
            if group[i] is None:
                continue
            ids = grid.row(i).astype(np.int64)
            keep = nonempty[ids] & (gid >= 0)
            keep[i] = False  # a workload's own pair is not listed
            for key in np.unique(gid[keep] * width + ids[keep]).tolist():
                g = (group[i], names[key // width])
                if g in found:
                    found[g][0].add(grid.conns[key % width])  # type: ignore[index]
                    continue
                j = int(np.flatnonzero(keep & (gid == key // width) & (ids == key % width))[0])  # the example
                add(g, grid.conns[key % width], src, conns.names[j])  # type: ignore[arg-type]
            for j in (j for s, j in grid.local if s == i and group[j] is not None):
                add((group[i], group[j]), conns[(src, conns.names[j])], src, conns.names[j])  # type: ignore[arg-type]
        rest: Iterable[tuple[tuple[str, str], ConnSet]] = conns.external.items()
    else:
        rest = conns.items()
    for (s, d), c in rest:
        gs, gd = group_of(s), group_of(d)
        if gs is not None and gd is not None:
            add((gs, gd), c, s, d)
    return found


def by_namespace(result: Connectivity) -> View:
    """Namespace x namespace (and the outside): the union of what the workloads of one may open to the
    workloads of the other, a namespace to itself included (between different workloads)."""
    found = group_pairs(result, _namespace)
    rows = [(s, d, union(sets)) for (s, d), (sets, _) in sorted(found.items())]
    spaces = tuple(sorted({_namespace(w) for w in result.workloads}))
    return View(spaces, (), (), rows)


def union(sets: set[ConnSet]) -> ConnSet:
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in sets:
        for proto, ranges in c.ranges:
            spans.setdefault(proto, []).extend(ranges)
    return conn_set(spans)
