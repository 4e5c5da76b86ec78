"""Which part of a change caused a connectivity change between two workloads.

A pair's verdict depends only on the policies that select the destination for ingress and the source
for egress (NetworkPolicy or a ClusterNetworkPolicy subject), and on what those policies can see of the
two ends (labels, namespace labels, ports, addresses). So a change of the pair is caused by the
changed policies that select one of its ends, before or after, and by changes to its ends: nothing
else can move it. Policies are compared by content, not by where they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from netpol.evaluate import resolve, tiers
from netpol.evaluate.resolve import Endpoint, selects
from netpol.evaluate.tiers import subject_of
from netpol.evaluate.workloads import workloads
from netpol.k8s.model import EGRESS, INGRESS, Cluster, ClusterNetworkPolicy, NetworkPolicy, Options, Pod

AnyPolicy = NetworkPolicy | ClusterNetworkPolicy


def _content(policy: AnyPolicy) -> dict:
    return policy.model_dump(exclude={"source"})


def _kind(policy: AnyPolicy) -> str:
    return policy.kind if isinstance(policy, ClusterNetworkPolicy) else "NetworkPolicy"


@dataclass(frozen=True)
class PolicyChange:
    verb: str  # added | removed | modified
    old: AnyPolicy | None
    new: AnyPolicy | None

    @property
    def policy(self) -> AnyPolicy:
        policy = self.new or self.old
        assert policy is not None
        return policy

    @property
    def key(self) -> str:
        return self.policy.key

    @property
    def text(self) -> str:
        return f"{_kind(self.policy)} {self.key} {self.verb}"


def _all(c: Cluster) -> tuple[AnyPolicy, ...]:
    return (*c.policies, *c.cluster_policies)


def policy_changes(old: Cluster, new: Cluster) -> list[PolicyChange]:
    def by_key(c: Cluster) -> dict[str, AnyPolicy]:
        return {p.key: p for p in _all(c)}
    before, after = by_key(old), by_key(new)
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            out.append(PolicyChange("added" if a is None else "removed", a, b))
        elif _content(a) != _content(b):
            out.append(PolicyChange("modified", a, b))
    return out


def _governs(cluster: Cluster, policy: AnyPolicy | None, pod: Pod, direction: str) -> bool:
    if policy is None:
        return False
    if isinstance(policy, ClusterNetworkPolicy):
        return subject_of(cluster, policy, pod)
    return policy.affects(direction) and selects(policy, pod)


def _seen(cluster: Cluster, policy: AnyPolicy, pod: Pod, opts: Options) -> tuple:
    """Everything `policy` can tell about `pod`: whether it selects it, which peers match it (per IP
    family), what its named ports resolve to."""
    ep = Endpoint(pod=pod)
    if isinstance(policy, ClusterNetworkPolicy):
        rules = policy.ingress + policy.egress
        chosen = subject_of(cluster, policy, pod)
        peers = [tiers.peer_matches(cluster, p, ep, v) for r in rules for p in r.peers for v in (4, 6)]
        names = {p.name for r in rules for p in r.ports or () if p.name is not None}
    else:
        chosen = selects(policy, pod)
        np_rules = policy.ingress + policy.egress
        peers = [resolve.peer_matches(cluster, policy, p, ep, v, opts) for r in np_rules for p in r.peers
                 for v in (4, 6)]
        names = {e.port for r in np_rules for e in r.ports if isinstance(e.port, str)}
    return chosen, tuple(peers), tuple(tuple(pod.named_port(n)) for n in sorted(names))


class Causes:
    """Cause lines for workload pairs of one diff, memoized per workload so many pairs stay cheap:
    only changed policies are matched for every workload; all policies only for ends that changed."""

    def __init__(self, old: Cluster, new: Cluster, opts: Options = Options()) -> None:
        self.old, self.new, self.opts = old, new, opts
        self.changes = policy_changes(old, new)
        self.pods = ({w.name: w.rep for w in workloads(old, opts)}, {w.name: w.rep for w in workloads(new, opts)})
        self._memo: dict[tuple, tuple] = {}
        before, after = ({p.key: p for p in _all(c)} for c in (old, new))
        self._every = [PolicyChange("", before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())]

    def _memoized(self, key: tuple, compute: Callable[[], Iterable]) -> tuple:
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = tuple(compute())
        return found

    def _versions(self, name: str, direction: str, policies: Iterable[PolicyChange]) -> Iterator[PolicyChange]:
        """The (policy change or unchanged policy) entries whose old or new version governs a side."""
        before, after = self.pods[0].get(name), self.pods[1].get(name)
        for ch in policies:
            if (before is not None and _governs(self.old, ch.old, before, direction)) or \
                    (after is not None and _governs(self.new, ch.new, after, direction)):
                yield ch

    def _changed(self, name: str, direction: str) -> tuple[PolicyChange, ...]:
        return self._memoized(("changed", name, direction),
                              lambda: self._versions(name, direction, self.changes))

    def _all(self, name: str, direction: str) -> tuple[PolicyChange, ...]:
        return self._memoized(("all", name, direction), lambda: self._versions(name, direction, self._every))

    def _end(self, name: str, src: str, dst: str) -> tuple[str, ...]:
        """How the end `name` changed, in what the policies that govern the pair can see."""
        before, after = self.pods[0].get(name), self.pods[1].get(name)
        if before is None or after is None:
            return ()
        a, b = _look(self.old, before), _look(self.new, after)
        if a == b:
            return ()
        versions = [v for ch in self._all(src, EGRESS) + self._all(dst, INGRESS) for v in (ch.old, ch.new) if v]
        if all(_seen(self.old, pol, before, self.opts) == _seen(self.new, pol, after, self.opts) for pol in versions):
            return ()
        return tuple(f"{part} of {name} changed" for part, x, y in zip(_PARTS, a, b, strict=True) if x != y)

    def of(self, src: str, dst: str) -> tuple[str, ...]:
        """The changed policies that govern the pair, then the changes to its ends that the policies
        governing it can see."""
        policies = sorted({ch.text for ch in self._changed(src, EGRESS) + self._changed(dst, INGRESS)})
        return (*policies, *self._end(src, src, dst), *self._end(dst, src, dst))


def _look(cluster: Cluster, pod: Pod) -> tuple:
    """What policies can see of a pod."""
    return (dict(pod.labels), dict(cluster.ns_labels(pod.namespace)), pod.ports, pod.ips, pod.host_network)


_PARTS = ("labels", "namespace labels", "ports", "addresses", "hostNetwork")
