"""Words for verdicts: rules, peers and ports as a reader knows them, and why a rule did not match.

The decision is `decide`'s; this module only says it (lint uses the same phrases).
"""

from __future__ import annotations

from netpol.evaluate.resolve import Endpoint, ns_selector_names
from netpol.k8s.model import INGRESS, NetworkPolicy, Options, Peer, PolicyPort, Rule


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


def rule_miss(rule: Rule, direction: str, peer_ep: Endpoint, port: int, protocol: str, version: int | None,
              opts: Options, peers_ok: bool, ports_ok: bool) -> str:
    """Why a rule did not allow the connection: its peers, its ports, or both."""
    misses = []
    if not peers_ok:
        role = "source" if direction == INGRESS else "destination"
        count = len(rule.peers)
        which = "does not match" if count == 1 else "matches neither" if count == 2 else "matches none of them"
        misses.append(f"{role} {peer_ep.label} {which}{ip_block_hint(rule, peer_ep, version, opts)}")
    if not ports_ok:
        misses.append(f"{protocol}/{port} is not among its ports")
    return " and ".join(misses)


def ip_block_hint(rule: Rule, ep: Endpoint, version: int | None, opts: Options) -> str:
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


def policy_head(policy: NetworkPolicy, own: Endpoint, direction: str) -> str:
    head = f"policy {policy.key} selects {own.label} for {direction}"
    return f"{head} and allows nothing" if not policy.rules(direction) else head


def policy_miss(policy: NetworkPolicy, own: Endpoint, direction: str, rule_misses: list[str]) -> str:
    head = policy_head(policy, own, direction)
    return head if not policy.rules(direction) else f"{head}; " + "; ".join(rule_misses)
