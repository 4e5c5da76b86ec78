"""compile: what one node's kernel must know to enforce the cluster's policies, as plain data.

For every policy (all of them, wherever their pods run, so the shape of the ruleset never depends on
pods) the plan holds the local pods it selects, and per rule the peer addresses per family as merged
intervals and the port matchers. Selectors are matched with the model's own `LabelSelector.matches`,
under the rules of `resolve.peer_matches`, so the kernel and `decide` agree packet by packet; an
index by namespace and label keeps that cheap at 10k pods. The kernel sees one family per packet,
so a dual-stack pod contributes each address to the set of its own family.

`update_plan` brings a plan up to date after pods came, went or changed, looking only at the
addresses those pods held or hold: everything pods put into a plan is a function of each address
and the pods holding it. It must equal `compile_plan` of the new cluster (property-tested).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from netpol.k8s.model import Cluster, IPAddress, LabelSelector, Namespace, NetworkPolicy, Peer, Pod, Rule
from netpol.spans import Span, Spans, contains, merge, network_span, subtract, with_points
from netpol.evaluate.resolve import Options
from netpol.gcpause import gc_paused as paused_gc

INGRESS, EGRESS = "ingress", "egress"
DIRECTIONS = (INGRESS, EGRESS)
FAMILIES = (4, 6)
ALL_PORTS = (0, 65535)


@dataclass(frozen=True)
class PortRange:
    protocol: str  # TCP, UDP or SCTP
    lo: int
    hi: int


@dataclass(frozen=True)
class NamedPort:
    """A named port resolved on one destination pod address."""

    address: IPAddress
    protocol: str
    port: int


@dataclass(frozen=True)
class RulePlan:
    direction: str
    index: int
    peers: Mapping[int, Spans] | None  # per family; None: any peer (from/to absent or empty)
    ports: tuple[PortRange, ...] | None  # merged per protocol; None: the rule has no numeric port entry
    named: Mapping[int, frozenset[NamedPort]] | None  # per family; None: the rule has no named port
    # From the policy alone, so the ruleset's shape never depends on pods: the families of its
    # ipBlock peers (other families' peers are pod addresses only, points: no interval lookup),
    # whether it has selector peers, and the protocols of its named-port entries.
    blocks: tuple[int, ...] = ()
    selectors: bool = False
    named_protocols: tuple[str, ...] = ()

    @property
    def any_port(self) -> bool:
        return self.ports is None and self.named is None


@dataclass(frozen=True)
class PolicyPlan:
    namespace: str
    name: str
    directions: tuple[str, ...]  # the directions it isolates (policyTypes)
    selected: Mapping[int, tuple[IPAddress, ...]]  # addresses of the local pods it selects
    ingress: tuple[RulePlan, ...] = ()
    egress: tuple[RulePlan, ...] = ()
    # the podSelector in a canonical form: policies of a namespace with equal ones select the same
    # pods, so the renderer walks them as one (None: never shared)
    selector: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[RulePlan, ...]:
        return self.ingress if direction == INGRESS else self.egress


@dataclass(frozen=True)
class Plan:
    node: str | None
    pods: tuple[str, ...]  # local policed pods, sorted by key
    enforced: tuple[str, ...]  # those of them isolated in some direction
    policies: tuple[PolicyPlan, ...]  # every policy, sorted by key
    # direction -> local pod address -> its namespace (an address two isolated local pods claim,
    # which the agent never lets happen, goes to the greater key)
    isolated: Mapping[str, Mapping[IPAddress, str]]
    chains: Mapping[str, tuple[str, ...]]  # direction -> namespaces with a policy of that direction
    memory: Memory | None = field(default=None, compare=False, repr=False)  # for update_plan


class _Index:
    """Policed pods by namespace and by label, so a selector only looks at pods that could match.

    Results are remembered per (selector, namespace): policies repeat the same selectors a lot.
    Matching itself is still the model's own `LabelSelector.matches`; the index only narrows.
    """

    def __init__(self, cluster: Cluster, pods: Iterable[Pod]) -> None:
        self.cluster = cluster
        self.by_ns: dict[str, list[Pod]] = {}
        self.by_label: dict[str, dict[tuple[str, str], list[Pod]]] = {}
        for p in pods:
            self.by_ns.setdefault(p.namespace, []).append(p)
            labels = self.by_label.setdefault(p.namespace, {})
            for kv in p.labels.items():
                labels.setdefault(kv, []).append(p)
        self._pods: dict[tuple[LabelSelector | None, str], tuple[Pod, ...]] = {}
        self._namespaces: dict[LabelSelector, tuple[str, ...]] = {}

    def pods(self, sel: LabelSelector | None, namespace: str) -> tuple[Pod, ...]:
        """Policed pods of a namespace that sel matches (None: all of them), in cluster order."""
        key = (sel, namespace)
        found = self._pods.get(key)
        if found is None:
            candidates = self.by_ns.get(namespace, [])
            if sel is not None and sel.match_labels:
                labels = self.by_label.get(namespace, {})
                candidates = min((labels.get(kv, []) for kv in sel.match_labels), key=len)
            found = self._pods[key] = tuple(p for p in candidates if sel is None or sel.matches(p.labels))
        return found

    def namespaces(self, sel: LabelSelector) -> tuple[str, ...]:
        """Namespaces with policed pods whose labels sel matches."""
        found = self._namespaces.get(sel)
        if found is None:
            found = self._namespaces[sel] = tuple(ns for ns in self.by_ns if sel.matches(self.cluster.ns_labels(ns)))
        return found


@dataclass(frozen=True)
class _Ctx:
    cluster: Cluster
    opts: Options
    index: _Index  # policed pods: real, addressed, off the host network
    addressed: Mapping[int, tuple[list[int], list[Pod]]]  # per family: sorted addresses of real pods, and
    # the pod holding each (host network too: named ports resolve on whichever pod holds the address)
    holes: Mapping[int, Spans]  # policed addresses, cut from ipBlocks when they must not match pods
    memo: dict = field(default_factory=dict)


def _by_family(addresses: Iterable[IPAddress]) -> dict[int, list[IPAddress]]:
    out: dict[int, list[IPAddress]] = {v: [] for v in FAMILIES}
    for a in addresses:
        out[a.version].append(a)
    return out


def _points(addresses: Iterable[IPAddress]) -> dict[int, Spans]:
    return {v: merge((int(a), int(a)) for a in addrs) for v, addrs in _by_family(addresses).items()}


def _peer_spans(ctx: _Ctx, pol: NetworkPolicy, rule: Rule) -> dict[int, Spans] | None:
    if not rule.peers:
        return None
    spans: dict[int, list[Span]] = {v: [] for v in FAMILIES}
    for peer in rule.peers:
        block = peer.ip_block
        if block is not None:
            v = block.network.version
            got = subtract((network_span(block.network),),
                           merge(network_span(e) for e in block.excepts if e.version == v))
            if not ctx.opts.ipblock_pods:
                got = subtract(got, ctx.holes[v])
            spans[v] += got
            continue
        for a in _selected_by(ctx, pol, peer):
            spans[a.version].append((int(a), int(a)))
    return {v: merge(s) for v, s in spans.items()}


def _selected_by(ctx: _Ctx, pol: NetworkPolicy, peer: Peer) -> list[IPAddress]:
    """Addresses of the pods a selector peer matches, as `resolve.peer_matches` would say."""
    key = (peer, pol.namespace)
    if key not in ctx.memo:
        if peer.namespace_selector is None:
            namespaces: Iterable[str] = (pol.namespace,)
        else:
            namespaces = ctx.index.namespaces(peer.namespace_selector)
        ctx.memo[key] = [a for ns in namespaces for pod in ctx.index.pods(peer.pod_selector, ns)
                         for a in pod.addresses]
    return ctx.memo[key]


def _port_ranges(rule: Rule) -> tuple[PortRange, ...] | None:
    numeric = [e for e in rule.ports if not isinstance(e.port, str)]
    if not numeric:
        return None
    per_proto: dict[str, list[Span]] = {}
    for e in numeric:
        span = ALL_PORTS if e.port is None else (e.port, e.end_port or e.port)
        per_proto.setdefault(e.protocol, []).append(span)
    return tuple(PortRange(proto, lo, hi) for proto in sorted(per_proto) for lo, hi in merge(per_proto[proto]))


def _holders(ctx: _Ctx, peers: Mapping[int, Spans]) -> Iterator[Pod]:
    """Real pods holding an address inside peers (once per address they hold there)."""
    for v in FAMILIES:
        keys, pods = ctx.addressed[v]
        for lo, hi in peers[v]:
            yield from pods[bisect.bisect_left(keys, lo):bisect.bisect_right(keys, hi)]


def _named_ports(rule: Rule, targets: Iterable[Pod], peers: Mapping[int, Spans] | None
                 ) -> dict[int, frozenset[NamedPort]] | None:
    """Named ports mean what the destination pod calls them, protocol included, per pod address."""
    entries = [e for e in rule.ports if isinstance(e.port, str)]
    if not entries:
        return None
    out: dict[int, set[NamedPort]] = {v: set() for v in FAMILIES}
    for pod in targets:
        found = [(e.protocol, cp.port) for e in entries for cp in pod.named_port(e.port) if cp.protocol == e.protocol]
        if not found:
            continue
        for addr in pod.addresses:
            if peers is not None and not contains(peers[addr.version], int(addr)):
                continue  # the peer match would refuse this destination anyway
            out[addr.version].update(NamedPort(addr, proto, port) for proto, port in found)
    return {v: frozenset(s) for v, s in out.items()}


def _rule(ctx: _Ctx, pol: NetworkPolicy, direction: str, index: int, rule: Rule,
          selected: list[Pod]) -> RulePlan:
    peers = _peer_spans(ctx, pol, rule)
    if direction == INGRESS:  # the destination is the selected pod
        named = _named_ports(rule, selected, None)
    else:  # the destination is the peer, whichever pod holds the address
        named = _named_ports(rule, _all_addressed(ctx) if peers is None else _holders(ctx, peers), peers)
    return RulePlan(direction, index, peers, _port_ranges(rule), named, *_shape(rule))


def _shape(rule: Rule) -> tuple[tuple[int, ...], bool, tuple[str, ...]]:
    """RulePlan's blocks, selectors and named_protocols."""
    blocks = tuple(sorted({p.ip_block.network.version for p in rule.peers if p.ip_block is not None}))
    named = tuple(sorted({e.protocol for e in rule.ports if isinstance(e.port, str)}))
    return blocks, any(p.ip_block is None for p in rule.peers), named


def _all_addressed(ctx: _Ctx) -> Iterator[Pod]:
    seen: set[int] = set()
    for v in FAMILIES:
        for pod in ctx.addressed[v][1]:
            if id(pod) not in seen:
                seen.add(id(pod))
                yield pod


def _policy(ctx: _Ctx, pol: NetworkPolicy, is_local: Callable[[Pod], bool]) -> tuple[PolicyPlan, list[Pod]]:
    """The policy's plan, and the local pods it selects."""
    selected = [p for p in ctx.index.pods(pol.pod_selector, pol.namespace) if is_local(p)]
    directions = tuple(d for d in DIRECTIONS if pol.affects(d))
    rules = {d: tuple(_rule(ctx, pol, d, i, r, selected) for i, r in enumerate(pol.rules(d)))
             if d in directions else () for d in DIRECTIONS}
    by_family = _by_family(a for p in selected for a in p.addresses)
    plan = PolicyPlan(pol.namespace, pol.name, directions,
                      {v: tuple(sorted(set(addrs))) for v, addrs in by_family.items()},
                      rules[INGRESS], rules[EGRESS], selector_key(pol.pod_selector))
    return plan, selected


def selector_key(sel: LabelSelector) -> str:
    """Equal for selectors that differ only in the order of their terms or of In/NotIn values."""
    exprs = sorted((r.key, r.operator, tuple(sorted(r.values))) for r in sel.match_expressions)
    return repr((tuple(sorted(set(sel.match_labels))), tuple(dict.fromkeys(exprs))))


def _address_index(pods: Iterable[Pod]) -> dict[int, tuple[list[int], list[Pod]]]:
    pairs: dict[int, list[tuple[int, int, Pod]]] = {v: [] for v in FAMILIES}
    for i, p in enumerate(pods):
        for a in p.addresses:
            pairs[a.version].append((int(a), i, p))
    out = {}
    for v, items in pairs.items():
        items.sort(key=lambda t: t[:2])
        out[v] = ([k for k, _, _ in items], [p for _, _, p in items])
    return out


def compile_plan(cluster: Cluster, node: str | None = None, opts: Options = Options()) -> Plan:
    """The plan for the pods of one node (None: every pod, as in a lab with one node)."""
    with paused_gc():
        return _compile(cluster, node, opts)


def _compile(cluster: Cluster, node: str | None, opts: Options) -> Plan:
    addressed = tuple(p for p in cluster.pods if p.kind == "Pod" and p.ips)
    policed = tuple(p for p in addressed if not p.host_network)
    local = [p for p in policed if node is None or p.node_name == node]
    ctx = _Ctx(cluster, opts, _Index(cluster, policed), _address_index(addressed),
               _points(a for p in policed for a in p.addresses))
    policies, isolating = [], {d: set() for d in DIRECTIONS}
    for pol in sorted(cluster.policies, key=lambda p: p.key):
        planned, selected = _policy(ctx, pol, lambda p: node is None or p.node_name == node)
        policies.append(planned)
        for d in planned.directions:  # a pod is isolated in d when a policy of d selects it
            isolating[d].update(id(p) for p in selected)
    local.sort(key=lambda p: p.key)
    isolated = {d: {a: p.namespace for p in local if id(p) in isolating[d] for a in p.addresses}
                for d in DIRECTIONS}
    chains = {d: tuple(sorted({p.namespace for p in cluster.policies if p.affects(d)})) for d in DIRECTIONS}
    enforced = tuple(p.key for p in local if any(id(p) in isolating[d] for d in DIRECTIONS))
    memory = Memory(opts, cluster.namespaces, tuple(sorted(cluster.policies, key=lambda p: p.key)),
                    {p.key: p for p in addressed}, _holder_index(addressed))
    return Plan(node, tuple(p.key for p in local), enforced, tuple(policies), isolated, chains, memory)


# ---- incremental ------------------------------------------------------------

RuleKey = tuple[int, str, int]  # (index in plan.policies, direction, rule index)


def _holder_index(pods: Iterable[Pod]) -> dict[IPAddress, tuple[Pod, ...]]:
    out: dict[IPAddress, tuple[Pod, ...]] = {}
    for p in pods:
        for a in dict.fromkeys(p.addresses):
            out[a] = out.get(a, ()) + (p,)
    return out


class _Rules:
    """The policies' pod-facing parts, for looking at one pod at a time: which policies of a namespace
    there are, which selector peers a namespace's pods could match, ipBlocks and named ports per rule."""

    def __init__(self, namespaces: Mapping[str, Namespace], policies: tuple[NetworkPolicy, ...]) -> None:
        self.scope = Cluster.model_construct(namespaces=namespaces)  # for ns_labels
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


@dataclass(frozen=True)
class Memory:
    """What update_plan needs to know of the cluster a plan was compiled from."""

    opts: Options
    namespaces: Mapping[str, Namespace]
    policies: tuple[NetworkPolicy, ...]  # sorted by key: one per plan.policies
    pods: Mapping[str, Pod]  # real pods (kind Pod, with addresses) by key
    holders: Mapping[IPAddress, tuple[Pod, ...]]  # address -> the real pods holding it
    rules: _Rules | None = None  # derived from policies and namespaces when first needed, then shared

    def with_rules(self) -> Memory:
        return self if self.rules else dataclasses.replace(self, rules=_Rules(self.namespaces, self.policies))


def update_plan(plan: Plan, cluster: Cluster, changed: Mapping[str, Pod | None], node: str | None = None,
                opts: Options = Options()) -> Plan:
    """compile_plan(cluster, node, opts), from the plan of the cluster as it was before `changed`.

    changed: the new version of every pod whose key differs between that cluster and `cluster`
    (None: gone). When namespaces, policies, node or options differ, or many pods changed, this is
    a full compile.
    """
    mem = plan.memory
    if (mem is None or plan.node != node or mem.opts != opts or len(changed) > max(64, len(mem.pods) // 4)
            or cluster.namespaces != mem.namespaces
            or tuple(sorted(cluster.policies, key=lambda p: p.key)) != mem.policies):
        return compile_plan(cluster, node, opts)
    with paused_gc():
        return _Update(plan, mem.with_rules(), changed).result()


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
                if sign > 0:
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

    def _isolates(self, fit: _Fit, d: str) -> bool:
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
            if want != contains(self._rule(key).peers[v], x):
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
            _place(enforced, key, here and any(self._isolates(self._fit(pod), d) for d in DIRECTIONS))
        touched = {j for j, _ in self.sel} | {k[0] for k, _ in self.peers} | {k[0] for k, _ in self.named}
        policies = tuple(self._policy(j, pp) if j in touched else pp for j, pp in enumerate(old.policies))
        isolated = {d: self.isolated.get(d, old.isolated[d]) for d in DIRECTIONS}
        mem = dataclasses.replace(self.mem, pods=self.pods, holders=self.holders)
        return Plan(old.node, tuple(pods), tuple(enforced), policies, isolated, old.chains, mem)

    def _policy(self, j: int, pp: PolicyPlan) -> PolicyPlan:
        selected = {v: _sorted_with(pp.selected[v], *self.sel.get((j, v), ((), ()))) for v in FAMILIES}
        rules = {d: tuple(self._rule_plan((j, d, i), rp) for i, rp in enumerate(pp.rules(d))) for d in DIRECTIONS}
        return dataclasses.replace(pp, selected=selected, ingress=rules[INGRESS], egress=rules[EGRESS])

    def _rule_plan(self, key: RuleKey, rp: RulePlan) -> RulePlan:
        peers, named = rp.peers, rp.named
        if any((key, v) in self.peers for v in FAMILIES):
            peers = {v: with_points(rp.peers[v], *self.peers.get((key, v), ((), ()))) for v in FAMILIES}
        if any((key, v) in self.named for v in FAMILIES):
            named = {v: (rp.named[v] - self.named[key, v][1]) | self.named[key, v][0] if (key, v) in self.named
                     else rp.named[v] for v in FAMILIES}
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
