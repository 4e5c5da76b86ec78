"""update_plan against compile_plan: on random clusters under random pod churn (adds, deletions,
relabels, address moves and reuse, ports, nodes, host network), updating the previous plan gives
exactly the plan compiled from scratch, step after step."""

from __future__ import annotations

import ipaddress
import random

import pytest
from builders import cluster, cluster_sharing, container_ports, namespace, pod, policy
from test_compile_index import APPS, TIERS, _selector

import netpol.nft.plan as compile_module
from netpol.k8s.model import Cluster, Options, Pod
from netpol.nft.plan import Plan, compile_plan
from netpol.nft.update import update_plan

NODES = ("node-1", "node-2")


def _peer(rng: random.Random) -> dict:
    kind = rng.randrange(5)
    if kind == 0:
        return {"podSelector": _selector(rng)}
    if kind == 1:
        return {"namespaceSelector": rng.choice([{}, {"matchLabels": {"team": rng.choice("tu")}}])}
    if kind == 2:
        return {"namespaceSelector": {"matchLabels": {"team": rng.choice("tu")}}, "podSelector": _selector(rng)}
    if kind == 3:
        return {"ipBlock": {"cidr": "198.18.0.0/22", "except": [f"198.18.{rng.randrange(3)}.0/25"]}}
    return {"ipBlock": {"cidr": "2001:db8::/120"}}


def _rule(rng: random.Random, d: str) -> dict:
    rule = {"ports": rng.choice([[], [{"port": "web"}], [{"port": "dns", "protocol": "UDP"}, {"port": 80}],
                                 [{"port": "web"}, {"port": "alt"}]])}
    if rng.random() < 0.8:
        rule["from" if d == "ingress" else "to"] = [_peer(rng) for _ in range(rng.randrange(1, 3))]
    return rule


def _policies(rng: random.Random) -> list[dict]:
    out = []
    for j in range(8):
        rules = {d: [_rule(rng, d) for _ in range(rng.randrange(0, 3))] for d in ("ingress", "egress")}
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        out.append(policy(f"n{j % 3}", f"np{j}", {"podSelector": _selector(rng), "policyTypes": types, **rules}))
    return out


def _address(rng: random.Random) -> str:
    return f"198.18.{rng.randrange(4)}.{rng.randrange(1, 12)}"  # a small pool: neighbours and reuse


def _pod(rng: random.Random, name: str) -> dict:
    labels = {"app": rng.choice(APPS)} | ({"tier": rng.choice(TIERS)} if rng.random() < 0.7 else {})
    ips = (_address(rng),) + ((f"2001:db8::{rng.randrange(1, 30):x}",) if rng.random() < 0.3 else ())
    if rng.random() < 0.1:
        ips = ips[::-1]  # IPv6 primary
    ports = container_ports((rng.choice((80, 81)), "TCP", "web"), (53, "UDP", "dns"),
                            (rng.choice((8080, 53)), rng.choice(("TCP", "UDP")), "alt"))
    return pod(f"n{rng.randrange(3)}", name, labels, ips if rng.random() < 0.9 else (), ports,
               host_network=rng.random() < 0.1, node=rng.choice(NODES))


def _churn(rng: random.Random, pods: dict[str, dict]) -> None:
    """One to five changes of the kinds a watch delivers."""
    for _ in range(rng.randrange(1, 6)):
        names = sorted(pods)
        what = rng.randrange(6)
        if what == 0 or not names:
            name = f"p{rng.randrange(1000)}"
            pods[name] = _pod(rng, name)
        elif what == 1:
            del pods[rng.choice(names)]
        elif what == 2:  # relabel
            p = pods[rng.choice(names)]
            p["metadata"]["labels"] = {"app": rng.choice(APPS)} | (
                {"tier": rng.choice(TIERS)} if rng.random() < 0.5 else {})
        elif what == 3:  # a new pod takes another pod's address
            name, other = f"p{rng.randrange(1000)}", pods[rng.choice(names)]
            pods[name] = _pod(rng, name)
            if other["status"].get("podIPs"):
                pods[name]["status"]["podIP"] = other["status"]["podIP"]
                pods[name]["status"]["podIPs"] = [{"ip": other["status"]["podIP"]}]
        elif what == 4:  # the same pod, anything else about it changed
            name = rng.choice(names)
            fresh = _pod(rng, name)
            fresh["metadata"]["namespace"] = pods[name]["metadata"]["namespace"]
            pods[name] = fresh
        else:  # a pod moves to another namespace: another key
            name = rng.choice(names)
            pods[name]["metadata"]["namespace"] = f"n{rng.randrange(3)}"


def _build(namespaces: list[dict], pods: dict[str, dict], policies: list[dict]) -> Cluster:
    return cluster_sharing(*namespaces, *policies, *[pods[k] for k in sorted(pods)])  # policies keep their source


def _changes(before: Cluster, after: Cluster) -> dict[str, Pod | None]:
    old, new = before.by_key, after.by_key
    return {k: new.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def _no_fallback(*args, **kwargs):
    raise AssertionError("update_plan compiled from scratch")


def _assert_same(got: Plan, want: Plan) -> None:
    assert got.pods == want.pods and got.enforced == want.enforced
    assert {d: dict(m) for d, m in got.isolated.items()} == {d: dict(m) for d, m in want.isolated.items()}
    for g, w in zip(got.policies, want.policies, strict=True):
        assert g == w, g.key
    assert got == want


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("node", [None, "node-1"])
@pytest.mark.parametrize("ipblock_pods", [True, False])
def test_update_equals_compile_under_churn(seed: int, node: str | None, ipblock_pods: bool, monkeypatch) -> None:
    monkeypatch.setattr(compile_module, "compile_plan", _no_fallback)
    rng, opts = random.Random(seed), Options(ipblock_pods=ipblock_pods)
    namespaces = [namespace(f"n{i}", team=rng.choice("tu")) for i in range(3)]
    policies = _policies(rng)
    pods = {f"p{i}": _pod(rng, f"p{i}") for i in range(20)}
    before = _build(namespaces, pods, policies)
    plan = compile_plan(before, node, opts)
    for _ in range(12):
        _churn(rng, pods)
        after = _build(namespaces, pods, policies)
        plan = update_plan(plan, after, _changes(before, after), node, opts)
        _assert_same(plan, compile_plan(after, node, opts))
        before = after


def test_unchanged_parts_keep_their_identity() -> None:
    """So render (and apply) can tell what changed without comparing it."""
    c = cluster(namespace("a"), namespace("b"),
                pod("a", "web", {"app": "web"}, ("198.18.0.1",)), pod("b", "db", {"app": "db"}, ("198.18.0.2",)),
                policy("a", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"from": [{"podSelector": {}}]}]}),
                policy("b", "db", {"podSelector": {"matchLabels": {"app": "db"}},
                                   "ingress": [{"from": [{"podSelector": {}}]}]}))
    plan = compile_plan(c)
    extra = cluster(pod("a", "web2", {"app": "x"}, ("198.18.0.3",))).pods[0]
    after = Cluster.model_construct(namespaces=c.namespaces, pods=c.pods + (extra,), policies=c.policies)
    new = update_plan(plan, after, {extra.key: extra})
    assert new == compile_plan(after)
    web, db = new.policies  # sorted by key: a/web, b/db
    assert db is plan.policies[1]  # nothing about b/db changed
    assert web.ingress[0] is not plan.policies[0].ingress[0]
    one, three = (int(ipaddress.ip_address(f"198.18.0.{i}")) for i in (1, 3))
    assert web.ingress[0].peers[4] == ((one, one), (three, three))


@pytest.mark.parametrize("change", ["policy", "namespace labels", "node", "options"])
def test_what_is_not_a_pod_change_compiles_again(change: str) -> None:
    objs = [namespace("a", team="t"), pod("a", "p", {"app": "x"}, ("198.18.0.1",)),
            policy("a", "np", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {
                "matchLabels": {"team": "t"}}}]}]})]
    c = cluster(*objs)
    plan = compile_plan(c)
    node, opts = None, Options()
    if change == "policy":
        objs[2] = policy("a", "np", {"podSelector": {"matchLabels": {"app": "y"}}})
    elif change == "namespace labels":
        objs[0] = namespace("a", team="u")
    elif change == "node":
        node = "node-1"
    else:
        opts = Options(ipblock_pods=False)
    after = cluster(*objs)
    assert update_plan(plan, after, {}, node, opts) == compile_plan(after, node, opts)
