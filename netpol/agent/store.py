"""The cluster as the watches last described it: pure, in memory, only what the model needs.

Events go in (`Store.apply`), a `Cluster` comes out (`Store.snapshot`), with the pods changed
since the previous snapshot so the agent can update its plan instead of compiling it again;
the work per event is proportional to what it touches. Two rules keep a snapshot from granting
access the kernel should not give:

- IP reuse: while a terminating pod still shows an address the CNI already gave to a new
  pod, both claim it. The address goes to the newest claim (non-terminating pods first), so
  the new pod never inherits the old pod's access; the loser keeps no address.
- Cross-stream order: the namespace, pod and policy streams are not ordered with respect to
  each other, so a pod may arrive before its namespace. Selectors with NotIn/DoesNotExist
  would then see a namespace without its labels, so such pods are held out until their
  namespace is known (as if not yet scheduled).
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from netpol.errors import InputError
from netpol.k8s.cnp import CNP_API, V1ALPHA1, admin_network_policy, cluster_network_policy, tier_order
from netpol.k8s.model import Cluster, ClusterNetworkPolicy, LabelSelector, Namespace, NetworkPolicy, Node, Pod
from netpol.k8s.parse import namespace as parse_namespace
from netpol.k8s.parse import network_policy as parse_policy
from netpol.k8s.parse import pod as parse_pod
from netpol.k8s.services import node as parse_node
from netpol.k8s.source import RawObject, Source

Kind = Literal["Namespace", "Pod", "NetworkPolicy", "Node", "ClusterNetworkPolicy", "AdminNetworkPolicy",
               "BaselineAdminNetworkPolicy"]
KINDS: tuple[Kind, ...] = ("Namespace", "Pod", "NetworkPolicy", "Node", "ClusterNetworkPolicy", "AdminNetworkPolicy",
                           "BaselineAdminNetworkPolicy")
TIER_KINDS: tuple[Kind, ...] = ("ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
EventType = Literal["ADDED", "MODIFIED", "DELETED", "SYNC"]
PARSERS = {"Namespace": parse_namespace, "NetworkPolicy": parse_policy, "Node": parse_node,
           "ClusterNetworkPolicy": cluster_network_policy, "AdminNetworkPolicy": admin_network_policy,
           "BaselineAdminNetworkPolicy": admin_network_policy}
API_VERSIONS = {"ClusterNetworkPolicy": CNP_API, "AdminNetworkPolicy": V1ALPHA1, "BaselineAdminNetworkPolicy": V1ALPHA1}
# Kinds the API server validates and whose objects the model reads whole: one it cannot read is an
# object from a newer API, and the last good version is kept rather than dropped (dropping a Deny or
# the address of a `nodes` peer would open traffic).
KEEP_LAST_GOOD = frozenset({"Node", *TIER_KINDS})


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

    @functools.cached_property
    def bare(self) -> Pod:
        """The pod without its addresses, as a snapshot shows it while newer pods claim them."""
        return self.pod.model_copy(update={"ips": ()})


@dataclass(frozen=True)
class Snapshot:
    cluster: Cluster
    version: int  # the store's change counter when taken
    held: tuple[str, ...] = ()  # pods left out: their namespace is not known yet
    reused: tuple[str, ...] = ()  # pods that lost an address to a newer claim
    # The pods that differ from the previous snapshot (taken at version `since`), as they are in
    # cluster (None: gone from it); None when namespaces or policies changed too.
    changes: Mapping[str, Pod | None] | None = None
    since: int = -1


@dataclass
class Store:
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, _PodEntry] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    cluster_policies: dict[str, ClusterNetworkPolicy] = field(default_factory=dict)  # by "kind/name"
    nodes: dict[str, Node] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # "Kind ns/name" -> why it was not understood
    version: int = 0
    _claims: itertools.count = field(default_factory=itertools.count)
    # One copy of each equal label set, port list, owner and name: the pods of a Deployment share them,
    # so a remote pod costs its name, its addresses and a few references (see scripts/bench_footprint.py).
    _shared: dict = field(default_factory=dict)
    # Kept in step with every pod change, so a snapshot costs what changed since the last one:
    _settled: dict[str, Pod] = field(default_factory=dict)  # the snapshot's pods
    _claimants: dict[str, set[str]] = field(default_factory=dict)  # address -> policed pods showing it
    _held: set[str] = field(default_factory=set)
    _reused: set[str] = field(default_factory=set)
    _changed: dict[str, None] = field(default_factory=dict)  # pods settled otherwise since the last snapshot
    _whole: bool = True  # namespaces or policies changed since the last snapshot
    _stale: bool = False  # the set of namespaces changed: settle every pod again at the next snapshot
    _since: int = -1

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

    def _table(self, kind: Kind) -> MutableMapping[str, Any]:
        if kind in TIER_KINDS:  # one table, keyed by kind and name (kinds may share names)
            return _Prefixed(self.cluster_policies, kind)
        tables: dict[str, dict[str, Any]] = {"Namespace": self.namespaces, "Pod": self.pods,
                                             "NetworkPolicy": self.policies, "Node": self.nodes}
        return tables[kind]

    def _delete(self, kind: Kind, ident: str) -> bool:
        self.invalid.pop(f"{kind} {ident}", None)
        if kind == "Pod":
            return self._set_pod(ident, None)
        if self._table(kind).pop(ident, None) is None:
            return False
        self._whole = True
        self._stale |= kind == "Namespace"
        return True

    def _put(self, kind: Kind, obj: dict) -> bool:
        ident = _ident(obj)
        api = {"apiVersion": API_VERSIONS[kind]} if kind in API_VERSIONS else {}
        raw = RawObject({**obj, **api, "kind": kind}, Source(f"cluster:{kind}/{ident}", 0))
        self.invalid.pop(f"{kind} {ident}", None)
        try:
            if kind == "Pod":
                return self._put_pod(ident, obj, raw)
            value = PARSERS[kind](raw)
        except InputError as exc:
            self.invalid[f"{kind} {ident}"] = str(exc)
            if kind in KEEP_LAST_GOOD:
                return False
            if kind != "NetworkPolicy":
                return self._delete(kind, ident)
            value = _deny_all(raw)  # fail closed: isolate what it may select, allow nothing
        table = self._table(kind)
        if table.get(ident) == value:
            return False
        self._stale |= kind == "Namespace" and ident not in table
        table[ident] = value
        self._whole = True
        return True

    def _compact(self, pod: Pod) -> Pod:
        """The pod as the store keeps it: no source or annotations, equal parts shared, and no
        per-instance set of field names (pydantic keeps one per model instance)."""
        fields = {name: getattr(pod, name) for name in _POD_FIELDS}
        fields.update(source=None, annotations=(), name=sys.intern(pod.name))
        for name in ("labels", "ports", "owner", "namespace", "node_name", "placement", "kind"):
            fields[name] = self._share(fields[name])
        return Pod.model_construct(_fields_set=_POD_FIELDS, **fields)

    def _share(self, value: Any) -> Any:
        if value is None:
            return None
        if len(self._shared) > 4 * len(self.pods) + 10_000:  # bounded: values of gone pods are not kept
            self._shared.clear()
        return self._shared.setdefault(value, value)

    def _put_pod(self, ident: str, obj: dict, raw: RawObject) -> bool:
        pod = parse_pod(raw)
        if pod is None:  # finished pods hold no address
            return self._set_pod(ident, None)
        pod = self._compact(pod)
        terminating = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        old = self.pods.get(ident)
        if old is not None and old.pod == pod and old.terminating == terminating:
            return False
        claim = old.claim if old is not None and old.pod.ips == pod.ips else next(self._claims)
        return self._set_pod(ident, _PodEntry(pod, terminating, claim))

    # ---- addresses -------------------------------------------------------

    def _set_pod(self, key: str, entry: _PodEntry | None) -> bool:
        """Put (None: remove) a pod, and settle again every pod claiming an address it had or has."""
        old = self.pods.pop(key, None) if entry is None else self.pods.get(key)
        if entry is None and old is None:
            return False
        if entry is not None:
            self.pods[key] = entry
        if self._stale:  # everything is settled again at the next snapshot
            return True
        touched = {key}
        for e, claiming in ((old, False), (entry, True)):
            if e is None or e.pod.host_network or e.pod.namespace not in self.namespaces:
                continue
            for ip in e.pod.ips:
                keys = self._claimants.setdefault(ip, set())
                if claiming:
                    keys.add(key)
                else:
                    keys.discard(key)
                touched |= keys
                if not keys:
                    del self._claimants[ip]
        for k in touched:
            self._settle(k)
        return True

    def _settle(self, key: str) -> None:
        """The pod as snapshots show it: held out, whole, or without the addresses newer pods claim."""
        e = self.pods.get(key)
        pod = None
        if e is not None and e.pod.namespace in self.namespaces:
            owns = e.pod.host_network or all(self._owner(ip) == key for ip in e.pod.ips)
            pod = e.pod if owns else e.bare
        _mark(self._held, key, e is not None and pod is None)
        _mark(self._reused, key, e is not None and pod is not None and pod is not e.pod)
        if pod is not self._settled.get(key):
            if pod is None:
                del self._settled[key]
            else:
                self._settled[key] = pod
            self._changed[key] = None

    def _owner(self, ip: str) -> str:
        """The newest claim wins, non-terminating pods first."""
        return max(self._claimants[ip], key=lambda k: _rank(self.pods[k]))

    def _settle_all(self) -> None:
        self._claimants, self._held, self._reused = {}, set(), set()
        for key, e in self.pods.items():
            if not e.pod.host_network and e.pod.namespace in self.namespaces:
                for ip in e.pod.ips:
                    self._claimants.setdefault(ip, set()).add(key)
        for key in list(self.pods.keys() | self._settled.keys()):
            self._settle(key)
        self._stale = False

    # ---- snapshot --------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The Cluster to compile now (not validated again: every part was built by a model), and
        the pods that changed since the previous snapshot."""
        if self._stale:
            self._settle_all()
        namespaces = dict(sorted(self.namespaces.items()))
        policies = tuple(p for _, p in sorted(self.policies.items()) if p.namespace in namespaces)
        tiered = tuple(sorted(self.cluster_policies.values(), key=tier_order))
        cluster = Cluster.model_construct(namespaces=namespaces, pods=tuple(self._settled.values()),
                                          policies=policies, services=(), endpoint_slices=(),
                                          nodes=tuple(n for _, n in sorted(self.nodes.items())),
                                          cluster_policies=tiered, ignored=())
        changes = None if self._whole else {k: self._settled.get(k) for k in self._changed}
        snap = Snapshot(cluster, self.version, tuple(sorted(self._held)), tuple(sorted(self._reused)), changes,
                        self._since)
        self._changed, self._whole, self._since = {}, False, self.version
        return snap

    def counts(self) -> dict[str, int]:
        return {"namespaces": len(self.namespaces), "pods": len(self.pods), "policies": len(self.policies),
                "cluster_policies": len(self.cluster_policies), "nodes": len(self.nodes)}


class _Prefixed(MutableMapping[str, Any]):
    """The entries of one kind in a table shared by several kinds (keys "kind/name")."""

    def __init__(self, table: dict[str, Any], kind: str) -> None:
        self._table, self._prefix = table, f"{kind}/"

    def __getitem__(self, key: str) -> Any:
        return self._table[self._prefix + key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._table[self._prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self._table[self._prefix + key]

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        return iter([k[n:] for k in self._table if k.startswith(self._prefix)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


# Every field name: one set shared by the store's pods (model_copy only ever adds names already in it).
_POD_FIELDS: set[str] = set(Pod.model_fields)


def _mark(keys: set[str], key: str, present: bool) -> None:
    if present:
        keys.add(key)
    else:
        keys.discard(key)


def _rank(e: _PodEntry) -> tuple[bool, int]:
    return (not e.terminating, e.claim)


def _ident(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else name


def _deny_all(raw: RawObject) -> NetworkPolicy:
    """A policy we cannot read still isolates: its own selector if that parses, else the namespace."""
    meta = raw.data.get("metadata") or {}
    spec: dict = raw.data["spec"] if isinstance(raw.data.get("spec"), dict) else {}
    try:
        probe = RawObject({"kind": "NetworkPolicy", "metadata": meta,
                           "spec": {"podSelector": spec.get("podSelector")}}, raw.source)
        selector = parse_policy(probe).pod_selector
    except InputError:
        selector = LabelSelector()
    return NetworkPolicy(namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name") or ""),
                         pod_selector=selector, policy_types=frozenset({"Ingress", "Egress"}), source=raw.source)
