"""The tenant isolation report: per ordered pair of tenants, what the network lets through and where
their workloads may share machines.

Tenants are namespaces grouped by a namespace label; nodes belong to the tenant their own label
names (the same key unless told otherwise), and nodes without it are a shared pool. Three ways a
pair (A, B) is not isolated:
- network: a workload of A may open a connection to a workload of B (workload connectivity, exact,
  tiers included; Services reach the same pods after DNAT, so they open nothing more);
- placement: a workload of A may be scheduled onto a node of B, or a pod of A runs on one;
- shared node: a host-network pod of A runs on a node where a workload of B may run. Traffic between
  a pod and its own node is always allowed, so the host-network pod reaches those pods whatever any
  policy says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from netpol.evaluate.conns import ConnSet
from netpol.evaluate.placement import BLOCKING, schedulable
from netpol.evaluate.views import group_pairs, union
from netpol.evaluate.workloads import Workload, connectivity, workloads
from netpol.k8s.model import Cluster, Node, Options, Pod

ISOLATED, NETWORK, COLOCATED = "isolated", "network-open", "co-located"


@dataclass(frozen=True)
class Finding:
    code: str  # placement | runs-on | shared-node | open-node | refused
    text: str
    src: str | None = None  # the pair it concerns (src tenant -> dst tenant), if any
    dst: str | None = None
    at: Pod | Node | None = None  # where it is written (for lint)
    subject: str = ""  # the workload a placement finding is about; `detail` the rest of its text
    detail: str = ""


@dataclass
class Pair:
    src: str
    dst: str
    network: ConnSet | None = None
    example: str = ""
    why: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def open(self) -> list[str]:
        """How the pair is open: network-open, co-located, both, or neither."""
        return [name for name, yes in ((NETWORK, self.network is not None), (COLOCATED, bool(self.findings))) if yes]

    @property
    def status(self) -> str:
        return ", ".join(self.open) or ISOLATED

    def to_json(self) -> dict:
        net = None if self.network is None else {"conn": str(self.network), "example": self.example, "why": self.why}
        return {"src": self.src, "dst": self.dst, "status": self.status, "open": self.open, "network": net,
                "placement": [{"code": f.code, "text": f.text} for f in self.findings]}


@dataclass
class Report:
    tenant_label: str
    node_label: str
    tenants: list[str]
    pairs: dict[tuple[str, str], Pair]
    others: list[Finding]  # not about one pair: nodes open to every namespace, pods refused

    @property
    def isolated(self) -> bool:
        return all(p.status == ISOLATED for p in self.pairs.values())

    def to_json(self) -> dict:
        return {"tenant_label": self.tenant_label, "node_tenant_label": self.node_label, "tenants": self.tenants,
                "isolated": self.isolated, "pairs": [p.to_json() for p in self.pairs.values()],
                "nodes": [{"code": f.code, "text": f.text} for f in self.others],
                "not_modelled": NOT_MODELLED}


NOT_MODELLED = ("resources, pod affinity and anti-affinity, topology spread and preferred terms (they only narrow "
                "where a pod may go); taints added after a pod was bound (NoSchedule ones do not evict it)")


def tenant_of(cluster: Cluster, namespace: str, label: str) -> str | None:
    return cluster.ns_labels(namespace).get(label) or None


class _Tenancy:
    def __init__(self, cluster: Cluster, label: str, node_label: str) -> None:
        self.cluster, self.label = cluster, label
        self.node_tenant = {n.name: n.labels.get(node_label) or None for n in cluster.nodes}

    def of(self, namespace: str) -> str | None:
        return tenant_of(self.cluster, namespace, self.label)

    def nodes_of_others(self, mine: str, nodes: list[Node]) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in nodes:
            t = self.node_tenant.get(n.name)
            if t is not None and t != mine:
                out.setdefault(t, []).append(n)
        return out


def placement_findings(cluster: Cluster, label: str, node_label: str, opts: Options = Options()
                       ) -> Iterator[Finding]:
    """Every placement finding: workloads schedulable onto other tenants' nodes, pods running there,
    host-network pods sharing a node with other tenants' workloads, tenant nodes open to anyone."""
    if not cluster.nodes:  # no partitions to check (pods bound to unknown nodes tell nothing either)
        return
    ten = _Tenancy(cluster, label, node_label)
    wls = workloads(cluster, opts)
    where: dict[str, list[Node]] = {}
    for w in wls:
        yield from _workload_findings(cluster, ten, w, where)
    yield from _running(cluster, ten)
    yield from _shared_nodes(cluster, ten, wls, where)
    for n in cluster.nodes:
        t = ten.node_tenant.get(n.name)
        if t is not None and not any(x.effect in BLOCKING for x in n.taints):
            yield Finding("open-node", f"node {n.name} ({t}) accepts pods of any namespace: it has no NoSchedule or "
                                       "NoExecute taint", at=n)


def _workload_findings(cluster: Cluster, ten: _Tenancy, w: Workload, where: dict[str, list[Node]]
                       ) -> Iterator[Finding]:
    mine = ten.of(w.namespace)
    nodes, refused = schedulable(cluster, w.rep)
    where[w.name] = nodes
    if refused:
        yield Finding("refused", f"{w.name} is refused at admission: {refused}", at=w.rep)
        return
    if mine is None:
        return
    for other, theirs in sorted(ten.nodes_of_others(mine, nodes).items()):
        names = ", ".join(n.name for n in theirs)
        open_ = [n.name for n in theirs if not any(x.effect in BLOCKING for x in n.taints)]
        why = f" ({', '.join(open_)} {'has' if len(open_) == 1 else 'have'} no taint)" if open_ else \
            " (it tolerates their taints)"
        detail = f"can be scheduled onto {other}'s node{'s' if len(theirs) > 1 else ''} {names}{why}"
        yield Finding("placement", f"{w.name} {detail}", mine, other, w.rep, w.name, detail)


def _running(cluster: Cluster, ten: _Tenancy) -> Iterator[Finding]:
    for p in cluster.pods:
        mine, node = ten.of(p.namespace), p.node_name
        there = ten.node_tenant.get(node) if node else None
        if p.kind == "Pod" and mine is not None and there is not None and there != mine:
            yield Finding("runs-on", f"pod {p.key} runs on {there}'s node {node}", mine, there, p)


def _shared_nodes(cluster: Cluster, ten: _Tenancy, wls: list[Workload], where: dict[str, list[Node]]
                  ) -> Iterator[Finding]:
    for host in cluster.pods:
        mine = ten.of(host.namespace)
        if not host.host_network or host.node_name is None or mine is None:
            continue
        for w in wls:
            theirs = ten.of(w.namespace)
            if theirs is None or theirs == mine:
                continue
            if any(n.name == host.node_name for n in where.get(w.name, ())) or \
                    any(p.node_name == host.node_name for p in w.pods):
                yield Finding("shared-node", f"{mine}'s host-network pod {host.key} on node {host.node_name} can "
                                             f"reach {w.name}, which may run on {host.node_name}; policy cannot block "
                                             "it (a pod's own node is always allowed)", mine, theirs, host)


def report(cluster: Cluster, label: str, node_label: str | None = None, opts: Options = Options(),
           explain: Callable[[str, str, ConnSet], str] = lambda s, d, c: "") -> Report:
    node_label = node_label or label
    names = sorted({t for ns in cluster.namespaces for t in [tenant_of(cluster, ns, label)] if t})
    pairs = {(a, b): Pair(a, b) for a in names for b in names if a != b}
    _network(cluster, label, opts, pairs, explain)
    others = []
    for f in _grouped(placement_findings(cluster, label, node_label, opts)):
        if f.src is not None and f.dst is not None and (f.src, f.dst) in pairs:
            pairs[(f.src, f.dst)].findings.append(f)
        elif f.src is None:
            others.append(f)
    return Report(label, node_label, names, pairs, others)


SHOWN = 5  # workloads named in one grouped placement finding


def _grouped(findings: Iterator[Finding]) -> list[Finding]:
    """Workloads of a tenant that may go to the same nodes of another tenant: one finding naming a few
    (lint keeps one per workload, at each of them)."""
    out: list[Finding] = []
    groups: dict[tuple, list[Finding]] = {}
    for f in findings:
        if f.code == "placement":
            key = (f.src, f.dst, f.detail)
            if key not in groups:
                groups[key] = []
                out.append(f)  # its place in the order; replaced below
            groups[key].append(f)
        else:
            out.append(f)
    for i, f in enumerate(out):
        members = groups.get((f.src, f.dst, f.detail)) if f.code == "placement" else None
        if members and len(members) > 1:
            names = ", ".join(m.subject for m in members[:SHOWN])
            more = f" and {len(members) - SHOWN} more" if len(members) > SHOWN else ""
            out[i] = Finding("placement", f"{names}{more} {f.detail}", f.src, f.dst, f.at, names, f.detail)
    return out


def _network(cluster: Cluster, label: str, opts: Options, pairs: dict[tuple[str, str], Pair],
             explain: Callable[[str, str, ConnSet], str]) -> None:
    """Per pair of tenants, the union of what their workloads may open, with an example."""
    def tenant(name: str) -> str | None:
        return None if name.endswith("[External]") else tenant_of(cluster, name.split("/", 1)[0], label)
    for key, (sets, (s, d, conn)) in group_pairs(connectivity(cluster, opts), tenant).items():
        pair = pairs.get(key)
        if pair is not None:
            pair.network, pair.example, pair.why = union(sets), f"{s} → {d}", explain(s, d, conn)
