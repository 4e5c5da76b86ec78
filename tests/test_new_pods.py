"""New pods are held back until programmed: an address in the node's pod CIDRs that no known pod holds
is dropped both ways (the node's own traffic excepted), with a packet walk of the rendered table and
with real packets in a lab (prefix `npnw<random>`, removed even when a test fails)."""

from __future__ import annotations

import ipaddress
import os
import uuid

import pytest
from support.builders import cluster, namespace, pod, policy
from support.fake_table import PROTO_NUM, Walk

from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import endpoint
from netpol.k8s.model import Options
from netpol.lab import LabHost, Probe, probe, topology
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render, to_json

CIDR = ipaddress.ip_network("198.18.0.0/24")
IPS = {"a/web": "198.18.0.10", "a/client": "198.18.0.11", "b/new": "198.18.0.12"}


def objects(with_new: bool) -> list[dict]:
    """a/web admits a/client only; b/new, not isolated, appears later (its address is already in use)."""
    pods = [pod("a", "web", {"app": "web"}, (IPS["a/web"],)), pod("a", "client", {"app": "client"}, (IPS["a/client"],))]
    if with_new:
        pods.append(pod("b", "new", {"app": "new"}, (IPS["b/new"],)))
    return [namespace("a"), namespace("b"), *pods, policy("a", "web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]})]


def _pkt(src: str, dst: str, local: bool = False) -> dict:
    return {"version": 4, "src": int(ipaddress.ip_address(src)), "dst": int(ipaddress.ip_address(dst)),
            "proto": PROTO_NUM["TCP"], "port": 80, "local": local}


def test_unknown_addresses_in_the_pod_cidr_are_dropped_both_ways_until_known():
    before = Walk(to_json(compile_plan(cluster(*objects(False)), None, Options(), [CIDR])))
    assert not before.allows(_pkt(IPS["b/new"], IPS["a/client"]))  # sends: held back
    assert not before.allows(_pkt(IPS["a/client"], IPS["b/new"]))  # is reached: held back
    assert before.allows(_pkt("198.18.0.1", IPS["b/new"], local=True))  # the node itself: always
    assert before.allows(_pkt("198.19.0.7", IPS["a/client"]))  # outside the CIDR: policies decide
    assert before.allows(_pkt(IPS["a/client"], IPS["a/web"]))  # known pods as before
    c = cluster(*objects(True))
    after = Walk(to_json(compile_plan(c, None, Options(), [CIDR])))
    for s, d in [("b/new", "a/client"), ("a/client", "b/new"), ("b/new", "a/web"), ("a/client", "a/web")]:
        assert after.allows(_pkt(IPS[s], IPS[d])) == decide(c, endpoint(c, s), endpoint(c, d), 80).allowed, (s, d)
    without = Walk(to_json(compile_plan(cluster(*objects(False)), None, Options())))  # no CIDR: no gate
    assert without.allows(_pkt(IPS["b/new"], IPS["a/client"]))


def test_node_objects_give_the_pod_cidrs_and_an_update_keeps_them():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
            "spec": {"podCIDRs": [str(CIDR), "2001:db8::/64"]}}
    plan = compile_plan(cluster(*objects(False), node), "node-1", Options())
    assert [str(n) for n in plan.pod_cidrs] == [str(CIDR), "2001:db8::/64"]
    assert {"podcidr4", "podcidr6", "known4", "known6"} <= set(render(plan).elements)


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")
def test_a_pod_the_table_does_not_know_yet_can_neither_send_nor_be_reached():
    prefix = f"npnw{uuid.uuid4().hex[:5]}"
    state = topology.up([LabHost(k, (ip,), ((80, "TCP"),)) for k, ip in IPS.items()], prefix)
    try:
        enf = Enforcer(state.node_netns)
        enf.apply(render(compile_plan(cluster(*objects(False)), None, Options(), [CIDR])))
        pairs = [Probe(s, d, 80) for s in IPS for d in IPS if s != d]
        seen = probe(state, pairs, timeout=0.5)
        assert {(p.src, p.dst) for p, ok in seen.items() if ok} == {("a/client", "a/web"), ("a/web", "a/client")}
        c = cluster(*objects(True))
        enf.apply(render(compile_plan(c, None, Options(), [CIDR])))
        seen = probe(state, pairs, timeout=0.5)
        assert all(ok == decide(c, endpoint(c, p.src), endpoint(c, p.dst), 80).allowed for p, ok in seen.items())
        assert seen[Probe("b/new", "a/client", 80)] and seen[Probe("a/client", "b/new", 80)]
    finally:
        topology.down(prefix)
