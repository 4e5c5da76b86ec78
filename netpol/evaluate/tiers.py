"""ClusterNetworkPolicy tiers: which Admin or Baseline rule, if any, decides one side of a connection.

Per side (egress at the source pod, ingress at the destination pod), the policies of a tier whose
subject selects the pod are walked by priority (lower first; ties by name, as kube-network-policies and
Calico break them), their rules of that direction in written order; the first rule whose peers and
protocols match decides: Accept or Deny is final, Pass leaves the tier. Peers never match host-network
pods (except through `networks` and `nodes`, which match addresses); `domainNames` cannot be decided
offline and never matches here (the verdict says so).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import (
    EGRESS,
    Action,
    Cluster,
    ClusterNetworkPolicy,
    CnpPeer,
    CnpRule,
    IPAddress,
    IPBlock,
    Pod,
    Tier,
)


@dataclass(frozen=True)
class Hit:
    """The rule that decided a side in a tier."""

    policy: ClusterNetworkPolicy
    index: int
    rule: CnpRule

    @property
    def action(self) -> Action:
        return self.rule.action

    def describe(self, direction: str) -> str:
        name = f" {self.rule.name!r}" if self.rule.name else ""
        verb = {Action.ACCEPT: "accepts", Action.DENY: "denies", Action.PASS: "passes"}[self.action]
        return (f"{self.policy.tier} {self.policy.key} (priority {self.policy.priority}) {direction} rule "
                f"{self.index}{name} {verb}")


def _selects(cluster: Cluster, sel: CnpPeer, pod: Pod) -> bool:
    """A subject or pod-kind peer: `namespaces` or `pods` over a policed pod."""
    labels = cluster.ns_labels(pod.namespace)
    if sel.namespaces is not None:
        return sel.namespaces.matches(labels)
    if sel.pods is not None:
        ns_ok = sel.pods.namespace_selector is None or sel.pods.namespace_selector.matches(labels)
        return ns_ok and sel.pods.pod_selector.matches(pod.labels)
    return False


def subject_of(cluster: Cluster, cnp: ClusterNetworkPolicy, pod: Pod) -> bool:
    return not pod.host_network and _selects(cluster, cnp.subject, pod)


def node_addresses(cluster: Cluster, peer: CnpPeer) -> list[IPAddress]:
    """What a `nodes` peer matches: the InternalIP and ExternalIP addresses of the Nodes it selects."""
    if peer.nodes is None:
        return []
    return [ipaddress.ip_address(a) for n in cluster.nodes if peer.nodes.matches(n.labels)
            for k, a in n.addresses if k in ("InternalIP", "ExternalIP")]


def peer_blocks(cluster: Cluster, peer: CnpPeer) -> list[IPBlock]:
    """The addresses a `networks` or `nodes` peer matches, as blocks."""
    out = [IPBlock.model_construct(cidr=str(n), except_=()) for n in peer.nets]
    bits = {4: 32, 6: 128}
    out += [IPBlock.model_construct(cidr=f"{a}/{bits[a.version]}", except_=()) for a in node_addresses(cluster, peer)]
    return out


def tier_blocks(cluster: Cluster) -> Iterator[IPBlock]:
    """Every address range a tier rule matches: the engine cuts address classes at their edges too."""
    for cnp in cluster.cluster_policies:
        for rule in cnp.ingress + cnp.egress:
            for peer in rule.peers:
                yield from peer_blocks(cluster, peer)


def peer_matches(cluster: Cluster, peer: CnpPeer, ep: Endpoint, version: int | None) -> bool:
    if peer.namespaces is not None or peer.pods is not None:
        pod = ep.policed_pod
        return pod is not None and _selects(cluster, peer, pod)
    address = ep.address(version)
    if address is None:
        return False
    if peer.networks is not None:
        return any(address in net for net in peer.nets if net.version == address.version)
    if peer.nodes is not None:
        return address in node_addresses(cluster, peer)
    return False  # domainNames: what a name resolves to is not known offline


def ports_match(rule: CnpRule, dst: Endpoint, port: int, protocol: str) -> bool:
    if rule.ports is None:
        return True
    for p in rule.ports:
        if p.name is not None:
            pod = dst.pod
            if pod is not None and any(cp.port == port and cp.protocol == protocol for cp in pod.named_port(p.name)):
                return True
        elif p.protocol == protocol and p.lo <= port <= p.hi:
            return True
    return False


def walk(cluster: Cluster, tier: Tier, direction: str, own: Pod, peer_ep: Endpoint, dst: Endpoint, port: int,
         protocol: str, version: int | None) -> tuple[Hit | None, tuple[str, ...]]:
    """The first matching rule of the tier for this side (None: no rule matched), and notes on rules
    that might have matched but cannot be decided offline (domainNames)."""
    notes: list[str] = []
    for cnp in cluster.cluster_policies:
        if cnp.tier != tier or not subject_of(cluster, cnp, own):
            continue
        for i, rule in enumerate(cnp.rules(direction)):
            if not ports_match(rule, dst, port, protocol):
                continue
            if any(peer_matches(cluster, peer, peer_ep, version) for peer in rule.peers):
                return Hit(cnp, i, rule), tuple(notes)
            names = [n for peer in rule.peers for n in peer.domain_names or ()]
            if names and direction == EGRESS and peer_ep.pod is None:
                notes.append(f"unverified: {Hit(cnp, i, rule).describe(direction)} if {peer_ep.label} is an address "
                             f"{', '.join(names)} resolves to (not decidable offline; taken as no match)")
    return None, tuple(notes)
