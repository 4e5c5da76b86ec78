"""The ClusterNetworkPolicy tiers in the table: per tier, direction and family, a dispatch map keyed by
pod address jumps into the chain of the first policy of the tier whose subject selects the pod; a
policy chain holds its rules in written order, each ending in its action (Accept: accept, which ends
this direction's base chain only; Deny: drop; Pass: return, back to the base chain, past the rest
of the tier); a chain that matched nothing goes on (goto) to the next policy selecting the pod, or
returns. The base chain asks the Admin maps before NetworkPolicy's and the Baseline maps after
them: a pod that NetworkPolicy isolates for a direction ends there and never reaches Baseline.

Like NetworkPolicy's walk, the shape depends on policies only; pods fill maps. The kernel refuses jump
paths deeper than 16 chains, so a tier holds at most CHUNK policies with rules in one direction.
"""

from __future__ import annotations

from netpol.errors import NetpolError
from netpol.k8s.model import DIRECTIONS, EGRESS, Action, Direction, IPAddress, Tier
from netpol.nft.plan import FAMILIES, Plan, TierPlan
from netpol.nft.render import (
    ADDR_TYPE,
    CHUNK,
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


def tier_chain(tp: TierPlan, direction: Direction, version: int) -> str:
    return f"t{_TIER[tp.tier]}_{short_id(tp.key)}_{SHORT[direction]}{version}"


def _action(action: Action, deny: str) -> Expr:
    if action == Action.ACCEPT or (action == Action.DENY and deny == "audit"):  # audit: count, let pass
        return _verdict("accept")
    return _verdict("drop" if action == Action.DENY else "return")


def walked(plan: Plan, tier: Tier, d: Direction) -> list[TierPlan]:
    found = [tp for tp in plan.tiers if tp.tier == tier and tp.rules(d)]
    if len(found) > CHUNK:
        raise NetpolError(f"{len(found)} {tier} ClusterNetworkPolicies with {d} rules: the table holds at most "
                          f"{CHUNK} per tier and direction yet (the kernel's jump depth)")
    return found


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
                _declare_walk(t, policies, d, v)
                t.chains += [_policy_chain(tp, d, v, bodies[tp.key][v]) for tp in policies]
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


def _policy_chain(tp: TierPlan, d: Direction, v: int, body: list[NftRule]) -> NftChain:
    """The policy's rules, then the walk goes on."""
    rules = list(body)
    own = "saddr" if d == EGRESS else "daddr"
    kind = tp.key.partition("/")[0]
    rules += [NftRule((_vmap(_addr(v, own), tier_chain(tp, d, v) + "n"),), RuleId(kind, tp.name, d, "next")),
              NftRule((_verdict("return"),), RuleId(kind, tp.name, d, "end"))]
    return NftChain(tier_chain(tp, d, v), tuple(rules))


def _declare_walk(t: TableDraft, policies: list[TierPlan], d: Direction, v: int) -> None:
    """The dispatch map (pod -> jump its first policy) and each policy's next map (pod -> goto its
    next policy), from the pods each policy's subject selects."""
    selecting: dict[IPAddress, list[TierPlan]] = {}
    for tp in policies:
        for a in tp.selected[v]:
            selecting.setdefault(a, []).append(tp)
    first: set[Elem] = set()
    nexts: dict[str, set[Elem]] = {tp.key: set() for tp in policies}
    for a, chain in selecting.items():
        key = (_point(a),)
        first.add((key, f"jump {tier_chain(chain[0], d, v)}"))
        for here, there in zip(chain, chain[1:], strict=False):
            nexts[here.key].add((key, f"goto {tier_chain(there, d, v)}"))
    t.declare(NftSet(tier_map(policies[0].tier, d, v), (ADDR_TYPE[v],), verdicts=True), first)
    for tp in policies:
        t.declare(NftSet(tier_chain(tp, d, v) + "n", (ADDR_TYPE[v],), verdicts=True), nexts[tp.key])
