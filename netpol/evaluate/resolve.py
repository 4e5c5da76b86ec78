"""Selectors over pods and namespaces, peers over endpoints: the spec's matching rules."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netpol.errors import QueryError
from netpol.k8s.model import (
    NS_NAME_LABEL,
    PROTOCOLS,
    Cluster,
    IPAddress,
    LabelSelector,
    NetworkPolicy,
    Options,
    Peer,
    Pod,
    PolicyPort,
    Rule,
)

# kubectl's names for the kinds a query can name: short names and plurals
KIND_ALIASES = {"po": "pod", "pods": "pod", "deploy": "deployment", "deployments": "deployment",
                "sts": "statefulset", "statefulsets": "statefulset", "ds": "daemonset", "daemonsets": "daemonset",
                "rs": "replicaset", "replicasets": "replicaset", "rc": "replicationcontroller",
                "replicationcontrollers": "replicationcontroller", "jobs": "job", "cj": "cronjob",
                "cronjobs": "cronjob"}
_BRACKETED = re.compile(r"(?P<name>[^\[\]]+)\[(?P<kind>[A-Za-z]+)\]")


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (or workload), an external address, or a pod by address."""

    pod: Pod | None = None
    ip: IPAddress | None = None

    @property
    def label(self) -> str:
        return self.pod.key if self.pod else str(self.ip)

    def address(self, version: int | None) -> IPAddress | None:
        if self.ip is not None:
            return self.ip if version in (None, self.ip.version) else None
        return self.pod.address(version) if self.pod else None

    @property
    def policed(self) -> bool:
        """Policies select it: a pod that is not on the host network."""
        return self.pod is not None and not self.pod.host_network

    @property
    def policed_pod(self) -> Pod | None:
        """The pod, when policies select it."""
        return self.pod if self.pod is not None and not self.pod.host_network else None


def endpoint(cluster: Cluster, text: str) -> Endpoint:
    """`ns/pod`, `ns/kind/name` or an IP address (a pod's, or an external one)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is not None:
        return Endpoint(pod=cluster.by_address.get(ip), ip=ip)
    key = text
    parts = text.split("/")
    if len(parts) == 2 and (m := _BRACKETED.fullmatch(parts[1])):  # ns/name[Kind], as workload lists show it
        parts = [parts[0], m["kind"], m["name"]]
    if len(parts) == 3:  # ns/kind/name (kubectl's short names and plurals too); ns/pod/name is a pod
        kind = KIND_ALIASES.get(parts[1].lower(), parts[1].lower())
        key = f"{parts[0]}/{parts[2]}" if kind == "pod" else f"{parts[0]}/{kind}/{parts[2]}"
    elif len(parts) != 2:
        raise QueryError(f"{text!r}: expected ns/pod, ns/kind/name or an IP address")
    pod = cluster.by_key.get(key)
    if pod is None:
        raise QueryError(f"{text!r}: no such pod or workload in the input")
    return Endpoint(pod=pod)


def family(src: Endpoint, dst: Endpoint) -> int | None:
    """The address family of a connection: an explicit address decides, else dst's primary address."""
    for ep in (dst, src):
        if ep.ip is not None:
            return ep.ip.version
    for ep in (dst, src):
        if ep.pod is not None and ep.pod.addresses:
            return ep.pod.addresses[0].version
    return None


def selects(policy: NetworkPolicy, pod: Pod) -> bool:
    return (pod.namespace == policy.namespace and not pod.host_network
            and policy.pod_selector.matches(pod.labels))


def ns_selector_names(sel: LabelSelector) -> str | None:
    """`namespace x` when a selector pins one namespace by name."""
    if len(sel.match_labels) == 1 and not sel.match_expressions and sel.match_labels[0][0] == NS_NAME_LABEL:
        return sel.match_labels[0][1]
    return None


def peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, ep: Endpoint, version: int | None,
                 opts: Options) -> bool:
    if peer.ip_block is not None:
        if ep.policed and not opts.ipblock_pods:
            return False
        addr = ep.address(version)
        return addr is not None and peer.ip_block.contains(addr)
    pod = ep.policed_pod
    if pod is None:
        return False  # selectors match pods only; host-network traffic comes from the node
    if peer.namespace_selector is not None:
        if not peer.namespace_selector.matches(cluster.ns_labels(pod.namespace)):
            return False
    elif pod.namespace != policy.namespace:
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


def port_matches(entry: PolicyPort, dst: Endpoint, port: int, protocol: str) -> bool:
    if entry.protocol != protocol:
        return False
    if entry.port is None:
        return True
    if isinstance(entry.port, int):
        return entry.port <= port <= (entry.end_port or entry.port)
    # a named port means what the destination pod calls it, protocol included
    return dst.pod is not None and any(
        cp.port == port and cp.protocol == protocol for cp in dst.pod.named_port(entry.port))


def rule_ports_match(rule: Rule, dst: Endpoint, port: int, protocol: str) -> bool:
    return not rule.ports or any(port_matches(e, dst, port, protocol) for e in rule.ports)


def rule_port_spans(rule: Rule, dst: Endpoint) -> dict[str, list[tuple[int, int]]]:
    """The ports a rule admits towards dst, per protocol, as inclusive spans (not merged): what
    `rule_ports_match` answers port by port, for all ports at once."""
    if not rule.ports:
        return {proto: [(1, 65535)] for proto in PROTOCOLS}
    out: dict[str, list[tuple[int, int]]] = {}
    for e in rule.ports:
        spans = out.setdefault(e.protocol, [])
        if e.port is None:
            spans.append((1, 65535))
        elif isinstance(e.port, int):
            spans.append((e.port, e.end_port or e.port))
        elif dst.pod is not None:
            spans += [(cp.port, cp.port) for cp in dst.pod.named_port(e.port) if cp.protocol == e.protocol]
    return out
