"""compile: what one node's kernel must know to enforce the cluster's policies, as plain data.

For every policy (all of them, wherever their pods run, so the shape of the ruleset never depends on
pods) the plan holds the local pods it selects, and per rule the peer addresses per family as merged
intervals and the port matchers. Everything is resolved with the evaluator's own matching functions
(`resolve`), so the kernel and `decide` agree packet by packet. The kernel sees one family per packet,
so a dual-stack pod contributes each address to the set of its own family.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import Cluster, IPAddress, NetworkPolicy, Peer, Pod, Rule
from .nftsets import Span, Spans, contains, merge, network_span, subtract
from .resolve import Endpoint, Options, peer_matches, selects

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

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[RulePlan, ...]:
        return self.ingress if direction == INGRESS else self.egress


@dataclass(frozen=True)
class Plan:
    node: str | None
    pods: tuple[str, ...]  # local policed pods
    enforced: tuple[str, ...]  # those of them isolated in some direction
    policies: tuple[PolicyPlan, ...]  # every policy, sorted by key
    isolated: Mapping[str, Mapping[IPAddress, str]]  # direction -> local pod address -> its namespace
    chains: Mapping[str, tuple[str, ...]]  # direction -> namespaces with a policy of that direction


@dataclass(frozen=True)
class _Ctx:
    cluster: Cluster
    opts: Options
    policed: tuple[Pod, ...]  # pods selectors can match: real, addressed, off the host network
    addressed: tuple[Pod, ...]  # every real pod with an address (host network too: named ports)
    holes: Mapping[int, Spans]  # policed addresses, cut from ipBlocks when they must not match pods
    by_ns: Mapping[str, list[Pod]]  # policed pods per namespace
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
    """Addresses of the pods a selector peer matches; policies often repeat peers, so remember."""
    key = (peer, pol.namespace)
    if key not in ctx.memo:
        if peer.namespace_selector is None:
            namespaces = [pol.namespace]
        else:  # only a cheap first cut: peer_matches below has the last word
            namespaces = [ns for ns in ctx.by_ns if peer.namespace_selector.matches(ctx.cluster.ns_labels(ns))]
        ctx.memo[key] = [a for ns in namespaces for pod in ctx.by_ns.get(ns, ())
                         if peer_matches(ctx.cluster, pol, peer, Endpoint(pod=pod), None, ctx.opts)
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


def _named_ports(rule: Rule, targets: Iterable[Pod], peers: Mapping[int, Spans] | None
                 ) -> dict[int, frozenset[NamedPort]] | None:
    """Named ports mean what the destination pod calls them, protocol included, per pod address."""
    entries = [e for e in rule.ports if isinstance(e.port, str)]
    if not entries:
        return None
    out: dict[int, set[NamedPort]] = {v: set() for v in FAMILIES}
    for pod in targets:
        for addr in pod.addresses:
            if peers is not None and not contains(peers[addr.version], int(addr)):
                continue  # the peer match would refuse this destination anyway
            for e in entries:
                out[addr.version].update(NamedPort(addr, e.protocol, cp.port)
                                         for cp in pod.named_port(e.port) if cp.protocol == e.protocol)
    return {v: frozenset(s) for v, s in out.items()}


def _rule(ctx: _Ctx, pol: NetworkPolicy, direction: str, index: int, rule: Rule,
          selected: list[Pod]) -> RulePlan:
    peers = _peer_spans(ctx, pol, rule)
    if direction == INGRESS:  # the destination is the selected pod
        named = _named_ports(rule, selected, None)
    else:  # the destination is the peer, whichever pod holds the address
        named = _named_ports(rule, ctx.addressed, peers)
    return RulePlan(direction, index, peers, _port_ranges(rule), named)


def _policy(ctx: _Ctx, pol: NetworkPolicy, local: list[Pod]) -> PolicyPlan:
    selected = [p for p in local if selects(pol, p)]
    directions = tuple(d for d in DIRECTIONS if pol.affects(d))
    rules = {d: tuple(_rule(ctx, pol, d, i, r, selected) for i, r in enumerate(pol.rules(d)))
             if d in directions else () for d in DIRECTIONS}
    by_family = _by_family(a for p in selected for a in p.addresses)
    return PolicyPlan(pol.namespace, pol.name, directions,
                      {v: tuple(sorted(set(addrs))) for v, addrs in by_family.items()},
                      rules[INGRESS], rules[EGRESS])


def _isolated(cluster: Cluster, pod: Pod, direction: str) -> bool:
    return any(p.affects(direction) and selects(p, pod) for p in cluster.policies_in(pod.namespace))


def compile_plan(cluster: Cluster, node: str | None = None, opts: Options = Options()) -> Plan:
    """The plan for the pods of one node (None: every pod, as in a lab with one node)."""
    addressed = tuple(p for p in cluster.pods if p.kind == "Pod" and p.ips)
    policed = tuple(p for p in addressed if not p.host_network)
    local = [p for p in policed if node is None or p.node_name == node]
    by_ns: dict[str, list[Pod]] = {}
    for p in policed:
        by_ns.setdefault(p.namespace, []).append(p)
    ctx = _Ctx(cluster, opts, policed, addressed, _points(a for p in policed for a in p.addresses), by_ns)
    policies = tuple(_policy(ctx, pol, local) for pol in sorted(cluster.policies, key=lambda p: p.key))
    isolated = {d: {a: p.namespace for p in local if _isolated(cluster, p, d) for a in p.addresses}
                for d in DIRECTIONS}
    chains = {d: tuple(sorted({p.namespace for p in cluster.policies if p.affects(d)})) for d in DIRECTIONS}
    enforced = tuple(p.key for p in local if any(_isolated(cluster, p, d) for d in DIRECTIONS))
    return Plan(node, tuple(p.key for p in local), enforced, policies, isolated, chains)
