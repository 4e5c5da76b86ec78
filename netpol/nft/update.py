"""update: a plan brought up to date after pods came, went or changed.

It looks only at the addresses those pods held or hold: everything pods put into a plan is a
function of each address and the pods holding it. It must equal `compile_plan` of the new cluster
(property-tested in tests/test_compile_incremental.py).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netpol.gcpause import gc_paused as paused_gc
from netpol.k8s.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    Cluster,
    Direction,
    IPAddress,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Options,
    Pod,
    Rule,
)
from netpol.nft import plan as plan_module
from netpol.nft.plan import FAMILIES, Memory, NamedPort, Plan, PolicyPlan, RulePlan
from netpol.spans import Spans, contains, merge, network_span, subtract, with_points

RuleKey = tuple[int, Direction, int]  # (index in plan.policies, direction, rule index)


class _Rules:
    """The policies' pod-facing parts, for looking at one pod at a time: which policies of a namespace
    there are, which selector peers a namespace's pods could match, ipBlocks and named ports per rule."""

    def __init__(self, namespaces: Mapping[str, Namespace], policies: tuple[NetworkPolicy, ...]) -> None:
        self.scope = Cluster.model_construct(namespaces=dict(namespaces))  # for ns_labels
        self.policies = policies
        self.by_ns: dict[str, list[int]] = {}
        self.peered: list[RuleKey] = []  # rules with from/to
        self.blocks: dict[RuleKey, dict[int, Spans]] = {}  # their ipBlocks, excepts cut
        self.named: dict[RuleKey, tuple[tuple[str, str], ...]] = {}  # (port name, protocol) per rule
        self._selectors: dict[str, list[tuple[RuleKey, LabelSelector | None]]] = {}
        for j, pol in enumerate(policies):
            self.by_ns.setdefault(pol.namespace, []).append(j)
            for d in (d for d in DIRECTIONS if pol.affects(d)):
                for i, rule in enumerate(pol.rules(d)):
                    self._rule((j, d, i), rule)

    def _rule(self, key: RuleKey, rule: Rule) -> None:
        if rule.peers:
            self.peered.append(key)
            blocks = [p.ip_block for p in rule.peers if p.ip_block is not None]
            if blocks:
                self.blocks[key] = {v: merge(s for b in blocks if b.network.version == v for s in subtract(
                    (network_span(b.network),), merge(network_span(e) for e in b.excepts if e.version == v)))
                                    for v in FAMILIES}
        names = tuple((e.port, e.protocol) for e in rule.ports if isinstance(e.port, str))
        if names:
            self.named[key] = names

    def selectors(self, namespace: str) -> list[tuple[RuleKey, LabelSelector | None]]:
        """Selector peers whose namespace part admits the pods of namespace, with their pod part."""
        found = self._selectors.get(namespace)
        if found is None:
            labels = self.scope.ns_labels(namespace)
            found = self._selectors[namespace] = []
            for j, d, i in self.peered:
                pol = self.policies[j]
                for peer in pol.rules(d)[i].peers:
                    ns_sel = peer.namespace_selector
                    if peer.ip_block is None and (
                            pol.namespace == namespace if ns_sel is None else ns_sel.matches(labels)):
                        found.append(((j, d, i), peer.pod_selector))
        return found


def update_plan(plan: Plan, cluster: Cluster, changed: Mapping[str, Pod | None], node: str | None = None,
                opts: Options = Options()) -> Plan:
    """compile_plan(cluster, node, opts), from the plan of the cluster as it was before `changed`.

    changed: the new version of every pod whose key differs between that cluster and `cluster`
    (None: gone). When namespaces, policies, node or options differ, or many pods changed, this is
    a full compile.
    """
    mem = plan.memory
    if (mem is None or plan.node != node or mem.opts != opts or len(changed) > max(64, len(mem.pods) // 4)
            or cluster.namespaces != mem.namespaces or plan.tiers or cluster.cluster_policies
            or tuple(sorted(cluster.policies, key=lambda p: p.key)) != mem.policies):
        return plan_module.compile_plan(cluster, node, opts, plan.pod_cidrs)  # tiers: not updated in place yet
    with paused_gc():
        return _Update(plan, _with_rules(mem), changed).result()


def _with_rules(mem: Memory) -> Memory:
    return mem if mem.rules else dataclasses.replace(mem, rules=_Rules(mem.namespaces, mem.policies))


@dataclass(frozen=True)
class _Fit:
    selected: frozenset[int]  # policies selecting the pod
    peers: frozenset[RuleKey]  # rules whose selector peers match it


class _Update:
    """One update: move the changed pods in the address index, then recompute each address they
    held or hold, and apply the differences to copies of the plan's parts."""

    def __init__(self, plan: Plan, mem: Memory, changed: Mapping[str, Pod | None]) -> None:
        self.old, self.mem, self.rules = plan, mem, mem.rules
        self.pods, self.holders = dict(mem.pods), dict(mem.holders)
        self.before: dict[IPAddress, tuple[Pod, ...]] = {}  # affected address -> its holders before
        self.keys: list[str] = []  # pods whose own membership may change
        self._fits: dict[int, _Fit] = {}
        self.sel: dict[tuple[int, int], tuple[list, list]] = {}  # (policy, family) -> adds, drops
        self.peers: dict[tuple[RuleKey, int], tuple[list, list]] = {}
        self.named: dict[tuple[RuleKey, int], tuple[set, set]] = {}
        self.isolated: dict[str, dict[IPAddress, str]] = {}  # copied when first changed
        for key, pod in changed.items():
            self._move(key, pod)

    def _move(self, key: str, new: Pod | None) -> None:
        old = self.mem.pods.get(key)
        new = new if new is not None and new.kind == "Pod" and new.ips else None
        if old is new:
            return
        self.keys.append(key)
        for pod, sign in ((old, -1), (new, 1)):
            if pod is None:
                continue
            for a in dict.fromkeys(pod.addresses):
                self.before.setdefault(a, self.mem.holders.get(a, ()))
                rest = tuple(p for p in self.holders.get(a, ()) if p is not old)
                if sign > 0 and new is not None:
                    rest += (new,)
                if rest:
                    self.holders[a] = rest
                else:
                    del self.holders[a]
        if new is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = new

    def _local(self, pod: Pod) -> bool:
        return not pod.host_network and (self.old.node is None or pod.node_name == self.old.node)

    def _fit(self, pod: Pod) -> _Fit:
        """For a policed pod: the policies selecting it, the rules whose selector peers match it."""
        fit = self._fits.get(id(pod))
        if fit is None:
            r = self.rules
            fit = self._fits[id(pod)] = _Fit(
                frozenset(j for j in r.by_ns.get(pod.namespace, ()) if r.policies[j].pod_selector.matches(pod.labels)),
                frozenset(k for k, sel in r.selectors(pod.namespace) if sel is None or sel.matches(pod.labels)))
        return fit

    def _rule(self, key: RuleKey) -> RulePlan:
        j, d, i = key
        return self.old.policies[j].rules(d)[i]

    def _isolates(self, fit: _Fit, d: Direction) -> bool:
        return any(d in self.old.policies[j].directions for j in fit.selected)

    # ---- one address -----------------------------------------------------

    def _address(self, a: IPAddress) -> None:
        v, x, old = a.version, int(a), self.old
        here = self.holders.get(a, ())
        policed = [(p, self._fit(p)) for p in here if not p.host_network]
        local = [(p, f) for p, f in policed if self._local(p)]
        chosen = frozenset().union(*(f.selected for _, f in local))
        for j, pp in enumerate(old.policies):
            if (j in chosen) != _has(pp.selected[v], a):
                self.sel.setdefault((j, v), ([], []))[j not in chosen].append(a)
        inside: dict[RuleKey, bool] = {}
        for key in self.rules.peered:
            block = self.rules.blocks.get(key)
            want = inside[key] = any(key in f.peers for _, f in policed) or (
                block is not None and (self.mem.opts.ipblock_pods or not policed) and contains(block[v], x))
            peers = self._rule(key).peers
            assert peers is not None  # a rule with from/to
            if want != contains(peers[v], x):
                self.peers.setdefault((key, v), ([], []))[not want].append(x)
        for key, names in self.rules.named.items():
            self._named(a, key, names, here, local, inside)
        for d in DIRECTIONS:
            isolated = [p for p, f in local if self._isolates(f, d)]
            ns = max(isolated, key=lambda p: p.key).namespace if isolated else None
            if self.old.isolated[d].get(a) != ns:
                self.isolated.setdefault(d, dict(self.old.isolated[d]))
                if ns is None:
                    del self.isolated[d][a]
                else:
                    self.isolated[d][a] = ns

    def _named(self, a: IPAddress, key: RuleKey, names: tuple[tuple[str, str], ...], here: tuple[Pod, ...],
               local: list[tuple[Pod, _Fit]], inside: dict[RuleKey, bool]) -> None:
        rp = self._rule(key)
        if key[1] == INGRESS:  # the destination is the selected pod
            targets: Iterable[Pod] = [p for p, f in local if key[0] in f.selected]
        else:  # the destination is whichever pod holds the address, if the peers admit it
            targets = here if rp.peers is None or inside[key] else ()
        want = {NamedPort(a, proto, port) for p in targets for proto, port in _found(p, names)}
        maybe = want | {NamedPort(a, proto, port) for p in self.before[a] for proto, port in _found(p, names)}
        assert rp.named is not None  # a rule with named ports
        have = {n for n in maybe if n in rp.named[a.version]}
        if want != have:
            adds, drops = self.named.setdefault((key, a.version), (set(), set()))
            adds |= want - have
            drops |= have - want

    # ---- the new plan ------------------------------------------------------

    def result(self) -> Plan:
        for a in self.before:
            self._address(a)
        old = self.old
        pods, enforced = list(old.pods), list(old.enforced)
        for key in self.keys:
            pod = self.pods.get(key)
            here = pod is not None and self._local(pod)
            _place(pods, key, here)
            _place(enforced, key, pod is not None and here
                   and any(self._isolates(self._fit(pod), d) for d in DIRECTIONS))
        touched = {j for j, _ in self.sel} | {k[0] for k, _ in self.peers} | {k[0] for k, _ in self.named}
        policies = tuple(self._policy(j, pp) if j in touched else pp for j, pp in enumerate(old.policies))
        isolated = {d: self.isolated.get(d, old.isolated[d]) for d in DIRECTIONS}
        mem = dataclasses.replace(self.mem, pods=self.pods, holders=self.holders)
        return Plan(old.node, tuple(pods), tuple(enforced), policies, isolated, old.chains, mem, old.pod_cidrs)

    def _policy(self, j: int, pp: PolicyPlan) -> PolicyPlan:
        selected = {v: _sorted_with(pp.selected[v], *self.sel.get((j, v), ((), ()))) for v in FAMILIES}
        rules = {d: tuple(self._rule_plan((j, d, i), rp) for i, rp in enumerate(pp.rules(d))) for d in DIRECTIONS}
        return dataclasses.replace(pp, selected=selected, ingress=rules[INGRESS], egress=rules[EGRESS])

    def _rule_plan(self, key: RuleKey, rp: RulePlan) -> RulePlan:
        peers, named = rp.peers, rp.named
        if rp.peers is not None and any((key, v) in self.peers for v in FAMILIES):
            old_peers = rp.peers
            peers = {v: with_points(old_peers[v], *self.peers.get((key, v), ((), ()))) for v in FAMILIES}
        if rp.named is not None and any((key, v) in self.named for v in FAMILIES):
            old_named = rp.named
            named = {v: (old_named[v] - self.named[key, v][1]) | self.named[key, v][0] if (key, v) in self.named
                     else old_named[v] for v in FAMILIES}
        return rp if peers is rp.peers and named is rp.named else dataclasses.replace(rp, peers=peers, named=named)


def _found(pod: Pod, names: tuple[tuple[str, str], ...]) -> list[tuple[str, int]]:
    """(protocol, port) of each named port entry as this pod defines it, protocol included."""
    return [(proto, cp.port) for name, proto in names for cp in pod.named_port(name) if cp.protocol == proto]


def _has(items: tuple, x) -> bool:
    i = bisect.bisect_left(items, x)
    return i < len(items) and items[i] == x


def _place(items: list, x, present: bool) -> None:
    """Insert x into, or remove it from, a sorted list."""
    i = bisect.bisect_left(items, x)
    there = i < len(items) and items[i] == x
    if present and not there:
        items.insert(i, x)
    elif there and not present:
        del items[i]


def _sorted_with(items: tuple, adds: Iterable, drops: Iterable) -> tuple:
    out = list(items)
    for x in drops:
        _place(out, x, False)
    for x in adds:
        _place(out, x, True)
    return tuple(out)
