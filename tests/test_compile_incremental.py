"""update_plan against compile_plan: on random clusters under random pod churn (adds, deletions,
relabels, address moves and reuse, ports, nodes, host network), updating the previous plan gives
exactly the plan compiled from scratch, step after step."""

from __future__ import annotations

import ipaddress
import random

import pytest
from support.builders import cluster, namespace, pod, policy
from support.churn import _build, _changes, _churn, _pod, _policies

import netpol.nft.plan as compile_module
from netpol.k8s.model import Cluster, Options
from netpol.nft.plan import Plan, compile_plan
from netpol.nft.update import update_plan


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
