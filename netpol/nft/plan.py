"""plan: what one node's kernel must know to enforce the cluster's policies, as plain data.

For every policy (all of them, wherever their pods run, so the shape of the ruleset never depends on
pods) the plan holds the local pods it selects, and per rule the peer addresses per family as merged
intervals and the port matchers. Selectors are matched with the model's own `LabelSelector.matches`,
under the rules of `resolve.peer_matches`, so the kernel and `decide` agree packet by packet; an
index by namespace and label keeps that cheap at 10k pods. The kernel sees one family per packet,
so a dual-stack pod contributes each address to the set of its own family.

`nft/update.py` brings a plan up to date after pods came, went or changed; `Memory` is what it
keeps of the cluster a plan was compiled from.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netpol.gcpause import gc_paused as paused_gc
from netpol.k8s.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    Action,
    Cluster,
    Direction,
    IPAddress,
    IPNetwork,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Options,
    Peer,
    Pod,
    Rule,
    Tier,
)
from netpol.spans import Span, Spans, contains, merge, network_span, subtract

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
    direction: Direction
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
    directions: tuple[Direction, ...]  # the directions it isolates (policyTypes)
    selected: Mapping[int, tuple[IPAddress, ...]]  # addresses of the local pods it selects
    ingress: tuple[RulePlan, ...] = ()
    egress: tuple[RulePlan, ...] = ()
    # the podSelector in a canonical form: policies of a namespace with equal ones select the same
    # pods, so the renderer walks them as one (None: never shared)
    selector: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[RulePlan, ...]:
        return self.ingress if direction == INGRESS else self.egress


@dataclass(frozen=True)
class TierRule:
    action: Action
    plan: RulePlan


@dataclass(frozen=True)
class TierPlan:
    """A ClusterNetworkPolicy for one node: the local pods its subject selects, and its rules."""

    key: str  # cnp/<name> (anp/, banp/ for v1alpha1)
    tier: Tier
    priority: int
    selected: Mapping[int, tuple[IPAddress, ...]]
    ingress: tuple[TierRule, ...] = ()
    egress: tuple[TierRule, ...] = ()

    @property
    def name(self) -> str:
        return self.key.partition("/")[2]

    def rules(self, direction: Direction) -> tuple[TierRule, ...]:
        return self.ingress if direction == INGRESS else self.egress


@dataclass(frozen=True)
class Plan:
    node: str | None
    pods: tuple[str, ...]  # local policed pods, sorted by key
    enforced: tuple[str, ...]  # those of them isolated in some direction
    policies: tuple[PolicyPlan, ...]  # every policy, sorted by key
    # direction -> local pod address -> its namespace (an address two isolated local pods claim,
    # which the agent never lets happen, goes to the greater key)
    isolated: Mapping[Direction, Mapping[IPAddress, str]]
    chains: Mapping[Direction, tuple[str, ...]]  # direction -> namespaces with a policy of that direction
    memory: Memory | None = field(default=None, compare=False, repr=False)  # for update_plan
    # the node's pod CIDRs: an address in them that no local pod holds yet is held back (render)
    pod_cidrs: tuple[IPNetwork, ...] = ()
    tiers: tuple[TierPlan, ...] = ()  # ClusterNetworkPolicies, in the order they apply

    def addresses(self) -> Iterator[IPAddress]:
        """The addresses of the local policed pods: those the rules know."""
        assert self.memory is not None
        for key in self.pods:
            yield from self.memory.pods[key].addresses


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
        span = ALL_PORTS if not isinstance(e.port, int) else (e.port, e.end_port or e.port)
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
    entries = [(e.protocol, e.port) for e in rule.ports if isinstance(e.port, str)]
    if not entries:
        return None
    out: dict[int, set[NamedPort]] = {v: set() for v in FAMILIES}
    for pod in targets:
        found = [(proto, cp.port) for proto, name in entries for cp in pod.named_port(name) if cp.protocol == proto]
        if not found:
            continue
        for addr in pod.addresses:
            if peers is not None and not contains(peers[addr.version], int(addr)):
                continue  # the peer match would refuse this destination anyway
            out[addr.version].update(NamedPort(addr, proto, port) for proto, port in found)
    return {v: frozenset(s) for v, s in out.items()}


def _rule(ctx: _Ctx, pol: NetworkPolicy, direction: Direction, index: int, rule: Rule,
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


def compile_plan(cluster: Cluster, node: str | None = None, opts: Options = Options(),
                 pod_cidrs: Iterable[IPNetwork] | None = None) -> Plan:
    """The plan for the pods of one node (None: every pod, as in a lab with one node). pod_cidrs:
    the node's pod CIDRs (None: its Node object's spec.podCIDRs, if the cluster has it)."""
    if pod_cidrs is None:
        pod_cidrs = next((n.pod_cidrs for n in cluster.nodes if n.name == node), ())
    with paused_gc():
        return dataclasses.replace(_compile(cluster, node, opts), pod_cidrs=tuple(pod_cidrs))


def _compile(cluster: Cluster, node: str | None, opts: Options) -> Plan:
    addressed = tuple(p for p in cluster.pods if p.kind == "Pod" and p.ips)
    policed = tuple(p for p in addressed if not p.host_network)
    local = [p for p in policed if node is None or p.node_name == node]
    ctx = _Ctx(cluster, opts, _Index(cluster, policed), _address_index(addressed),
               _points(a for p in policed for a in p.addresses))
    policies: list[PolicyPlan] = []
    isolating: dict[Direction, set[int]] = {d: set() for d in DIRECTIONS}
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
    from netpol.nft.tierplan import plan_tiers  # tiers build on this module's rule plans
    tiers = plan_tiers(ctx, cluster, lambda p: node is None or p.node_name == node)
    return Plan(node, tuple(p.key for p in local), enforced, tuple(policies), isolated, chains, memory, (), tiers)


def _holder_index(pods: Iterable[Pod]) -> dict[IPAddress, tuple[Pod, ...]]:
    out: dict[IPAddress, tuple[Pod, ...]] = {}
    for p in pods:
        for a in dict.fromkeys(p.addresses):
            out[a] = out.get(a, ()) + (p,)
    return out


@dataclass(frozen=True)
class Memory:
    """What update_plan needs to know of the cluster a plan was compiled from."""

    opts: Options
    namespaces: Mapping[str, Namespace]
    policies: tuple[NetworkPolicy, ...]  # sorted by key: one per plan.policies
    pods: Mapping[str, Pod]  # real pods (kind Pod, with addresses) by key
    holders: Mapping[IPAddress, tuple[Pod, ...]]  # address -> the real pods holding it
    rules: Any = None  # update's index of the policies, made when first needed, then shared
