"""Raw objects -> models, validated the way the API server validates them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import cast

from netpol.errors import InputError
from netpol.gcpause import gc_paused
from netpol.k8s import fields, ignored, names
from netpol.k8s.model import (
    NS_NAME_LABEL,
    PROTOCOLS,
    WORKLOAD_KINDS,
    Cluster,
    ContainerPort,
    IPAddress,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    Protocol,
    Requirement,
    Rule,
    Service,
    ServicePort,
)
from netpol.k8s.source import Path_, RawObject

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class _At:
    """A cursor on one raw object: reads fields and raises errors located at them."""

    def __init__(self, raw: RawObject, base: Path_ = (), node=None) -> None:
        self.raw, self.base = raw, base
        self.node = raw.data if node is None else node

    def sub(self, path: Path_) -> _At:
        """A cursor on a nested field, so reading many of its fields does not walk from the root."""
        return _At(self.raw, self.base + path, self.get(path, default={}))

    def fail(self, message: str, path: Path_) -> InputError:
        return self.raw.error(message, self.base + path)

    def get(self, path: Path_, kind: type | tuple[type, ...] | None = None, default=None):
        node = self.node
        for part in path:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            if node is None:
                return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int to Python, never to the API server
        if kind is not None and (not isinstance(node, kind) or (isinstance(node, bool) and bool not in kinds)):
            raise self.fail(f"expected {_kind_name(kind)}, got {_type_name(node)}", path)
        return node

    def items(self, path: Path_) -> list:
        return self.get(path, list, [])

    def labels(self, path: Path_, values: names.Check | None = names.label_value) -> dict[str, str]:
        """A string map whose keys are qualified names (labels, selectors, annotations); values are
        checked too unless `values` is None (annotation values are free text)."""
        found = self.get(path, dict, {})
        for k, v in found.items():
            if v is not None and not isinstance(v, str):
                raise self.fail(f"value {v!r} must be a string (quote it: \"{_yaml_scalar(v)}\")", path + (k,))
            self.check(names.qualified_name(str(k).lower() if values is None else str(k)), path + (k,), "key")
            if values is not None:
                self.check(values(v or ""), path + (k,), repr(v or ""))
        return {str(k): "" if v is None else v for k, v in found.items()}

    def check(self, why: str | None, path: Path_, what: str) -> None:
        """Raise a located error when an identifier check found a reason."""
        if why is not None:
            raise self.fail(f"invalid {what}: {why}", path)

    def name(self, path: Path_, check: names.Check, default: str | None = None) -> str | None:
        """An optional identifier field, checked."""
        value = self.get(path, str)
        if value is None or value == "":
            return default
        self.check(check(value), path, f"value {value!r}")
        return value


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _yaml_scalar(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _kind_name(kind) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "a boolean"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _selector(at: _At, path: Path_) -> LabelSelector:
    at.get(path, dict)
    labels = tuple(sorted(at.labels(path + ("matchLabels",)).items()))
    reqs = []
    for i, _ in enumerate(at.items(path + ("matchExpressions",))):
        p = path + ("matchExpressions", i)
        key = at.get(p + ("key",), str)
        op = at.get(p + ("operator",), str)
        values = at.items(p + ("values",))
        if not key:
            raise at.fail("key is required", p + ("key",))
        at.check(names.qualified_name(key), p + ("key",), f"key {key!r}")
        if op not in _OPERATORS:
            raise at.fail(f"operator {op!r} is not one of {', '.join(_OPERATORS)}", p + ("operator",))
        if op in ("In", "NotIn") and not values:
            raise at.fail(f"operator {op} needs at least one value", p + ("values",))
        if op in ("Exists", "DoesNotExist") and values:
            raise at.fail(f"operator {op} must not have values", p + ("values",))
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise at.fail(f"value {v!r} must be a string (quote it: \"{_yaml_scalar(v)}\")", p + ("values", j))
            at.check(names.label_value(v), p + ("values", j), f"value {v!r}")
        reqs.append(Requirement(key=key, operator=op, values=frozenset(str(v) for v in values)))
    return LabelSelector(match_labels=labels, match_expressions=tuple(reqs))


def _cidr(at: _At, path: Path_, text) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        if not isinstance(text, str) or "/" not in text:
            raise ValueError
        return ipaddress.ip_network(text, strict=False)  # host bits set: the API accepts it
    except ValueError:
        raise at.fail(f"invalid CIDR {text!r}", path) from None


def _ip_block(at: _At, path: Path_) -> IPBlock:
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


def _protocol(at: _At, path: Path_) -> Protocol:
    proto = at.get(path, str, "TCP")
    if proto not in PROTOCOLS:
        raise at.fail(f"unsupported protocol {proto!r} (TCP, UDP or SCTP)", path)
    return cast(Protocol, proto)


def _port_value(at: _At, path: Path_) -> int | str | None:
    value = at.get(path, (int, str))
    if value is None:
        return None
    if isinstance(value, bool):
        raise at.fail("port must be a number or a name", path)
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise at.fail(f"port {value} out of range 1-65535", path)
        return value
    at.check(names.iana_svc_name(value), path, f"port name {value!r} (an IANA service name)")
    return value


def _policy_port(at: _At, path: Path_) -> PolicyPort:
    proto = _protocol(at, path + ("protocol",))
    port = _port_value(at, path + ("port",))
    end = at.get(path + ("endPort",), int)
    if end is not None:
        if not isinstance(port, int):
            raise at.fail("endPort requires a numeric port", path + ("endPort",))
        if not port <= end <= 65535:
            raise at.fail(f"endPort {end} must be between port {port} and 65535", path + ("endPort",))
    return PolicyPort(protocol=proto, port=port, end_port=end)


def _peer(at: _At, path: Path_) -> Peer:
    at.get(path, dict)
    pod = at.get(path + ("podSelector",))
    ns = at.get(path + ("namespaceSelector",))
    block = at.get(path + ("ipBlock",))
    if block is not None and (pod is not None or ns is not None):
        raise at.fail("ipBlock may not be combined with podSelector or namespaceSelector", path)
    if pod is None and ns is None and block is None:
        raise at.fail("a peer needs podSelector, namespaceSelector or ipBlock", path)
    return Peer(
        pod_selector=_selector(at, path + ("podSelector",)) if pod is not None else None,
        namespace_selector=_selector(at, path + ("namespaceSelector",)) if ns is not None else None,
        ip_block=_ip_block(at, path + ("ipBlock",)) if block is not None else None)


def _rules(at: _At, direction: str) -> tuple[Rule, ...]:
    peers_field = "from" if direction == "ingress" else "to"
    rules = []
    for i, _ in enumerate(at.items(("spec", direction))):
        p = ("spec", direction, i)
        peers = tuple(_peer(at, p + (peers_field, j)) for j, _ in enumerate(at.items(p + (peers_field,))))
        ports = tuple(_policy_port(at, p + ("ports", j)) for j, _ in enumerate(at.items(p + ("ports",))))
        rules.append(Rule(peers=peers, ports=ports))
    return tuple(rules)


# metadata.name as the API server checks it per kind (CronJob names also become Job names plus 11)
NAME_CHECKS: dict[str, names.Check] = {"Namespace": names.dns1123_label, "Service": names.dns1035_label}
_NAME_LIMITS = {"CronJob": 52}
ANNOTATIONS_MAX = 256 * 1024  # bytes of keys and values together


def _name(at: _At, kind: str) -> str:
    name = at.get(("metadata", "name"), str)
    if not name:
        raise at.fail("metadata.name is required", ("metadata",))
    at.check(NAME_CHECKS.get(kind, names.dns1123_subdomain)(name), ("metadata", "name"), f"name {name!r}")
    limit = _NAME_LIMITS.get(kind)
    if limit is not None and len(name) > limit:
        raise at.fail(f"invalid name {name!r}: must be no more than {limit} characters", ("metadata", "name"))
    return name


def _meta(at: _At, kind: str) -> tuple[str, str]:
    name = _name(at, kind)
    return at.name(("metadata", "namespace"), names.dns1123_label, "default") or "default", name


def _annotations(at: _At) -> tuple[tuple[str, str], ...]:
    found = at.labels(("metadata", "annotations"), values=None)
    if sum(len(k.encode()) + len(v.encode()) for k, v in found.items()) > ANNOTATIONS_MAX:
        raise at.fail(f"may not be more than {ANNOTATIONS_MAX} bytes", ("metadata", "annotations"))
    return tuple(sorted(found.items()))


def network_policy(raw: RawObject) -> NetworkPolicy:
    at = _At(raw)
    namespace, name = _meta(at, "NetworkPolicy")
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
    return NetworkPolicy(namespace=namespace, name=name, pod_selector=_selector(at, ("spec", "podSelector")),
                         ingress=ingress, egress=egress, policy_types=frozenset(types),
                         annotations=_annotations(at), source=raw.source)


def _container_ports(at: _At, spec: Path_) -> tuple[ContainerPort, ...]:
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
                                         protocol=_protocol(entry, ("protocol",))))
    return tuple(out)


def _pod_ips(at: _At) -> tuple[str, ...]:
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


def _owner(at: _At) -> tuple[str, str] | None:
    """The controller. Like np-guard, a reference without a kind still names a workload; names
    reach reports only through each format's escaping."""
    for i in range(len(at.items(("metadata", "ownerReferences")))):
        path = ("metadata", "ownerReferences", i)
        if at.get(path, dict).get("controller") is True:
            return at.get(path + ("kind",), str, ""), at.get(path + ("name",), str, "")
    return None


def pod(raw: RawObject) -> Pod | None:
    at = _At(raw)
    namespace, name = _meta(at, "Pod")
    if at.get(("status", "phase")) in ("Succeeded", "Failed"):
        return None  # finished pods hold no address and take no traffic
    return Pod(namespace=namespace, name=name, labels=at.labels(("metadata", "labels")), ips=_pod_ips(at),
               ports=_container_ports(at, ("spec",)), host_network=bool(at.get(("spec", "hostNetwork"))),
               node_name=at.name(("spec", "nodeName"), names.dns1123_subdomain), owner=_owner(at),
               annotations=_annotations(at), source=raw.source)


def workload(raw: RawObject) -> Pod:
    at = _At(raw)
    namespace, name = _meta(at, raw.kind)
    tmpl = ("spec", "jobTemplate", "spec", "template") if raw.kind == "CronJob" else ("spec", "template")
    return Pod(namespace=namespace, name=name, kind=raw.kind, labels=at.labels(tmpl + ("metadata", "labels")),
               ports=_container_ports(at, tmpl + ("spec",)),
               host_network=bool(at.get(tmpl + ("spec", "hostNetwork"))),
               annotations=_annotations(at), source=raw.source)


def namespace(raw: RawObject) -> Namespace:
    at = _At(raw)
    name = _name(at, "Namespace")
    labels = at.labels(("metadata", "labels"))
    labels[NS_NAME_LABEL] = name  # set by the API server on every namespace
    return Namespace(name=name, labels=labels, source=raw.source)


def service(raw: RawObject) -> Service:
    at = _At(raw)
    namespace, name = _meta(at, "Service")
    ports = []
    for i, _ in enumerate(at.items(("spec", "ports"))):
        p = ("spec", "ports", i)
        ports.append(ServicePort(name=at.name(p + ("name",), names.dns1123_label),
                                 port=at.get(p + ("port",), int) or 0,
                                 target_port=_port_value(at, p + ("targetPort",)),
                                 protocol=_protocol(at, p + ("protocol",))))
    return Service(namespace=namespace, name=name, selector=at.labels(("spec", "selector")),
                   ports=tuple(ports), source=raw.source)


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
    seen: dict[tuple[str, str, str], RawObject] = {}
    skipped: list[RawObject] = []
    for raw in raws:
        kind = raw.kind
        if kind not in ("Namespace", "Pod", "NetworkPolicy", "Service", *WORKLOAD_KINDS) or (
                kind == "NetworkPolicy" and not str(raw.data.get("apiVersion", "networking.k8s.io/v1")).startswith(
                    "networking.k8s.io/")):
            skipped.append(raw)
            continue
        fields.check(raw)  # typos first: a misspelt field changes what a policy means
        at = _At(raw)
        ident = (kind, "" if kind == "Namespace" else at.get(("metadata", "namespace"), str) or "default",
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
        else:
            pods.append(workload(raw))
    pods = _one_owner_per_address(pods, claims)
    used = {p.namespace for p in pods} | {p.namespace for p in policies} | {s.namespace for s in services}
    for name in used | {"default"}:
        namespaces.setdefault(name, Namespace(name=name, labels={NS_NAME_LABEL: name}))
    return Cluster(namespaces=dict(sorted(namespaces.items())), pods=tuple(pods), policies=tuple(policies),
                   ignored=ignored.summary(skipped),
                   services=tuple(services))
