"""The reference evaluator: one connection, one verdict, with the policy and rule that decided it
(the words of each reason come from `explain`).

It follows the spec text one-to-one and favours clarity over speed; `matrix` is the fast path and
must agree with it on every pair.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from netpol.evaluate import explain, tiers
from netpol.evaluate.resolve import Endpoint, family, peer_matches, rule_ports_match, selects
from netpol.k8s.model import EGRESS, INGRESS, Action, Cluster, NetworkPolicy, Options, Pod, Rule, Tier


class RuleRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    policy: str
    rule: int


class DecidedBy(BaseModel):
    """The ClusterNetworkPolicy rule that decided a side."""

    model_config = ConfigDict(frozen=True)
    kind: str = "ClusterNetworkPolicy"
    policy: str
    rule: int
    rule_name: str | None = None
    action: str


class SideVerdict(BaseModel):
    """One side's answer; `reasons` one line per isolating policy, `reason` their contract form.
    `tier` (with ClusterNetworkPolicies only): Admin, NetworkPolicy, Baseline or default."""

    model_config = ConfigDict(frozen=True)
    isolated: bool
    allowed: bool
    isolated_by: tuple[str, ...] = ()
    allowed_by: tuple[RuleRef, ...] = ()
    reasons: tuple[str, ...]
    tier: str | None = None
    decided_by: DecidedBy | None = None
    # per reason of a denying NetworkPolicy side: (the policy's line, one line per rule that missed)
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def reason(self) -> str:
        return " | ".join(self.reasons)


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    allowed: bool
    src: str
    dst: str
    port: int
    protocol: str
    egress: SideVerdict
    ingress: SideVerdict

    def contract(self) -> dict:
        """The JSON shape DESIGN.md fixes for `netpol check -o json`."""
        def side(d: SideVerdict) -> dict:
            out = {"isolated": d.isolated, "isolated_by": list(d.isolated_by),
                   "allowed_by": [r.model_dump() for r in d.allowed_by], "reason": d.reason}
            if d.tier is not None:
                out |= {"tier": d.tier, "decided_by": d.decided_by.model_dump() if d.decided_by else None}
            return out
        return {"allowed": self.allowed, "src": self.src, "dst": self.dst, "port": self.port,
                "protocol": self.protocol, "egress": side(self.egress), "ingress": side(self.ingress)}


def _rule_miss(cluster: Cluster, policy: NetworkPolicy, rule: Rule, direction: str, peer_ep: Endpoint,
               dst: Endpoint, port: int, protocol: str, version: int | None, opts: Options) -> str | None:
    """Why this rule does not allow the connection, or None if it does."""
    ports_ok = rule_ports_match(rule, dst, port, protocol)
    peers_ok = not rule.peers or any(peer_matches(cluster, policy, p, peer_ep, version, opts) for p in rule.peers)
    if ports_ok and peers_ok:
        return None
    return explain.rule_miss(rule, direction, peer_ep, port, protocol, version, opts, peers_ok, ports_ok)


def side(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint) -> SideVerdict | list[NetworkPolicy]:
    """The port-independent part of a side: the verdict when the side allows every connection
    regardless of rules, else the policies that isolate it (in cluster order)."""
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    pod = own.policed_pod
    if pod is None:
        what = "an external address" if own.pod is None else "a host-network pod"
        return SideVerdict(isolated=False, allowed=True, reasons=(f"{own.label} is {what}; not policed",))
    isolating = [p for p in cluster.policies_in(pod.namespace) if p.affects(direction) and selects(p, pod)]
    if not isolating:
        return SideVerdict(isolated=False, allowed=True, reasons=(f"no policy selects {own.label} for {direction}",))
    if _own_node(pod, peer_ep):
        return SideVerdict(isolated=True, allowed=True, isolated_by=tuple(p.key for p in isolating),
                           reasons=(f"{peer_ep.label} is a host-network pod on {own.label}'s node {pod.node_name}: "
                                    "traffic to and from a pod's own node is always allowed",))
    return isolating


def _own_node(pod: Pod, peer: Endpoint) -> bool:
    """The peer is a host-network pod on the pod's own node."""
    other = peer.pod
    return bool(pod.node_name) and other is not None and other.host_network and other.node_name == pod.node_name


def same_pod(src: Endpoint, dst: Endpoint) -> bool:
    """Only a pod talks to itself: a workload's pair is replica to replica, which policies decide."""
    return src.pod is not None and dst.pod is not None and src.pod.kind == "Pod" and src.pod.key == dst.pod.key


def decide_direction(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str,
                     opts: Options = Options()) -> SideVerdict:
    """Does the policed end (src for egress, dst for ingress) let this connection through?"""
    if cluster.cluster_policies:
        return _tiered(cluster, direction, src, dst, port, protocol, opts)
    return _network_policy(cluster, direction, src, dst, port, protocol, opts)


def _tiered(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str,
            opts: Options) -> SideVerdict:
    """Admin tier, then NetworkPolicy (final when it isolates the pod for this direction), then
    Baseline, then allow."""
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    pod = own.policed_pod
    v1 = _network_policy(cluster, direction, src, dst, port, protocol, opts)
    if pod is None:
        return v1.model_copy(update={"tier": "default"})
    if _own_node(pod, peer_ep):
        return SideVerdict(isolated=False, allowed=True, tier="default",
                           reasons=(f"{peer_ep.label} is a host-network pod on {own.label}'s node {pod.node_name}: "
                                    "traffic to and from a pod's own node is always allowed",))
    version = family(src, dst)
    admin, notes = tiers.walk(cluster, Tier.ADMIN, direction, pod, peer_ep, dst, port, protocol, version)
    if admin is not None and admin.action != Action.PASS:
        would = f"; NetworkPolicy would have {'allowed' if v1.allowed else 'denied'}" if v1.isolated else ""
        return _by_rule(admin, direction, notes, would)
    passed = (admin.describe(direction),) if admin is not None else ()
    if v1.isolated:
        return v1.model_copy(update={"tier": "NetworkPolicy", "reasons": (*notes, *passed, *v1.reasons)})
    base, more = tiers.walk(cluster, Tier.BASELINE, direction, pod, peer_ep, dst, port, protocol, version)
    if base is not None and base.action != Action.PASS:
        return _by_rule(base, direction, (*notes, *more, *passed), "")
    last = (base.describe(direction),) if base is not None else ()
    return SideVerdict(isolated=False, allowed=True, tier="default",
                       reasons=(*notes, *more, *passed, *last, *v1.reasons))


def _by_rule(hit: tiers.Hit, direction: str, notes: tuple[str, ...], tail: str) -> SideVerdict:
    allowed = hit.action == Action.ACCEPT
    return SideVerdict(isolated=not allowed, allowed=allowed, isolated_by=(hit.policy.key,),
                       tier=str(hit.policy.tier), reasons=(*notes, hit.describe(direction) + tail),
                       decided_by=DecidedBy(policy=hit.policy.key, rule=hit.index, rule_name=hit.rule.name,
                                            action=str(hit.action)))


def _network_policy(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str,
                    opts: Options) -> SideVerdict:
    """NetworkPolicy v1 alone."""
    isolating = side(cluster, direction, src, dst)
    if isinstance(isolating, SideVerdict):
        return isolating
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    version = family(src, dst)
    allowed_by, misses, details = [], [], []
    for pol in isolating:
        rule_misses = []
        for i, rule in enumerate(pol.rules(direction)):
            miss = _rule_miss(cluster, pol, rule, direction, peer_ep, dst, port, protocol, version, opts)
            if miss is None:
                allowed_by.append(RuleRef(policy=pol.key, rule=i))
            else:
                rule_misses.append(f"rule {i} {explain.describe_rule(pol, rule, direction, dst)}, but {miss}")
        misses.append(explain.policy_miss(pol, own, direction, rule_misses))
        details.append((explain.policy_head(pol, own, direction), tuple(rule_misses)))
    by = tuple(p.key for p in isolating)
    if allowed_by:
        first = allowed_by[0]
        pol = next(p for p in isolating if p.key == first.policy)
        reason = (f"policy {first.policy} {direction} rule {first.rule} "
                  f"{explain.describe_rule(pol, pol.rules(direction)[first.rule], direction, dst)}")
        if len(allowed_by) > 1:
            reason += "; also " + ", ".join(f"{r.policy} rule {r.rule}" for r in allowed_by[1:])
        return SideVerdict(isolated=True, allowed=True, isolated_by=by, allowed_by=tuple(allowed_by),
                           reasons=(reason,))
    return SideVerdict(isolated=True, allowed=False, isolated_by=by, reasons=tuple(misses), details=tuple(details))


def decide(cluster: Cluster, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
           opts: Options = Options()) -> Verdict:
    if same_pod(src, dst):
        same = SideVerdict(isolated=False, allowed=True, reasons=("traffic a pod sends to itself is allowed",))
        return Verdict(allowed=True, src=src.label, dst=dst.label, port=port, protocol=protocol,
                       egress=same, ingress=same)
    egress = decide_direction(cluster, EGRESS, src, dst, port, protocol, opts)
    ingress = decide_direction(cluster, INGRESS, src, dst, port, protocol, opts)
    return Verdict(allowed=egress.allowed and ingress.allowed, src=src.label, dst=dst.label, port=port,
                   protocol=protocol, egress=egress, ingress=ingress)
