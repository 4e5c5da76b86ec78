"""compile: what the plan holds for a node, and the interval arithmetic under it."""

from __future__ import annotations

import ipaddress
import random

import pytest
from support.builders import cluster, container_ports, namespace, pod, policy

from netpol.k8s.model import Options
from netpol.nft.elements import address_json, address_text, port_text
from netpol.nft.plan import NamedPort, PortRange, compile_plan
from netpol.spans import contains, merge, subtract


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def span(a: str, b: str | None = None) -> tuple[int, int]:
    return ip(a), ip(b or a)


def net(cidr: str) -> tuple[int, int]:
    n = ipaddress.ip_network(cidr)
    return int(n.network_address), int(n.broadcast_address)


# ---- interval arithmetic --------------------------------------------------------------------------

def test_merge_joins_overlapping_and_adjacent_spans():
    assert merge([(5, 9), (1, 3), (4, 4), (20, 30), (25, 26), (32, 40)]) == ((1, 9), (20, 30), (32, 40))
    assert merge([]) == ()


def test_subtract_cuts_holes_anywhere():
    assert subtract(((0, 100),), ((0, 9), (50, 59), (95, 200))) == ((10, 49), (60, 94))
    assert subtract(((0, 10), (20, 30)), ((5, 25),)) == ((0, 4), (26, 30))
    assert subtract(((0, 10),), ()) == ((0, 10),)
    assert subtract(((0, 10),), ((0, 10),)) == ()


def test_interval_math_against_brute_force():
    rng = random.Random(7)
    for _ in range(200):
        a = [(lo, lo + rng.randrange(6)) for lo in (rng.randrange(60) for _ in range(rng.randrange(6)))]
        b = [(lo, lo + rng.randrange(6)) for lo in (rng.randrange(60) for _ in range(rng.randrange(6)))]
        pa, pb = {x for lo, hi in a for x in range(lo, hi + 1)}, {x for lo, hi in b for x in range(lo, hi + 1)}
        ma, mb = merge(a), merge(b)
        assert all(x[1] + 1 < y[0] for x, y in zip(ma, ma[1:], strict=False))  # disjoint, not adjacent
        assert {x for lo, hi in ma for x in range(lo, hi + 1)} == pa
        diff = subtract(ma, mb)
        assert {x for lo, hi in diff for x in range(lo, hi + 1)} == pa - pb
        assert all(contains(diff, x) == (x in pa - pb) for x in range(70))


def test_element_text_prefers_prefixes():
    assert address_text(4, net("198.18.0.0/15")) == "198.18.0.0/15"
    assert address_text(4, span("198.18.0.1")) == "198.18.0.1"
    assert address_text(4, span("198.18.0.1", "198.18.0.6")) == "198.18.0.1-198.18.0.6"
    assert address_text(6, net("2001:db8::/32")) == "2001:db8::/32"
    assert address_text(4, net("0.0.0.0/0")) == "0.0.0.0/0"
    assert address_json(4, span("198.18.0.1", "198.18.0.6")) == {"range": ["198.18.0.1", "198.18.0.6"]}
    assert address_json(6, net("2001:db8::/48")) == {"prefix": {"addr": "2001:db8::", "len": 48}}
    assert port_text((80, 80)) == "80" and port_text((80, 90)) == "80-90"


# ---- the plan ---------------------------------------------------------------------------------------

def base(*objs: dict):
    return cluster(
        namespace("x", ns="x"), namespace("y", ns="y"),
        pod("x", "a", {"app": "a"}, ("198.18.1.1", "2001:db8:1::1"), container_ports((8080, "TCP", "http")),
            node="n1"),
        pod("x", "b", {"app": "b"}, ("198.18.1.2",), container_ports((9090, "TCP", "http"), (53, "UDP", "dns")),
            node="n2"),
        pod("y", "c", {"app": "c"}, ("2001:db8:2::3",), container_ports((8080, "UDP", "http")), node="n1"),
        pod("y", "h", {"app": "a"}, ("198.18.100.1",), container_ports((8080, "TCP", "http")),
            host_network=True, node="n1"),
        pod("y", "pending", {"app": "a"}, (), node="n1"),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "x"},
         "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}},
        *objs)


def rules(plan, key: str, direction: str = "ingress"):
    return next(p for p in plan.policies if p.key == key).rules(direction)


def test_local_pods_are_real_addressed_policed_pods_of_the_node():
    c = base(policy("x", "all", {"podSelector": {}}))
    assert compile_plan(c, "n1").pods == ("x/a", "y/c")
    assert compile_plan(c, "n2").pods == ("x/b",)
    assert compile_plan(c, None).pods == ("x/a", "x/b", "y/c")
    plan = compile_plan(c, "n1")
    assert plan.enforced == ("x/a",)
    pol = plan.policies[0]
    assert pol.selected == {4: (ipaddress.ip_address("198.18.1.1"),), 6: (ipaddress.ip_address("2001:db8:1::1"),)}
    assert set(plan.isolated["ingress"]) == {ipaddress.ip_address("198.18.1.1"),
                                             ipaddress.ip_address("2001:db8:1::1")}
    assert plan.isolated["egress"] == {}
    assert plan.chains == {"ingress": ("x",), "egress": ()}


def test_every_policy_is_planned_even_without_local_pods():
    c = base(policy("x", "all", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    plan = compile_plan(c, "nowhere")
    assert plan.pods == () and len(plan.policies) == 1
    assert plan.policies[0].selected == {4: (), 6: ()}
    assert rules(plan, "x/all")[0].peers == {4: (span("198.18.1.1", "198.18.1.2"),), 6: (span("2001:db8:1::1"),)}


def test_selector_peers_never_match_host_network_or_workloads_and_split_by_family():
    c = base(policy("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}}]}]}))
    (r,) = rules(compile_plan(c, None), "y/p")
    assert r.peers == {4: (span("198.18.1.1"),), 6: (span("2001:db8:1::1"),)}
    assert r.ports is None and r.named is None and r.any_port


def test_ipblock_except_is_subtracted_and_blocks_merge():
    c = base(policy("x", "p", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.1.0/24", "198.18.5.5/32"]}},
        {"ipBlock": {"cidr": "198.18.1.0/25"}},
        {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]}))
    (r,) = rules(compile_plan(c, None), "x/p")
    assert r.peers[4] == (span("198.18.0.0", "198.18.1.127"), span("198.18.2.0", "198.18.5.4"),
                          span("198.18.5.6", "198.18.255.255"))
    assert r.peers[6] == (span("2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff"),
                          span("2001:db8:2::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))


def test_ipblock_pods_false_cuts_policed_pod_addresses_but_not_host_network():
    pol = policy("x", "p", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "198.18.0.0/15"}}, {"podSelector": {"matchLabels": {"app": "b"}}}]}]})
    (r,) = rules(compile_plan(base(pol), None, Options(ipblock_pods=False)), "x/p")
    assert r.peers[4] == (span("198.18.0.0", "198.18.1.0"), span("198.18.1.2", "198.19.255.255"))
    assert contains(r.peers[4], ip("198.18.100.1"))  # host network: matched by address
    assert contains(r.peers[4], ip("198.18.1.2"))  # x/b: by its selector peer
    (r,) = rules(compile_plan(base(pol), None, Options(ipblock_pods=True)), "x/p")
    assert r.peers[4] == (net("198.18.0.0/15"),)


def test_ports_merge_per_protocol_with_end_port_and_protocol_only():
    c = base(policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "TCP", "port": 80, "endPort": 90}, {"port": 91}, {"protocol": "TCP", "port": 85},
        {"protocol": "UDP"}, {"protocol": "SCTP", "port": 7}]}]}))
    (r,) = rules(compile_plan(c, None), "x/p")
    assert r.peers is None and r.named is None
    assert r.ports == (PortRange("SCTP", 7, 7), PortRange("TCP", 80, 91), PortRange("UDP", 0, 65535))


def test_named_ports_resolve_on_each_selected_destination_with_protocol():
    c = base(policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [
        {"port": "http"}, {"protocol": "UDP", "port": "dns"}, {"protocol": "UDP", "port": "http"}]}]}))
    (r,) = rules(compile_plan(c, None), "x/p")
    assert r.ports is None
    a4, a6, b4 = (ipaddress.ip_address(x) for x in ("198.18.1.1", "2001:db8:1::1", "198.18.1.2"))
    assert r.named == {4: {NamedPort(a4, "TCP", 8080), NamedPort(b4, "TCP", 9090), NamedPort(b4, "UDP", 53)},
                       6: {NamedPort(a6, "TCP", 8080)}}
    (r,) = rules(compile_plan(c, "n1"), "x/p")  # only the node's own destinations
    assert r.named == {4: {NamedPort(a4, "TCP", 8080)}, 6: {NamedPort(a6, "TCP", 8080)}}


def test_egress_named_ports_resolve_on_peer_pods_including_host_network_by_address():
    c = base(policy("x", "p", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"protocol": "UDP", "port": "http"}]},
        {"to": [{"ipBlock": {"cidr": "198.18.100.0/24"}}], "ports": [{"port": "http"}]},
        {"ports": [{"port": "http"}, {"port": 443}]}]}))
    r0, r1, r2 = rules(compile_plan(c, "n2"), "x/p", "egress")
    c6, h4 = ipaddress.ip_address("2001:db8:2::3"), ipaddress.ip_address("198.18.100.1")
    assert r0.named == {4: frozenset(), 6: {NamedPort(c6, "UDP", 8080)}}
    assert r1.named == {4: {NamedPort(h4, "TCP", 8080)}, 6: frozenset()}
    assert len(r2.named[4]) == 3 and r2.ports == (PortRange("TCP", 443, 443),)


def test_empty_and_absent_peers_and_rules():
    c = base(policy("x", "p", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                               "ingress": [{"from": []}, {}], "egress": []}),
             policy("x", "q", {"podSelector": {}, "policyTypes": ["Egress"],
                               "ingress": [{"from": [{"podSelector": {}}]}]}))
    plan = compile_plan(c, None)
    assert [r.peers for r in rules(plan, "x/p")] == [None, None]
    assert rules(plan, "x/p", "egress") == ()
    assert rules(plan, "x/q") == ()  # ingress rules of an egress-only policy do nothing
    assert plan.chains == {"ingress": ("x",), "egress": ("x",)}


@pytest.mark.parametrize("node", [None, "n1", "n2"])
def test_compile_is_deterministic(node):
    c = base(policy("x", "p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
             policy("y", "q", {"podSelector": {}, "policyTypes": ["Egress"]}))
    assert compile_plan(c, node) == compile_plan(c, node)
    assert [p.key for p in compile_plan(c, node).policies] == ["x/p", "y/q"]


def test_rule_shape_and_selector_key_come_from_the_policy_alone():
    """What the renderer shapes the table by: ipBlock families, selector peers, named-port
    protocols, and a podSelector key that ignores term and value order."""
    expr = [{"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "x", "operator": "Exists"}]
    c = cluster(namespace("x"), pod("x", "a", {"app": "a"}, ("198.18.0.1",)),
                policy("x", "p", {"podSelector": {"matchLabels": {"app": "a", "v": "1"}, "matchExpressions": expr},
                                  "ingress": [{"from": [{"ipBlock": {"cidr": "2001:db8::/32"}}, {"podSelector": {}}],
                                               "ports": [{"port": "web"}, {"port": "dns", "protocol": "UDP"}]},
                                              {"from": [{"podSelector": {}}], "ports": [{"port": "web"}]},
                                              {"ports": [{"port": 80}]}]}),
                policy("x", "q", {"podSelector": {"matchLabels": {"v": "1", "app": "a"},
                                                  "matchExpressions": [expr[1], {**expr[0], "values": ["a", "b"]}]}}),
                policy("x", "r", {"podSelector": {"matchLabels": {"app": "a"}}}))
    p, q, r = compile_plan(c).policies
    assert [(rp.blocks, rp.selectors, rp.named_protocols) for rp in p.ingress] == [
        ((6,), True, ("TCP", "UDP")), ((), True, ("TCP",)), ((), False, ())]
    assert p.selector == q.selector != r.selector
