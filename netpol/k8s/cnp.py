"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) objects -> models, validated as the API server
does with the CRD's schema and CEL rules (standard and experimental channels together)."""

from __future__ import annotations

import ipaddress
import re

from netpol.k8s import names
from netpol.k8s.cursor import At, object_name, selector
from netpol.k8s.model import Action, ClusterNetworkPolicy, CnpPeer, CnpPods, CnpPort, CnpRule, Tier
from netpol.k8s.source import Path_, RawObject

API_GROUP = "policy.networking.k8s.io"
CNP_API = f"{API_GROUP}/v1alpha2"
LIMIT = 25  # rules per direction, peers per rule, protocols per rule, networks and domain names per peer
RULE_NAME_MAX = 100
_DOMAIN = re.compile(r"(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?")
_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


def _one_of(at: At, path: Path_, allowed: tuple[str, ...], what: str) -> str:
    node = at.get(path, dict)
    set_ = [k for k in allowed if node is not None and node.get(k) is not None]
    if len(set_) != 1:
        raise at.fail(f"{what} must set exactly one of {', '.join(allowed)}", path)
    return set_[0]


def _pods(at: At, path: Path_) -> CnpPods:
    if at.get(path + ("podSelector",)) is None:
        raise at.fail("podSelector is required", path + ("podSelector",))
    ns = at.get(path + ("namespaceSelector",))
    return CnpPods(namespace_selector=selector(at, path + ("namespaceSelector",)) if ns is not None else None,
                   pod_selector=selector(at, path + ("podSelector",)))


def _items(at: At, path: Path_, what: str, low: int = 1) -> list:
    found = at.items(path)
    if not low <= len(found) <= LIMIT:
        raise at.fail(f"{what} must have {low} to {LIMIT} items (has {len(found)})", path)
    return found


def _peer(at: At, path: Path_, egress: bool) -> CnpPeer:
    kinds = ("namespaces", "pods", "networks", "nodes", "domainNames") if egress else ("namespaces", "pods")
    kind = _one_of(at, path, kinds, "a peer")
    if kind == "namespaces":
        return CnpPeer(namespaces=selector(at, path + ("namespaces",)))
    if kind == "pods":
        return CnpPeer(pods=_pods(at, path + ("pods",)))
    if kind == "nodes":
        return CnpPeer(nodes=selector(at, path + ("nodes",)))
    texts = _items(at, path + (kind,), kind)
    if len(set(texts)) != len(texts):
        raise at.fail(f"{kind} must not repeat an item", path + (kind,))
    for i, text in enumerate(texts):
        where = path + (kind, i)
        if not isinstance(text, str):
            raise at.fail(f"{kind} items are strings", where)
        if kind == "networks":
            _cidr(at, where, text)
        elif not _DOMAIN.fullmatch(text):
            raise at.fail(f"invalid domain name {text!r} (a name of two or more labels, `*.` only as a whole "
                          "first label)", where)
    return CnpPeer(networks=tuple(texts)) if kind == "networks" else CnpPeer(domain_names=tuple(texts))


def _cidr(at: At, path: Path_, text: str) -> None:
    """The CRD's isCIDR: a prefix length is required; host bits are accepted; at most 43 characters."""
    try:
        if "/" not in text or len(text) > 43 or "%" in text:
            raise ValueError
        net = ipaddress.ip_network(text, strict=False)
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
            raise ValueError
    except ValueError:
        raise at.fail(f"invalid CIDR {text!r}", path) from None


def _port(at: At, path: Path_) -> CnpPort:
    kind = _one_of(at, path, ("tcp", "udp", "sctp", "destinationNamedPort"), "a protocol")
    if kind == "destinationNamedPort":
        name = at.get(path + (kind,), str)
        at.check(names.iana_svc_name(name), path + (kind,), f"port name {name!r}")
        return CnpPort(name=name)
    dest = path + (kind, "destinationPort")
    if at.get(dest) is None:
        raise at.fail("destinationPort is required", dest)
    which = _one_of(at, dest, ("number", "range"), "destinationPort")
    if which == "number":
        n = _number(at, dest + ("number",))
        return CnpPort(protocol=_PROTOCOLS[kind], lo=n, hi=n)  # type: ignore[arg-type]
    lo, hi = _number(at, dest + ("range", "start")), _number(at, dest + ("range", "end"))
    if lo >= hi:
        raise at.fail(f"start {lo} must be less than end {hi}", dest + ("range",))
    return CnpPort(protocol=_PROTOCOLS[kind], lo=lo, hi=hi)  # type: ignore[arg-type]


def _number(at: At, path: Path_) -> int:
    n = at.get(path, int)
    if n is None:
        raise at.fail("a port number is required", path)
    if not 1 <= n <= 65535:
        raise at.fail(f"port {n} out of range 1-65535", path)
    return n


def _rule(at: At, path: Path_, egress: bool) -> CnpRule:
    name = at.get(path + ("name",), str)
    if name is not None and len(name) > RULE_NAME_MAX:
        raise at.fail(f"a rule name has at most {RULE_NAME_MAX} characters", path + ("name",))
    action = at.get(path + ("action",), str)
    if action not in {a.value for a in Action}:
        hint = " (v1alpha2 renamed Allow to Accept)" if action == "Allow" else ""
        raise at.fail(f"action {action!r} is not one of Accept, Deny, Pass{hint}", path + ("action",))
    field = "to" if egress else "from"
    peers = tuple(_peer(at, path + (field, i), egress) for i, _ in enumerate(_items(at, path + (field,), field)))
    ports = None
    if at.get(path + ("protocols",)) is not None:
        ports = tuple(_port(at, path + ("protocols", i)) for i, _ in enumerate(_items(at, path + ("protocols",),
                                                                                        "protocols")))
        if egress and any(p.name for p in ports) and any(not (p.pods or p.namespaces) for p in peers):
            raise at.fail("there are no named ports for networks, nodes or domainNames peers", path + ("protocols",))
    return CnpRule(name=name, action=Action(action), peers=peers, ports=ports)


def cluster_network_policy(raw: RawObject) -> ClusterNetworkPolicy:
    at = At(raw)
    name = object_name(at, "ClusterNetworkPolicy")
    spec = ("spec",)
    if at.get(spec, dict) is None:
        raise at.fail("spec is required", spec)
    tier = at.get(spec + ("tier",), str)
    if tier not in {t.value for t in Tier}:
        raise at.fail(f"tier {tier!r} is not one of Admin, Baseline", spec + ("tier",))
    priority = at.get(spec + ("priority",), int)
    if priority is None or not 0 <= priority <= 1000:
        raise at.fail(f"priority {priority} must be 0 to 1000", spec + ("priority",))
    kind = _one_of(at, spec + ("subject",), ("namespaces", "pods"), "subject")
    subject = (CnpPeer(namespaces=selector(at, spec + ("subject", "namespaces"))) if kind == "namespaces"
               else CnpPeer(pods=_pods(at, spec + ("subject", "pods"))))
    rules = {}
    for direction in ("ingress", "egress"):
        found = _items(at, spec + (direction,), direction, low=0)
        rules[direction] = tuple(_rule(at, spec + (direction, i), direction == "egress") for i, _ in enumerate(found))
    return ClusterNetworkPolicy(name=name, tier=Tier(tier), priority=priority, subject=subject,
                                ingress=rules["ingress"], egress=rules["egress"], source=raw.source)


# ---- v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy, read as the Admin and Baseline tiers ----

V1ALPHA1 = f"{API_GROUP}/v1alpha1"
_V1ALPHA1_ACTIONS = {"Allow": Action.ACCEPT, "Deny": Action.DENY, "Pass": Action.PASS}


def _v1alpha1_peer(at: At, path: Path_, egress: bool) -> CnpPeer:
    kinds = ("namespaces", "pods", "networks", "nodes") if egress else ("namespaces", "pods")
    kind = _one_of(at, path, kinds, "a peer")
    if kind == "namespaces":
        node = at.get(path + ("namespaces",), dict)
        old = [k for k in ("sameLabels", "notSameLabels", "namespaceSelector") if k in node]
        if old:
            raise at.fail(f"{old[0]} is of an older v1alpha1 and has no ClusterNetworkPolicy meaning: write "
                          "namespaces as a label selector", path + ("namespaces", old[0]))
    if kind == "pods" and "namespaces" in at.get(path + ("pods",), dict):
        raise at.fail("pods.namespaces is of an older v1alpha1: use pods.namespaceSelector", path + ("pods",))
    return _peer(at, path, egress)


def _v1alpha1_port(at: At, path: Path_) -> CnpPort:
    kind = _one_of(at, path, ("portNumber", "namedPort", "portRange"), "a port")
    if kind == "namedPort":
        name = at.get(path + (kind,), str)
        at.check(names.iana_svc_name(name), path + (kind,), f"port name {name!r}")
        return CnpPort(name=name)
    proto = at.get(path + (kind, "protocol"), str, "TCP")
    if proto not in ("TCP", "UDP", "SCTP"):
        raise at.fail(f"protocol {proto!r} is not TCP, UDP or SCTP", path + (kind, "protocol"))
    if kind == "portNumber":
        n = _number(at, path + (kind, "port"))
        return CnpPort(protocol=proto, lo=n, hi=n)  # type: ignore[arg-type]
    lo, hi = _number(at, path + (kind, "start")), _number(at, path + (kind, "end"))
    if lo >= hi:
        raise at.fail(f"start {lo} must be less than end {hi}", path + (kind,))
    return CnpPort(protocol=proto, lo=lo, hi=hi)  # type: ignore[arg-type]


def _v1alpha1_rule(at: At, path: Path_, egress: bool, actions: tuple[str, ...]) -> CnpRule:
    action = at.get(path + ("action",), str)
    if action not in actions:
        raise at.fail(f"action {action!r} is not one of {', '.join(actions)}", path + ("action",))
    field = "to" if egress else "from"
    peers = tuple(_v1alpha1_peer(at, path + (field, i), egress)
                  for i, _ in enumerate(_items(at, path + (field,), field)))
    ports = None
    if at.get(path + ("ports",)) is not None:
        ports = tuple(_v1alpha1_port(at, path + ("ports", i)) for i, _ in enumerate(_items(at, path + ("ports",),
                                                                                             "ports")))
    return CnpRule(name=at.get(path + ("name",), str), action=_V1ALPHA1_ACTIONS[action], peers=peers, ports=ports)


def admin_network_policy(raw: RawObject) -> ClusterNetworkPolicy:
    """v1alpha1 AdminNetworkPolicy (Admin tier; Allow is Accept) or BaselineAdminNetworkPolicy (Baseline
    tier, the singleton `default`; Allow and Deny only)."""
    at = At(raw)
    baseline = raw.kind == "BaselineAdminNetworkPolicy"
    name = object_name(at, raw.kind)
    spec = ("spec",)
    if at.get(spec, dict) is None:
        raise at.fail("spec is required", spec)
    if baseline and name != "default":
        raise at.fail("a BaselineAdminNetworkPolicy must be named default", ("metadata", "name"))
    priority = 0 if baseline else at.get(spec + ("priority",), int)
    if priority is None or not 0 <= priority <= 1000:
        raise at.fail(f"priority {priority} must be 0 to 1000", spec + ("priority",))
    kind = _one_of(at, spec + ("subject",), ("namespaces", "pods"), "subject")
    subject = _v1alpha1_peer(at, spec + ("subject",), False) if kind else CnpPeer()
    actions = ("Allow", "Deny") if baseline else ("Allow", "Deny", "Pass")
    rules = {d: tuple(_v1alpha1_rule(at, spec + (d, i), d == "egress", actions)
                      for i, _ in enumerate(_items(at, spec + (d,), d, low=0))) for d in ("ingress", "egress")}
    return ClusterNetworkPolicy(name=name, kind=raw.kind, tier=Tier.BASELINE if baseline else Tier.ADMIN,
                                priority=priority, subject=subject, ingress=rules["ingress"], egress=rules["egress"],
                                source=raw.source)


def tier_order(p: ClusterNetworkPolicy) -> tuple:
    """The order policies apply in: Admin first, lower priority first, then by name (and kind)."""
    return p.tier != Tier.ADMIN, p.priority, p.name, p.kind
