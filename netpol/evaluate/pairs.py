"""The allowed connection sets of every pair of one result, without holding them all: workload
pairs read from the atom grid when asked, and two results compared class by class."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from netpol.evaluate.atoms import AtomGrid
from netpol.evaluate.conns import ConnSet
from netpol.evaluate.connsets import NO_CONNS


class PairConns(Mapping[tuple[str, str], ConnSet]):
    """The allowed connection set of every pair with a non-empty one: workload pairs read from the
    atom grid when asked (never all held at once), pairs with external ranges held as computed."""

    def __init__(self, names: Sequence[str], grid: AtomGrid | None, external: dict[tuple[str, str], ConnSet]) -> None:
        self.names, self.grid = list(names), grid
        assert self.names == sorted(self.names), "workload names come sorted"
        self.position = {n: i for i, n in enumerate(self.names)}
        self.external = external  # non-empty sets only
        self._nonempty = np.array([not c.empty for c in grid.conns], bool) if grid is not None else None

    def __getitem__(self, key: tuple[str, str]) -> ConnSet:
        found = self.external.get(key)
        if found is not None:
            return found
        i, j = self.position.get(key[0]), self.position.get(key[1])
        if i is None or j is None or i == j or self.grid is None:
            raise KeyError(key)
        conn = self.grid.conn(i, j)
        if conn.empty:
            raise KeyError(key)
        return conn

    def _targets(self, i: int) -> list[int]:
        return [j for j, _ in self._row(i)]

    def _row(self, i: int) -> list[tuple[int, ConnSet]]:
        """Positions i reaches with their sets, in position order (name order: names are sorted)."""
        assert self.grid is not None and self._nonempty is not None
        ids = self.grid.row(i)
        js = np.flatnonzero(self._nonempty[ids])
        conns = self.grid.conns
        out = [(j, conns[k]) for j, k in zip(js.tolist(), ids[js].tolist(), strict=True) if j != i]
        local = [j for s, j in self.grid.local if s == i]
        if local:  # a host-network pod and a pod of its node: always allowed
            mine = dict(out) | {j: self.grid.conn(i, j) for j in local}
            out = sorted(mine.items())
        return out

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return (key for key, _ in self.items_sorted())

    def __len__(self) -> int:
        return len(self.external) + sum(len(self._targets(i)) for i in range(len(self.names) if self.grid else 0))

    def items_sorted(self) -> Iterator[tuple[tuple[str, str], ConnSet]]:
        """Every pair and its set, sorted by source then destination name, one source at a time."""
        by_src: dict[str, list[tuple[str, ConnSet]]] = {}
        for (s, d), c in self.external.items():
            by_src.setdefault(s, []).append((d, c))
        for src in sorted(set(self.names) | set(by_src)):
            i = self.position.get(src)
            dsts = [(self.names[j], c) for j, c in self._row(i)] if i is not None and self.grid else []
            dsts += by_src.get(src, ())
            dsts.sort(key=lambda x: x[0])  # two sorted runs: linear
            for dst, conn in dsts:
                yield (src, dst), conn


def differences(old: Mapping[tuple[str, str], ConnSet], new: Mapping[tuple[str, str], ConnSet]
                ) -> Iterator[tuple[tuple[str, str], ConnSet, ConnSet]]:
    """Every pair whose set differs, with both sets. Two PairConns are compared class by class and
    row by row (numpy), never pair by pair in Python: what costs is what changed."""
    if not (isinstance(old, PairConns) and isinstance(new, PairConns) and old.grid and new.grid):
        for key in set(old) | set(new):
            before, after = old.get(key, NO_CONNS), new.get(key, NO_CONNS)
            if before != after:
                yield key, before, after
        return
    for key in old.external.keys() | new.external.keys():
        before, after = old.external.get(key, NO_CONNS), new.external.get(key, NO_CONNS)
        if before != after:
            yield key, before, after
    common = sorted(set(old.names) & set(new.names))
    oi = np.array([old.position[n] for n in common], np.intp)
    ni = np.array([new.position[n] for n in common], np.intp)
    ids: dict[ConnSet, int] = {}
    old_gid = np.array([ids.setdefault(c, len(ids)) for c in old.grid.conns], np.int64)
    new_gid = np.array([ids.setdefault(c, len(ids)) for c in new.grid.conns], np.int64)
    local = {(old.names[i], old.names[j]) for i, j in old.grid.local} | {
        (new.names[i], new.names[j]) for i, j in new.grid.local}
    for r, name in enumerate(common):
        before = old_gid[old.grid.row(int(oi[r]))[oi]]
        after = new_gid[new.grid.row(int(ni[r]))[ni]]
        for c in np.flatnonzero(before != after).tolist():
            if c != r and (name, common[c]) not in local:
                yield (name, common[c]), old.grid.conn(int(oi[r]), int(oi[c])), new.grid.conn(int(ni[r]), int(ni[c]))
    for key in local:  # host-network pods and pods of their node: read one by one
        if key[0] in old.position and key[1] in old.position and key[0] in new.position and key[1] in new.position:
            before, after = old.get(key, NO_CONNS), new.get(key, NO_CONNS)
            if before != after:
                yield key, before, after
    for mine, other, gone in ((old, new, True), (new, old, False)):  # workloads on one side only
        for name in sorted(set(mine.names) - set(other.names)):
            i = mine.position[name]
            for j in mine._targets(i):
                key = (name, mine.names[j])
                yield (key, mine[key], NO_CONNS) if gone else (key, NO_CONNS, mine[key])
            for src in mine.names:
                key = (src, name)
                if src != name and src in other.position and key in mine:
                    yield (key, mine[key], NO_CONNS) if gone else (key, NO_CONNS, mine[key])
