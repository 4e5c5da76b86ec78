"""Connection sets: which protocols and port ranges a pair may use, derived from `decide`.

Ports only change verdicts at the edges of the ranges the relevant rules name, so evaluating
one port per segment between those edges is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from .decide import decide
from .model import PROTOCOLS, Cluster
from .resolve import Endpoint, Options

MAX_PORT = 65535
Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ConnSet:
    """Per protocol, sorted disjoint inclusive port ranges."""

    ranges: tuple[tuple[str, Ranges], ...] = ()

    @property
    def empty(self) -> bool:
        return not any(r for _, r in self.ranges)

    @property
    def everything(self) -> bool:
        full = ((1, MAX_PORT),)
        return dict(self.ranges) == {p: full for p in PROTOCOLS}

    def ranges_of(self, protocol: str) -> Ranges:
        return dict(self.ranges).get(protocol, ())

    def allows(self, protocol: str, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges_of(protocol))

    def __str__(self) -> str:
        if self.everything:
            return "All Connections"
        if self.empty:
            return "No Connections"
        parts = []
        for proto, ranges in self.ranges:
            if ranges:
                ports = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
                parts.append(f"{proto} {ports}")
        return ",".join(parts)


def port_edges(cluster: Cluster, src: Endpoint, dst: Endpoint, protocol: str) -> list[int]:
    """Ports where some relevant rule's port set starts or stops (with 1 and 65536 as the outer edges)."""
    edges = {1, MAX_PORT + 1}
    namespaces = {ep.pod.namespace for ep in (src, dst) if ep.pod is not None}
    for ns in namespaces:
        for pol in cluster.policies_in(ns):
            for rule in pol.ingress + pol.egress:
                for entry in rule.ports:
                    if entry.protocol != protocol or entry.port is None:
                        continue
                    if isinstance(entry.port, int):
                        edges |= {entry.port, (entry.end_port or entry.port) + 1}
                    elif dst.pod is not None:
                        for cp in dst.pod.named_port(entry.port):
                            edges |= {cp.port, cp.port + 1}
    return sorted(edges)


def connections(cluster: Cluster, src: Endpoint, dst: Endpoint, opts: Options = Options()) -> ConnSet:
    out = []
    for proto in sorted(PROTOCOLS):
        edges = port_edges(cluster, src, dst, proto)
        ranges: list[tuple[int, int]] = []
        for lo, nxt in zip(edges, edges[1:]):
            if decide(cluster, src, dst, lo, proto, opts).allowed:
                if ranges and ranges[-1][1] == lo - 1:
                    ranges[-1] = (ranges[-1][0], nxt - 1)
                else:
                    ranges.append((lo, nxt - 1))
        out.append((proto, tuple(ranges)))
    return ConnSet(tuple(out))
