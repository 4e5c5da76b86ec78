"""The cluster as the watches last described it: pure, in memory, only what the model needs.

Events go in (`Store.apply`), a `Cluster` comes out (`Store.snapshot`). Two rules keep a
snapshot from granting access the kernel should not give:

- IP reuse: while a terminating pod still shows an address the CNI already gave to a new
  pod, both claim it. The address goes to the newest claim (non-terminating pods first), so
  the new pod never inherits the old pod's access; the loser keeps no address.
- Cross-stream order: the namespace, pod and policy streams are not ordered with respect to
  each other, so a pod may arrive before its namespace. Selectors with NotIn/DoesNotExist
  would then see a namespace without its labels, so such pods are held out until their
  namespace is known (as if not yet scheduled).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InputError
from ..load import RawObject, Source
from ..model import Cluster, LabelSelector, Namespace, NetworkPolicy, Pod
from ..parse import namespace as parse_namespace
from ..parse import network_policy as parse_policy
from ..parse import pod as parse_pod

Kind = Literal["Namespace", "Pod", "NetworkPolicy"]
KINDS: tuple[Kind, ...] = ("Namespace", "Pod", "NetworkPolicy")
EventType = Literal["ADDED", "MODIFIED", "DELETED", "SYNC"]


@dataclass(frozen=True)
class Event:
    """One change from a watch; SYNC carries a whole list (after a list or relist) in `items`."""

    kind: Kind
    type: EventType
    obj: dict | None = None
    items: tuple[dict, ...] = ()


@dataclass
class _PodEntry:
    pod: Pod
    terminating: bool
    claim: int  # order in which this pod's current addresses were first seen


@dataclass(frozen=True)
class Snapshot:
    cluster: Cluster
    version: int  # the store's change counter when taken
    held: tuple[str, ...] = ()  # pods left out: their namespace is not known yet
    reused: tuple[str, ...] = ()  # pods that lost an address to a newer claim


@dataclass
class Store:
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, _PodEntry] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # "Kind ns/name" -> why it was not understood
    version: int = 0
    _claims: itertools.count = field(default_factory=itertools.count)

    # ---- events ----------------------------------------------------------

    def apply(self, ev: Event) -> bool:
        """Fold one event in; True when the model changed."""
        if ev.type == "SYNC":
            changed = self._sync(ev.kind, ev.items)
        elif ev.obj is None:
            changed = False
        elif ev.type == "DELETED":
            changed = self._delete(ev.kind, _ident(ev.obj))
        else:
            changed = self._put(ev.kind, ev.obj)
        if changed:
            self.version += 1
        return changed

    def _sync(self, kind: Kind, items: tuple[dict, ...]) -> bool:
        """Replace everything of a kind with a full list, in one step (a batch never sees half)."""
        wanted = {_ident(o) for o in items}
        changed = False
        for ident in [i for i in self._table(kind) if i not in wanted]:
            changed |= self._delete(kind, ident)
        for obj in items:
            changed |= self._put(kind, obj)
        return changed

    def _table(self, kind: Kind) -> dict:
        return {"Namespace": self.namespaces, "Pod": self.pods, "NetworkPolicy": self.policies}[kind]

    def _delete(self, kind: Kind, ident: str) -> bool:
        self.invalid.pop(f"{kind} {ident}", None)
        return self._table(kind).pop(ident, None) is not None

    def _put(self, kind: Kind, obj: dict) -> bool:
        ident = _ident(obj)
        raw = RawObject({**obj, "kind": kind}, Source(f"cluster:{kind}/{ident}", 0))
        self.invalid.pop(f"{kind} {ident}", None)
        try:
            if kind == "Namespace":
                return _replace(self.namespaces, ident, parse_namespace(raw))
            if kind == "NetworkPolicy":
                return _replace(self.policies, ident, parse_policy(raw))
            return self._put_pod(ident, obj, raw)
        except InputError as exc:
            self.invalid[f"{kind} {ident}"] = str(exc)
            if kind == "NetworkPolicy":  # fail closed: isolate what it may select, allow nothing
                return _replace(self.policies, ident, _deny_all(raw))
            return self._delete(kind, ident)

    def _put_pod(self, ident: str, obj: dict, raw: RawObject) -> bool:
        pod = parse_pod(raw)
        if pod is None:  # finished pods hold no address
            return self._delete("Pod", ident)
        pod = pod.model_copy(update={"source": None, "annotations": ()})
        terminating = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        old = self.pods.get(ident)
        if old is not None and old.pod == pod and old.terminating == terminating:
            return False
        claim = old.claim if old is not None and old.pod.ips == pod.ips else next(self._claims)
        self.pods[ident] = _PodEntry(pod, terminating, claim)
        return True

    # ---- snapshot --------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The Cluster to compile now (not validated again: every part was built by a model)."""
        held = tuple(sorted(k for k, e in self.pods.items() if e.pod.namespace not in self.namespaces))
        entries = [e for e in self.pods.values() if e.pod.namespace in self.namespaces]
        pods, reused = _settle_addresses(entries)
        namespaces = dict(sorted(self.namespaces.items()))
        policies = tuple(p for _, p in sorted(self.policies.items()) if p.namespace in namespaces)
        cluster = Cluster.model_construct(namespaces=namespaces, pods=tuple(pods), policies=policies,
                                          services=())
        return Snapshot(cluster, self.version, held, reused)

    def counts(self) -> dict[str, int]:
        return {"namespaces": len(self.namespaces), "pods": len(self.pods), "policies": len(self.policies)}


def _settle_addresses(entries: list[_PodEntry]) -> tuple[list[Pod], tuple[str, ...]]:
    """Give each contested address to its newest claim; losers keep no address."""
    owner: dict[str, _PodEntry] = {}
    for e in entries:
        if e.pod.host_network:  # host-network pods share the node's address; they are not policed
            continue
        for ip in e.pod.ips:
            cur = owner.get(ip)
            if cur is None or _rank(e) > _rank(cur):
                owner[ip] = e
    pods, reused = [], []
    for e in entries:
        if e.pod.host_network or all(owner[ip] is e for ip in e.pod.ips):
            pods.append(e.pod)
            continue
        reused.append(e.pod.key)
        pods.append(e.pod.model_copy(update={"ips": ()}))
    return pods, tuple(sorted(reused))


def _rank(e: _PodEntry) -> tuple[bool, int]:
    return (not e.terminating, e.claim)


def _replace(table: dict, ident: str, value) -> bool:
    if table.get(ident) == value:
        return False
    table[ident] = value
    return True


def _ident(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else name


def _deny_all(raw: RawObject) -> NetworkPolicy:
    """A policy we cannot read still isolates: its own selector if that parses, else the namespace."""
    meta = raw.data.get("metadata") or {}
    spec = raw.data.get("spec") if isinstance(raw.data.get("spec"), dict) else {}
    try:
        probe = RawObject({"kind": "NetworkPolicy", "metadata": meta,
                           "spec": {"podSelector": spec.get("podSelector")}}, raw.source)
        selector = parse_policy(probe).pod_selector
    except InputError:
        selector = LabelSelector()
    return NetworkPolicy(namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name") or ""),
                         pod_selector=selector, policy_types=frozenset({"Ingress", "Egress"}), source=raw.source)
