"""Small clusters for table and kernel tests: the e2e world (x, y, z; a, b, c) and named scenarios."""

from __future__ import annotations

from netpol.k8s.model import Cluster, Options
from support.builders import cluster, container_ports, e2e_objects, namespace, pod, policy

EXT = ("198.18.9.9", "2001:db8:9::9")  # an address no pod holds


def _sel(**labels: str) -> dict:
    return {"matchLabels": labels}


def _apart(sel: dict, i: int) -> dict:
    """sel, made unlike the same selector of another i while selecting the same pods: policies
    with equal podSelectors in a namespace share one walk chain."""
    return {**sel, "matchExpressions": [{"key": f"unset{i}", "operator": "DoesNotExist"}]}


def world(*policies: dict, ipv6_primary: bool = False, hostnet: bool = False) -> Cluster:
    """The e2e world, dual-stack, plus pods whose port names mean different numbers."""
    extra = [pod("x", "d", {"pod": "d"}, ("198.18.1.4", "2001:db8:1::4"), container_ports((80, "TCP", "web"))),
             pod("z", "d", {"pod": "d"}, ("198.18.3.4", "2001:db8:3::4"),
                 container_ports((81, "TCP", "web"), (80, "UDP", "dns")))]
    if ipv6_primary:
        extra = [pod("x", "d", {"pod": "d"}, ("2001:db8:1::4", "198.18.1.4"),
                     container_ports((80, "TCP", "web")))]
    if hostnet:
        extra.append(pod("kube-system", "agent", {"pod": "a"}, ("198.18.200.1",),
                         container_ports((80, "TCP", "web"), (81, "UDP", "serve-81-udp")),
                         host_network=True, node="node-h"))
    return cluster(*e2e_objects(dual_stack=True, ipv6_primary=ipv6_primary),
                   namespace("kube-system"), *extra, *policies)


def _ports(*items: tuple) -> list[dict]:
    out = []
    for item in items:
        entry: dict = {"protocol": item[0]}
        if len(item) > 1 and item[1] is not None:
            entry["port"] = item[1]
        if len(item) > 2:
            entry["endPort"] = item[2]
        out.append(entry)
    return out


SCENARIOS: dict[str, tuple[list[dict], Options]] = {
    "deny-ingress-x": ([policy("x", "deny", {"podSelector": {}})], Options()),
    "ingress-from-ns-y-tcp80": ([policy("x", "web", {
        "podSelector": _sel(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": _sel(ns="y")}], "ports": _ports(("TCP", 80))}]})],
        Options()),
    "ingress-ns-and-pod": ([policy("x", "and", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": _sel(ns="y"), "podSelector": _sel(pod="b")},
                              {"podSelector": _sel(pod="c")}]}]})], Options()),
    "egress-udp81-and-deny": ([
        policy("x", "out", {"podSelector": {}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"podSelector": _sel(pod="b")}], "ports": _ports(("UDP", 81))},
                                       {"to": [{"namespaceSelector": _sel(ns="z")}],
                                        "ports": _ports(("TCP", 80))}]}),
        policy("y", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], Options()),
    "ipblock-except": ([
        policy("x", "blk", {"podSelector": _sel(pod="a"), "ingress": [{"from": [{"ipBlock": {
            "cidr": "198.18.0.0/15", "except": ["198.18.2.0/24", "198.18.3.2/32"]}}]}]}),
        policy("y", "blk6", {"podSelector": _sel(pod="b"), "policyTypes": ["Egress"], "egress": [{"to": [
            {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:3::/48"]}},
            {"ipBlock": {"cidr": "198.18.1.0/24", "except": ["198.18.1.2/31"]}},
            {"ipBlock": {"cidr": "198.18.1.0/25"}}]}]})], Options()),
    "named-ports": ([
        policy("x", "named-in", {"podSelector": {}, "ingress": [
            {"ports": _ports(("UDP", "serve-81-udp"), ("TCP", "web"))},
            {"from": [{"namespaceSelector": _sel(ns="z")}], "ports": _ports(("TCP", "serve-80-tcp"))}]}),
        policy("y", "named-out", {"podSelector": _sel(pod="a"), "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {}}], "ports": _ports(("TCP", "web"), ("UDP", "dns"))},
            {"to": [{"ipBlock": {"cidr": "198.18.1.0/24"}}], "ports": _ports(("UDP", "serve-80-udp"))},
            {"ports": _ports(("TCP", "serve-81-udp"))}]})],  # a name the pods use for UDP only
        Options()),
    "endport-and-protocol-only": ([
        policy("y", "range", {"podSelector": {}, "ingress": [
            {"from": [{"namespaceSelector": _sel(ns="x")}], "ports": _ports(("TCP", 80, 81))},
            {"from": [{"namespaceSelector": _sel(ns="z")}], "ports": _ports(("UDP", 81, 90), ("UDP", 79, 80))},
            {"from": [{"podSelector": _sel(pod="c")}], "ports": _ports(("UDP",))}]})], Options()),
    "ipv6-block-only": ([policy("z", "v6", {"podSelector": _sel(pod="c"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "2001:db8:1::/48"}}]}]})], Options()),
    "ipblock-pods-false": ([
        policy("x", "blk", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/15"}},
                                                  {"podSelector": _sel(pod="b")}]}],
                            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}},
                                               {"ipBlock": {"cidr": "::/0"}}]}]})],
        Options(ipblock_pods=False)),
    "empty-rules-and-types": ([
        policy("x", "all-in", {"podSelector": _sel(pod="a"), "ingress": [{}]}),
        policy("x", "none-out", {"podSelector": _sel(pod="a"), "policyTypes": ["Egress"]}),
        policy("y", "egress-only", {"podSelector": {}, "policyTypes": ["Egress"],
                                    "ingress": [{"from": [{"podSelector": _sel(pod="zzz")}]}],
                                    "egress": [{"to": [{"namespaceSelector": _sel(ns="x")}]}]}),
        policy("z", "two", {"podSelector": _sel(pod="a"), "ingress": [{"from": [{"podSelector": {}}]}]}),
        policy("z", "three", {"podSelector": {}, "ingress": [{"ports": _ports(("TCP", 81))}]})], Options()),
}


def scenario(name: str, **kw) -> tuple[Cluster, Options]:
    policies, opts = SCENARIOS[name]
    return world(*policies, **kw), opts
