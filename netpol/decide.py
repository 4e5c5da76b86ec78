"""The reference evaluator: one connection, one verdict, with the policy and rule that decided it.

It follows the spec text one-to-one and favours clarity over speed; `matrix` is the fast path and
must agree with it on every pair.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .model import Cluster, NetworkPolicy, Peer, Rule
from .resolve import Endpoint, Options, family, ns_selector_names, peer_matches, rule_ports_match, selects

INGRESS, EGRESS = "ingress", "egress"


class RuleRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    policy: str
    rule: int


class Direction(BaseModel):
    model_config = ConfigDict(frozen=True)
    isolated: bool
    allowed: bool
    isolated_by: tuple[str, ...] = ()
    allowed_by: tuple[RuleRef, ...] = ()
    reason: str


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    allowed: bool
    src: str
    dst: str
    port: int
    protocol: str
    egress: Direction
    ingress: Direction

    def contract(self) -> dict:
        """The JSON shape DESIGN.md fixes for `netpol check -o json`."""
        def side(d: Direction) -> dict:
            return {"isolated": d.isolated, "isolated_by": list(d.isolated_by),
                    "allowed_by": [r.model_dump() for r in d.allowed_by], "reason": d.reason}
        return {"allowed": self.allowed, "src": self.src, "dst": self.dst, "port": self.port,
                "protocol": self.protocol, "egress": side(self.egress), "ingress": side(self.ingress)}


def describe_peer(policy: NetworkPolicy, peer: Peer) -> str:
    if peer.ip_block is not None:
        return peer.ip_block.describe()
    pods = "pods " + peer.pod_selector.describe() if peer.pod_selector and not peer.pod_selector.empty \
        else "all pods"
    if peer.namespace_selector is None:
        return f"{pods} in {policy.namespace}" if pods != "all pods" else f"all pods in {policy.namespace}"
    named = ns_selector_names(peer.namespace_selector)
    if named:
        where = f"namespace {named}"
    elif peer.namespace_selector.empty:
        where = "all namespaces"
    else:
        where = f"namespaces {peer.namespace_selector.describe()}"
    return f"{pods} in {where}" if pods != "all pods" or named is None else where


def describe_rule(policy: NetworkPolicy, rule: Rule, direction: str) -> str:
    ports = ", ".join(p.describe() for p in rule.ports) if rule.ports else "all ports"
    word = "from" if direction == INGRESS else "to"
    peers = " or ".join(describe_peer(policy, p) for p in rule.peers) if rule.peers else "anywhere"
    return f"allows {ports} {word} {peers}"


def _rule_miss(cluster: Cluster, policy: NetworkPolicy, rule: Rule, peer_ep: Endpoint, dst: Endpoint,
               port: int, protocol: str, version: int | None, opts: Options) -> str | None:
    """Why this rule does not allow the connection, or None if it does."""
    ports_ok = rule_ports_match(rule, dst, port, protocol)
    peers_ok = not rule.peers or any(peer_matches(cluster, policy, p, peer_ep, version, opts) for p in rule.peers)
    if ports_ok and peers_ok:
        return None
    misses = []
    if not peers_ok:
        misses.append(f"{peer_ep.label} matches {'none of its peers' if len(rule.peers) > 1 else 'no peer'}")
    if not ports_ok:
        misses.append(f"{protocol}/{port} is not among its ports")
    return "; ".join(misses)


def decide_direction(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str,
                     opts: Options = Options()) -> Direction:
    """Does the policed end (src for egress, dst for ingress) let this connection through?"""
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    if not own.policed:
        what = "an external address" if own.pod is None else "a host-network pod"
        return Direction(isolated=False, allowed=True, reason=f"{own.label} is {what}; not policed")
    isolating = [p for p in cluster.policies_in(own.pod.namespace) if p.affects(direction) and selects(p, own.pod)]
    if not isolating:
        return Direction(isolated=False, allowed=True,
                         reason=f"no policy selects {own.label} for {direction}")
    version = family(src, dst)
    allowed_by, misses = [], []
    for pol in isolating:
        for i, rule in enumerate(pol.rules(direction)):
            miss = _rule_miss(cluster, pol, rule, peer_ep, dst, port, protocol, version, opts)
            if miss is None:
                allowed_by.append(RuleRef(policy=pol.key, rule=i))
            else:
                misses.append(f"policy {pol.key} {direction} rule {i} {describe_rule(pol, rule, direction)}; {miss}")
        if not pol.rules(direction):
            misses.append(f"policy {pol.key} selects {own.label} for {direction} and allows nothing")
    by = tuple(p.key for p in isolating)
    if allowed_by:
        first = allowed_by[0]
        pol = next(p for p in isolating if p.key == first.policy)
        reason = (f"policy {first.policy} {direction} rule {first.rule} "
                  f"{describe_rule(pol, pol.rules(direction)[first.rule], direction)}")
        return Direction(isolated=True, allowed=True, isolated_by=by, allowed_by=tuple(allowed_by), reason=reason)
    reason = f"{own.label} is isolated for {direction} by {', '.join(by)}; " + " | ".join(misses)
    return Direction(isolated=True, allowed=False, isolated_by=by, reason=reason)


def decide(cluster: Cluster, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
           opts: Options = Options()) -> Verdict:
    if src.pod is not None and src.pod is dst.pod:
        same = Direction(isolated=False, allowed=True, reason="traffic a pod sends to itself is allowed")
        return Verdict(allowed=True, src=src.label, dst=dst.label, port=port, protocol=protocol,
                       egress=same, ingress=same)
    egress = decide_direction(cluster, EGRESS, src, dst, port, protocol, opts)
    ingress = decide_direction(cluster, INGRESS, src, dst, port, protocol, opts)
    return Verdict(allowed=egress.allowed and ingress.allowed, src=src.label, dst=dst.label, port=port,
                   protocol=protocol, egress=egress, ingress=ingress)
