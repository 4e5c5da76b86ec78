"""ClusterNetworkPolicy tiers in the fast evaluator, folded over the engine's units as `decide` walks them.

Per tier and direction, every rule is a pair of boolean rows over units: the side it is written for
(the subject; for ingress also the ports, which belong to the destination) and the peer side (peers;
for egress also the ports). Units with the same rows on a side form a class; the first rule that
matches decides a class pair, walked in policy order (tier, priority, name) and rule order. The
verdict per pair is then Admin's action, else NetworkPolicy where it isolates, else Baseline's
action, else allow, exactly the order of `decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast

import numpy as np

from netpol.evaluate.folding import column_classes, joint_classes
from netpol.evaluate.tiers import peer_blocks
from netpol.k8s.model import EGRESS, INGRESS, Action, CnpPeer, CnpRule, PolicyPort, Protocol, Tier

if TYPE_CHECKING:
    from netpol.evaluate.matrix import Engine, PortQuery

NONE, ACCEPT, DENY = 0, 1, 2  # NONE: no rule matched, or Pass: the next tier decides
_CODE = {Action.ACCEPT: ACCEPT, Action.DENY: DENY, Action.PASS: NONE}


def _cnp_ports(rule: CnpRule, protocol: Protocol) -> tuple[PolicyPort, ...] | None:
    """A rule's ports as NetworkPolicy ports for one protocol (None: every port; a named port is the
    destination's port of that name and the query's protocol)."""
    if rule.ports is None:
        return None
    out = []
    for p in rule.ports:
        if p.name is not None:
            out.append(PolicyPort.model_construct(protocol=protocol, port=p.name, end_port=None))
        elif p.protocol == protocol:
            out.append(PolicyPort.model_construct(protocol=protocol, port=p.lo, end_port=p.hi))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class TierGrid:
    """One tier and direction: verdict[own_class[u], peer_class[v]] for own unit u and peer unit v."""

    own_class: np.ndarray
    peer_class: np.ndarray
    verdict: np.ndarray  # int8: NONE, ACCEPT or DENY


class TierFold:
    """The tiers of a cluster over an engine's units."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.cluster = engine.cluster

    @cached_property
    def _subjects(self) -> dict[str, np.ndarray]:
        e, out = self.e, {}
        for cnp in self.cluster.cluster_policies:
            sel = cnp.subject
            ns_labels = e._ns_labels
            if sel.namespaces is not None:
                mask = ns_labels.match(sel.namespaces)[e._u_ns]
            elif sel.pods is not None:
                mask = e._labels.match(sel.pods.pod_selector).copy()
                if sel.pods.namespace_selector is not None:
                    mask &= ns_labels.match(sel.pods.namespace_selector)[e._u_ns]
            else:
                mask = np.zeros(e.n_units, bool)
            out[cnp.key] = mask & e._policed
        return out

    def _peer(self, peer: CnpPeer) -> np.ndarray:
        e = self.e
        if peer.namespaces is not None or peer.pods is not None:
            return self._subject_like(peer)
        out = np.zeros(e.n_units, bool)
        for block in peer_blocks(self.cluster, peer):
            out |= e._ip_peer(block, 0, gated=False)  # egress: the destination's own primary address
        return out  # domainNames: not decidable offline, no match (as decide)

    def _subject_like(self, peer: CnpPeer) -> np.ndarray:
        e = self.e
        if peer.namespaces is not None:
            return e._ns_labels.match(peer.namespaces)[e._u_ns] & e._policed
        assert peer.pods is not None
        mask = e._labels.match(peer.pods.pod_selector) & e._policed
        if peer.pods.namespace_selector is not None:
            mask &= e._ns_labels.match(peer.pods.namespace_selector)[e._u_ns]
        return mask

    def _peers(self, rule: CnpRule) -> np.ndarray:
        out = np.zeros(self.e.n_units, bool)
        for peer in rule.peers:
            out |= self._peer(peer)
        return out

    def _rules(self, tier: Tier, direction: str) -> list[tuple[str, CnpRule]]:
        return [(cnp.key, rule) for cnp in self.cluster.cluster_policies if cnp.tier == tier
                for rule in cnp.rules(direction)]

    def grid(self, tier: Tier, direction: str, q: PortQuery, port: np.ndarray) -> TierGrid | None:
        """None when the tier has no rule for this direction."""
        rules = self._rules(tier, direction)
        if not rules:
            return None
        ports = [self._ports(rule, q, port) for _, rule in rules]
        subjects = [self._subjects[key] for key, _ in rules]
        if direction == EGRESS:  # own: the source; peer: the destination, whose ports the rule names
            own = np.array(subjects, bool)
            peer = np.array([self._peers(r) & p for (_, r), p in zip(rules, ports, strict=True)], bool)
        else:  # own: the destination, with the ports; peer: the source (pods and namespaces only)
            own = np.array([s & p for s, p in zip(subjects, ports, strict=True)], bool)
            peer = np.array([self._peers(r) for _, r in rules], bool)
        return _walk(own, peer, [_CODE[r.action] for _, r in rules])

    def _ports(self, rule: CnpRule, q: PortQuery, port: np.ndarray) -> np.ndarray:
        entries = _cnp_ports(rule, cast(Protocol, q.protocol))
        if entries is None:
            return np.ones(self.e.n_units, bool)
        if not entries:
            return np.zeros(self.e.n_units, bool)
        return self.e._ports(entries, q, port)


def _walk(own: np.ndarray, peer: np.ndarray, actions: list[int]) -> TierGrid:
    """The first matching rule over class pairs: own and peer are (rules, units) rows."""
    o_cls, o_reps = column_classes(own)
    p_cls, p_reps = column_classes(peer)
    own_rows, peer_rows = own[:, o_reps], peer[:, p_reps]
    verdict = np.zeros((len(o_reps), len(p_reps)), np.int8)
    open_ = np.ones_like(verdict, bool)
    for r, action in enumerate(actions):
        rows = np.flatnonzero(own_rows[r])
        if rows.size == 0:
            continue
        hit = open_[rows] & peer_rows[r][None, :]
        if action != NONE:
            verdict[rows] = np.where(hit, action, verdict[rows])
        open_[rows] &= ~hit
    return TierGrid(o_cls, p_cls, verdict)


def combine(admin: TierGrid | None, baseline: TierGrid | None, own: np.ndarray, peer: np.ndarray,
            isolated: np.ndarray, policy: np.ndarray) -> np.ndarray:
    """One side over (own rep, peer rep) pairs: Admin, else NetworkPolicy where it isolates the own
    unit, else Baseline, else allow. `policy` is the NetworkPolicy verdict for the same pairs."""
    def tier(g: TierGrid | None) -> np.ndarray:
        if g is None:
            return np.zeros((len(own), len(peer)), np.int8)
        return g.verdict[g.own_class[own]][:, g.peer_class[peer]]
    a, b = tier(admin), tier(baseline)
    below = np.where(isolated[own][:, None], policy, b != DENY)
    return (a == ACCEPT) | ((a == NONE) & below)



def fold_egress(fold: TierFold, q: PortQuery, port: np.ndarray, src: np.ndarray, dst: np.ndarray,
                grid: np.ndarray, isolated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The egress side with tiers: (source class per unit, destination class per unit, grid);
    `isolated` is per unit, `grid` the NetworkPolicy verdict over (src, dst) classes."""
    admin, base = fold.grid(Tier.ADMIN, EGRESS, q, port), fold.grid(Tier.BASELINE, EGRESS, q, port)
    tiers = [g for g in (admin, base) if g is not None]
    s_cls, s_reps = joint_classes(src, *(g.own_class for g in tiers))
    d_cls, d_reps = joint_classes(dst, *(g.peer_class for g in tiers))
    policy = grid[src[s_reps]][:, dst[d_reps]]
    return s_cls, d_cls, combine(admin, base, s_reps, d_reps, isolated, policy)


def fold_ingress(fold: TierFold, q: PortQuery, port: np.ndarray, src: np.ndarray, dst: np.ndarray,
                 grid: np.ndarray, isolated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ingress side with tiers, in the same shape as `fold_egress` (the own side is the destination)."""
    admin, base = fold.grid(Tier.ADMIN, INGRESS, q, port), fold.grid(Tier.BASELINE, INGRESS, q, port)
    tiers = [g for g in (admin, base) if g is not None]
    s_cls, s_reps = joint_classes(src, *(g.peer_class for g in tiers))
    d_cls, d_reps = joint_classes(dst, *(g.own_class for g in tiers))
    policy = grid[src[s_reps]][:, dst[d_reps]].T
    return s_cls, d_cls, combine(admin, base, d_reps, s_reps, isolated, policy).T
