"""Workload-level connectivity: what CI knows before deploying, when pods have no addresses yet.

Pods are grouped into workloads by their controller, as np-guard groups them, and the external
address space is cut into ranges at every ipBlock boundary (sources by ingress rules, destinations
by egress rules). Within one range every address is in the same ipBlocks, and workloads whose pods
look alike to every selector, named port and ipBlock are interchangeable, so `connections` on one
representative per class is exact and the big examples stay fast.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from netpol.escape import plain
from netpol.evaluate.atoms import AtomGrid
from netpol.evaluate.conns import ConnSet, connections
from netpol.evaluate.connsets import ALL_CONNS, NO_CONNS, canonical, conn_minus, conn_set, json_row, parse_conns
from netpol.evaluate.pairs import PairConns
from netpol.evaluate.resolve import Endpoint, selects
from netpol.evaluate.tiers import peer_blocks, subject_of, tier_blocks
from netpol.k8s.model import EGRESS, INGRESS, Cluster, IPBlock, LabelSelector, Options, Pod

_BITS = {4: 32, 6: 128}


# ---- external address ranges ----

@dataclass(frozen=True, order=True)
class External:
    """A contiguous range of external addresses, inclusive."""

    version: int
    first: int
    last: int

    @cached_property
    def name(self) -> str:
        return f"{self.address}-{_ip(self.version, self.last)}[External]"

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _ip(self.version, self.first)

    @classmethod
    def parse(cls, name: str) -> External:
        """`a.b.c.d-e.f.g.h[External]` back into a range."""
        first, _, last = name.removesuffix("[External]").partition("-")
        lo, hi = ipaddress.ip_address(first), ipaddress.ip_address(last)
        return cls(lo.version, int(lo), int(hi))


def _ip(version: int, value: int):
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def block_intervals(block: IPBlock) -> list[tuple[int, int]]:
    """The block's addresses as half-open integer intervals, `except` ranges cut out."""
    lo = int(block.network.network_address)
    hi = lo + block.network.num_addresses
    out, cur = [], lo
    for e in sorted(block.excepts, key=lambda n: int(n.network_address)):
        a = int(e.network_address)
        if a > cur:
            out.append((cur, a))
        cur = max(cur, a + e.num_addresses)
    if cur < hi:
        out.append((cur, hi))
    return out


def _rule_blocks(cluster: Cluster, direction: str) -> dict[tuple, list[IPBlock]]:
    """The ipBlocks of each rule of one direction, by (policy index, rule index)."""
    out: dict[tuple, list[IPBlock]] = {}
    for i, pol in enumerate(cluster.policies):
        for j, rule in enumerate(pol.rules(direction)):
            blocks = [p.ip_block for p in rule.peers if p.ip_block is not None]
            if blocks:
                out[(i, j)] = blocks
    for i, cnp in enumerate(cluster.cluster_policies):  # egress networks and node addresses cut ranges too
        for j, crule in enumerate(cnp.rules(direction)):
            blocks = [b for peer in crule.peers for b in peer_blocks(cluster, peer)]
            if blocks:
                out[("cnp", i, j)] = blocks
    return out


def _edges(rules: dict[Any, list[IPBlock]], cuts: Iterable[External], v6: bool) -> dict[int, list[int]]:
    """Per address family, every point where some block or cut starts or stops."""
    edges: dict[int, set[int]] = {4: {0, 1 << 32}, **({6: {0, 1 << 128}} if v6 else {})}
    bounds: list[tuple[int, tuple[int, int]]] = [
        (b.network.version, iv) for blocks in rules.values() for b in blocks for iv in block_intervals(b)]
    bounds += [(c.version, (c.first, c.last + 1)) for c in cuts]
    for version, pair in bounds:
        edges.setdefault(version, {0, 1 << _BITS[version]}).update(pair)
    return {v: sorted(points) for v, points in sorted(edges.items())}


class _Atoms:
    """One direction's external ranges, and which rules' ipBlocks hold each range."""

    def __init__(self, rules: dict[Any, list[IPBlock]], cuts: Iterable[External], v6: bool) -> None:
        self.ranges: list[External] = []
        self._starts: dict[int, list[int]] = {}
        self._offset: dict[int, int] = {}
        for version, points in _edges(rules, cuts, v6).items():
            self._starts[version], self._offset[version] = points[:-1], len(self.ranges)
            self.ranges += [External(version, lo, hi - 1) for lo, hi in zip(points, points[1:], strict=False)]
        held: list[set] = [set() for _ in self.ranges]
        for key, blocks in rules.items():
            for b in blocks:
                if b.network.version not in self._starts:
                    continue  # no address of its family is cut (its excepts leave nothing)
                starts, offset = self._starts[b.network.version], self._offset[b.network.version]
                for lo, hi in block_intervals(b):
                    for i in range(bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)):
                        held[offset + i].add(key)
        self.signature = [(r.version, frozenset(h)) for r, h in zip(self.ranges, held, strict=False)]

    def held_by(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> frozenset:
        """The keys whose blocks hold this address."""
        if ip.version not in self._starts:
            return frozenset()
        i = bisect.bisect_right(self._starts[ip.version], int(ip)) - 1
        return self.signature[self._offset[ip.version] + i][1]


# ---- workloads ----

@dataclass(frozen=True)
class Workload:
    name: str  # `ns/name[Kind]`, as np-guard prints it
    namespace: str
    pods: tuple[Pod, ...]

    @property
    def rep(self) -> Pod:
        return self.pods[0]


def workload_name(pod: Pod) -> str:
    """The workload a pod belongs to: its controller (np-guard does not follow ReplicaSet to Deployment)."""
    if pod.kind != "Pod":
        return f"{pod.namespace}/{pod.name}[{pod.kind}]"
    if pod.owner is not None and pod.owner[0] != "Node" and pod.owner[1]:
        return f"{pod.namespace}/{pod.owner[1]}[{pod.owner[0] or 'Pod'}]"
    return f"{pod.namespace}/{pod.name}[Pod]"


@dataclass
class _Classes:
    """What the policies can see of a pod; pods with equal keys are interchangeable for `decide`."""

    cluster: Cluster
    opts: Options = Options()
    selectors: list[LabelSelector] = field(default_factory=list)
    blocks: list[IPBlock] = field(default_factory=list)

    def __post_init__(self) -> None:
        sels: dict[LabelSelector, None] = {}
        blocks: dict[IPBlock, None] = {}
        for pol in self.cluster.policies:
            sels[pol.pod_selector] = None
            for rule in pol.ingress + pol.egress:
                for peer in rule.peers:
                    if peer.pod_selector is not None:
                        sels[peer.pod_selector] = None
                    if peer.ip_block is not None:
                        blocks[peer.ip_block] = None
        for cnp in self.cluster.cluster_policies:  # what the tiers can tell apart
            for sel in (cnp.subject, *(p for r in cnp.ingress + cnp.egress for p in r.peers)):
                if sel.pods is not None:
                    sels[sel.pods.pod_selector] = None
        self.selectors, self.blocks = list(sels), list(blocks)
        # networks and nodes peers match pod addresses whatever --ipblock-pods says
        self.tier_blocks = list(dict.fromkeys(tier_blocks(self.cluster)))
        self._by_block = _Atoms({i: [b] for i, b in enumerate(self.blocks)}, (), False)
        self._by_tier_block = _Atoms({i: [b] for i, b in enumerate(self.tier_blocks)}, (), False)
        self._keys: dict[int, tuple] = {}

    def key(self, pod: Pod) -> tuple:
        found = self._keys.get(id(pod))
        if found is None:
            seen = self.opts.ipblock_pods or pod.host_network  # else ipBlocks never look at its address
            found = (pod.namespace, pod.host_network,
                     tuple(s.matches(pod.labels) for s in self.selectors),
                     tuple(sorted((p.name, p.port, p.protocol) for p in pod.ports if p.name)),
                     tuple((ip.version, self._by_block.held_by(ip) if seen else frozenset(),
                            self._by_tier_block.held_by(ip))
                           for ip in pod.addresses))
            self._keys[id(pod)] = found
        return found


def _group(cluster: Cluster, classes: _Classes) -> list[Workload]:
    groups: dict[str, list[Pod]] = {}
    for pod in cluster.pods:
        groups.setdefault(workload_name(pod), []).append(pod)
    out = []
    for name, pods in groups.items():
        if len({classes.key(p) for p in pods}) == 1:
            out.append(Workload(name, pods[0].namespace, tuple(pods)))
        else:  # the policies tell these pods apart: each is its own workload
            out += [Workload(f"{p.namespace}/{p.name}[Pod]", p.namespace, (p,)) for p in pods]
    return sorted(out, key=lambda w: w.name)


def workloads(cluster: Cluster, opts: Options = Options()) -> list[Workload]:
    return _group(cluster, _Classes(cluster, opts))


# ---- connectivity ----

@dataclass(frozen=True)
class Connectivity:
    workloads: tuple[str, ...]
    sources: tuple[External, ...]  # external ranges as sources (cut by ingress ipBlocks)
    destinations: tuple[External, ...]  # external ranges as destinations (cut by egress ipBlocks)
    conns: Mapping[tuple[str, str], ConnSet]  # every allowed pair; no self pairs, no empty sets

    def get(self, src: str, dst: str) -> ConnSet:
        return self.conns.get((src, dst), NO_CONNS)

    def lines(self) -> Iterator[tuple[str, str, ConnSet]]:
        """Every allowed pair, sorted, streamed."""
        if isinstance(self.conns, PairConns):
            return ((s, d, c) for (s, d), c in self.conns.items_sorted())
        return ((s, d, self.conns[(s, d)]) for s, d in sorted(self.conns))

    def txt(self) -> str:
        return "\n".join(f"{plain(s)} => {plain(d)} : {c}" for s, d, c in self.lines())

    def to_json(self) -> dict:
        return {"workloads": list(self.workloads),
                "external": {"sources": [e.name for e in self.sources],
                             "destinations": [e.name for e in self.destinations]},
                "connections": [json_row(s, d, c) for s, d, c in self.lines()]}


def _side_key(cluster: Cluster, pod: Pod, direction: str, index: Mapping[str, Any]) -> tuple:
    """What decides a pod's connections with an external address: only the pod's own side is policed,
    by the policies that select it for that direction (their ipBlocks, networks and nodes see the
    address: the last item, as `_rule_blocks` keys their rules) and, for ingress, the numbers its
    named ports mean."""
    if pod.host_network:
        return ("host", frozenset())
    policies = tuple(p.key for p in cluster.policies_in(pod.namespace) if p.affects(direction) and selects(p, pod))
    tiers = tuple(c.key for c in cluster.cluster_policies if subject_of(cluster, c, pod))
    ports = tuple(sorted((p.name, p.port, p.protocol) for p in pod.ports if p.name)) if direction == INGRESS else ()
    seen = frozenset((index[k],) if isinstance(index[k], int) else index[k] for k in policies + tiers)
    return policies, tiers, ports, seen


def _has_v6(cluster: Cluster, classes: _Classes) -> bool:
    """IPv6 external space is shown only for clusters that use IPv6 (np-guard models IPv4 only)."""
    return any(b.network.version == 6 for b in classes.blocks + classes.tier_blocks) or any(
        ip.version == 6 for p in cluster.pods for ip in p.addresses)


def connectivity(cluster: Cluster, opts: Options = Options(), namespaces: Iterable[str] | None = None,
                 src_cuts: Iterable[External] = (), dst_cuts: Iterable[External] = ()) -> Connectivity:
    """Allowed connections between every ordered pair of workloads, and with every external range.

    Workload pairs come from the atom grid (all pairs at once); pairs with an external range from
    `connections`, once per kind of pod: only the pod's own side decides them (an external address
    is not policed), so pods isolated by the same policies share the answer.
    `src_cuts`/`dst_cuts` add range boundaries (to compare with another result on common ranges).
    """
    classes = _Classes(cluster, opts)
    wls = _group(cluster, classes)
    if namespaces is not None:
        wanted = set(namespaces)
        wls = [w for w in wls if w.namespace in wanted]
    v6 = _has_v6(cluster, classes)
    src_atoms = _Atoms(_rule_blocks(cluster, INGRESS), src_cuts, v6)
    dst_atoms = _Atoms(_rule_blocks(cluster, EGRESS), dst_cuts, v6)
    cache: dict[tuple, ConnSet | None] = {}

    def conn(key: tuple, src: Endpoint, dst: Endpoint) -> ConnSet | None:
        """The pair's set; None when empty."""
        if key not in cache:
            found = canonical(connections(cluster, src, dst, opts))
            cache[key] = None if found.empty else found
        return cache[key]

    def held(side: tuple, sig: tuple) -> tuple:
        """The part of a range's signature the pod's own policies can see."""
        key = (side, sig)
        found = narrowed.get(key)
        if found is None:
            parts = by_policy.get(sig)
            if parts is None:
                parts = by_policy[sig] = {}
                for k in sig[1]:
                    parts.setdefault(k[:2] if k[0] == "cnp" else k[:1], set()).add(k)
            found = narrowed[key] = (sig[0], frozenset(k for p in side[-1] for k in parts.get(p, ())))
        return found

    by_policy: dict[tuple, dict[tuple, set]] = {}
    narrowed: dict[tuple, tuple] = {}
    external: dict[tuple[str, str], ConnSet] = {}
    dst_ends = [(ext.name, Endpoint(ip=ext.address), sig) for ext, sig in zip(dst_atoms.ranges, dst_atoms.signature,
                                                                               strict=True)]
    src_ends = [(ext.name, Endpoint(ip=ext.address), sig) for ext, sig in zip(src_atoms.ranges, src_atoms.signature,
                                                                               strict=True)]
    index = {p.key: i for i, p in enumerate(cluster.policies)} | {
        c.key: ("cnp", i) for i, c in enumerate(cluster.cluster_policies)}
    for a in wls:
        ea = Endpoint(pod=a.rep)
        for direction, ends in ((EGRESS, dst_ends), (INGRESS, src_ends)):
            side = _side_key(cluster, a.rep, direction, index)
            for name, end, sig in ends:
                found = conn((side, held(side, sig)), ea, end) if direction == EGRESS else \
                    conn((held(side, sig), side), end, ea)
                if found is not None:
                    external[(a.name, name) if direction == EGRESS else (name, a.name)] = found
    grid = AtomGrid(cluster, [w.rep for w in wls], opts) if wls else None
    return Connectivity(workloads=tuple(w.name for w in wls), sources=tuple(src_atoms.ranges),
                        destinations=tuple(dst_atoms.ranges),
                        conns=PairConns([w.name for w in wls], grid, external))


def external_ranges(cluster: Cluster) -> tuple[list[External], list[External]]:
    """The external ranges a cluster's policies cut: (as sources, as destinations)."""
    v6 = _has_v6(cluster, _Classes(cluster))
    return (_Atoms(_rule_blocks(cluster, INGRESS), (), v6).ranges,
            _Atoms(_rule_blocks(cluster, EGRESS), (), v6).ranges)


def pair_connections(cluster: Cluster, pods: Iterable[Pod], opts: Options = Options()
                     ) -> Iterator[tuple[Pod, Pod, ConnSet]]:
    """Every ordered pair of pods (a pod with itself too) and its allowed connection set, streamed.
    Pods the policies cannot tell apart share one computation (`_Classes`); the own node matters
    where a host-network pod is involved."""
    classes = _Classes(cluster, opts)
    pods = list(pods)
    cache: dict[tuple, ConnSet] = {}
    for s in pods:
        for d in pods:
            if s is d and s.kind == "Pod":
                yield s, d, ALL_CONNS  # a pod's own cell: always allowed
                continue
            nodes = (s.node_name, d.node_name) if s.host_network or d.host_network else None
            key = (classes.key(s), classes.key(d), nodes, s is d)
            found = cache.get(key)
            if found is None:
                found = cache[key] = canonical(connections(cluster, Endpoint(pod=s), Endpoint(pod=d), opts))
            yield s, d, found


__all__ = ["ALL_CONNS", "NO_CONNS", "canonical", "conn_minus", "conn_set", "parse_conns"]  # their home: connsets
