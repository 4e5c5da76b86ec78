"""Connection sets between every ordered pair of pods at once, from the fast matrix.

Verdicts only change at the edges of the port ranges rules name and at the numbers named ports
resolve to, so per protocol the port space cuts into *atoms* inside which every verdict is the same.
One matrix table per atom, folded: pods with the same class in every atom's table share a row (or a
column), and each pair of such classes gets the set of atoms it allows, as one connection set. Cost:
one table per atom (tens), then class pairs; never pods x pods x rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netpol.evaluate.conns import MAX_PORT, ConnSet
from netpol.evaluate.connsets import ALL_CONNS
from netpol.evaluate.folding import joint_classes
from netpol.evaluate.matrix import Engine, PortQuery
from netpol.k8s.model import PROTOCOLS, Cluster, Options, Pod

ROWS = 256  # source classes per step: the (rows, destination classes, atoms) block stays small


def port_atoms(cluster: Cluster, pods: Sequence[Pod]) -> list[tuple[str, int, int]]:
    """(protocol, first, last) port ranges in which no rule and no named port can tell ports apart."""
    edges: dict[str, set[int]] = {p: {1, MAX_PORT + 1} for p in PROTOCOLS}
    for pol in cluster.policies:
        for rule in pol.ingress + pol.egress:
            for e in rule.ports:
                if isinstance(e.port, int):
                    edges[e.protocol] |= {e.port, (e.end_port or e.port) + 1}
    for cnp in cluster.cluster_policies:
        for crule in cnp.ingress + cnp.egress:
            for p in crule.ports or ():
                if p.name is None and p.protocol is not None:
                    edges[p.protocol] |= {p.lo, p.hi + 1}
    for pod in pods:  # named ports mean these numbers
        for cp in pod.ports:
            edges[cp.protocol] |= {cp.port, cp.port + 1}
    out = []
    for proto in sorted(PROTOCOLS):
        points = sorted(edges[proto])
        out += [(proto, lo, hi - 1) for lo, hi in zip(points, points[1:], strict=False)]
    return out


class AtomGrid:
    """conn(i, j) for pods at positions i and j of `pods` (i != j)."""

    def __init__(self, cluster: Cluster, pods: Sequence[Pod], opts: Options = Options()) -> None:
        engine = Engine(cluster, pods, opts)
        self.atoms = port_atoms(cluster, pods)
        tables = [engine.table(PortQuery(lo, proto)) for proto, lo, _ in self.atoms]
        self.src_class, s_reps = joint_classes(*(t.src_class for t in tables))
        self.dst_class, d_reps = joint_classes(*(t.dst_class for t in tables))
        self.conns: list[ConnSet] = []
        found: dict[bytes, int] = {}
        self.ids = np.empty((len(s_reps), len(d_reps)), np.int32)
        for lo in range(0, len(s_reps), ROWS):
            rows = s_reps[lo:lo + ROWS]
            block = np.stack([t.grid[t.src_class[rows]][:, t.dst_class[d_reps]] for t in tables], axis=-1)
            packed = np.ascontiguousarray(np.packbits(block, axis=-1).reshape(len(rows) * len(d_reps), -1))
            width = packed.shape[1]
            _, first, inverse = np.unique(packed.view(np.dtype((np.void, width))).ravel(), return_index=True,
                                          return_inverse=True)
            mapped = np.array([self._id(found, packed[k]) for k in first], np.int32)
            self.ids[lo:lo + ROWS] = mapped[inverse.ravel()].reshape(len(rows), len(d_reps))
        self.local = engine._local_pairs  # a host-network pod and a pod of its node: always allowed

    def _id(self, found: dict[bytes, int], packed: np.ndarray) -> int:
        key = packed.tobytes()
        hit = found.get(key)
        if hit is None:
            hit = found[key] = len(self.conns)
            bits = np.unpackbits(packed, count=len(self.atoms)).astype(bool).tolist()
            spans: dict[str, list[tuple[int, int]]] = {p: [] for p in sorted(PROTOCOLS)}
            for (proto, first, last), on in zip(self.atoms, bits, strict=True):
                if on:
                    run = spans[proto]
                    if run and run[-1][1] + 1 == first:
                        run[-1] = (run[-1][0], last)
                    else:
                        run.append((first, last))
            self.conns.append(ConnSet(tuple((p, tuple(r)) for p, r in spans.items())))
        return hit

    def row(self, i: int) -> np.ndarray:
        """Connection-set ids from position i to every position."""
        return self.ids[self.src_class[i]][self.dst_class]

    def conn(self, i: int, j: int) -> ConnSet:
        return ALL_CONNS if (i, j) in self.local else self.conns[int(self.ids[self.src_class[i], self.dst_class[j]])]

