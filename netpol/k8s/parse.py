"""Raw objects -> models, validated the way the API server validates them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from netpol.gcpause import gc_paused
from netpol.k8s import fields, ignored, names
from netpol.k8s.cnp import CNP_API, V1ALPHA1, admin_network_policy, cluster_network_policy, tier_order
from netpol.k8s.cursor import At, meta, object_name, port_value, protocol, read_annotations, selector
from netpol.k8s.model import (
    NS_NAME_LABEL,
    WORKLOAD_KINDS,
    Cluster,
    ClusterNetworkPolicy,
    ContainerPort,
    EndpointSlice,
    IPAddress,
    IPBlock,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyPort,
    Rule,
    Service,
)
from netpol.k8s.placement import namespace_annotations, placement
from netpol.k8s.services import endpoint_slice, node, service
from netpol.k8s.source import Path_, RawObject


def _cidr(at: At, path: Path_, text) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        if not isinstance(text, str) or "/" not in text:
            raise ValueError
        return ipaddress.ip_network(text, strict=False)  # host bits set: the API accepts it
    except ValueError:
        raise at.fail(f"invalid CIDR {text!r}", path) from None


def _ip_block(at: At, path: Path_) -> IPBlock:
    cidr_text = at.get(path + ("cidr",))
    if cidr_text is None:
        raise at.fail("cidr is required", path)
    net = _cidr(at, path + ("cidr",), cidr_text)
    excepts = []
    for i, text in enumerate(at.items(path + ("except",))):
        sub = _cidr(at, path + ("except", i), text)
        if sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            raise at.fail(f"{text} must be a strict subset of cidr {cidr_text}", path + ("except", i))
        excepts.append(text)
    return IPBlock(cidr=cidr_text, except_=tuple(excepts))


def _policy_port(at: At, path: Path_) -> PolicyPort:
    proto = protocol(at, path + ("protocol",))
    port = port_value(at, path + ("port",))
    end = at.get(path + ("endPort",), int)
    if end is not None:
        if not isinstance(port, int):
            raise at.fail("endPort requires a numeric port", path + ("endPort",))
        if not port <= end <= 65535:
            raise at.fail(f"endPort {end} must be between port {port} and 65535", path + ("endPort",))
    return PolicyPort(protocol=proto, port=port, end_port=end)


def _peer(at: At, path: Path_) -> Peer:
    at.get(path, dict)
    pod = at.get(path + ("podSelector",))
    ns = at.get(path + ("namespaceSelector",))
    block = at.get(path + ("ipBlock",))
    if block is not None and (pod is not None or ns is not None):
        raise at.fail("ipBlock may not be combined with podSelector or namespaceSelector", path)
    if pod is None and ns is None and block is None:
        raise at.fail("a peer needs podSelector, namespaceSelector or ipBlock", path)
    return Peer(
        pod_selector=selector(at, path + ("podSelector",)) if pod is not None else None,
        namespace_selector=selector(at, path + ("namespaceSelector",)) if ns is not None else None,
        ip_block=_ip_block(at, path + ("ipBlock",)) if block is not None else None)


def _rules(at: At, direction: str) -> tuple[Rule, ...]:
    peers_field = "from" if direction == "ingress" else "to"
    rules = []
    for i, _ in enumerate(at.items(("spec", direction))):
        p = ("spec", direction, i)
        peers = tuple(_peer(at, p + (peers_field, j)) for j, _ in enumerate(at.items(p + (peers_field,))))
        ports = tuple(_policy_port(at, p + ("ports", j)) for j, _ in enumerate(at.items(p + ("ports",))))
        rules.append(Rule(peers=peers, ports=ports))
    return tuple(rules)


def network_policy(raw: RawObject) -> NetworkPolicy:
    at = At(raw)
    namespace, name = meta(at, "NetworkPolicy")
    at.get(("spec",), dict)
    types = at.items(("spec", "policyTypes"))
    if len(types) > 2:
        raise at.fail("may not specify more than two policyTypes", ("spec", "policyTypes"))
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise at.fail(f"policyTypes entry {t!r} must be Ingress or Egress", ("spec", "policyTypes", i))
    ingress, egress = _rules(at, "ingress"), _rules(at, "egress")
    if not types:  # the API server's default: Ingress, plus Egress when egress rules exist
        types = ["Ingress"] + (["Egress"] if egress else [])
    # an absent or null podSelector is the empty selector: the API server accepts it (kubernetes#131354)
    return NetworkPolicy(namespace=namespace, name=name, pod_selector=selector(at, ("spec", "podSelector")),
                         ingress=ingress, egress=egress, policy_types=frozenset(types),
                         annotations=read_annotations(at), source=raw.source)


def _container_ports(at: At, spec: Path_) -> tuple[ContainerPort, ...]:
    out = []
    for kind in ("containers", "initContainers"):
        for i, _ in enumerate(at.items(spec + (kind,))):
            for j, _ in enumerate(at.items(spec + (kind, i, "ports"))):
                entry = at.sub(spec + (kind, i, "ports", j))
                number = entry.get(("containerPort",), int)
                if number is None:
                    continue  # a typo'd field the API server would drop; the port then names nothing
                if not 1 <= number <= 65535:
                    raise entry.fail(f"containerPort {number} out of range 1-65535", ("containerPort",))
                out.append(ContainerPort(name=entry.name(("name",), names.iana_svc_name), port=number,
                                         protocol=protocol(entry, ("protocol",))))
    return tuple(out)


def _pod_ips(at: At) -> tuple[str, ...]:
    listed = [(("status", "podIPs", i, "ip"), at.get(("status", "podIPs", i, "ip"), str))
              for i, _ in enumerate(at.items(("status", "podIPs")))]
    found: list[tuple[Path_, str]] = [(p, ip) for p, ip in listed if ip] or [
        (("status", "podIP"), ip) for ip in [at.get(("status", "podIP"), str)] if ip]
    for path, ip in found:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise at.fail(f"invalid IP address {ip!r}", path) from None
    return tuple(dict.fromkeys(ip for _, ip in found))


def _owner(at: At) -> tuple[str, str] | None:
    """The controller. Like np-guard, a reference without a kind still names a workload; names
    reach reports only through each format's escaping."""
    for i in range(len(at.items(("metadata", "ownerReferences")))):
        path = ("metadata", "ownerReferences", i)
        if at.get(path, dict).get("controller") is True:
            return at.get(path + ("kind",), str, ""), at.get(path + ("name",), str, "")
    return None


def pod(raw: RawObject) -> Pod | None:
    at = At(raw)
    namespace, name = meta(at, "Pod")
    if at.get(("status", "phase")) in ("Succeeded", "Failed"):
        return None  # finished pods hold no address and take no traffic
    return Pod(namespace=namespace, name=name, labels=at.labels(("metadata", "labels")), ips=_pod_ips(at),
               ports=_container_ports(at, ("spec",)), host_network=bool(at.get(("spec", "hostNetwork"))),
               node_name=at.name(("spec", "nodeName"), names.dns1123_subdomain),
               placement=placement(at, ("spec",)), owner=_owner(at),
               annotations=read_annotations(at), source=raw.source)


def workload(raw: RawObject) -> Pod:
    at = At(raw)
    namespace, name = meta(at, raw.kind)
    tmpl = ("spec", "jobTemplate", "spec", "template") if raw.kind == "CronJob" else ("spec", "template")
    return Pod(namespace=namespace, name=name, kind=raw.kind, labels=at.labels(tmpl + ("metadata", "labels")),
               ports=_container_ports(at, tmpl + ("spec",)),
               host_network=bool(at.get(tmpl + ("spec", "hostNetwork"))),
               placement=placement(at, tmpl + ("spec",)), annotations=read_annotations(at), source=raw.source)


def namespace(raw: RawObject) -> Namespace:
    at = At(raw)
    name = object_name(at, "Namespace")
    labels = at.labels(("metadata", "labels"))
    labels[NS_NAME_LABEL] = name  # set by the API server on every namespace
    return Namespace(name=name, labels=labels, annotations=namespace_annotations(at), source=raw.source)


def _terminating(raw: RawObject) -> bool:
    return bool((raw.data.get("metadata") or {}).get("deletionTimestamp"))


def _one_owner_per_address(pods: list[Pod], claims: dict[IPAddress, list[tuple[Pod, RawObject]]]) -> list[Pod]:
    """Two running pods cannot hold one address, and the kernel can give it only one set of rules: a
    snapshot that says otherwise is refused. While an address is being reused, the terminating pod
    loses it, as in the agent (`agent/store.py`); host-network pods share their node's address."""
    losers: dict[int, set[IPAddress]] = {}
    for ip, found in claims.items():
        if len(found) < 2:
            continue
        live = [(p, raw) for p, raw in found if not _terminating(raw)]
        if len(live) > 1:
            (first, first_raw), (_, raw) = live[0], live[1]
            raise raw.error(f"address {ip} is also claimed by pod {first.key} (at {first_raw.source}); "
                            "two running pods cannot share an address", ("metadata", "name"))
        for p, _ in found:
            if not any(p is q for q, _ in live):
                losers.setdefault(id(p), set()).add(ip)
    if not losers:
        return pods
    return [p.model_copy(update={"ips": tuple(ip for ip, a in zip(p.ips, p.addresses, strict=True)
                                              if a not in losers[id(p)])})
            if id(p) in losers else p for p in pods]


CLUSTER_SCOPED = ("Namespace", "Node", "ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
MODELLED = ("Namespace", "Pod", "NetworkPolicy", "Service", "EndpointSlice", "Node", "ClusterNetworkPolicy",
            "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", *WORKLOAD_KINDS)


def _read(raw: RawObject) -> bool:
    """Whether the object is of a kind (and API version) netpol models."""
    api = str(raw.data.get("apiVersion", ""))
    if raw.kind == "NetworkPolicy":
        return api.startswith("networking.k8s.io/") or not api
    if raw.kind == "ClusterNetworkPolicy":
        return api == CNP_API
    if raw.kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
        return api == V1ALPHA1
    return raw.kind in MODELLED


def build_cluster(raws: Iterable[RawObject]) -> Cluster:
    with gc_paused():
        return _build_cluster(raws)


def _build_cluster(raws: Iterable[RawObject]) -> Cluster:
    """Every object we understand becomes a model; unknown kinds are skipped."""
    namespaces: dict[str, Namespace] = {}
    pods: list[Pod] = []
    claims: dict[IPAddress, list[tuple[Pod, RawObject]]] = {}  # pod address -> pods (not host-network) showing it
    policies: list[NetworkPolicy] = []
    services: list[Service] = []
    slices: list[EndpointSlice] = []
    nodes: list[Node] = []
    tiered: list[ClusterNetworkPolicy] = []
    seen: dict[tuple[str, str, str], RawObject] = {}
    skipped: list[RawObject] = []
    for raw in raws:
        kind = raw.kind
        if not _read(raw):
            skipped.append(raw)
            continue
        fields.check(raw)  # typos first: a misspelt field changes what a policy means
        at = At(raw)
        ident = (kind, "" if kind in CLUSTER_SCOPED else at.get(("metadata", "namespace"), str) or "default",
                 at.get(("metadata", "name"), str) or "")
        if ident in seen:
            first = seen[ident].source
            raise raw.error(f"duplicate {kind} {'/'.join(filter(None, ident[1:]))} (first defined at {first})",
                            ("metadata", "name"))
        seen[ident] = raw
        if kind == "Namespace":
            ns = namespace(raw)
            namespaces[ns.name] = ns
        elif kind == "Pod":
            if (p := pod(raw)) is not None:
                pods.append(p)
                for address in () if p.host_network else p.addresses:
                    claims.setdefault(address, []).append((p, raw))
        elif kind == "NetworkPolicy":
            policies.append(network_policy(raw))
        elif kind == "Service":
            services.append(service(raw))
        elif kind == "EndpointSlice":
            slices.append(endpoint_slice(raw))
        elif kind == "Node":
            nodes.append(node(raw))
        elif kind == "ClusterNetworkPolicy":
            tiered.append(cluster_network_policy(raw))
        elif kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
            tiered.append(admin_network_policy(raw))
        else:
            pods.append(workload(raw))
    pods = _one_owner_per_address(pods, claims)
    used = {p.namespace for p in pods} | {p.namespace for p in policies} | {s.namespace for s in services}
    for name in used | {"default"}:
        namespaces.setdefault(name, Namespace(name=name, labels={NS_NAME_LABEL: name}))
    return Cluster(namespaces=dict(sorted(namespaces.items())), pods=tuple(pods), policies=tuple(policies),
                   ignored=ignored.summary(skipped),
                   services=tuple(services), endpoint_slices=tuple(slices), nodes=tuple(nodes),
                   cluster_policies=tuple(sorted(tiered, key=tier_order)))
