"""The apply fast path: element changes over nfnetlink while the kernel's generation proves the
table unchanged. Every fast result is checked against a full read-back (drift) and rule handles.
Kernel tests run in network namespaces made here (prefix `npq`), removed even on failure."""

from __future__ import annotations

import functools
import os
import socket
import weakref
from collections.abc import Callable, Iterator

import pytest
from support.builders import cluster, container_ports, e2e_objects, namespace, pod, policy
from support.kernel import ELEMENTS, SKELETON, connects, netns_maker, nft, rule_handles, veth_pair
from support.worlds import world

from netpol.errors import ApplyError
from netpol.k8s.model import Options
from netpol.netns import run_in
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from netpol.nft.ruleset import Ruleset

kernel = pytest.mark.kernel
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")
T = "npbt"  # the table name test_apply's helpers list


def ruleset(skeleton: str = SKELETON, **changes: set[str]) -> Ruleset:
    elems = {**ELEMENTS, **changes}
    return Ruleset(T, skeleton, {k: frozenset(v) for k, v in elems.items()})


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    yield from netns_maker("npq")


@pytest.fixture
def ns(netns_factory: Callable[[], str]) -> str:
    return netns_factory()


# ---- pure: rulesets that carry their diff -------------------------------------------------------

def test_render_with_previous_shares_equal_sets_and_lists_changes() -> None:
    plan = compile_plan(world(), None, Options())
    first = render(plan)
    again = render(plan, previous=first)
    assert again.skeleton is first.skeleton and again.diffed_from(first) and not again.changes
    assert all(again.elements[n] is first.elements[n] for n in first.elements)
    other = render(plan, "other", previous=first)  # another table: no diff against it
    assert not other.diffed_from(first) and other == render(plan, "other")


def test_ruleset_refuses_changes_that_do_not_lead_to_its_elements() -> None:
    base = ruleset()
    good = Ruleset(T, SKELETON, {**ruleset(allow6={"2001:db8::/64"}).elements}, weakref.ref(base),
                   {"allow6": (frozenset({"2001:db8:1::1"}), frozenset())})
    assert good.diffed_from(base) and good == ruleset(allow6={"2001:db8::/64"})
    with pytest.raises(ValueError, match="changes do not lead"):
        Ruleset(T, SKELETON, dict(base.elements), weakref.ref(base), {"allow6": (frozenset(), frozenset({"x"}))})


# ---- kernel ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"plain4": {"198.18.4.0/24", "198.18.5.8", "198.18.6.0-198.18.6.9"}},  # interval: -1 +2
    {"allow6": {"2001:db8::/64", "2001:db8:1::1", "2001:db8:1::2"}},  # the two points stay apart
    {"svc6": {"2001:db8::1 . tcp . 80", "2001:db8::2 . udp . 53"}},  # concatenation
    {"disp4": {"198.18.0.1 : drop", "198.18.0.3 : jump ing_x"}},  # verdict changed for one key
    {"plain4": {"198.18.5.7-198.18.5.9"}, "disp4": {"198.18.0.2 : drop"}},  # a point becomes a range
], ids=["interval", "ipv6", "concat", "vmap", "mixed"])
@kernel
@needs_root
def test_fast_element_change_matches_a_full_read_back(ns: str, change: dict) -> None:
    enf = Enforcer(ns)
    assert enf.apply(ruleset()).kind == "full"
    handles = rule_handles(ns)
    new = ruleset(**change)
    result = enf.apply(new)
    assert (result.kind, result.fast, result.changed) == ("elements", True, True)
    assert all(line.startswith(("add element ", "delete element ")) for line in result.commands.splitlines())
    assert enf.drift(new) == []  # the whole table read back and normalised, as before
    assert rule_handles(ns) == handles
    assert Enforcer(ns).plan(new).kind == "none"  # a fresh enforcer agrees
    back = enf.apply(ruleset())  # and back again, fast too
    assert back.fast and enf.drift(ruleset()) == []


@kernel
@needs_root
def test_in_step_is_only_claimed_while_the_generation_holds(ns: str) -> None:
    enf = Enforcer(ns)
    enf.apply(ruleset())
    same = enf.apply(ruleset())
    assert (same.kind, same.fast) == ("none", True)
    nft(ns, "add", "element", "inet", T, "plain4", "{", "198.18.7.7", "}")  # someone else commits
    repaired = enf.apply(ruleset())
    assert (repaired.kind, repaired.fast, repaired.removed) == ("elements", False, 1)
    assert enf.drift(ruleset()) == []
    nft(ns, "add", "table", "inet", "npqother")  # any commit in the netns ends the shortcut
    again = enf.apply(ruleset())
    assert (again.kind, again.fast) == ("none", False)
    assert enf.apply(ruleset()).fast


@kernel
@needs_root
def test_tampered_table_is_repaired_not_patched(ns: str) -> None:
    enf = Enforcer(ns)
    enf.apply(ruleset())
    nft(ns, "flush", "chain", "inet", T, "forward")
    result = enf.apply(ruleset(plain4={"198.18.5.7"}))
    assert (result.kind, result.fast) == ("full", False)
    assert enf.drift(ruleset(plain4={"198.18.5.7"})) == []


@kernel
@needs_root
def test_refused_fast_change_keeps_the_previous_table(ns: str) -> None:
    enf = Enforcer(ns)
    enf.apply(ruleset())
    before = nft(ns, "list", "ruleset")
    with pytest.raises(ApplyError) as err:
        enf.apply(ruleset(disp4={"198.18.0.1 : jump nope"}))  # the kernel refuses the batch
    assert err.value.nft_error
    with pytest.raises(ApplyError, match="not a literal address"):
        enf.apply(ruleset(plain4={"example.invalid"}))
    assert nft(ns, "list", "ruleset") == before
    assert enf.drift(ruleset()) == []
    assert enf.apply(ruleset(plain4={"198.18.5.7"})).fast  # known again after the full read-back


@kernel
@needs_root
def test_what_the_fast_path_does_not_write_goes_through_libnftables(ns: str) -> None:
    enf = Enforcer(ns)
    enf.apply(ruleset())
    for change in ({"svc": ELEMENTS["svc"] | {"198.18.0.9 . tcp . 1-5"}},  # concatenated intervals
                   {"allow4": {"198.18.0.0/24", "198.18.9.1"}},  # auto-merge: nft merges its own way
                   {"plain4": {"198.18.4.0/24", "255.255.255.0/24"}}):  # open to the top address
        result = enf.apply(ruleset(**change))
        assert (result.kind, result.fast) == ("elements", False), change
        assert enf.drift(ruleset(**change)) == []
    result = enf.apply(ruleset(SKELETON + "chain more { counter; }\n"))
    assert (result.kind, result.fast) == ("full", False)


@kernel
@needs_root
def test_interval_set_emptied_and_filled_again(ns: str) -> None:
    enf = Enforcer(ns)
    enf.apply(ruleset(plain4=set()))
    for elems in ({"198.18.7.7"}, set(), {"198.18.7.8", "198.18.8.0/24"}, {"198.18.7.8-198.18.7.9"}):
        result = enf.apply(ruleset(plain4=elems))
        assert result.fast, elems
        assert enf.drift(ruleset(plain4=elems)) == [], elems
    assert "198.18.7.8/31" in nft(ns, "list", "set", "inet", T, "plain4")


@kernel
@needs_root
def test_pods_coming_and_going_through_compile_and_render(ns: str) -> None:
    """The agent's loop: render against the last ruleset, apply fast; a full compare agrees."""
    extra = [pod("x", f"n{i}", {"pod": "a"}, (f"198.18.1.{50 + i}", f"2001:db8:1::{50 + i:x}"),
                 container_ports((80, "TCP", "web"))) for i in range(3)]
    objects = [*e2e_objects(dual_stack=True), namespace("kube-system"),
               policy("x", "web", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "web"}]}],
                                   "egress": [{"to": [{"namespaceSelector": {}}]}]})]
    enf = Enforcer(ns)
    last = render(compile_plan(cluster(*objects)))
    assert enf.apply(last).kind == "full"
    handles = enf.handles("netpol")
    for step in (objects + extra[:1], objects + extra, objects + extra[1:], objects):
        rs = render(compile_plan(cluster(*step)), previous=last)
        assert rs.diffed_from(last)
        result = enf.apply(rs)
        assert (result.kind, result.fast) == ("elements", True)
        assert enf.drift(rs) == [] and enf.handles("netpol") == handles
        last = rs
    enf.forget()
    assert enf.apply(last).kind == "none"


@kernel
@needs_root
def test_fast_change_changes_what_packets_see(netns_factory: Callable[[], str]) -> None:
    client, server = netns_factory(), netns_factory()
    veth = f"npqv{os.getpid() % 100000}"
    veth_pair(client, server, veth)
    listeners = [run_in(server, functools.partial(socket.create_server, ("198.18.0.2", p))) for p in (8080, 8081)]
    try:
        skeleton = """set deny { type ipv4_addr . inet_proto . inet_service; }
set block { type ipv4_addr; flags interval; }
chain input { type filter hook input priority 0; policy accept;
  ip saddr @block counter drop comment "t/block ingress[0]"
  ip saddr . meta l4proto . th dport @deny counter drop comment "t/deny ingress[1]"; }"""
        enf = Enforcer(server)
        enf.apply(Ruleset("npqdp", skeleton, {"deny": frozenset({"198.18.0.1 . tcp . 8080"})}))
        assert not connects(client, "198.18.0.2", 8080) and connects(client, "198.18.0.2", 8081)
        flip = enf.apply(Ruleset("npqdp", skeleton, {"deny": frozenset({"198.18.0.1 . tcp . 8081"})}))
        assert (flip.kind, flip.fast) == ("elements", True)
        assert connects(client, "198.18.0.2", 8080) and not connects(client, "198.18.0.2", 8081)
        blocked = enf.apply(Ruleset("npqdp", skeleton, {"block": frozenset({"198.18.0.0-198.18.0.1"})}))
        assert blocked.fast and not connects(client, "198.18.0.2", 8080)
        assert enf.counters("npqdp")["t/block ingress[0]"][0] >= 1
    finally:
        for s in listeners:
            s.close()
