"""The reference evaluator: one connection, one verdict, with the policy and rule that decided it.

It follows the spec text one-to-one and favours clarity over speed; `matrix` is the fast path and
must agree with it on every pair.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from netpol.k8s.model import Cluster, EGRESS, INGRESS, NetworkPolicy, Peer, PolicyPort, Rule
from netpol.evaluate.resolve import Endpoint, Options, family, ns_selector_names, peer_matches, rule_ports_match, selects



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
        return f"{pods} in {policy.namespace}"
    named = ns_selector_names(peer.namespace_selector)
    if named:
        where = f"namespace {named}"
    elif peer.namespace_selector.empty:
        where = "all namespaces"
    else:
        where = f"namespaces {peer.namespace_selector.describe()}"
    return f"{pods} in {where}" if pods != "all pods" else where


def describe_port(entry: PolicyPort, dst: Endpoint) -> str:
    """A policy port as the destination sees it: a named port shows the number it resolves to."""
    if entry.port is None:
        return f"all {entry.protocol} ports"
    if isinstance(entry.port, int):
        return f"{entry.protocol}/{entry.port}" + (f"-{entry.end_port}" if entry.end_port is not None else "")
    if dst.pod is None:
        return f"{entry.protocol}/{entry.port} (a name; {dst.label} is not a pod)"
    numbers = sorted({cp.port for cp in dst.pod.named_port(entry.port) if cp.protocol == entry.protocol})
    if not numbers:
        return f"{entry.protocol}/{entry.port} ({dst.label} declares no {entry.protocol} port by that name)"
    return f"{entry.protocol}/{','.join(map(str, numbers))} ({entry.port})"


def describe_rule(policy: NetworkPolicy, rule: Rule, direction: str, dst: Endpoint | None = None) -> str:
    if rule.ports:
        ports = ", ".join(describe_port(p, dst) if dst is not None else p.describe() for p in rule.ports)
    else:
        ports = "all ports"
    word = "from" if direction == INGRESS else "to"
    peers = " or ".join(describe_peer(policy, p) for p in rule.peers) if rule.peers else "anywhere"
    return f"allows {ports} {word} {peers}"


def _rule_miss(cluster: Cluster, policy: NetworkPolicy, rule: Rule, direction: str, peer_ep: Endpoint,
               dst: Endpoint, port: int, protocol: str, version: int | None, opts: Options) -> str | None:
    """Why this rule does not allow the connection, or None if it does."""
    ports_ok = rule_ports_match(rule, dst, port, protocol)
    peers_ok = not rule.peers or any(peer_matches(cluster, policy, p, peer_ep, version, opts) for p in rule.peers)
    if ports_ok and peers_ok:
        return None
    misses = []
    if not peers_ok:
        role = "source" if direction == INGRESS else "destination"
        count = len(rule.peers)
        which = "does not match" if count == 1 else "matches neither" if count == 2 else "matches none of them"
        misses.append(f"{role} {peer_ep.label} {which}{_ip_block_hint(rule, peer_ep, version, opts)}")
    if not ports_ok:
        misses.append(f"{protocol}/{port} is not among its ports")
    return " and ".join(misses)


def _ip_block_hint(rule: Rule, ep: Endpoint, version: int | None, opts: Options) -> str:
    """Why an ipBlock that seems to cover a pod does not match it: the two places users trip."""
    blocks = [p.ip_block for p in rule.peers if p.ip_block is not None]
    if not blocks or ep.pod is None:
        return ""
    addr = ep.address(version)
    if ep.policed and not opts.ipblock_pods and addr is not None and any(b.contains(addr) for b in blocks):
        return f" (its address {addr} is inside an ipBlock, but ipBlocks match no pod with --ipblock-pods=false)"
    other = [a for a in ep.pod.addresses if a.version != version and any(b.contains(a) for b in blocks)]
    if ep.ip is None and version and other:
        return (f" (by name the connection uses IPv{version}, the destination's primary family; "
                f"{ep.label}'s address {other[0]} is inside an ipBlock: query by address to use it)")
    return ""


def _policy_miss(policy: NetworkPolicy, own: Endpoint, direction: str, rule_misses: list[str]) -> str:
    head = f"policy {policy.key} selects {own.label} for {direction}"
    if not policy.rules(direction):
        return f"{head} and allows nothing"
    return f"{head}; " + "; ".join(rule_misses)


def side(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint) -> Direction | list[NetworkPolicy]:
    """The port-independent part of a side: the verdict when the side allows every connection
    regardless of rules, else the policies that isolate it (in cluster order)."""
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    if not own.policed:
        what = "an external address" if own.pod is None else "a host-network pod"
        return Direction(isolated=False, allowed=True, reason=f"{own.label} is {what}; not policed")
    isolating = [p for p in cluster.policies_in(own.pod.namespace) if p.affects(direction) and selects(p, own.pod)]
    if not isolating:
        return Direction(isolated=False, allowed=True,
                         reason=f"no policy selects {own.label} for {direction}")
    node = own.pod.node_name
    if node and peer_ep.pod is not None and peer_ep.pod.host_network and peer_ep.pod.node_name == node:
        return Direction(isolated=True, allowed=True, isolated_by=tuple(p.key for p in isolating),
                         reason=f"{peer_ep.label} is a host-network pod on {own.label}'s node {node}: "
                                "traffic to and from a pod's own node is always allowed")
    return isolating


def same_pod(src: Endpoint, dst: Endpoint) -> bool:
    """Only a pod talks to itself: a workload's pair is replica to replica, which policies decide."""
    return src.pod is not None and dst.pod is not None and src.pod.kind == "Pod" and src.pod.key == dst.pod.key


def decide_direction(cluster: Cluster, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str,
                     opts: Options = Options()) -> Direction:
    """Does the policed end (src for egress, dst for ingress) let this connection through?"""
    isolating = side(cluster, direction, src, dst)
    if isinstance(isolating, Direction):
        return isolating
    own, peer_ep = (src, dst) if direction == EGRESS else (dst, src)
    version = family(src, dst)
    allowed_by, misses = [], []
    for pol in isolating:
        rule_misses = []
        for i, rule in enumerate(pol.rules(direction)):
            miss = _rule_miss(cluster, pol, rule, direction, peer_ep, dst, port, protocol, version, opts)
            if miss is None:
                allowed_by.append(RuleRef(policy=pol.key, rule=i))
            else:
                rule_misses.append(f"rule {i} {describe_rule(pol, rule, direction, dst)}, but {miss}")
        misses.append(_policy_miss(pol, own, direction, rule_misses))
    by = tuple(p.key for p in isolating)
    if allowed_by:
        first = allowed_by[0]
        pol = next(p for p in isolating if p.key == first.policy)
        reason = (f"policy {first.policy} {direction} rule {first.rule} "
                  f"{describe_rule(pol, pol.rules(direction)[first.rule], direction, dst)}")
        if len(allowed_by) > 1:
            reason += "; also " + ", ".join(f"{r.policy} rule {r.rule}" for r in allowed_by[1:])
        return Direction(isolated=True, allowed=True, isolated_by=by, allowed_by=tuple(allowed_by), reason=reason)
    return Direction(isolated=True, allowed=False, isolated_by=by, reason=" | ".join(misses))


def decide(cluster: Cluster, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
           opts: Options = Options()) -> Verdict:
    if same_pod(src, dst):
        same = Direction(isolated=False, allowed=True, reason="traffic a pod sends to itself is allowed")
        return Verdict(allowed=True, src=src.label, dst=dst.label, port=port, protocol=protocol,
                       egress=same, ingress=same)
    egress = decide_direction(cluster, EGRESS, src, dst, port, protocol, opts)
    ingress = decide_direction(cluster, INGRESS, src, dst, port, protocol, opts)
    return Verdict(allowed=egress.allowed and ingress.allowed, src=src.label, dst=dst.label, port=port,
                   protocol=protocol, egress=egress, ingress=ingress)
