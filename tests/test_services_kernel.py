"""Services with real DNAT: the kernel against `check_service`, backend by backend, on the pod path and on
the node path (the hook path IPVS re-sends Service traffic on), hairpin included.

Labs here are named `npsv<random>` and removed even when a test fails. Random clusters come from
hypothesis (NETPOL_LAB_EXAMPLES examples, default 10 here: each costs a lab of its own).
"""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support.builders import cluster, container_ports, endpoint_slice, namespace, pod, policy, service

from netpol.k8s.model import Options
from netpol.lab import topology
from netpol.lab.services import rounds, target_ports
from netpol.lab.verify import hosts_for, lab_pods, probe_services, verify_services
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from netpol.nft.ruleset import Ruleset

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]
TIMEOUT = 0.4


def _prefix() -> str:
    return f"npsv{uuid.uuid4().hex[:5]}"


def scenario() -> list[dict]:
    """targetPort != port, a named targetPort with a different number per backend (and a pod without
    it), two ports, UDP, dual-stack ClusterIPs, a selector-less Service with an EndpointSlice, an
    egress policy on a client, and ingress that denies a pod its own traffic except through hairpin."""
    http = lambda n: container_ports((n, "TCP", "http"), (5353, "UDP", "dns"))  # noqa: E731
    return [
        namespace("front", team="a"), namespace("back", team="b"),
        pod("front", "client-0", {"app": "client"}, ("198.18.1.10", "2001:db8::1:10")),
        pod("front", "client-1", {"app": "client", "locked": "yes"}, ("198.18.1.11",)),
        pod("back", "api-0", {"app": "api"}, ("198.18.2.10", "2001:db8::2:10"), http(8080)),
        pod("back", "api-1", {"app": "api"}, ("198.18.2.11", "2001:db8::2:11"), http(9090)),
        pod("back", "api-2", {"app": "api"}, ("198.18.2.12",), container_ports((7000, "TCP", "admin"))),
        service("back", "api", [{"name": "web", "port": 80, "targetPort": "http"},
                                {"name": "raw", "port": 81, "targetPort": 8080},
                                {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}],
                {"app": "api"}, "198.18.100.10", clusterIPs=["198.18.100.10", "2001:db8:100::10"],
                ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="PreferDualStack"),
        service("back", "legacy", [{"name": "admin", "port": 8000}], cluster_ip="198.18.100.11"),
        service("back", "public", [{"name": "web", "port": 80, "targetPort": "http", "nodePort": 30080}],
                {"app": "api"}, "198.18.100.12", type="NodePort"),
        endpoint_slice("back", "legacy-1", "legacy", [{"addresses": ["198.18.2.12"],
                                                       "targetRef": {"kind": "Pod", "name": "api-2"}}],
                       [{"name": "admin", "port": 7000}]),
        policy("back", "api-ingress", {"podSelector": {"matchLabels": {"app": "api"}},
                                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}],
                                                    "ports": [{"port": 8080}, {"port": "dns", "protocol": "UDP"},
                                                              {"port": 7000}]}]}),
        policy("front", "locked-egress", {"podSelector": {"matchLabels": {"locked": "yes"}}, "policyTypes": ["Egress"],
                                          "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}},
                                                              "namespaceSelector": {}}],
                                                      "ports": [{"port": "http"}]}]}),
    ]


def _summary(result) -> set[tuple]:
    return {(p["src"], p["backend"], p["protocol"], p["port"], p["address"], p["path"], p["allowed"])
            for p in result.probes}


def test_services_through_real_dnat_agree_with_the_evaluator_on_both_paths():
    result = verify_services(cluster(*scenario()), Options(), _prefix(), TIMEOUT)
    assert result.disagreements == []
    seen = _summary(result)
    paths = {p["path"] for p in result.probes}
    assert paths == {"pod", "node"} and {p["address"] for p in result.probes} >= {"198.18.100.10", "2001:db8:100::10"}
    for path in paths:  # the cases that make this scenario worth probing, on both paths
        assert ("front/client-0", "back/api-0", "TCP", 80, "198.18.100.10", path, True) in seen
        assert ("front/client-0", "back/api-1", "TCP", 80, "198.18.100.10", path, False) in seen  # 9090 not admitted
        assert ("back/api-1", "back/api-1", "TCP", 80, "198.18.100.10", path, True) in seen  # hairpin
        assert ("back/api-0", "back/api-1", "TCP", 80, "198.18.100.10", path, False) in seen
        assert ("front/client-1", "back/api-1", "TCP", 81, "198.18.100.10", path, False) in seen  # egress: http only
        assert ("front/client-0", "back/api-2", "TCP", 8000, "198.18.100.11", path, True) in seen  # EndpointSlice
        assert ("front/client-0", "back/api-1", "UDP", 53, "198.18.100.10", path, True) in seen
        assert ("front/client-0", "back/api-1", "TCP", 80, "198.19.255.254", path, False) in seen  # NodePort
        assert ("back/api-1", "back/api-1", "TCP", 80, "198.19.255.254", path, True) in seen
    assert {p["node_port"] for p in result.probes if "node_port" in p} == {30080}


def test_a_forward_hook_table_lets_the_node_path_through_and_the_lab_sees_it():
    """The control: the table as it was before it moved to postrouting. Service traffic sent along the
    node's output path never crosses forward, so the lab must report exactly those probes."""
    c = cluster(*scenario())
    prefix = _prefix()
    pods = lab_pods(c)
    state = topology.up(hosts_for(pods), prefix, target_ports([p for r in rounds(c, {p.key for p in pods}) for p in r]))
    try:
        rs = render(compile_plan(c, None, Options()), "netpol")
        old = rs.skeleton.replace("hook postrouting priority srcnat - 10", "hook forward priority filter") \
            .replace("hook postrouting priority srcnat - 9", "hook forward priority filter + 1")
        assert old != rs.skeleton
        Enforcer(state.node_netns).apply(Ruleset(rs.table, old, rs.elements))
        result = probe_services(c, state, Options(), TIMEOUT)
    finally:
        topology.down(prefix)
    assert result.disagreements and all(d["path"] == "node" and d["kernel"] and not d["evaluator"]
                                        for d in result.disagreements)


# ---- random clusters ---------------------------------------------------------------------------

SETTINGS = settings(max_examples=int(os.environ.get("NETPOL_LAB_EXAMPLES", "10")), deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")), print_blob=True,
                    phases=[p for p in Phase if p is not Phase.shrink or os.environ.get("NETPOL_LAB_SHRINK")],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NUMBERS = (8080, 9090, 7000)


@st.composite
def clusters(draw) -> list[dict]:
    objects: list[dict] = [namespace("a", team="x"), namespace("b", team="y")]
    for i in range(draw(st.integers(3, 5))):
        ns = draw(st.sampled_from(("a", "b")))
        ports = [(n, proto, name) for n, proto, name in
                 draw(st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(("TCP", "UDP")),
                                         st.sampled_from(("http", "alt"))), max_size=2, unique_by=lambda t: t[2]))]
        objects.append(pod(ns, f"p{i}", {"app": draw(st.sampled_from(("web", "db")))}, (f"198.18.3.{i + 1}",),
                           container_ports(*ports)))
    for j in range(draw(st.integers(1, 2))):
        target = draw(st.sampled_from(("http", "alt", *NUMBERS)))
        svc_ports = [{"name": "p", "port": 80, "targetPort": target, "protocol": draw(st.sampled_from(("TCP", "UDP")))}]
        if draw(st.booleans()):
            svc_ports.append({"name": "q", "port": 81, "targetPort": draw(st.sampled_from(NUMBERS))})
        objects.append(service(draw(st.sampled_from(("a", "b"))), f"s{j}", svc_ports,
                               {"app": draw(st.sampled_from(("web", "db")))}, f"198.18.100.{j + 1}"))
    for k in range(draw(st.integers(1, 3))):
        direction = draw(st.sampled_from(("ingress", "egress")))
        peer = draw(st.sampled_from(({"podSelector": {"matchLabels": {"app": "web"}}},
                                     {"namespaceSelector": {"matchLabels": {"team": "x"}}},
                                     {"ipBlock": {"cidr": "198.18.3.0/30"}})))
        port = draw(st.sampled_from(({"port": "http"}, {"port": 8080}, {"port": "alt", "protocol": "UDP"}, None)))
        rule: dict = {"from" if direction == "ingress" else "to": [peer]}
        if port is not None:
            rule["ports"] = [port]
        objects.append(policy(draw(st.sampled_from(("a", "b"))), f"np{k}", {
            "podSelector": {"matchLabels": {"app": draw(st.sampled_from(("web", "db")))}},
            "policyTypes": [direction.capitalize()], direction: draw(st.sampled_from(([], [rule])))}))
    return objects


@SETTINGS
@given(objects=clusters())
def test_random_clusters_with_services_agree_through_real_dnat(objects):
    c = cluster(*objects)
    if not rounds(c, {p.key for p in lab_pods(c)}):
        return  # no Service has a backend: nothing to send through DNAT
    result = verify_services(c, Options(), _prefix(), TIMEOUT)
    assert result.disagreements == [], objects
