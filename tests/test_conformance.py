"""The evaluator against the NetworkPolicy spec and the upstream e2e scenarios, as reachability tables.

World (see builders): namespaces x, y, z (label ns=<name>) x pods a, b, c (label pod=<name>), each serving
80 and 81 on TCP, UDP and SCTP, named `serve-80-tcp` and so on; pod IPs 198.18.<ns>.<pod>.
"""

from __future__ import annotations

import pytest
from support.builders import (
    E2E_PODS,
    Expect,
    assert_table,
    check,
    cluster,
    container_ports,
    e2e,
    e2e_ip,
    e2e_objects,
    namespace,
    pod,
    policy,
)

from netpol.errors import QueryError
from netpol.evaluate.conns import connections
from netpol.evaluate.resolve import endpoint
from netpol.k8s.load import parse_text
from netpol.k8s.model import Options
from netpol.k8s.parse import build_cluster
from netpol.k8s.source import RawObject, Source

ALL = {"podSelector": {}}
DENY_INGRESS = policy("x", "deny-ingress", {"podSelector": {}})
DENY_EGRESS = policy("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})


def only_a(ns: str, name: str, **spec) -> dict:
    """A policy in `ns` selecting pod=a."""
    return policy(ns, name, {"podSelector": {"matchLabels": {"pod": "a"}}, **spec})


def ingress_from(*peers: dict, ports: list | None = None) -> list[dict]:
    rule: dict = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return [rule]


# --- isolation and default deny ------------------------------------------------------------------------

def test_no_policies_allow_everything_on_every_protocol():
    c = e2e()
    for proto in ("TCP", "UDP", "SCTP"):
        assert_table(c, Expect(), 81, proto)
    v = check(c, "x/a", "y/b")
    assert not v.egress.isolated and not v.ingress.isolated
    assert v.ingress.reason == "no policy selects y/b for ingress"


def test_default_deny_ingress():
    c = e2e(DENY_INGRESS)
    expect = Expect()
    for p in ("x/a", "x/b", "x/c"):
        expect.to(p, False)
    for proto in ("TCP", "UDP", "SCTP"):
        assert_table(c, expect, 80, proto)
    v = check(c, "y/a", "x/b")
    assert v.ingress.isolated and v.ingress.isolated_by == ("x/deny-ingress",) and not v.ingress.allowed_by
    assert "allows nothing" in v.ingress.reason and "x/deny-ingress" in v.ingress.reason
    assert not v.egress.isolated  # a policy without Egress leaves egress open
    assert check(c, "x/a", "y/a").allowed


def test_default_deny_egress_leaves_ingress_open():
    c = e2e(DENY_EGRESS)
    expect = Expect()
    for p in ("x/a", "x/b", "x/c"):
        expect.from_(p, False)
    assert_table(c, expect)
    v = check(c, "x/a", "x/b")
    assert not v.allowed and v.egress.isolated_by == ("x/deny-egress",) and not v.ingress.isolated


def test_policy_with_empty_spec_isolates_ingress_only():
    c = e2e(policy("y", "nothing", {"podSelector": {}}))
    assert_table(c, Expect().to("y/a", False).to("y/b", False).to("y/c", False))


def test_policy_selects_only_pods_of_its_own_namespace():
    c = e2e(policy("y", "deny", {"podSelector": {"matchLabels": {"pod": "a"}}}))
    assert_table(c, Expect().to("y/a", False))


def test_self_traffic_allowed_under_default_deny_both_ways():
    c = e2e(DENY_INGRESS, DENY_EGRESS)
    expect = Expect(default=False)
    for ns in ("y", "z"):
        for s in ("a", "b", "c"):
            for d in E2E_PODS:
                if not d.startswith("x/"):
                    expect.pair(f"{ns}/{s}", d, True)
    assert_table(c, expect)
    v = check(c, "x/a", "x/a")
    assert v.allowed and "itself" in v.egress.reason
    assert check(c, "x/pod/a", "x/Pod/a").allowed and check(c, "x/pod/a", "x/b").src == "x/a"
    assert check(c, e2e_ip("x", "a"), "x/a").allowed  # by address, still itself


# --- peers ----------------------------------------------------------------------------------------------

def test_allow_from_same_namespace():
    c = e2e(only_a("x", "same-ns", ingress=ingress_from({"podSelector": {}})))
    assert_table(c, Expect().to("x/a", False).pair("x/b", "x/a", True).pair("x/c", "x/a", True))
    v = check(c, "x/b", "x/a")
    assert [r.model_dump() for r in v.ingress.allowed_by] == [{"policy": "x/same-ns", "rule": 0}]
    assert v.ingress.reason.startswith("policy x/same-ns") and "rule 0" in v.ingress.reason
    assert "all pods in x" in v.ingress.reason


def test_allow_from_other_namespace_by_namespace_selector():
    c = e2e(only_a("x", "from-y", ingress=ingress_from({"namespaceSelector": {"matchLabels": {"ns": "y"}}})))
    expect = Expect().to("x/a", False)
    for p in ("a", "b", "c"):
        expect.pair(f"y/{p}", "x/a", True)
    assert_table(c, expect)
    denied = check(c, "z/a", "x/a")
    assert denied.ingress.isolated_by == ("x/from-y",)
    assert "source z/a does not match" in denied.ingress.reason


def test_namespace_selector_by_metadata_name_label():
    sel = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}
    c = e2e(only_a("x", "from-z", ingress=ingress_from(sel)))
    expect = Expect().to("x/a", False)
    for p in ("a", "b", "c"):
        expect.pair(f"z/{p}", "x/a", True)
    assert_table(c, expect)
    assert "namespace z" in check(c, "z/a", "x/a").ingress.reason


def test_pod_and_namespace_selector_in_one_peer_is_and():
    peer = {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}
    c = e2e(only_a("x", "and", ingress=ingress_from(peer)))
    assert_table(c, Expect().to("x/a", False).pair("y/b", "x/a", True))
    assert "pods pod=b in namespaces ns=y" in check(c, "y/b", "x/a").ingress.reason


def test_pod_and_namespace_selector_in_two_peers_is_or():
    c = e2e(only_a("x", "or", ingress=ingress_from({"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                                   {"podSelector": {"matchLabels": {"pod": "b"}}})))
    expect = Expect().to("x/a", False).pair("x/b", "x/a", True)
    for p in ("a", "b", "c"):
        expect.pair(f"y/{p}", "x/a", True)
    assert_table(c, expect)
    assert "source z/b matches neither" in check(c, "z/b", "x/a").ingress.reason


def test_empty_namespace_selector_means_every_namespace():
    c = e2e(only_a("x", "all-ns", ingress=ingress_from({"namespaceSelector": {},
                                                        "podSelector": {"matchLabels": {"pod": "c"}}})))
    assert_table(c, Expect().to("x/a", False).pair("x/c", "x/a", True).pair("y/c", "x/a", True)
                 .pair("z/c", "x/a", True))


@pytest.mark.parametrize("rules", [
    [{}],                                   # ingress: [{}]
    [{"from": []}],                         # from: []
    [{"from": None}],                       # from: null
    [{"ports": []}],                        # ports: [] is all ports too
], ids=["empty-rule", "from-empty-list", "from-null", "ports-empty"])
def test_rule_without_peers_allows_everyone(rules):
    c = e2e(only_a("x", "open", ingress=rules))
    for proto in ("TCP", "UDP", "SCTP"):
        assert_table(c, Expect(), 81, proto)
    assert check(c, "z/c", "x/a").ingress.allowed_by[0].model_dump() == {"policy": "x/open", "rule": 0}


def test_empty_rule_list_allows_nothing():
    c = e2e(only_a("x", "closed", ingress=[]))
    assert_table(c, Expect().to("x/a", False))
    v = check(c, "x/b", "x/a")
    assert "allows nothing" in v.ingress.reason and v.ingress.isolated_by == ("x/closed",)


def test_absent_from_with_ports_allows_everyone_on_those_ports():
    c = e2e(only_a("x", "port80", ingress=[{"ports": [{"port": 80}]}]))
    assert_table(c, Expect(), 80)
    assert_table(c, Expect().to("x/a", False), 81)


# --- ports and protocols --------------------------------------------------------------------------------

def test_absent_ports_mean_all_ports_and_protocols():
    c = e2e(only_a("x", "from-b", ingress=ingress_from({"podSelector": {"matchLabels": {"pod": "b"}}})))
    for proto in ("TCP", "UDP", "SCTP"):
        for port in (80, 81, 65535):
            assert check(c, "x/b", "x/a", port, proto).allowed
            assert not check(c, "x/c", "x/a", port, proto).allowed


def test_ports_present_limit_port():
    c = e2e(only_a("x", "tcp80", ingress=[{"ports": [{"protocol": "TCP", "port": 80}]}]))
    assert_table(c, Expect(), 80, "TCP")
    assert_table(c, Expect().to("x/a", False), 81, "TCP")
    v = check(c, "y/a", "x/a", 81)
    assert "TCP/81 is not among its ports" in v.ingress.reason


def test_omitted_protocol_is_tcp_only():
    c = e2e(only_a("x", "port80", ingress=[{"ports": [{"port": 80}]}]))
    assert check(c, "y/a", "x/a", 80, "TCP").allowed
    assert not check(c, "y/a", "x/a", 80, "UDP").allowed
    assert not check(c, "y/a", "x/a", 80, "SCTP").allowed


def test_rule_for_another_protocol_isolates_but_allows_nothing_for_tcp():
    c = e2e(only_a("x", "udp-only", ingress=[{"ports": [{"protocol": "UDP", "port": 80}]}]))
    assert_table(c, Expect().to("x/a", False), 80, "TCP")
    assert_table(c, Expect(), 80, "UDP")
    assert_table(c, Expect().to("x/a", False), 80, "SCTP")


def test_sctp_port():
    c = e2e(only_a("x", "sctp", ingress=[{"ports": [{"protocol": "SCTP", "port": 81}]}]))
    assert check(c, "y/b", "x/a", 81, "SCTP").allowed
    assert not check(c, "y/b", "x/a", 80, "SCTP").allowed
    assert not check(c, "y/b", "x/a", 81, "TCP").allowed


@pytest.mark.parametrize("port,allowed", [(79, False), (80, True), (81, True), (82, False)])
def test_end_port_range_edges(port, allowed):
    c = e2e(only_a("x", "range", ingress=[{"ports": [{"port": 80, "endPort": 81}]}]))
    assert check(c, "y/a", "x/a", port).allowed is allowed
    assert not check(c, "y/a", "x/a", port, "UDP").allowed


def test_end_port_equal_to_port_is_one_port():
    c = e2e(only_a("x", "one", ingress=[{"ports": [{"port": 81, "endPort": 81}]}]))
    assert [check(c, "y/a", "x/a", p).allowed for p in (80, 81, 82)] == [False, True, False]


def test_named_port_in_ingress_rule():
    c = e2e(only_a("x", "named", ingress=[{"ports": [{"port": "serve-81-tcp"}]}]))
    assert_table(c, Expect(), 81, "TCP")
    assert_table(c, Expect().to("x/a", False), 80, "TCP")
    assert_table(c, Expect().to("x/a", False), 81, "UDP")


def _two_meanings_of_http():
    """x/d calls 8080 `http`, x/e calls 9090 `http`; both carry app=web."""
    return (pod("x", "d", {"app": "web"}, ("198.18.1.4",), container_ports((8080, "TCP", "http"))),
            pod("x", "e", {"app": "web"}, ("198.18.1.5",), container_ports((9090, "TCP", "http"))))


def test_named_port_resolves_per_destination_pod_on_ingress():
    web = policy("x", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"ports": [{"port": "http"}]}]})
    c = e2e(web, extra=_two_meanings_of_http())
    assert check(c, "y/a", "x/d", 8080).allowed
    assert not check(c, "y/a", "x/d", 9090).allowed
    assert check(c, "y/a", "x/e", 9090).allowed
    assert not check(c, "y/a", "x/e", 8080).allowed
    assert str(connections(c, endpoint(c, "y/a"), endpoint(c, "x/d"))) == "TCP 8080"
    assert str(connections(c, endpoint(c, "y/a"), endpoint(c, "x/e"))) == "TCP 9090"


def test_named_port_resolves_on_the_peer_pod_on_egress():
    out = policy("y", "out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})
    c = e2e(out, extra=_two_meanings_of_http())
    assert check(c, "y/a", "x/d", 8080).allowed
    assert not check(c, "y/a", "x/e", 8080).allowed
    assert check(c, "y/a", "x/e", 9090).allowed
    assert not check(c, "y/a", "x/a", 80).allowed
    assert not check(c, "y/a", "198.18.50.1", 8080).allowed  # an address names no ports


def test_named_port_whose_protocol_differs_from_the_policy_port():
    tcp = only_a("x", "tcp", ingress=[{"ports": [{"protocol": "TCP", "port": "serve-81-udp"}]}])
    c = e2e(tcp)
    for proto in ("TCP", "UDP", "SCTP"):
        assert not check(c, "y/a", "x/a", 81, proto).allowed
    udp = only_a("x", "udp", ingress=[{"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}])
    c = e2e(udp)
    assert check(c, "y/a", "x/a", 81, "UDP").allowed
    assert not check(c, "y/a", "x/a", 81, "TCP").allowed
    assert not check(c, "y/a", "x/a", 80, "UDP").allowed


def test_named_port_the_destination_does_not_declare():
    c = e2e(only_a("x", "ghost", ingress=[{"ports": [{"port": "nope"}]}]))
    assert_table(c, Expect().to("x/a", False), 80)
    assert str(connections(c, endpoint(c, "y/a"), endpoint(c, "x/a"))) == "No Connections"


def test_connections_summary():
    c = e2e(only_a("x", "mixed", ingress=[{"ports": [{"port": 80}, {"protocol": "UDP", "port": 53, "endPort": 60}]}]))
    assert str(connections(c, endpoint(c, "y/a"), endpoint(c, "x/a"))) == "TCP 80,UDP 53-60"
    assert str(connections(c, endpoint(c, "y/a"), endpoint(c, "x/b"))) == "All Connections"


# --- selectors ------------------------------------------------------------------------------------------

def _unlabelled():
    return pod("x", "bare", {}, ("198.18.1.9",), [])


PODS_PLUS_BARE = E2E_PODS + ("x/bare",)


@pytest.mark.parametrize("expr,allowed_sources", [
    ({"key": "pod", "operator": "NotIn", "values": ["a", "b"]}, {"x/c", "x/bare"}),
    ({"key": "pod", "operator": "In", "values": ["a", "b"]}, {"x/a", "x/b"}),
    ({"key": "pod", "operator": "Exists"}, {"x/a", "x/b", "x/c"}),
    ({"key": "pod", "operator": "DoesNotExist"}, {"x/bare"}),
], ids=["NotIn", "In", "Exists", "DoesNotExist"])
def test_match_expressions_on_pods(expr, allowed_sources):
    pol = policy("y", "expr", {"podSelector": {}, "ingress": ingress_from(
        {"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchExpressions": [expr]}})})
    c = e2e(pol, extra=(_unlabelled(),))
    for src in ("x/a", "x/b", "x/c", "x/bare"):
        assert check(c, src, "y/b").allowed is (src in allowed_sources), src


def test_not_in_namespace_selector_matches_namespaces_without_the_key():
    objs = e2e_objects() + [namespace("w"), pod("w", "a", {"pod": "a"}, ("198.18.4.1",), [])]
    pol = policy("x", "not-y", {"podSelector": {}, "ingress": ingress_from(
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}})})
    c = cluster(*objs, pol)
    assert check(c, "w/a", "x/a").allowed
    assert check(c, "z/a", "x/a").allowed
    assert not check(c, "y/a", "x/a").allowed


def test_match_labels_and_expressions_are_anded():
    sel = {"matchLabels": {"pod": "a"}, "matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}
    c = e2e(policy("x", "never", {"podSelector": {}, "ingress": ingress_from({"podSelector": sel})}))
    assert_table(c, Expect().to("x/a", False).to("x/b", False).to("x/c", False))


# --- policyTypes ----------------------------------------------------------------------------------------

def test_policy_types_default_with_ingress_rules_is_ingress_only():
    c = e2e(only_a("x", "in", ingress=[{}]))
    v = check(c, "x/a", "y/a")
    assert not v.egress.isolated and v.allowed


def test_policy_types_default_with_egress_rules_isolates_ingress_too():
    to_y = {"namespaceSelector": {"matchLabels": {"ns": "y"}}}
    c = e2e(only_a("x", "out", egress=[{"to": [to_y]}]))
    expect = Expect().to("x/a", False).from_("x/a", False)
    for p in ("a", "b", "c"):
        expect.pair("x/a", f"y/{p}", True)
    assert_table(c, expect)
    v = check(c, "x/b", "x/a")
    assert v.ingress.isolated_by == ("x/out",) and "allows nothing" in v.ingress.reason


def test_explicit_egress_only_leaves_ingress_open():
    c = e2e(only_a("x", "out", policyTypes=["Egress"], egress=[{"to": [{"podSelector": {}}]}],
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "zzz"}}}]}]))
    expect = Expect().from_("x/a", False).pair("x/a", "x/b", True).pair("x/a", "x/c", True)
    assert_table(c, expect)


def test_both_policy_types_without_rules_deny_both_ways():
    c = e2e(only_a("x", "both", policyTypes=["Ingress", "Egress"]))
    assert_table(c, Expect().to("x/a", False).from_("x/a", False))


def test_multiple_policies_are_additive():
    p1 = only_a("x", "p1", ingress=ingress_from({"podSelector": {"matchLabels": {"pod": "b"}}}))
    p2 = only_a("x", "p2", ingress=ingress_from({"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                                ports=[{"port": 80}]))
    p3 = only_a("x", "p3", ingress=ingress_from({"podSelector": {}}))
    c = e2e(p1, p2, p3)
    expect = Expect().to("x/a", False).pair("x/b", "x/a", True).pair("x/c", "x/a", True)
    for p in ("a", "b", "c"):
        expect.pair(f"y/{p}", "x/a", True)
    assert_table(c, expect, 80)
    assert_table(c, expect.pair("y/a", "x/a", False).pair("y/b", "x/a", False).pair("y/c", "x/a", False), 81)
    v = check(c, "x/b", "x/a")
    assert [(r.policy, r.rule) for r in v.ingress.allowed_by] == [("x/p1", 0), ("x/p3", 0)]
    denied = check(c, "z/a", "x/a")
    assert denied.ingress.isolated_by == ("x/p1", "x/p2", "x/p3")
    assert denied.ingress.reason.split(" | ") == [
        "policy x/p1 selects x/a for ingress; rule 0 allows all ports from pods pod=b in x, "
        "but source z/a does not match",
        "policy x/p2 selects x/a for ingress; rule 0 allows TCP/80 from namespaces ns=y, "
        "but source z/a does not match",
        "policy x/p3 selects x/a for ingress; rule 0 allows all ports from all pods in x, "
        "but source z/a does not match"]
    assert check(c, "x/b", "x/a").ingress.reason.endswith("; also x/p3 rule 0")


def test_rule_index_counts_within_the_policy():
    pol = only_a("x", "two", ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]},
                                     {"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}])
    c = e2e(pol)
    assert [(r.policy, r.rule) for r in check(c, "x/c", "x/a").ingress.allowed_by] == [("x/two", 1)]


def test_egress_and_ingress_must_both_allow():
    out = only_a("x", "out", egress=[{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                 ingress=[{}])  # ingress open
    into = policy("y", "in", {"podSelector": {"matchLabels": {"pod": "b"}},
                              "ingress": ingress_from({"namespaceSelector": {"matchLabels": {"ns": "x"}},
                                                       "podSelector": {"matchLabels": {"pod": "a"}}})})
    c = e2e(out, into)
    v = check(c, "x/a", "y/b")  # ingress allows, egress (pod=b in x only) does not
    assert not v.allowed and v.ingress.allowed and not v.egress.allowed
    assert v.egress.isolated_by == ("x/out",)
    v = check(c, "x/a", "x/b")
    assert v.allowed and v.egress.allowed_by[0].model_dump() == {"policy": "x/out", "rule": 0}
    v = check(c, "x/b", "y/b")  # egress open, ingress refuses
    assert not v.allowed and v.egress.allowed and not v.ingress.allowed


# --- ipBlock --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block,allowed", [
    ({"cidr": "198.18.2.0/24", "except": ["198.18.2.2/32"]}, {"y/a", "y/c"}),
    ({"cidr": "198.18.2.0/30", "except": ["198.18.2.2/31"]}, {"y/a"}),  # .0-.3 minus .2-.3
    ({"cidr": "198.18.2.2/31"}, {"y/b", "y/c"}),                           # .2-.3
    ({"cidr": "198.18.2.1/32"}, {"y/a"}),
    ({"cidr": "198.18.0.0/15", "except": ["198.18.1.0/24", "198.18.3.0/24"]}, {"y/a", "y/b", "y/c"}),
    ({"cidr": "198.18.1.2/16"}, {"x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}),  # host bits set
    ({"cidr": "0.0.0.0/0"}, {"x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}),
    ({"cidr": "2001:db8::/32"}, set()),  # IPv4 pods: an IPv6 block never matches
])
def test_ip_block_matches_pod_addresses(block, allowed):
    c = e2e(only_a("x", "block", ingress=ingress_from({"ipBlock": block})))
    for src in E2E_PODS:
        if src != "x/a":
            assert check(c, src, "x/a").allowed is (src in allowed), src


@pytest.mark.parametrize("address,allowed", [
    ("198.18.7.255", False), ("198.18.8.0", True), ("198.18.9.1", False), ("198.18.9.2", True),
    ("198.18.11.255", True), ("198.18.12.0", False), ("2001:db8::1", False),
])
def test_ip_block_matches_external_addresses(address, allowed):
    block = {"cidr": "198.18.8.0/22", "except": ["198.18.9.0/31"]}
    c = e2e(only_a("x", "ext", ingress=ingress_from({"ipBlock": block})))
    v = check(c, address, "x/a")
    assert v.allowed is allowed
    assert not v.egress.isolated and "external address" in v.egress.reason


def test_egress_ip_block_to_external_address():
    c = e2e(only_a("x", "out", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "198.18.64.0/24"}}],
                                                                 "ports": [{"port": 443}]}]))
    v = check(c, "x/a", "198.18.64.7", 443)
    assert v.allowed and v.egress.allowed_by[0].policy == "x/out" and "198.18.64.0/24" in v.egress.reason
    assert not v.ingress.isolated and "external address" in v.ingress.reason
    assert not check(c, "x/a", "198.18.64.7", 80).allowed
    assert not check(c, "x/a", "198.18.65.7", 443).allowed
    assert not check(c, "x/a", "y/a", 443).allowed


def test_ipblock_pods_false_matches_only_external_addresses():
    c = e2e(only_a("x", "block", ingress=ingress_from({"ipBlock": {"cidr": "198.18.0.0/15"}})))
    off = Options(ipblock_pods=False)
    assert check(c, "y/a", "x/a").allowed
    assert not check(c, "y/a", "x/a", opts=off).allowed
    assert not check(c, e2e_ip("y", "a"), "x/a", opts=off).allowed  # a pod's address is still a pod
    assert check(c, "198.18.99.1", "x/a", opts=off).allowed


def test_ipv6_pods_and_blocks():
    c = e2e(only_a("x", "v6", ingress=ingress_from({"ipBlock": {"cidr": "2001:db8:2::/48",
                                                                  "except": ["2001:db8:2::3/128"]}})),
            ipv6_primary=True)
    assert check(c, "y/a", "x/a").allowed and check(c, "y/b", "x/a").allowed
    assert not check(c, "y/c", "x/a").allowed
    assert not check(c, "z/a", "x/a").allowed
    assert check(c, "2001:db8:2::ffff", "x/a").allowed
    c4 = e2e(only_a("x", "v4", ingress=ingress_from({"ipBlock": {"cidr": "198.18.0.0/15"}})), ipv6_primary=True)
    assert not check(c4, "y/a", "x/a").allowed


def test_dual_stack_uses_the_primary_family_by_name_and_the_address_family_by_address():
    c = e2e(only_a("x", "v6", ingress=ingress_from({"ipBlock": {"cidr": "2001:db8::/32"}})), dual_stack=True)
    assert not check(c, "y/a", "x/a").allowed  # by name: IPv4, the primary family
    assert check(c, e2e_ip("y", "a", 6), "x/a").allowed  # from an IPv6 address: IPv6 to x/a's IPv6 address
    assert check(c, "y/a", e2e_ip("x", "a", 6)).allowed  # to an IPv6 address: the source's IPv6 address
    assert not check(c, e2e_ip("y", "a", 4), "x/a").allowed
    c4 = e2e(only_a("x", "v4", ingress=ingress_from({"ipBlock": {"cidr": "198.18.2.0/24"}})), dual_stack=True)
    assert check(c4, "y/a", "x/a").allowed
    assert not check(c4, "y/a", e2e_ip("x", "a", 6)).allowed
    assert endpoint(c4, e2e_ip("y", "a", 6)).pod.key == "y/a"


def test_dual_stack_ipv6_primary_destination():
    c = e2e(only_a("x", "v6", ingress=ingress_from({"ipBlock": {"cidr": "2001:db8::/32"}})),
            dual_stack=True, ipv6_primary=True)
    assert check(c, "y/a", "x/a").allowed


# --- host network, finished pods, workloads, external endpoints ------------------------------------------

def _host_pod(node: str = "node-2"):
    """A host-network pod on another node than the e2e pods (node-1), unless told otherwise."""
    return pod("x", "h", {"pod": "h"}, ("198.18.100.1",), [], host_network=True, node=node)


def test_traffic_to_and_from_the_pods_own_node_is_always_allowed():
    # the spec: "traffic to and from the node where a Pod is running is always allowed"
    c = e2e(DENY_INGRESS, DENY_EGRESS, extra=(_host_pod(node="node-1"),))
    into, out = check(c, "x/h", "x/a"), check(c, "x/a", "x/h")
    assert into.allowed and into.ingress.isolated and "own node" in into.ingress.reason
    assert out.allowed and out.egress.isolated and "own node" in out.egress.reason
    far = e2e(DENY_INGRESS, DENY_EGRESS, extra=(_host_pod(node="node-2"),))
    assert not check(far, "x/h", "x/a").allowed and not check(far, "x/a", "x/h").allowed


def test_host_network_pods_are_not_policed():
    c = e2e(DENY_INGRESS, DENY_EGRESS, extra=(_host_pod(),))
    v = check(c, "y/a", "x/h")
    assert v.allowed and not v.ingress.isolated and "host-network" in v.ingress.reason
    assert check(c, "x/h", "y/a").allowed


def test_selectors_never_match_host_network_pods_but_ip_blocks_do():
    same = only_a("x", "same", ingress=ingress_from({"podSelector": {}}, {"namespaceSelector": {}}))
    c = e2e(same, extra=(_host_pod(),))
    assert not check(c, "x/h", "x/a").allowed
    assert check(c, "x/b", "x/a").allowed
    block = only_a("x", "node", ingress=ingress_from({"ipBlock": {"cidr": "198.18.100.0/24"}}))
    c = e2e(block, extra=(_host_pod(),))
    assert check(c, "x/h", "x/a").allowed
    assert check(c, "x/h", "x/a", opts=Options(ipblock_pods=False)).allowed  # not a policed pod
    egress = only_a("x", "to-all", policyTypes=["Egress"], egress=[{"to": [{"namespaceSelector": {}}]}])
    c = e2e(egress, extra=(_host_pod(),))
    assert check(c, "x/a", "y/b").allowed and not check(c, "x/a", "x/h").allowed


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_are_ignored(phase):
    done = pod("x", "done", {"pod": "a"}, ("198.18.1.50",), [], phase=phase)
    c = e2e(extra=(done,))
    assert "x/done" not in c.by_key
    with pytest.raises(QueryError):
        endpoint(c, "x/done")
    assert endpoint(c, "198.18.1.50").pod is None  # its old address is just an address now


WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x, labels: {ignored: "true"}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: y}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}}
        spec: {containers: [{name: r, image: busybox}], restartPolicy: Never}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: z}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres, ports: [{name: pg, containerPort: 5432}]}]
"""


def _with_workloads(*policies: dict):
    raws = parse_text(WORKLOADS, "workloads.yaml")
    raws += [RawObject(o, Source("<test>", 0)) for o in e2e_objects() + list(policies)]
    return build_cluster(raws)


def test_workloads_as_destinations_use_template_labels_and_ports():
    web = policy("x", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                           "ports": [{"port": "http"}]}]})
    c = _with_workloads(web)
    assert check(c, "y/a", "x/deployment/web", 8080).allowed
    assert check(c, "y/a", "x/Deployment/web", 8080).allowed
    assert not check(c, "y/a", "x/deployment/web", 80).allowed
    assert not check(c, "x/a", "x/deployment/web", 8080).allowed
    assert check(c, "y/cronjob/report", "x/deployment/web", 8080).allowed
    assert not check(c, "z/statefulset/db", "x/deployment/web", 8080).allowed
    assert check(c, "y/a", "x/deployment/web", 8080).ingress.allowed_by[0].policy == "x/web"


def test_workloads_as_sources_and_cron_job_template_labels():
    db = policy("z", "db", {"podSelector": {"matchLabels": {"app": "db"}},
                            "ingress": [{"from": [{"namespaceSelector": {},
                                                   "podSelector": {"matchLabels": {"app": "report"}}}],
                                         "ports": [{"port": "pg"}]}]})
    c = _with_workloads(db)
    assert check(c, "y/cronjob/report", "z/statefulset/db", 5432).allowed
    assert not check(c, "y/a", "z/statefulset/db", 5432).allowed
    assert not check(c, "y/cronjob/report", "z/statefulset/db", 5433).allowed


def test_workloads_have_no_address_so_ip_blocks_never_match_them():
    block = only_a("x", "all-v4", ingress=ingress_from({"ipBlock": {"cidr": "0.0.0.0/0"}}))
    c = _with_workloads(block)
    assert check(c, "y/a", "x/a").allowed
    assert not check(c, "x/deployment/web", "x/a").allowed


def test_replicas_of_a_workload_are_policed_between_each_other():
    """A workload stands for several pods: workload-to-itself is replica to replica, not a pod to itself."""
    deny = policy("z", "deny", {"podSelector": {}})
    c = _with_workloads(deny)
    v = check(c, "z/statefulset/db", "z/statefulset/db", 5432)
    assert not v.allowed and v.ingress.isolated_by == ("z/deny",)
    assert check(c, "x/deployment/web", "x/deployment/web", 8080).allowed  # x has no policy


def test_external_endpoints_only_the_pod_side_is_policed():
    c = e2e(DENY_INGRESS, DENY_EGRESS)
    v = check(c, "198.18.77.1", "x/a")
    assert not v.allowed and not v.egress.isolated and v.ingress.isolated_by == ("x/deny-ingress",)
    v = check(c, "x/a", "198.18.77.1")
    assert not v.allowed and v.egress.isolated_by == ("x/deny-egress",) and not v.ingress.isolated
    v = check(c, "198.18.77.1", "y/a")
    assert v.allowed and "198.18.77.1 is an external address" in v.egress.reason
    assert check(c, "198.18.77.1", "198.18.77.2").allowed


def test_query_by_pod_address_is_the_pod():
    c = e2e(DENY_INGRESS)
    v = check(c, e2e_ip("y", "b"), e2e_ip("x", "a"))
    assert not v.allowed and v.src == "y/b" and v.dst == "x/a"


@pytest.mark.parametrize("policies", [
    (only_a("x", "mixed", ingress=[{"ports": [{"port": 80, "endPort": 90}, {"protocol": "UDP", "port": "serve-81-udp"}],
                                   "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]),
     policy("y", "out", {"podSelector": {}, "egress": [{"ports": [{"port": 85, "endPort": 100}]},
                                                       {"to": [{"podSelector": {}}]}]})),
    (DENY_INGRESS, only_a("x", "sctp", ingress=[{"ports": [{"protocol": "SCTP", "port": "serve-80-sctp"}]}])),
])
def test_connection_sets_agree_with_decide_port_by_port(policies):
    c = e2e(*policies)
    probe_ports = (1, 79, 80, 81, 84, 85, 86, 90, 91, 100, 101, 65535)
    for s in E2E_PODS:
        for d in E2E_PODS:
            conns = connections(c, endpoint(c, s), endpoint(c, d))
            for proto in ("TCP", "UDP", "SCTP"):
                for port in probe_ports:
                    assert conns.allows(proto, port) is check(c, s, d, port, proto).allowed, (s, d, proto, port)


def test_explanations_say_why_an_ip_block_covering_a_pod_does_not_match_it():
    c = e2e(only_a("x", "v6", ingress=ingress_from({"ipBlock": {"cidr": "2001:db8::/32"}})), dual_stack=True)
    assert ("by name the connection uses IPv4, the destination's primary family; y/a's address 2001:db8:2::1 "
            "is inside an ipBlock: query by address to use it") in check(c, "y/a", "x/a").ingress.reason
    c = e2e(only_a("x", "block", ingress=ingress_from({"ipBlock": {"cidr": "198.18.0.0/15"}})))
    reason = check(c, "y/a", "x/a", opts=Options(ipblock_pods=False)).ingress.reason
    assert "its address 198.18.2.1 is inside an ipBlock, but ipBlocks match no pod with --ipblock-pods=false" in reason
