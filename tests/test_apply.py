"""netpol.nft.apply against the real kernel, inside network namespaces made here (prefix `npb`)."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from support.kernel import ELEMENTS, SKELETON, T, connects, netns_maker, nft, rule_handles, sh, veth_pair

from netpol import spans
from netpol.errors import ApplyError
from netpol.netns import run_in
from netpol.nft import listing as nftjson
from netpol.nft.apply import Enforcer
from netpol.nft.ruleset import Ruleset

kernel = pytest.mark.kernel
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")


def ruleset(skeleton: str = SKELETON, **changes: set[str]) -> Ruleset:
    elems = {**ELEMENTS, **changes}
    return Ruleset(T, skeleton, {k: frozenset(v) for k, v in elems.items()})


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    yield from netns_maker("npb")


@pytest.fixture
def ns(netns_factory: Callable[[], str]) -> str:
    return netns_factory()


@pytest.fixture
def enforcer(ns: str) -> Enforcer:
    return Enforcer(ns)


# ---- pure normalisation ------------------------------------------------------

def test_text_and_json_elements_normalise_alike() -> None:
    shape = nftjson.SetShape("svc", ("ipv4_addr", "inet_proto", "inet_service"), True)
    live = {"concat": [{"prefix": {"addr": "198.18.3.0", "len": 24}}, "tcp", {"range": [80, 90]}]}
    assert nftjson.elem_from_json(shape, live) == nftjson.elem_from_text(shape, "198.18.3.0-198.18.3.255 . 6 . 80-90")
    vmap = nftjson.SetShape("d", ("ipv6_addr",), True, "verdict")
    pair = [{"prefix": {"addr": "2001:db8::", "len": 64}}, {"jump": {"target": "ing_x"}}]
    assert nftjson.elem_from_json(vmap, pair) == nftjson.elem_from_text(vmap, "2001:db8::/64 :  jump ing_x")
    assert spans.subtract(((0, 100),), ((10, 20), (50, 60))) == ((0, 9), (21, 49), (61, 100))
    assert spans.merge([(5, 9), (0, 4), (20, 30)]) == ((0, 9), (20, 30))


def test_ruleset_refuses_unsafe_text() -> None:
    with pytest.raises(ValueError):
        Ruleset(T, "", {"s": frozenset({"198.18.0.1 }\ndelete table ip x"})})
    with pytest.raises(ValueError):
        Ruleset("bad name", "")


# ---- kernel ------------------------------------------------------------------

@kernel
@needs_root
def test_full_apply_then_reapply_changes_nothing(enforcer: Enforcer, ns: str) -> None:
    assert enforcer.plan(ruleset()).kind == "full"
    result = enforcer.apply(ruleset())
    assert (result.kind, result.changed) == ("full", True)
    assert "198.18.9.1" in nft(ns, "list", "set", "inet", T, "allow4")
    before = nft(ns, "list", "ruleset")
    again = enforcer.apply(ruleset())
    assert (again.kind, again.changed, again.commands) == ("none", False, "")
    assert enforcer.drift(ruleset()) == []
    assert str(enforcer.plan(ruleset())) == f"inet {T}: in step"
    assert nft(ns, "list", "ruleset") == before
    # A fresh enforcer (a restarted daemon) sees the same table as in step too.
    assert Enforcer(ns).plan(ruleset()).kind == "none"


@kernel
@needs_root
def test_element_change_is_element_commands_only(enforcer: Enforcer, ns: str) -> None:
    enforcer.apply(ruleset())
    handles = rule_handles(ns)
    new = ruleset(allow4=ELEMENTS["allow4"] - {"198.18.9.1"} | {"198.18.9.2"},
                  disp4={"198.18.0.1 : drop", "198.18.0.3 : jump ing_x"})
    plan = enforcer.plan(new)
    assert plan.kind == "elements" and "+198.18.9.2" in str(plan) and "-198.18.9.1" in str(plan)
    assert "198.18.9.1" in nft(ns, "list", "set", "inet", T, "allow4")  # plan is a dry run
    result = enforcer.apply(new)
    lines = result.commands.splitlines()
    assert result.kind == "elements" and (result.added, result.removed) == (3, 3)
    assert lines and all(line.startswith(("add element ", "delete element ")) for line in lines)
    assert "table" not in result.commands.replace(f"inet {T}", "")
    assert rule_handles(ns) == handles == list(enforcer.handles(T))
    listed = nft(ns, "list", "map", "inet", T, "disp4")
    assert "198.18.0.1 : drop" in listed and "198.18.0.3 : jump ing_x" in listed
    assert enforcer.drift(new) == []


@kernel
@needs_root
@pytest.mark.parametrize(("tamper", "kind", "says"), [
    ("delete table inet npbt", "full", "missing"),
    ("flush chain inet npbt forward", "full", "rules forward"),
    ("add chain inet npbt intruder", "full", "chain intruder: unexpected"),
    ("delete element inet npbt allow4 { 198.18.9.1 }", "elements", "set allow4: 1 missing"),
    ("add element inet npbt disp4 { 198.18.0.9 : accept }", "elements", "set disp4: 0 missing"),
    ("flush set inet npbt svc", "elements", "set svc: 3 missing"),
])
def test_external_edits_are_noticed_and_repaired(enforcer: Enforcer, ns: str, tamper: str, kind: str,
                                                 says: str) -> None:
    enforcer.apply(ruleset())
    nft(ns, *tamper.split())
    drift = enforcer.drift(ruleset())
    assert any(says in d for d in drift), drift
    assert enforcer.apply(ruleset()).kind == kind
    assert enforcer.drift(ruleset()) == []


@kernel
@needs_root
def test_removed_rule_is_noticed(enforcer: Enforcer, ns: str) -> None:
    enforcer.apply(ruleset())
    nft(ns, "delete", "rule", "inet", T, "ing_x", "handle", str(rule_handles(ns)[0]))
    assert enforcer.drift(ruleset()) == ["rules ing_x: 1 live, want 2"]
    assert enforcer.apply(ruleset()).kind == "full"


@kernel
@needs_root
def test_refused_change_leaves_previous_table_in_force(enforcer: Enforcer, ns: str) -> None:
    enforcer.apply(ruleset())
    before = nft(ns, "list", "ruleset")
    bad_cases = [
        # The kernel refuses this batch after it already holds "delete table": atomicity at work.
        ruleset(SKELETON + 'chain extra { counter comment "new"; }\n', disp4={"198.18.0.7 : jump nope"}),
        ruleset(SKELETON + "chain broken { jump nope; }\n"),
        ruleset(disp4={"198.18.0.7 : jump nope"}),  # element path, refused by the kernel
        ruleset(svc={"198.18.0.1 . tcp . 70000"}),  # refused by nft's parser
    ]
    for bad in bad_cases:
        with pytest.raises(ApplyError) as err:
            enforcer.apply(bad)
        assert err.value.nft_error.startswith("Error:"), err.value
        assert nft(ns, "list", "ruleset") == before
    with pytest.raises(ApplyError, match="Could not process rule"):
        enforcer.apply(bad_cases[0])
    # Not an address: refused before nft would try to resolve it as a host name.
    for text in ("198.18.0.300", "example.invalid", "2001:db8::1"):
        with pytest.raises(ApplyError, match="not a literal address") as err:
            enforcer.apply(ruleset(allow4={text}))
        assert err.value.nft_error == ""
    assert nft(ns, "list", "ruleset") == before
    assert enforcer.drift(ruleset()) == []
    assert enforcer.delete(T)
    with pytest.raises(ApplyError, match="not a literal address"):
        Enforcer(ns).apply(ruleset(allow4={"example.invalid"}))  # a fresh table too
    assert f"inet {T}" not in nft(ns, "list", "tables")


@kernel
@needs_root
def test_other_tables_are_untouched(enforcer: Enforcer, ns: str) -> None:
    sh("nft", "-f", "-", ns=ns, stdin="""
table ip kube-proxy {
  chain pre { type nat hook prerouting priority -100; counter; }
}
table inet filter {
  set s { type ipv4_addr; elements = { 198.18.7.7 }; }
  chain input { type filter hook input priority 10; ip saddr @s counter accept; }
}
""")
    others = {t: nft(ns, "list", "table", *t.split()) for t in ("ip kube-proxy", "inet filter")}
    enforcer.apply(ruleset())
    enforcer.apply(ruleset(allow4={"198.18.9.9"}))
    enforcer.apply(ruleset(SKELETON + "chain more { counter; }\n"))
    assert enforcer.delete(T) is True
    assert enforcer.delete(T) is False
    assert {t: nft(ns, "list", "table", *t.split()) for t in others} == others
    assert f"inet {T}" not in nft(ns, "list", "tables")


@kernel
@needs_root
def test_interval_normalisation_gives_no_false_drift(enforcer: Enforcer, ns: str) -> None:
    enforcer.apply(ruleset())
    allow4 = nft(ns, "list", "set", "inet", T, "allow4")
    assert "198.18.0.0-198.18.2.255" in allow4 or "198.18.0.0/23" in allow4  # merged by the kernel
    assert "198.18.4.0/24" in nft(ns, "list", "set", "inet", T, "plain4")  # range printed as prefix
    assert enforcer.drift(ruleset()) == []
    # Same addresses written another way are the same set.
    same = ruleset(allow4={"198.18.0.0/23", "198.18.2.0/24", "198.18.9.1"})
    assert enforcer.apply(same).changed is False
    # Shrinking a merged range removes only what must go, then adds the rest back.
    smaller = ruleset(allow4={"198.18.0.0/24", "198.18.9.1"})
    result = enforcer.apply(smaller)
    assert result.kind == "elements" and enforcer.drift(smaller) == []
    assert "198.18.1.0" not in nft(ns, "list", "set", "inet", T, "allow4")


@kernel
@needs_root
def test_ipv6_concatenations_and_verdict_maps_round_trip(enforcer: Enforcer, ns: str) -> None:
    enforcer.apply(ruleset())
    assert "198.18.0.2 . udp . 1000-2000" in nft(ns, "list", "set", "inet", T, "svc")
    assert enforcer.plan(ruleset()).kind == "none"
    changed = ruleset(svc=ELEMENTS["svc"] - {"198.18.0.2 . udp . 1000-2000"} | {"198.18.0.2 . udp . 1000-3000"},
                      svc6={"2001:db8::1 . 6 . 80", "2001:db8::2 . udp . 53"},
                      disp6={"2001:db8::/64 : drop", "2001:db8:1::/48 : jump ing_x"},
                      allow6={"2001:db8::/63"})
    result = enforcer.apply(changed)
    assert result.kind == "elements", result
    # svc -1 +1; svc6 +1 ("6" is tcp); disp6 -1 +2; allow6 keeps its /64, drops ::1, adds the other /64.
    assert (result.added, result.removed) == (5, 3)
    # Kept as two /64s (no auto-merge): still equal to the wanted /63, so no drift below.
    assert "2001:db8:0:1::/64" in nft(ns, "list", "set", "inet", T, "allow6")
    assert enforcer.drift(changed) == [] and enforcer.apply(changed).changed is False


# ---- data path ---------------------------------------------------------------

@kernel
@needs_root
def test_drop_then_element_update_changes_verdict(netns_factory: Callable[[], str]) -> None:
    client, server = netns_factory(), netns_factory()
    veth = f"npbv{os.getpid() % 100000}"
    veth_pair(client, server, veth)
    listeners = [run_in(server, functools.partial(socket.create_server, ("198.18.0.2", p))) for p in (8080, 8081)]
    try:
        skeleton = """set deny { type ipv4_addr . inet_proto . inet_service; }
chain input { type filter hook input priority 0; policy accept;
  ip saddr . meta l4proto . th dport @deny counter drop comment "t/deny ingress[0]"; }"""
        enf = Enforcer(server)
        assert enf.apply(Ruleset("npbdp", skeleton, {"deny": frozenset({"198.18.0.1 . tcp . 8080"})})).kind == "full"
        assert not connects(client, "198.18.0.2", 8080)
        assert connects(client, "198.18.0.2", 8081)
        assert enf.counters("npbdp")["t/deny ingress[0]"][0] >= 1
        handles = enf.handles("npbdp")
        flip = enf.apply(Ruleset("npbdp", skeleton, {"deny": frozenset({"198.18.0.1 . tcp . 8081"})}))
        assert (flip.kind, flip.added, flip.removed) == ("elements", 1, 1)
        assert enf.handles("npbdp") == handles
        assert connects(client, "198.18.0.2", 8080)
        assert not connects(client, "198.18.0.2", 8081)
    finally:
        for s in listeners:
            s.close()
