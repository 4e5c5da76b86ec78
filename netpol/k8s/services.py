"""Service, EndpointSlice (discovery.k8s.io/v1) and Node objects -> models, validated as the API server does."""

from __future__ import annotations

import ipaddress

from netpol.k8s import names
from netpol.k8s.cursor import At, meta, object_name, port_value, protocol
from netpol.k8s.model import EndpointAddress, EndpointPort, EndpointSlice, Node, Service, ServicePort
from netpol.k8s.placement import taints
from netpol.k8s.source import Path_, RawObject

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ADDRESS_TYPES = {"IPv4": 4, "IPv6": 6, "FQDN": None}
MAX_ENDPOINT_ADDRESSES = 100


def _ip(at: At, path: Path_, allow_none: bool = False) -> str:
    text = at.get(path, str)
    if allow_none and text == "None":
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise at.fail(f"invalid IP address {text!r}", path) from None
    return text


def _indexes(at: At, path: Path_) -> range:
    return range(len(at.items(path)))


def _choice(at: At, path: Path_, choices: tuple[str, ...], default: str) -> str:
    value = at.get(path, str, default) or default
    if value not in choices:
        raise at.fail(f"unsupported value {value!r}: one of {', '.join(choices)}", path)
    return value


def _service_port(at: At, path: Path_, kind: str) -> ServicePort:
    number = at.get(path + ("port",), int)
    if number is None:
        raise at.fail("port is required", path + ("port",))
    if not 1 <= number <= 65535:
        raise at.fail(f"port {number} out of range 1-65535", path + ("port",))
    node_port = at.get(path + ("nodePort",), int)
    if node_port is not None:
        if kind not in ("NodePort", "LoadBalancer"):
            raise at.fail(f"nodePort may not be used when type is {kind!r}", path + ("nodePort",))
        if not 1 <= node_port <= 65535:
            raise at.fail(f"nodePort {node_port} out of range 1-65535", path + ("nodePort",))
    return ServicePort(name=at.name(path + ("name",), names.dns1123_label), port=number,
                       target_port=port_value(at, path + ("targetPort",)),
                       protocol=protocol(at, path + ("protocol",)), node_port=node_port)


def _ports(at: At, kind: str) -> tuple[ServicePort, ...]:
    ports = [_service_port(at, ("spec", "ports", i), kind) for i, _ in enumerate(at.items(("spec", "ports")))]
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, sp in enumerate(ports):
        path = ("spec", "ports", i)
        if len(ports) > 1 and not sp.name:
            raise at.fail("name is required when a Service has more than one port", path + ("name",))
        if sp.name in seen_names:
            raise at.fail(f"duplicate port name {sp.name!r}", path + ("name",))
        if (sp.port, sp.protocol) in seen_ports:
            raise at.fail(f"duplicate port {sp.protocol}/{sp.port}", path + ("port",))
        seen_names.add(sp.name or "")
        seen_ports.add((sp.port, sp.protocol))
    return tuple(ports)


def _cluster_ips(at: At) -> tuple[str, ...]:
    single = at.get(("spec", "clusterIP"), str)
    many = [_ip(at, ("spec", "clusterIPs", i), True) for i, _ in enumerate(at.items(("spec", "clusterIPs")))]
    if single:
        _ip(at, ("spec", "clusterIP"), True)
        if many and many[0] != single:
            raise at.fail(f"clusterIPs[0] {many[0]!r} must equal clusterIP {single!r}", ("spec", "clusterIPs", 0))
    found = tuple(many or ([single] if single else []))
    if "None" in found and found != ("None",):
        raise at.fail("a headless Service has clusterIPs [\"None\"] and nothing else", ("spec", "clusterIPs"))
    return found


def service(raw: RawObject) -> Service:
    at = At(raw)
    namespace, name = meta(at, "Service")
    kind = _choice(at, ("spec", "type"), SERVICE_TYPES, "ClusterIP")
    external_name = None
    if kind == "ExternalName":
        external_name = at.get(("spec", "externalName"), str)
        if not external_name:
            raise at.fail("externalName is required when type is ExternalName", ("spec", "externalName"))
        at.check(names.dns1123_subdomain(external_name.rstrip(".")), ("spec", "externalName"),
                 f"externalName {external_name!r}")
    selector = at.get(("spec", "selector"), dict)
    etp = at.get(("spec", "externalTrafficPolicy"), str)
    if etp and kind not in ("NodePort", "LoadBalancer"):
        raise at.fail("externalTrafficPolicy may only be set on NodePort and LoadBalancer Services",
                      ("spec", "externalTrafficPolicy"))
    return Service(
        namespace=namespace, name=name, type=kind, ports=_ports(at, kind),
        selector=at.labels(("spec", "selector")) if selector else None,
        cluster_ips=() if kind == "ExternalName" else _cluster_ips(at),
        external_ips=tuple(_ip(at, ("spec", "externalIPs", i)) for i in _indexes(at, ("spec", "externalIPs"))),
        load_balancer_ips=tuple(_ip(at, ("status", "loadBalancer", "ingress", i, "ip"))
                                for i in _indexes(at, ("status", "loadBalancer", "ingress"))
                                if at.get(("status", "loadBalancer", "ingress", i, "ip"))),
        external_name=external_name,
        external_traffic_policy=_choice(at, ("spec", "externalTrafficPolicy"), TRAFFIC_POLICIES, "Cluster"),
        internal_traffic_policy=_choice(at, ("spec", "internalTrafficPolicy"), TRAFFIC_POLICIES, "Cluster"),
        source=raw.source)


def _endpoint(at: At, path: Path_, version: int | None, namespace: str) -> EndpointAddress:
    addresses = at.items(path + ("addresses",))
    if not 1 <= len(addresses) <= MAX_ENDPOINT_ADDRESSES:
        raise at.fail(f"an endpoint has 1 to {MAX_ENDPOINT_ADDRESSES} addresses", path + ("addresses",))
    texts = []
    for i, _ in enumerate(addresses):
        where = path + ("addresses", i)
        if version is None:
            text = at.get(where, str)
            at.check(names.dns1123_subdomain(text), where, f"address {text!r}")
        else:
            text = _ip(at, where)
            if ipaddress.ip_address(text).version != version:
                raise at.fail(f"address {text!r} is not of the slice's addressType", where)
        texts.append(text)
    ready = at.get(path + ("conditions", "ready"), bool)
    ref, target = at.sub(path + ("targetRef",)), None
    if ref.get(("kind",), str) == "Pod" and ref.get(("name",), str):
        target = f"{ref.get(('namespace',), str) or namespace}/{ref.get(('name',), str)}"
    return EndpointAddress(addresses=tuple(texts), ready=ready is not False, target=target,
                           node_name=at.name(path + ("nodeName",), names.dns1123_subdomain))


def _endpoint_port(at: At, path: Path_) -> EndpointPort:
    number = at.get(path + ("port",), int)
    if number is not None and not 1 <= number <= 65535:
        raise at.fail(f"port {number} out of range 1-65535", path + ("port",))
    return EndpointPort(name=at.name(path + ("name",), names.dns1123_label), port=number,
                        protocol=protocol(at, path + ("protocol",)))


def endpoint_slice(raw: RawObject) -> EndpointSlice:
    at = At(raw)
    namespace, name = meta(at, "EndpointSlice")
    address_type = at.get(("addressType",), str)
    if address_type not in ADDRESS_TYPES:
        raise at.fail(f"addressType {address_type!r}: one of {', '.join(ADDRESS_TYPES)}", ("addressType",))
    version = ADDRESS_TYPES[address_type]
    labels = at.labels(("metadata", "labels"))
    if not labels.get(SERVICE_NAME_LABEL):
        raise at.fail(f"an EndpointSlice needs the label {SERVICE_NAME_LABEL}: without it no Service uses it",
                      ("metadata", "labels"))
    return EndpointSlice(
        namespace=namespace, name=name, service=labels.get(SERVICE_NAME_LABEL), address_type=address_type,
        endpoints=tuple(_endpoint(at, ("endpoints", i), version, namespace) for i in _indexes(at, ("endpoints",))),
        ports=tuple(_endpoint_port(at, ("ports", i)) for i in _indexes(at, ("ports",))),
        source=raw.source)


NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")


def node(raw: RawObject) -> Node:
    at = At(raw)
    name = object_name(at, "Node")
    addresses = []
    for i in _indexes(at, ("status", "addresses")):
        path = ("status", "addresses", i)
        kind = _choice(at, path + ("type",), NODE_ADDRESS_TYPES, "")
        text = _ip(at, path + ("address",)) if kind.endswith("IP") else at.get(path + ("address",), str, "")
        addresses.append((kind, text))
    cidrs = [_cidr(at, ("spec", "podCIDRs", i)) for i in _indexes(at, ("spec", "podCIDRs"))]
    if not cidrs and at.get(("spec", "podCIDR"), str):
        cidrs = [_cidr(at, ("spec", "podCIDR"))]
    return Node(name=name, labels=at.labels(("metadata", "labels")), addresses=tuple(addresses),
                pod_cidr_texts=tuple(cidrs), taints=taints(at), source=raw.source)


def _cidr(at: At, path: Path_) -> str:
    text = at.get(path, str)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise at.fail(f"invalid CIDR {text!r}", path) from None
    return text
