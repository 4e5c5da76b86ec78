"""Workload-level connectivity against np-guard's golden outputs (corpus group `main`).

Both sides are compared fact by fact: (src, dst, protocol, port range) after cutting the external
address space of both onto common ranges. np-guard never matches pod addresses with ipBlocks, so the
comparison runs with `ipblock_pods=False`. Two deliberate differences remain, both where the spec lets
implementations choose or where np-guard models a pod that does not exist; `test_deliberate_differences`
shows they are the only ones:

1. Host-network pods. Kubernetes docs, "Network Policies", section "NetworkPolicy and hostNetwork
   pods": the behaviour is undefined; a plugin either polices them like other pods, or "ignores
   hostNetwork pods when matching podSelector and namespaceSelector. Traffic to/from hostNetwork pods
   is treated the same as all other traffic to/from the node IP." np-guard does the first, netpol
   the second (what most plugins, and netpol's nftables enforcement, do).
2. Finished pods (`status.phase` Succeeded or Failed). Pod lifecycle: all their containers have
   terminated and will not be restarted; the sandbox and its IP are released, so they take part in
   no connection. np-guard still lists the workloads of such pods (minikube's admission Jobs).
"""

from __future__ import annotations

import json
import time

import pytest
from support.builders import build_sharing
from support.npguard import ANP, MAIN, NPGUARD, REFUSED, cuts, expected, facts, npguard_view, raws
from support.paths import CORPUS

from netpol.errors import InputError
from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.workloads import connectivity, workload_name
from netpol.k8s.load import load_paths
from netpol.k8s.model import Options
from netpol.k8s.parse import build_cluster

pytestmark = pytest.mark.skipif(not MAIN, reason="np-guard corpus not present")


def test_refused_examples_are_refused_where_the_api_server_would():
    every = {}
    for example in sorted(MAIN):
        try:
            build_cluster(load_paths([str(CORPUS / example / "manifests")]))
        except InputError as exc:
            every[example] = (exc.file.rsplit("/", 1)[-1], exc.line, exc.field, exc.message.split(":")[0])
    assert every == REFUSED


def compare(example: str, objects, opts: Options = NPGUARD) -> tuple[set, set]:
    """(facts only netpol has, facts only np-guard has)."""
    theirs = expected(example)
    result = connectivity(build_sharing(list(objects)), opts, src_cuts=cuts(theirs, 0), dst_cuts=cuts(theirs, 1))
    src_atoms, dst_atoms = list(result.sources), list(result.destinations)
    ours = facts(result.lines(), src_atoms, dst_atoms)
    expect = facts(theirs, src_atoms, dst_atoms)
    return ours - expect, expect - ours


def show(only_ours: set, only_theirs: set) -> str:
    lines = [f"netpol only: {f}" for f in sorted(only_ours)[:10]]
    return "\n".join(lines + [f"np-guard only: {f}" for f in sorted(only_theirs)[:10]])


@pytest.mark.parametrize("example", sorted(MAIN))
def test_agrees_with_npguard(example):
    """On the objects as np-guard reads them, netpol and np-guard agree on every connection."""
    only_ours, only_theirs = compare(example, npguard_view(raws(example)))
    assert not only_ours and not only_theirs, show(only_ours, only_theirs)


# Every example where the inputs as written give a different answer, and why.
DELIBERATE = {
    "minikube_resources": "finished pods: the Succeeded admission-Job pods take no traffic",
    "ipblockstest": "host-network pods: not selected by the tier=frontend policy, so not isolated",
    "ipblockstest_3": "host-network pods, as ipblockstest",
    "ipblockstest_4": "host-network pods: the 638-ipBlock egress policy does not isolate them",
    "multiple_topology_resources_1": "host-network pods: the bank demo pods are hostNetwork",
    "semanticDiff-same-topologies-old1": "host-network pods: the bank demo pods are hostNetwork",
    "semanticDiff-same-topologies-new1": "host-network pods: the bank demo pods are hostNetwork",
    "semanticDiff-same-topologies-new3": "host-network pods: the bank demo pods are hostNetwork",
}


def explained_workloads(objects) -> set[str]:
    """Workloads with a host-network pod, and workloads whose pods have all finished."""
    view = build_sharing(npguard_view(objects))
    live = {workload_name(p) for p in build_cluster(objects).pods}
    host = {workload_name(p) for p in build_cluster(objects).pods if p.host_network}
    return host | ({workload_name(p) for p in view.pods} - live)


def test_deliberate_differences():
    """On the inputs as written, differences exist only where host-network or finished pods are involved."""
    differ = {}
    for example in sorted(MAIN):
        only_ours, only_theirs = compare(example, raws(example))
        if only_ours or only_theirs:
            explained = explained_workloads(raws(example))
            unexplained = {f for f in only_ours | only_theirs if not explained & {f[0], f[1]}}
            assert not unexplained, f"{example}: {sorted(unexplained)[:5]}"
            differ[example] = (only_ours, only_theirs)
    assert set(differ) == set(DELIBERATE)
    # host-network pods are never isolated: np-guard applies the tier=frontend ingress policy to them
    ours, theirs = differ["ipblockstest"]
    src, dst = "0.0.0.0-9.255.255.255[External]", "kube-system/calico-node-tier[DaemonSet]"
    assert (src, dst, "UDP", 53, 53) in theirs and (src, dst, "TCP", 1, 65535) in ours
    # finished Job pods: np-guard lists their connections, netpol has none
    ours, theirs = differ["minikube_resources"]
    assert not ours and all("admission" in f[0] + f[1] for f in theirs)


def test_ipblock_pods_default():
    """With ipBlocks matching pod addresses (netpol's default), the corpus gives the same answers:
    its pods' addresses are all in 10.0.0.0/8, which every ipBlock that could cover them excepts."""
    differ = [ex for ex in sorted(MAIN) if any(compare(ex, npguard_view(raws(ex)), Options(ipblock_pods=True)))]
    assert differ == []


def test_ipblock_pods_default_differs_when_a_pod_address_is_in_a_block(tmp_path):
    """A policy admitting redis-cart's pod address by ipBlock: netpol's default admits the
    redis-cart workload too; np-guard (and `ipblock_pods=False`) admits only the external range."""
    example = "onlineboutique"
    pod = next(r for r in raws(example) if r.kind == "Pod" and r.data["metadata"]["name"].startswith("redis-cart"))
    ip = pod.data["status"]["podIP"]
    extra = tmp_path / "by-ip.yaml"
    extra.write_text(f"""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: cart-from-redis-ip, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: cartservice}}}}
  ingress:
  - from: [{{ipBlock: {{cidr: {ip}/32}}}}]
    ports: [{{port: 7070}}]
""")
    cluster = build_cluster(list(raws(example)) + load_paths([str(extra)]))
    by_ip, by_pod = connectivity(cluster), connectivity(cluster, NPGUARD)
    pair = ("default/redis-cart-78746d49dc[ReplicaSet]", "default/cartservice-74f56fd4b[ReplicaSet]")
    assert str(by_ip.get(*pair)) == "TCP 7070" and by_pod.get(*pair).empty
    assert set(by_ip.lines()) - set(by_pod.lines()) == {pair + (by_ip.get(*pair),)}
    ext = f"{ip}-{ip}[External]"
    assert str(by_pod.get(ext, pair[1])) == str(by_ip.get(ext, pair[1])) == "TCP 7070"


def test_biggest_example_is_fast():
    example = "ipblockstest_4"
    cluster = build_sharing(npguard_view(raws(example)))
    start = time.perf_counter()
    result = connectivity(cluster, NPGUARD)
    elapsed = time.perf_counter() - start
    assert len(result.conns) == 23943
    assert elapsed < 5, f"{elapsed:.1f}s"


# ---- the anp/ group: v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy ----------------

@pytest.mark.parametrize("example", sorted(ANP))
def test_admin_tiers_agree_with_npguard(example):
    """v1alpha1 ANP/BANP read as the Admin and Baseline tiers: every connection as np-guard lists it.
    (Three examples' `pods` peers lack the podSelector the CRD requires; np-guard, like support's
    reader here, takes the empty selector.)"""
    only_ours, only_theirs = compare(example, npguard_view(raws(example)))
    assert not only_ours and not only_theirs, show(only_ours, only_theirs)


def test_admin_tier_point_queries_agree_with_npguard():
    cases = json.loads((CORPUS / "anp" / "eval_cases.json").read_text())["cases"]
    assert len(cases) == 4
    for case in cases:
        cluster = build_sharing(npguard_view(raws(case["example"])))
        src = _owned(cluster, case["src_namespace"], case["src_workload"])
        dst = _owned(cluster, case["dst_namespace"], case["dst_workload"])
        v = decide(cluster, Endpoint(pod=src), Endpoint(pod=dst), case["port"], case["protocol"], NPGUARD)
        assert v.allowed == case["allowed"], case


def _owned(cluster, ns: str, workload: str):
    """A pod of the workload (or the workload itself, standing for its pods)."""
    return next(p for p in cluster.pods if p.namespace == ns
                and (p.name == workload or workload_name(p).startswith(f"{ns}/{workload}[")))
