"""Tenant isolation: every connection allowed across tenants, grouped by the rule that allows it.

For each rule whose peers reach other tenants, the far ends are taken group by group (pods isolated by the
same policies). Pod sets narrow the search, port checks of the two rules involved narrow it further, and
the reference evaluator (`decide`) confirms one connection per pair of tenants, which the message shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netpol.evaluate import tiers
from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint, rule_ports_match
from netpol.evaluate.tiers import subject_of
from netpol.k8s.model import EGRESS, INGRESS, Action, CnpRule, NetworkPolicy, Pod, Rule
from netpol.lint.checks.dns import _dns_pods
from netpol.lint.checks.tiers import at_cnp
from netpol.lint.context import Context, Group
from netpol.lint.index import first, members
from netpol.lint.registry import Hit, check

TRIES = 3  # destinations tried per group before giving up on it


@dataclass(frozen=True)
class _Side:
    """The far end's own rules for its direction (empty when it is not isolated), with their peer sets."""

    rules: tuple[tuple[Rule, int], ...]
    reach: int  # union of the rules' peers; every pod when not isolated


def _probes(dst: Pod, rules: list[Rule]) -> list[tuple[int, str]]:
    """Ports worth asking about: those the rules name (named ones resolved on dst), dst's own, then 80."""
    out: list[tuple[int, str]] = []
    for rule in rules:
        for e in rule.ports:
            if isinstance(e.port, int):
                out.append((e.port, e.protocol))
            elif isinstance(e.port, str):
                out += [(cp.port, cp.protocol) for cp in dst.named_port(e.port) if cp.protocol == e.protocol]
            else:
                out += [(cp.port, cp.protocol) for cp in dst.ports if cp.protocol == e.protocol] + [(80, e.protocol)]
    out += [(cp.port, cp.protocol) for cp in dst.ports] + [(80, "TCP")]
    return list(dict.fromkeys(out))


class _Tenants:
    def __init__(self, ctx: Context) -> None:
        self.ctx, idx = ctx, ctx.index
        self.of = {ns: ctx.tenant(ns) for ns in idx.in_ns}
        self.bits: dict[str, int] = {}
        for ns, t in self.of.items():
            if t is not None:
                self.bits[t] = self.bits.get(t, 0) | (idx.in_ns[ns] & idx.policed)
        self.tenanted = 0
        for b in self.bits.values():
            self.tenanted |= b
        self.dns = _dns_pods(ctx)
        self.groups: dict[str, dict[str, list[Group]]] = {EGRESS: {}, INGRESS: {}}
        for direction, by_ns in self.groups.items():
            for g in ctx.groups(direction):
                by_ns.setdefault(g.namespace, []).append(g)
        self._sides: dict[tuple[str, int], _Side] = {}

    def others(self, tenant: str) -> int:
        return self.tenanted & ~self.bits[tenant]

    def side(self, group: Group, direction: str) -> _Side:
        key = (direction, id(group))
        found = self._sides.get(key)
        if found is None:
            if not group.policies:
                found = _Side((), self.ctx.index.all)
            else:
                rules = tuple((r, self.ctx.index.rule_peers(q, r)) for q in group.policies for r in q.rules(direction))
                reach = 0
                for _, bits in rules:
                    reach |= bits
                found = _Side(rules, reach)
            self._sides[key] = found
        return found


def _confirm(ctx: Context, direction: str, rule: Rule, side: _Side, srcs: int, dsts: int) -> str | None:
    """A connection src -> dst allowed through `rule` (of the near end), confirmed by `decide`."""
    pods = ctx.index.pods
    for n, d in enumerate(members(dsts)):
        if n == TRIES:
            break
        dst = pods[d]
        dst_ep = Endpoint(pod=dst)
        for port, proto in _probes(dst, [rule] if rule.ports else [r for r, _ in side.rules]):
            if not rule_ports_match(rule, dst_ep, port, proto):
                continue
            if side.rules:  # the far end must let it through too: pick a source its rule admits
                near_bit = 1 << d if direction == INGRESS else srcs
                fits = [bits for r, bits in side.rules if bits & near_bit and rule_ports_match(r, dst_ep, port, proto)]
                if not fits:
                    continue
                src_bits = srcs if direction == INGRESS else srcs & fits[0]
            else:
                src_bits = srcs
            src = pods[first(src_bits)]
            if decide(ctx.cluster, Endpoint(pod=src), dst_ep, port, proto, ctx.opts).allowed:
                return f"{src.key} → {dst.key} {proto}/{port}"
    return None


def _across(ctx: Context, ten: _Tenants, direction: str, rule: Rule, near: int, far: int) -> dict[str, str]:
    """Per far tenant, a connection between `near` (pods the policy selects) and `far` (its rule's peers)."""
    found: dict[str, str] = {}
    far_side = INGRESS if direction == EGRESS else EGRESS  # the far end's own isolation
    for ns in ctx.index.namespaces_of(far):
        tenant = ten.of[ns]
        if tenant is None or tenant in found:
            continue
        for g in ten.groups[far_side].get(ns, ()):
            mine = g.bits & far
            if not mine:
                continue
            side = ten.side(g, far_side)
            reach = side.reach & near
            if not reach:
                continue
            srcs, dsts = (mine, reach) if direction == INGRESS else (reach, mine)
            example = _confirm(ctx, direction, rule, side, srcs, dsts)
            if example:
                found[tenant] = example
                break
    return found


@check("NP011", "cross-tenant", "error", "A connection allowed across tenants (opt-in: --tenant-label KEY).",
       default=False)
def cross_tenant(ctx: Context) -> Iterator[Hit]:
    """
    Tenants are namespaces grouped by the value of a namespace label (`--tenant-label KEY`; without it,
    each namespace is its own tenant). Namespaces without the label belong to no tenant and are left out,
    and so are connections to the cluster DNS (pods labelled `k8s-app: kube-dns`). Every allowed connection
    between pods of different tenants is reported, grouped by the rule that allows it (ingress rules of the
    destination's policies, egress rules of the source's), with one connection per pair of tenants as an
    example, confirmed by the evaluator. Connections between pods that no policy isolates are reported once
    per destination namespace.

    ClusterNetworkPolicies count as `decide` applies them: an Admin or Baseline Deny removes what a
    NetworkPolicy rule would allow, and an Accept rule that lets tenants reach each other is reported at
    that rule, with an example the rule itself decides.

    Runs only when selected: `--tenant-label KEY`, `--select NP011`, or `select` in the configuration.
    """
    idx = ctx.index
    ten = _Tenants(ctx)
    for pol in ctx.cluster.policies:
        mine = ten.of.get(pol.namespace)
        near = idx.selected(pol)
        if mine is None or not near or mine not in ten.bits:
            continue
        others = ten.others(mine) & ~ten.dns
        for direction in (INGRESS, EGRESS):
            if not pol.affects(direction):
                continue
            for i, rule in enumerate(pol.rules(direction)):
                far = idx.rule_peers(pol, rule) & others
                if not far:
                    continue
                found = _across(ctx, ten, direction, rule, near & ~ten.dns if direction == INGRESS else near, far)
                if found:
                    yield ctx.at_rule(pol, direction, i), _message(pol, direction, i, mine, found)
    yield from _unisolated(ctx, ten)
    yield from _tier_accepts(ctx, ten)


def _message(pol: NetworkPolicy, direction: str, i: int, mine: str, found: dict[str, str]) -> str:
    pairs = [(f"{t} → {mine}" if direction == INGRESS else f"{mine} → {t}", found[t]) for t in sorted(found)]
    text = "; ".join(f"{p} (e.g. {example})" for p, example in pairs)
    return f"{direction} rule {i} of {pol.key} allows connections across tenants: {text}"


def _unisolated(ctx: Context, ten: _Tenants) -> Iterator[Hit]:
    idx = ctx.index
    open_src_all = ~ctx.isolated(EGRESS)
    for ns, tenant in ten.of.items():
        if tenant is None:
            continue
        open_dst = idx.in_ns[ns] & idx.policed & ~ctx.isolated(INGRESS) & ~ten.dns
        if not open_dst:
            continue
        found = []
        for other in sorted(ten.bits):
            open_src = ten.bits[other] & open_src_all if other != tenant else 0
            if open_src:
                example = _confirm(ctx, INGRESS, Rule(), _Side((), idx.all), open_src, open_dst)
                if example:
                    found.append(f"{other} → {tenant} (e.g. {example})")
        if found:
            yield ctx.at_namespace(ns), \
                f"pods of namespace {ns} that no policy isolates for ingress accept connections from other " \
                f"tenants' pods that no policy isolates for egress: {'; '.join(found)}"


def _tier_accepts(ctx: Context, ten: _Tenants) -> Iterator[Hit]:
    """Accept rules of ClusterNetworkPolicies that decide a connection between two tenants."""
    pods = [p for p in ctx.cluster.pods if not p.host_network and p.addresses and ten.of.get(p.namespace)]
    dns = {p.key for p in ctx.cluster.pods if p.labels.get("k8s-app") == "kube-dns"}
    for cnp in ctx.cluster.cluster_policies:
        subject = [p for p in pods if subject_of(ctx.cluster, cnp, p)]
        for direction in (INGRESS, EGRESS):
            for i, rule in enumerate(cnp.rules(direction)):
                if rule.action != Action.ACCEPT:
                    continue
                peers = [p for p in pods if p.key not in dns and any(
                    tiers.peer_matches(ctx.cluster, peer, Endpoint(pod=p), None) for peer in rule.peers)]
                found = _tier_examples(ctx, ten, cnp.key, direction, i, rule, subject, peers)
                if found:
                    text = "; ".join(f"{pair} (e.g. {example})" for pair, example in sorted(found.items()))
                    yield at_cnp(ctx, cnp, "spec", str(direction), i, "from" if direction == INGRESS else "to"), \
                        f"{direction} rule {i} of {cnp.key} accepts connections across tenants: {text}"


def _tier_examples(ctx: Context, ten: _Tenants, key: str, direction: str, index: int, rule: CnpRule,
                   subject: list[Pod], peers: list[Pod]) -> dict[str, str]:
    """Per tenant pair, one connection this very rule decides (confirmed by `decide`)."""
    found: dict[str, str] = {}
    tries: dict[str, int] = {}
    for own in subject:
        for peer in peers:
            mine, theirs = ten.of[own.namespace], ten.of[peer.namespace]
            src, dst = (peer, own) if direction == INGRESS else (own, peer)
            pair = f"{ten.of[src.namespace]} → {ten.of[dst.namespace]}"
            if mine == theirs or pair in found or tries.get(pair, 0) >= TRIES:
                continue
            tries[pair] = tries.get(pair, 0) + 1
            named = [(cp.port, cp.protocol) for p in rule.ports or () if p.name for cp in dst.named_port(p.name)]
            numeric = [(p.lo, str(p.protocol)) for p in rule.ports or () if p.name is None]
            for port, proto in dict.fromkeys(named + numeric + _probes(dst, [])):
                v = decide(ctx.cluster, Endpoint(pod=src), Endpoint(pod=dst), port, proto, ctx.opts)
                side = v.ingress if direction == INGRESS else v.egress
                by = side.decided_by
                if v.allowed and by is not None and (by.policy, by.rule) == (key, index):
                    found[pair] = f"{src.key} → {dst.key} {proto}/{port}"
                    break
    return found
