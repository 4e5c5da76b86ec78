"""Immutable models of what netpol reads: namespaces, pods and workloads, NetworkPolicies."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from netpol.k8s.source import Source


class Direction(StrEnum):
    """The side of a connection a rule speaks for: ingress at the destination, egress at the source."""

    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def policy_type(self) -> str:
        """The name `spec.policyTypes` uses."""
        return "Ingress" if self is Direction.INGRESS else "Egress"


INGRESS, EGRESS = Direction.INGRESS, Direction.EGRESS
DIRECTIONS: tuple[Direction, ...] = (INGRESS, EGRESS)
Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[str, ...] = ("TCP", "UDP", "SCTP")
NS_NAME_LABEL = "kubernetes.io/metadata.name"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                  "ReplicationController", "Job", "CronJob")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Options:
    """Choices where implementations differ."""

    ipblock_pods: bool = True  # ipBlock matches pod addresses too (what upstream e2e expects)


class Labels(Mapping[str, str]):
    """A label map that cannot change and can be hashed, so the models that hold one are truly
    frozen (a pod's labels cannot be edited behind the plan that was compiled from them)."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, str] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str, default: Any = None) -> Any:  # the hot path of selector matching
        return self._items.get(key, default)

    def items(self) -> ItemsView[str, str]:  # the dict's own views: indexes walk them for every pod
        return self._items.items()

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> ValuesView[str]:
        return self._items.values()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        return isinstance(other, Mapping) and self._items == dict(other.items())

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda v: v if isinstance(v, Labels) else cls(v),
            core_schema.union_schema([core_schema.is_instance_schema(cls),
                                      core_schema.dict_schema(core_schema.str_schema(), core_schema.str_schema())]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: dict(v._items)))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, ignored_types=(cached_property,))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy without the cached properties of the original: pydantic copies `__dict__`, where
        they live, so `pod.model_copy(update={"ips": ()})` would keep the old `addresses`."""
        copy = super().model_copy(update=update, deep=deep)
        for name in _cached_names(type(self)):
            copy.__dict__.pop(name, None)
        return copy


@functools.cache
def _cached_names(cls: type) -> tuple[str, ...]:
    return tuple(name for klass in cls.__mro__ for name, value in vars(klass).items()
                 if isinstance(value, cached_property))


class Requirement(Frozen):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == "In":
            return labels.get(self.key) in self.values
        if op == "NotIn":  # objects without the key match NotIn, as in the API server
            return labels.get(self.key) not in self.values
        if op == "Exists":
            return self.key in labels
        return self.key not in labels

    def describe(self) -> str:
        vals = ",".join(sorted(self.values))
        return {"In": f"{self.key} in ({vals})", "NotIn": f"{self.key} notin ({vals})",
                "Exists": self.key, "DoesNotExist": f"!{self.key}"}[self.operator]


class LabelSelector(Frozen):
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        parts += [r.describe() for r in self.match_expressions]
        return ",".join(parts)


class IPBlock(Frozen):
    cidr: str
    except_: tuple[str, ...] = ()

    @cached_property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr, strict=False)

    @cached_property
    def excepts(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.except_)

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.network.version or ip not in self.network:
            return False
        return not any(ip in e for e in self.excepts)

    def describe(self) -> str:
        text = str(self.network)
        return text + (f" except {', '.join(map(str, self.excepts))}" if self.except_ else "")


class PolicyPort(Frozen):
    protocol: Protocol = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def describe(self) -> str:
        if self.port is None:
            return f"{self.protocol} all ports"
        if self.end_port is not None:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"


class Peer(Frozen):
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


class Rule(Frozen):
    peers: tuple[Peer, ...] = ()  # empty: every peer
    ports: tuple[PolicyPort, ...] = ()  # empty: every port and protocol


class NetworkPolicy(Frozen):
    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    policy_types: frozenset[str]
    annotations: tuple[tuple[str, str], ...] = ()
    source: Source

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    def affects(self, direction: str) -> bool:
        return Direction(direction).policy_type in self.policy_types


class Tier(StrEnum):
    """ClusterNetworkPolicy tiers: Admin before NetworkPolicy, Baseline after it."""

    ADMIN = "Admin"
    BASELINE = "Baseline"


class Action(StrEnum):
    ACCEPT = "Accept"
    DENY = "Deny"
    PASS = "Pass"


class CnpPods(Frozen):
    """`pods`: a namespaceSelector (None: every namespace) AND a podSelector."""

    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector


class CnpPeer(Frozen):
    """One peer (or the subject): exactly one field is set."""

    namespaces: LabelSelector | None = None
    pods: CnpPods | None = None
    networks: tuple[str, ...] | None = None  # egress only
    nodes: LabelSelector | None = None  # egress only (experimental)
    domain_names: tuple[str, ...] | None = None  # egress only (experimental): not decidable offline

    @cached_property
    def nets(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.networks or ())


class CnpPort(Frozen):
    """A destination port range of a protocol, or a named port (resolved on the destination pod)."""

    protocol: Protocol | None = None  # None: the named port's own protocol
    lo: int = 0
    hi: int = 0
    name: str | None = None

    def describe(self) -> str:
        if self.name is not None:
            return f"named port {self.name}"
        return f"{self.protocol}/{self.lo}" + (f"-{self.hi}" if self.hi != self.lo else "")


class CnpRule(Frozen):
    name: str | None = None
    action: Action
    peers: tuple[CnpPeer, ...]
    ports: tuple[CnpPort, ...] | None = None  # None: every protocol and port


TIER_KINDS = {"ClusterNetworkPolicy": "cnp", "AdminNetworkPolicy": "anp", "BaselineAdminNetworkPolicy": "banp"}


class ClusterNetworkPolicy(Frozen):
    """A ClusterNetworkPolicy (v1alpha2), or a v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy
    read as one (`kind` says which)."""

    name: str
    kind: str = "ClusterNetworkPolicy"
    tier: Tier
    priority: int
    subject: CnpPeer  # namespaces or pods
    ingress: tuple[CnpRule, ...] = ()
    egress: tuple[CnpRule, ...] = ()
    source: Source | None = None

    @property
    def key(self) -> str:
        return f"{TIER_KINDS[self.kind]}/{self.name}"

    def rules(self, direction: str) -> tuple[CnpRule, ...]:
        return self.ingress if direction == INGRESS else self.egress


class Namespace(Frozen):
    name: str
    labels: Labels
    annotations: tuple[tuple[str, str], ...] = ()  # placement ones only (PodNodeSelector, PodTolerationRestriction)
    source: Source | None = None

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


# ---- placement: where the scheduler may put a pod ----

class Taint(Frozen):
    key: str
    value: str = ""
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute

    def describe(self) -> str:
        return f"{self.key}{'=' + self.value if self.value else ''}:{self.effect}"


class Toleration(Frozen):
    key: str = ""  # empty with Exists: every taint
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""  # empty: every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        return self.key == taint.key and (self.operator == "Exists" or self.value == taint.value)


class NodeRequirement(Frozen):
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...] = ()


class NodeSelectorTerm(Frozen):
    """Requirements ANDed; `fields` select on metadata.name."""

    expressions: tuple[NodeRequirement, ...] = ()
    fields: tuple[NodeRequirement, ...] = ()


class Placement(Frozen):
    """What a pod spec says about its node: nodeSelector, required node affinity (terms ORed; None:
    none given), tolerations and nodeName."""

    node_selector: tuple[tuple[str, str], ...] = ()
    terms: tuple[NodeSelectorTerm, ...] | None = None
    tolerations: tuple[Toleration, ...] = ()
    node_name: str | None = None


class ContainerPort(Frozen):
    name: str | None = None
    port: int
    protocol: Protocol = "TCP"


class Pod(Frozen):
    """A pod, or a workload standing for the pods of its template (no IPs)."""

    namespace: str
    name: str
    kind: str = "Pod"
    labels: Labels = Labels()
    ips: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    node_name: str | None = None
    placement: Placement = Placement()
    owner: tuple[str, str] | None = None  # (kind, name) of the controller, if any
    annotations: tuple[tuple[str, str], ...] = ()
    source: Source | None = None

    @property
    def key(self) -> str:
        if self.kind == "Pod":
            return f"{self.namespace}/{self.name}"
        return f"{self.namespace}/{self.kind.lower()}/{self.name}"

    @cached_property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(ipaddress.ip_address(ip) for ip in self.ips)

    def address(self, version: int | None) -> IPAddress | None:
        """The pod's first address of a family (None: its primary address)."""
        for ip in self.addresses:
            if version is None or ip.version == version:
                return ip
        return None

    def named_port(self, name: str) -> list[ContainerPort]:
        return [p for p in self.ports if p.name == name]


class ServicePort(Frozen):
    name: str | None = None
    port: int
    target_port: int | str | None = None  # None: the same as port
    protocol: Protocol = "TCP"
    node_port: int | None = None

    @property
    def target(self) -> int | str:
        return self.port if self.target_port is None else self.target_port

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.port}" + (f" {self.name!r}" if self.name else "")


class Service(Frozen):
    namespace: str
    name: str
    type: str = "ClusterIP"  # ClusterIP, NodePort, LoadBalancer or ExternalName
    selector: Labels | None = None  # None: no selector, its EndpointSlices are managed by hand
    ports: tuple[ServicePort, ...] = ()
    cluster_ips: tuple[str, ...] = ()  # ("None",): headless
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    external_name: str | None = None
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    source: Source | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ips == ("None",)

    def selects(self, pod: Pod) -> bool:
        """A pod (or workload template) of its namespace with every label the selector names (a Service
        without a selector, or with an empty one, selects nothing)."""
        return bool(self.selector) and pod.namespace == self.namespace and all(
            pod.labels.get(k) == v for k, v in (self.selector or {}).items())

    @cached_property
    def addresses(self) -> tuple[IPAddress, ...]:
        """Every address kube-proxy answers for: ClusterIPs, external IPs, load-balancer IPs."""
        texts = [ip for ip in self.cluster_ips if ip != "None"] + [*self.external_ips, *self.load_balancer_ips]
        return tuple(ipaddress.ip_address(ip) for ip in dict.fromkeys(texts))


class EndpointAddress(Frozen):
    """One endpoint of an EndpointSlice: its addresses (one family), readiness and where it runs."""

    addresses: tuple[str, ...]
    ready: bool = True
    node_name: str | None = None
    target: str | None = None  # ns/name of the pod it stands for, if any


class EndpointPort(Frozen):
    name: str | None = None  # the Service port's name
    port: int | None = None  # None: every port (only for selector-less Services)
    protocol: Protocol = "TCP"


class EndpointSlice(Frozen):
    namespace: str
    name: str
    service: str | None  # label kubernetes.io/service-name
    address_type: str = "IPv4"
    endpoints: tuple[EndpointAddress, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    source: Source | None = None


class Node(Frozen):
    name: str
    labels: Labels = Labels()
    addresses: tuple[tuple[str, str], ...] = ()  # (type, address): InternalIP, ExternalIP, Hostname, ...
    pod_cidr_texts: tuple[str, ...] = ()  # spec.podCIDRs (or spec.podCIDR)
    taints: tuple[Taint, ...] = ()  # spec.unschedulable adds node.kubernetes.io/unschedulable:NoSchedule
    source: Source | None = None

    @cached_property
    def pod_cidrs(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(t, strict=False) for t in self.pod_cidr_texts)

    def ip(self, version: int | None = None) -> IPAddress | None:
        """The node's first InternalIP (else ExternalIP) of a family: where it sends from to pods."""
        for kind in ("InternalIP", "ExternalIP"):
            for k, text in self.addresses:
                if k == kind and (version is None or ipaddress.ip_address(text).version == version):
                    return ipaddress.ip_address(text)
        return None


class Cluster(Frozen):
    namespaces: dict[str, Namespace]
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    nodes: tuple[Node, ...] = ()
    cluster_policies: tuple[ClusterNetworkPolicy, ...] = ()  # by tier, priority, name: the order they apply in
    # objects of kinds that change connectivity but that netpol does not evaluate: (kind, count)
    ignored: tuple[tuple[str, int], ...] = ()

    @cached_property
    def by_key(self) -> dict[str, Pod]:
        return {p.key: p for p in self.pods}

    @cached_property
    def by_address(self) -> dict[IPAddress, Pod]:
        return {ip: p for p in self.pods for ip in p.addresses}

    def ns_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.get(namespace)
        return ns.labels if ns else {NS_NAME_LABEL: namespace}

    def policies_in(self, namespace: str) -> list[NetworkPolicy]:
        return self._policies_by_ns.get(namespace, [])

    @cached_property
    def _policies_by_ns(self) -> dict[str, list[NetworkPolicy]]:
        out: dict[str, list[NetworkPolicy]] = {}
        for pol in self.policies:
            out.setdefault(pol.namespace, []).append(pol)
        return out
