"""render(previous=) against a fresh render: under random pod churn, rendering the updated plan
with the last ruleset as previous (which reuses the sets of plan parts that are the same objects)
gives exactly the ruleset rendered from a plan compiled from scratch, skeleton and elements."""

from __future__ import annotations

import random
import weakref

import pytest
from support.builders import namespace
from support.churn import _build, _changes, _churn, _pod, _policies

from netpol.k8s.model import Options
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from netpol.nft.ruleset import Ruleset
from netpol.nft.update import update_plan


def _same(got: Ruleset, want: Ruleset) -> None:
    assert got.skeleton == want.skeleton
    assert dict(got.elements) == dict(want.elements)
    assert got == want


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("node, deny", [(None, "drop"), ("node-1", "log"), ("node-2", "audit")])
def test_render_with_previous_equals_a_fresh_render(seed: int, node: str | None, deny: str) -> None:
    rng, opts = random.Random(seed), Options(ipblock_pods=seed % 2 == 0)
    namespaces = [namespace(f"n{i}", team=rng.choice("tu")) for i in range(3)]
    policies = _policies(rng)
    pods = {f"p{i}": _pod(rng, f"p{i}") for i in range(20)}
    before = _build(namespaces, pods, policies)
    plan = compile_plan(before, node, opts)
    last = render(plan, "t", deny=deny)
    reused = 0
    for _ in range(12):
        _churn(rng, pods)
        after = _build(namespaces, pods, policies)
        old_plan, plan = plan, update_plan(plan, after, _changes(before, after), node, opts)
        got = render(plan, "t", previous=last, deny=deny)
        _same(got, render(compile_plan(after, node, opts), "t", deny=deny))
        assert got.diffed_from(last)  # pods only: same skeleton, the changes listed lead from last
        olds = {id(r) for p in old_plan.policies for d in ("ingress", "egress") for r in p.rules(d)}
        for name, src in got.sources.items():
            if id(src) in olds and name in last.sources and last.sources[name] is src:
                assert got.elements[name] is last.elements[name]  # reused, not formatted again
                reused += 1
        before, last = after, got
    assert reused > 0


def test_reuse_needs_the_same_object_and_table() -> None:
    rng = random.Random(7)
    namespaces = [namespace(f"n{i}", team=rng.choice("tu")) for i in range(3)]
    pods = {f"p{i}": _pod(rng, f"p{i}") for i in range(20)}
    c = _build(namespaces, pods, _policies(rng))
    plan = compile_plan(c)
    first = render(plan, "t")
    assert first.sources  # every peer and named-port set knows its rule
    # the same plan compiled again: equal but new objects, so nothing is taken over unseen
    again = render(compile_plan(c), "t", previous=first)
    _same(again, first)
    assert again.skeleton is first.skeleton
    other = render(plan, "u", previous=first)  # another table: previous is ignored
    assert other.base is None and other.skeleton == first.skeleton


def test_ruleset_checks_only_sets_not_shared_with_base() -> None:
    base = Ruleset("t", "s", {"a": frozenset({"198.18.0.1"}), "b": frozenset()})
    shared = Ruleset("t", "s", {"a": base.elements["a"], "b": frozenset({"198.18.0.2"})}, weakref.ref(base),
                     {"b": (frozenset(), frozenset({"198.18.0.2"}))})
    assert shared.elements["a"] is base.elements["a"]
    with pytest.raises(ValueError, match="unsafe"):
        Ruleset("t", "s", {"a": base.elements["a"], "b": frozenset({"x; flush ruleset"})}, weakref.ref(base),
                {"b": (frozenset(), frozenset({"x; flush ruleset"}))})
