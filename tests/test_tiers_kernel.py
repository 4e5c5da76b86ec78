"""ClusterNetworkPolicy tiers in the kernel: real packets between lab pods (prefix `nptr<random>`,
removed even when a test fails) must be judged exactly as `decide` judges them."""

from __future__ import annotations

import os
import random
import uuid

import pytest
from support.builders import cluster, container_ports, namespace, pod, policy

from netpol.evaluate.matrix import PortQuery
from netpol.k8s.model import Options
from netpol.lab.verify import verify

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]
QUERIES = [PortQuery(80), PortQuery(8080), PortQuery(81, "UDP"), PortQuery("web")]


def cnp(name: str, tier: str, priority: int, subject: dict, **rules: list) -> dict:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": {"tier": tier, "priority": priority, "subject": subject, **rules}}


def tenants(seed: int, policies: tuple[int, int] = (1, 4)) -> list[dict]:
    """Two tenants and a shared namespace; random Admin and Baseline policies over NetworkPolicies (peers:
    namespaces, pods, networks and nodes)."""
    rng = random.Random(seed)
    objs = [namespace("t1", tenant="t1"), namespace("t2", tenant="t2"), namespace("shared")]
    for i in range(6):
        objs.append(pod(["t1", "t2", "shared"][i % 3], f"p{i}", {"app": rng.choice(["a", "b"])},
                        (f"198.18.{i % 3}.{i + 1}",), container_ports((rng.choice([80, 8080]), "TCP", "web"),
                                                                      (81, "UDP", "dns"))))
    # a Node whose address is p4's: `nodes` peers match addresses, whatever holds them
    objs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "infra-1", "labels": {"role": "infra"}},
                 "status": {"addresses": [{"type": "InternalIP", "address": "198.18.1.5"}]}})
    if rng.random() < 0.6:
        objs.append(policy("t2", "np", {"podSelector": {}, "ingress": [{"ports": [{"port": "web"}]}]}))
    peers = [{"namespaces": {"matchExpressions": [{"key": "tenant", "operator": "Exists"}]}},
             {"pods": {"podSelector": {"matchLabels": {"app": "b"}}}}, {"namespaces": {}},
             {"networks": ["198.18.1.0/24"]}, {"nodes": {"matchLabels": {"role": "infra"}}}]
    protos = [None, [{"tcp": {"destinationPort": {"number": 80}}}], [{"destinationNamedPort": "web"}],
              [{"udp": {"destinationPort": {"range": {"start": 1, "end": 100}}}}]]
    for i in range(rng.randint(*policies)):
        egress = rng.random() < 0.5
        peer = rng.choice(peers + peers[3:] if egress else peers[:3])  # addresses twice as often
        if egress and ("networks" in peer or "nodes" in peer):  # no named ports towards addresses
            proto = rng.choice([None, protos[1], protos[3]])
        else:
            proto = rng.choice(protos)
        rule = {"action": rng.choice(["Accept", "Deny", "Pass"]), "to" if egress else "from": [peer]}
        if proto is not None:
            rule["protocols"] = proto
        subject = rng.choice([{"namespaces": {}}, peers[0], {"pods": {"podSelector": {"matchLabels": {"app": "a"}}}}])
        objs.append(cnp(f"c{i}", rng.choice(["Admin", "Baseline"]), rng.randint(0, 2), subject,
                        **{"egress" if egress else "ingress": [rule]}))
    return objs


@pytest.mark.parametrize("seed", range(int(os.environ.get("NETPOL_LAB_EXAMPLES", "8"))))
def test_random_tiers_through_the_lab_agree_with_decide(seed):
    result = verify(cluster(*tenants(seed)), QUERIES, Options(), f"nptr{uuid.uuid4().hex[:5]}", timeout=0.4)
    assert result.disagreements == [], tenants(seed)
    assert len(result.probes) > 100


@pytest.mark.parametrize("seed", range(3))
def test_tiers_of_many_policies_agree_with_decide(seed):
    """40 Admin policies (about 20 per direction), most selecting the same pods: every path stays two
    chains deep (the kernel refuses deeper than 16), and the kernel still walks them as `decide` does."""
    objs = tenants(100 + seed, policies=(40, 40))
    for o in objs:
        if o["kind"] == "ClusterNetworkPolicy":
            o["spec"]["tier"] = "Admin"
    result = verify(cluster(*objs), QUERIES, Options(), f"nptm{uuid.uuid4().hex[:5]}", timeout=0.4)
    assert result.disagreements == [], objs
    assert min(sum(d in o["spec"] for o in objs if o["kind"] == "ClusterNetworkPolicy")
               for d in ("ingress", "egress")) > 12
