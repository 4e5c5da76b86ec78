"""What every check gets: the cluster, its raw objects, the pod-set index, and shared derived facts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from netpol.k8s.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    NS_NAME_LABEL,
    Direction,
    IPBlock,
    NetworkPolicy,
    Options,
    Pod,
    Rule,
)
from netpol.k8s.source import Path_
from netpol.lint.index import Index, first
from netpol.lint.inputs import Input
from netpol.lint.registry import Location

PEERS_FIELD = {INGRESS: "from", EGRESS: "to"}


@dataclass(frozen=True)
class Group:
    """Pods of one namespace isolated, for one direction, by exactly the same policies."""

    namespace: str
    policies: tuple[NetworkPolicy, ...]  # empty: not isolated
    bits: int


class Context:
    def __init__(self, inp: Input, opts: Options = Options(), tenant_label: str | None = None) -> None:
        self.input, self.cluster, self.opts = inp, inp.cluster, opts
        self.tenant_label = tenant_label or NS_NAME_LABEL
        self.index = Index(self.cluster, opts)

    @property
    def has_pods(self) -> bool:
        """Whether the input holds pods or workloads at all: without them, set-based checks stay quiet."""
        return bool(self.cluster.pods)

    # -- locations -------------------------------------------------------------------------------------
    def at_policy(self, policy: NetworkPolicy, path: Path_ = ()) -> Location:
        raw = self.input.policy_raw(policy)
        if raw is None:
            return Location(policy.source.file, policy.source.line, 0, None, policy.namespace)
        return Location.of(raw, path, policy.namespace)

    def at_rule(self, policy: NetworkPolicy, direction: str, i: int, *rest: str | int) -> Location:
        return self.at_policy(policy, ("spec", direction, i, *rest))

    def at_pod(self, pod: Pod, path: Path_ = ()) -> Location:
        raw = self.input.pod_raw(pod)
        if raw is None:
            src = pod.source
            return Location(src.file if src else "<input>", src.line if src else 0, 0, None, pod.namespace)
        return Location.of(raw, path, pod.namespace)

    def at_object(self, kind: str, namespace: str, name: str, source, *path: str | int) -> Location:
        """Any object by kind and name (cluster-scoped: namespace ""), else where its model came from."""
        raw = self.input.raw_of(kind, namespace, name)
        if raw is None:
            return Location(source.file if source else "<input>", source.line if source else 0, 0, None,
                            namespace or None)
        return Location.of(raw, tuple(path), namespace or None)

    def ip_block_peers(self) -> Iterator[tuple[NetworkPolicy, Direction, int, Rule, int, IPBlock]]:
        """(policy, direction, rule index, rule, peer index, ipBlock) for every ipBlock peer."""
        for pol in self.cluster.policies:
            for direction in DIRECTIONS:
                for i, rule in enumerate(pol.rules(direction)):
                    for j, peer in enumerate(rule.peers):
                        if peer.ip_block is not None:
                            yield pol, direction, i, rule, j, peer.ip_block

    def at_namespace(self, name: str) -> Location:
        """The Namespace object, else the first pod of the namespace, else its first policy."""
        raw = self.input.raw_of("Namespace", "", name)
        if raw is not None:
            return Location.of(raw, ("metadata", "name"), name)
        bits = self.index.in_ns.get(name, 0)
        if bits:
            return self.at_pod(self.index.pods[first(bits)], ("metadata", "namespace"))
        pols = self.cluster.policies_in(name)
        return self.at_policy(pols[0], ("metadata", "namespace")) if pols else Location("<input>", 0, 0, None, name)

    # -- shared derived facts --------------------------------------------------------------------------
    def groups(self, direction: str) -> list[Group]:
        return self._groups[direction]

    @cached_property
    def _groups(self) -> dict[str, list[Group]]:
        """Partition each namespace's policed pods by the policies isolating them, one policy at a time."""
        out: dict[str, list[Group]] = {}
        for direction in DIRECTIONS:
            found: list[Group] = []
            for ns, ns_bits in self.index.in_ns.items():
                parts: list[tuple[tuple[NetworkPolicy, ...], int]] = [((), ns_bits & self.index.policed)]
                for pol in self.cluster.policies_in(ns):
                    if not pol.affects(direction):
                        continue
                    sel = self.index.selected(pol)
                    if not sel:
                        continue
                    split = []
                    for key, bits in parts:
                        if bits & sel:
                            split.append((key + (pol,), bits & sel))
                        if bits & ~sel:
                            split.append((key, bits & ~sel))
                    parts = split
                found.extend(Group(ns, key, bits) for key, bits in parts if bits)
            out[direction] = found
        return out

    def isolated(self, direction: str) -> int:
        return self._isolated[direction]

    @cached_property
    def _isolated(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for direction in DIRECTIONS:
            bits = 0
            for pol in self.cluster.policies:
                if pol.affects(direction):
                    bits |= self.index.selected(pol)
            out[direction] = bits
        return out

    def tenant(self, namespace: str) -> str | None:
        """The tenant a namespace belongs to: the value of the tenant label (none: shared, not a tenant)."""
        return self.cluster.ns_labels(namespace).get(self.tenant_label)
