"""The ClusterNetworkPolicy tiers in the table: per tier, direction and family, a dispatch map keyed by
pod address jumps into the chain of the pod's *subject class*: the pods selected by the same policies
of the tier, in order. That chain holds the rules of those policies one after the other, in policy
order and written order, each ending in its action (Accept: accept, which ends this direction's base
chain only; Deny: drop; Pass: return, back to the base chain, past the rest of the tier); a packet
no rule matched returns at the chain's end. The base chain asks the Admin maps before
NetworkPolicy's and the Baseline maps after them: a pod that NetworkPolicy isolates for a direction
ends there and never reaches Baseline.

Every path is two chains deep whatever the number of policies (the kernel refuses jump paths deeper
than 16); a rule's peer and port sets are declared once and shared by every class chain holding it,
so only rule entries repeat, once per subject class. The shape depends on policies and on which
combinations of them select local pods; pods fill maps.
"""

from __future__ import annotations

from netpol.k8s.model import DIRECTIONS, EGRESS, Action, Direction, IPAddress, Tier
from netpol.nft.plan import FAMILIES, Plan, TierPlan
from netpol.nft.render import (
    ADDR_TYPE,
    SHORT,
    Elem,
    Expr,
    NftChain,
    NftRule,
    NftSet,
    TableDraft,
    _addr,
    _point,
    _rule_nft,
    _verdict,
    _vmap,
)
from netpol.nft.ruleid import RuleId, short_id

_TIER = {Tier.ADMIN: "a", Tier.BASELINE: "b"}


def tier_map(tier: Tier, direction: Direction, version: int) -> str:
    return f"{str(tier).lower()}_{direction}{version}"


def class_chain(tier: Tier, keys: tuple[str, ...], direction: Direction, version: int) -> str:
    """The chain of the pods that exactly these policies of the tier select (in order)."""
    return f"t{_TIER[tier]}_{short_id(' '.join(keys))}_{SHORT[direction]}{version}"


def _action(action: Action, deny: str) -> Expr:
    if action == Action.ACCEPT or (action == Action.DENY and deny == "audit"):  # audit: count, let pass
        return _verdict("accept")
    return _verdict("drop" if action == Action.DENY else "return")


def walked(plan: Plan, tier: Tier, d: Direction) -> list[TierPlan]:
    return [tp for tp in plan.tiers if tp.tier == tier and tp.rules(d)]


def build_tiers(t: TableDraft, plan: Plan, deny: str) -> dict[tuple[Tier, Direction], list[NftRule]]:
    """Declares the tiers' sets, maps and chains; per (tier, direction) the base chain's dispatch rules."""
    out: dict[tuple[Tier, Direction], list[NftRule]] = {}
    for tier in Tier:
        for d in DIRECTIONS:
            policies = walked(plan, tier, d)
            out[(tier, d)] = []
            if not policies:
                continue
            bodies = {tp.key: _policy_rules(t, tp, d, deny) for tp in policies}
            for v in FAMILIES:
                t.chains += _declare_walk(t, tier, policies, bodies, d, v)
                fld = "saddr" if d == EGRESS else "daddr"
                out[(tier, d)].append(NftRule((_vmap(_addr(v, fld), tier_map(tier, d, v)),),
                                              RuleId(rule=f"{str(tier).lower()} {d} dispatch ipv{v}")))
    return out


def _policy_rules(t: TableDraft, tp: TierPlan, d: Direction, deny: str) -> dict[int, list[NftRule]]:
    """The policy's rules of one direction per family, in written order (declaring their sets once)."""
    out: dict[int, list[NftRule]] = {v: [] for v in FAMILIES}
    pid = short_id(tp.key)
    for rule in tp.rules(d):
        r = rule.plan
        note = RuleId(tp.key.partition("/")[0], tp.name, d, str(r.index))
        for fam, _, nr in _rule_nft(t, f"t_{pid}_{SHORT[d]}{r.index}", note, r, _action(rule.action, deny)):
            out[fam].append(nr)
    return out


def _declare_walk(t: TableDraft, tier: Tier, policies: list[TierPlan], bodies: dict[str, dict[int, list[NftRule]]],
                  d: Direction, v: int) -> list[NftChain]:
    """The dispatch map (pod -> jump its subject class's chain) and the class chains."""
    classes: dict[IPAddress, list[str]] = {}
    for tp in policies:
        for a in tp.selected[v]:
            classes.setdefault(a, []).append(tp.key)
    dispatch: set[Elem] = set()
    chains: dict[str, NftChain] = {}
    for a, keys in classes.items():
        name = class_chain(tier, tuple(keys), d, v)
        dispatch.add(((_point(a),), f"jump {name}"))
        if name not in chains:
            chains[name] = NftChain(name, tuple(r for key in keys for r in bodies[key][v]))
    t.declare(NftSet(tier_map(tier, d, v), (ADDR_TYPE[v],), verdicts=True), dispatch)
    return [chains[name] for name in sorted(chains)]
