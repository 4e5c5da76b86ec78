"""All ordered pairs at once. (Placeholder: pairwise over decide until the bitset engine lands.)"""

from __future__ import annotations

from dataclasses import dataclass

from .decide import decide
from .model import Cluster, Pod
from .resolve import Endpoint, Options


@dataclass(frozen=True)
class PortQuery:
    port: int | str
    protocol: str = "TCP"


@dataclass(frozen=True)
class Matrix:
    pods: tuple[str, ...]
    queries: tuple[PortQuery, ...]
    allowed: tuple[tuple[tuple[bool, ...], ...], ...]  # [query][src][dst]

    def probes(self) -> list[dict]:
        out = []
        for q, grid in zip(self.queries, self.allowed):
            for i, src in enumerate(self.pods):
                for j, dst in enumerate(self.pods):
                    out.append({"src": src, "dst": dst, "port": q.port, "protocol": q.protocol,
                                "allowed": grid[i][j]})
        return out


def resolve_port(pod: Pod, q: PortQuery) -> int | None:
    if isinstance(q.port, int):
        return q.port
    found = [p.port for p in pod.named_port(q.port) if p.protocol == q.protocol]
    return found[0] if found else None


def compute(cluster: Cluster, queries: list[PortQuery], pods: list[Pod] | None = None,
            opts: Options = Options()) -> Matrix:
    pods = list(cluster.pods) if pods is None else pods
    eps = [Endpoint(pod=p) for p in pods]
    grids = []
    for q in queries:
        grid = []
        for s in eps:
            row = []
            for d in eps:
                port = resolve_port(d.pod, q)
                row.append(port is not None and decide(cluster, s, d, port, q.protocol, opts).allowed)
            grid.append(tuple(row))
        grids.append(tuple(grid))
    return Matrix(pods=tuple(p.key for p in pods), queries=tuple(queries), allowed=tuple(grids))
