"""Rules that do not do what they seem to: ignored by policyTypes, split peers, redundant rules."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.evaluate.explain import describe_peer
from netpol.k8s.model import DIRECTIONS, EGRESS, INGRESS, IPBlock, NetworkPolicy, Peer, PolicyPort, Rule
from netpol.lint.context import PEERS_FIELD, Context
from netpol.lint.registry import Hit, check


@check("NP006", "rules-ignored", "error",
       "Egress rules while policyTypes omits Egress (or ingress rules while it omits Ingress): they do nothing.")
def ignored_rules(ctx: Context) -> Iterator[Hit]:
    """
    When `policyTypes` is given, it alone decides which directions a policy governs: rules for a direction
    it leaves out are accepted by the API server and ignored by every implementation. Add the direction to
    policyTypes, or drop the rules.

        spec:
          podSelector: {}
          policyTypes: [Ingress]
          egress:                 # ignored: Egress is not in policyTypes
          - to: [{podSelector: {}}]
    """
    for pol in ctx.cluster.policies:
        for direction, kind in ((INGRESS, "Ingress"), (EGRESS, "Egress")):
            if pol.rules(direction) and not pol.affects(direction):
                n = len(pol.rules(direction))
                yield ctx.at_policy(pol, ("spec", direction)), \
                    f"{n} {direction} rule{'s' if n != 1 else ''} of {pol.key} do{'es' if n == 1 else ''} " \
                    f"nothing: policyTypes {sorted(pol.policy_types)} omits {kind}"


def _ns_only(peer: Peer) -> bool:
    return peer.namespace_selector is not None and peer.pod_selector is None


def _pod_only(peer: Peer) -> bool:
    return peer.pod_selector is not None and peer.namespace_selector is None and peer.ip_block is None


def _and_selects_nothing(ctx: Context, ns_peer: Peer, pod_peer: Peer) -> bool:
    """Evidence the OR was meant: the namespaces have pods in the input, and none matches the podSelector."""
    if not ctx.has_pods or ns_peer.namespace_selector is None or pod_peer.pod_selector is None:
        return False
    populated = [ns for ns in ctx.index.namespaces(ns_peer.namespace_selector) if ctx.index.in_ns.get(ns)]
    return bool(populated) and not any(ctx.index.pods_in(pod_peer.pod_selector, ns) for ns in populated)


@check("NP007", "split-peers", "warning",
       "`- namespaceSelector` and `- podSelector` as two peers where one peer with both (AND) was likely meant.")
def split_peers(ctx: Context) -> Iterator[Hit]:
    """
    One dash makes the difference. Two list items are two peers, OR-ed: every pod of the selected
    namespaces, or the matching pods of the policy's own namespace. One item with both selectors is one
    peer, AND-ed: the matching pods of the selected namespaces.

        - from:
          - namespaceSelector: {matchLabels: {team: a}}
          - podSelector: {matchLabels: {app: client}}     # a second peer: probably meant without '-'

    Quiet when the input shows the OR is intended: the selected namespaces have pods in the input and
    none of them matches the podSelector.
    """
    for pol in ctx.cluster.policies:
        for direction in DIRECTIONS:
            for i, rule in enumerate(pol.rules(direction)):
                ns_peers = [p for p in rule.peers if _ns_only(p)]
                if not ns_peers:
                    continue
                for j, peer in enumerate(rule.peers):
                    if not _pod_only(peer):
                        continue
                    ns_peer = ns_peers[0]
                    if _and_selects_nothing(ctx, ns_peer, peer):
                        continue
                    k = rule.peers.index(ns_peer)
                    assert peer.pod_selector is not None and ns_peer.namespace_selector is not None
                    yield ctx.at_rule(pol, direction, i, PEERS_FIELD[direction], j), \
                        f"{direction} rule {i}: peers {k} and {j} are separate (OR): " \
                        f"{describe_peer(pol, ns_peer)}, or {describe_peer(pol, peer)}; for pods " \
                        f"{peer.pod_selector.describe() or '(all)'} in namespaces " \
                        f"{ns_peer.namespace_selector.describe() or '(all)'}, write both selectors in one peer"


def _port_within(a: PolicyPort, b: PolicyPort) -> bool:
    if a.protocol != b.protocol:
        return False
    if b.port is None or a == b:
        return True
    if isinstance(a.port, int) and isinstance(b.port, int):
        return b.port <= a.port and (a.end_port or a.port) <= (b.end_port or b.port)
    return False


def _ports_within(a: Rule, b: Rule) -> bool:
    if not b.ports:
        return True
    return bool(a.ports) and all(any(_port_within(x, y) for y in b.ports) for x in a.ports)


def _block_within(a: IPBlock, b: IPBlock) -> bool:
    if a.network.version != b.network.version or not a.network.subnet_of(b.network):  # type: ignore[arg-type]
        return False
    # every hole of b inside a must be a hole of a too (the versions agree: checked above)
    return all(not e.overlaps(a.network) or any(e.subnet_of(h) for h in a.excepts)  # type: ignore[arg-type]
               for e in b.excepts)


def _peers_within(ctx: Context, pol: NetworkPolicy, a: Rule, b: Rule) -> tuple[bool, bool]:
    """(a's peers are within b's, whether that needed the input's pods)."""
    if not b.peers:
        return True, False
    if not a.peers:
        return False, False
    resolved = False
    b_bits = None
    for peer in a.peers:
        if peer in b.peers:
            continue
        if peer.ip_block is not None:
            if any(q.ip_block is not None and _block_within(peer.ip_block, q.ip_block) for q in b.peers):
                continue
            return False, False
        bits = ctx.index.peer(pol, peer) if ctx.has_pods else 0
        if not bits:
            return False, False  # nothing to compare on (NP002 covers a dangling peer)
        b_bits = ctx.index.rule_peers(pol, b) if b_bits is None else b_bits
        if bits & ~b_bits:
            return False, False
        resolved = True
    return True, resolved


def _covered(ctx: Context, pol: NetworkPolicy, a: Rule, b: Rule) -> tuple[bool, bool]:
    if not _ports_within(a, b):
        return False, False
    return _peers_within(ctx, pol, a, b)


@check("NP008", "redundant-rule", "info", "A rule made redundant by another rule of the same policy.")
def redundant_rule(ctx: Context) -> Iterator[Hit]:
    """
    Every connection the rule allows, another rule of the same policy and direction allows too: its peers
    are within the other's peers and its ports within the other's ports. Peers are compared as written
    (identical selectors, ipBlocks within ipBlocks, no `from`/`to` covering everything) and, for
    selectors, on the pods they match in the input. Of two identical rules the later one is reported.

        ingress:
        - from: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: 80}]
        - from: [{podSelector: {matchLabels: {app: web}}}]   # redundant: rule 0 allows all of it
          ports: [{port: 80}]
    """
    for pol in ctx.cluster.policies:
        for direction in DIRECTIONS:
            rules = pol.rules(direction)
            for i, a in enumerate(rules):
                for j, b in enumerate(rules):
                    if i == j:
                        continue
                    inside, resolved = _covered(ctx, pol, a, b)
                    if not inside or (j > i and _covered(ctx, pol, b, a)[0]):
                        continue
                    note = " for the pods in the input" if resolved else ""
                    yield ctx.at_rule(pol, direction, i), \
                        f"{direction} rule {i} of {pol.key} is redundant: rule {j} already allows all of its " \
                        f"peers and ports{note}"
                    break
