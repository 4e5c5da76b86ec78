"""Connection sets: which protocols and port ranges a pair may use, derived from `decide`.

Ports only change verdicts at the edges of the ranges the relevant rules name, so evaluating
one port per segment between those edges is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from netpol.evaluate.decide import SideVerdict, decide, same_pod, side
from netpol.evaluate.resolve import Endpoint, family, peer_matches, rule_port_spans
from netpol.k8s.model import EGRESS, INGRESS, PROTOCOLS, Cluster, Options
from netpol.spans import intersect, merge

MAX_PORT = 65535
Ranges = tuple[tuple[int, int], ...]
FULL: Ranges = ((1, MAX_PORT),)


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
    """Every protocol and port the pair may use: per side, the union of the port sets of the rules
    whose peers match, then both sides' intersection. Linear in the rules' ports (merged once);
    `decide` port by port is the reference it is tested against."""
    if same_pod(src, dst):
        return ConnSet(tuple((proto, FULL) for proto in sorted(PROTOCOLS)))
    if cluster.cluster_policies:
        return _by_segments(cluster, src, dst, opts)
    egress, ingress = (_side_ports(cluster, d, src, dst, opts) for d in (EGRESS, INGRESS))
    return ConnSet(tuple((proto, intersect(egress[proto], ingress[proto])) for proto in sorted(PROTOCOLS)))


def _by_segments(cluster: Cluster, src: Endpoint, dst: Endpoint, opts: Options) -> ConnSet:
    """With tiers: `decide` once per run of ports between two edges of any rule (NetworkPolicy or
    ClusterNetworkPolicy), where no verdict can change."""
    out = []
    for proto in sorted(PROTOCOLS):
        edges = sorted(set(port_edges(cluster, src, dst, proto)) | _tier_edges(cluster, dst, proto))
        spans = [(lo, hi - 1) for lo, hi in zip(edges, edges[1:], strict=False)
                 if decide(cluster, src, dst, lo, proto, opts).allowed]
        out.append((proto, merge(spans)))
    return ConnSet(tuple(out))


def _tier_edges(cluster: Cluster, dst: Endpoint, protocol: str) -> set[int]:
    edges: set[int] = set()
    for cnp in cluster.cluster_policies:
        for rule in cnp.ingress + cnp.egress:
            for p in rule.ports or ():
                if p.name is None and p.protocol == protocol:
                    edges |= {p.lo, p.hi + 1}
                elif p.name is not None and dst.pod is not None:
                    edges |= {e for cp in dst.pod.named_port(p.name) if cp.protocol == protocol
                              for e in (cp.port, cp.port + 1)}
    return edges


def _side_ports(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, opts: Options) -> dict[str, Ranges]:
    found = side(cluster, direction, src, dst)
    if isinstance(found, SideVerdict):  # not isolated, or always allowed: every port
        return {proto: FULL for proto in PROTOCOLS}
    peer_ep, version = (dst if direction == EGRESS else src), family(src, dst)
    spans: dict[str, list[tuple[int, int]]] = {proto: [] for proto in PROTOCOLS}
    for pol in found:
        for rule in pol.rules(direction):
            if rule.peers and not any(peer_matches(cluster, pol, p, peer_ep, version, opts) for p in rule.peers):
                continue
            for proto, found_spans in rule_port_spans(rule, dst).items():
                spans[proto] += found_spans
    return {proto: merge(s) for proto, s in spans.items()}
