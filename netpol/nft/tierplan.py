"""The ClusterNetworkPolicy tiers of a plan: per policy the local pods its subject selects and, per rule,
its action with peers and ports as NetworkPolicy rules have them (`RulePlan`), so the renderer builds
both alike. Peers as `evaluate/tiers.py` matches them: `namespaces`/`pods` the policed pods,
`networks` every address inside, `nodes` the InternalIP and ExternalIP of the matching Nodes,
`domainNames` nothing (not decidable offline)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from netpol.evaluate.tiers import node_addresses, subject_of
from netpol.k8s.model import DIRECTIONS, INGRESS, Cluster, CnpPeer, CnpRule, Direction, IPAddress, Pod
from netpol.nft.plan import (
    FAMILIES,
    NamedPort,
    PortRange,
    RulePlan,
    TierPlan,
    TierRule,
    _Ctx,
    _holders,
)
from netpol.spans import Span, Spans, contains, merge, network_span


def plan_tiers(ctx: _Ctx, cluster: Cluster, is_local: Callable[[Pod], bool]) -> tuple[TierPlan, ...]:
    """One TierPlan per ClusterNetworkPolicy, in the order they apply (tier, priority, name)."""
    out = []
    for cnp in cluster.cluster_policies:
        selected = [p for ns in ctx.index.by_ns for p in ctx.index.pods(None, ns)
                    if is_local(p) and subject_of(cluster, cnp, p)]
        rules = {d: tuple(TierRule(r.action, _rule(ctx, cluster, d, i, r, selected))
                          for i, r in enumerate(cnp.rules(d))) for d in DIRECTIONS}
        by_family: dict[int, set[IPAddress]] = {v: set() for v in FAMILIES}
        for p in selected:
            for a in p.addresses:
                by_family[a.version].add(a)
        out.append(TierPlan(cnp.key, cnp.tier, cnp.priority, {v: tuple(sorted(a)) for v, a in by_family.items()},
                            rules[INGRESS], rules[Direction.EGRESS]))
    return tuple(out)


def _peer_spans(ctx: _Ctx, cluster: Cluster, peer: CnpPeer) -> dict[int, list[Span]]:
    out: dict[int, list[Span]] = {v: [] for v in FAMILIES}
    if peer.namespaces is not None or peer.pods is not None:
        for ns in ctx.index.by_ns:
            labels = cluster.ns_labels(ns)
            if peer.namespaces is not None:
                pods: Iterable[Pod] = ctx.index.pods(None, ns) if peer.namespaces.matches(labels) else ()
            else:
                assert peer.pods is not None
                ns_sel = peer.pods.namespace_selector
                pods = ctx.index.pods(peer.pods.pod_selector, ns) if ns_sel is None or ns_sel.matches(labels) else ()
            for p in pods:
                for a in p.addresses:
                    out[a.version].append((int(a), int(a)))
    for net in peer.nets:
        out[net.version].append(network_span(net))
    for a in node_addresses(cluster, peer):
        out[a.version].append((int(a), int(a)))
    return out


def _rule(ctx: _Ctx, cluster: Cluster, d: Direction, index: int, rule: CnpRule, selected: list[Pod]) -> RulePlan:
    spans: dict[int, list[Span]] = {v: [] for v in FAMILIES}
    for peer in rule.peers:
        for v, found in _peer_spans(ctx, cluster, peer).items():
            spans[v] += found
    peers: dict[int, Spans] = {v: merge(s) for v, s in spans.items()}
    numeric = [p for p in rule.ports or () if p.name is None]
    ports = None  # with no named port either: every packet (ICMP too), as a rule without protocols
    if numeric:
        per: dict[str, list[Span]] = {}
        for p in numeric:
            per.setdefault(str(p.protocol), []).append((p.lo, p.hi))
        ports = tuple(PortRange(proto, lo, hi) for proto in sorted(per) for lo, hi in merge(per[proto]))
    names = [p.name for p in rule.ports or () if p.name is not None]
    named = None
    if names:  # resolved on the destination: ingress the selected pod, egress whichever pod holds the address
        targets: Iterable[Pod] = selected if d == INGRESS else _holders(ctx, peers)
        hits: dict[int, set[NamedPort]] = {v: set() for v in FAMILIES}
        for pod in targets:
            for cp in (cp for n in names for cp in pod.named_port(n)):
                for a in pod.addresses:
                    if d == INGRESS or contains(peers[a.version], int(a)):
                        hits[a.version].add(NamedPort(a, cp.protocol, cp.port))
        named = {v: frozenset(s) for v, s in hits.items()}
    blocks = tuple(sorted({v for peer in rule.peers for v in _address_families(peer)}))
    selectors = any(p.namespaces is not None or p.pods is not None for p in rule.peers)
    return RulePlan(d, index, peers, ports, named, blocks, selectors, ())


def _address_families(peer: CnpPeer) -> set[int]:
    """Families where the peer holds ranges (an interval set), not only pod addresses."""
    fams: set[int] = {n.version for n in peer.nets}
    if peer.nodes is not None:
        fams |= {4, 6}
    return fams
