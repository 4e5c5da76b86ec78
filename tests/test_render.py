"""render: the table's shape, its JSON twin, and a packet walk through it that must agree with decide.

`Walk` interprets the rendered libnftables JSON the way the kernel does for a new connection (no
conntrack entry yet), so every scenario can be checked against the evaluator on every pair, port,
protocol and family in milliseconds. The kernel tests (test_enforce_kernel) prove the walk right
with real packets on the same scenarios; here `kernel`-marked tests check that nft takes each
rendered table and its JSON, and what the deny actions do to real packets, in network namespaces
made here (prefix `npd`) and removed even when a test fails.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from support.builders import cluster, container_ports, e2e_objects, pod, policy
from support.fake_table import PROTO_NUM, Walk, max_depth
from support.kernel import netns_maker
from support.worlds import EXT, SCENARIOS, _apart, _ports, _sel, scenario, world

import netpol.nft.render as render_module
from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, Options, Pod
from netpol.lab import Probe, probe, topology
from netpol.lab.verify import hosts_for, lab_pods
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import DENY_ACTIONS, POINTS, log_prefix, render, short_id, to_json
from netpol.nft.ruleset import Ruleset
from netpol.spans import split_runs

kernel = pytest.mark.kernel


# ---- scenarios (shared with test_enforce_kernel) ------------------------------------------------


# ---- a packet walk through the rendered JSON ----------------------------------------------------


def _ep(c: Cluster, p: Pod | None, ip: str | None) -> Endpoint:
    if ip is None:
        return Endpoint(pod=p)
    addr = ipaddress.ip_address(ip)
    return Endpoint(pod=c.by_address.get(addr), ip=addr)


def _sent_by(src: Pod | None, dst: Pod | None, node: str | None) -> bool:
    """Whether the walked node sends the packet itself: a host-network pod on it. A walk of every
    node's pods (None) stands for the node the packet is delivered on: the destination's."""
    if node is None and dst is not None:
        node = dst.node_name
    return src is not None and src.host_network and node in (None, src.node_name)


def disagreements(c: Cluster, opts: Options, node: str | None = None, per_node: bool = False) -> list[str]:
    """Every ordered pair (pods, the host-network pod, an outside address), ports 79-82 and the
    named ones, three protocols, primary family and each family by address: walk == decide."""
    nodes = sorted({p.node_name for p in c.pods if p.node_name}) if per_node else [node]
    walks = {n: Walk(to_json(compile_plan(c, n, opts))) for n in nodes}
    pods = [p for p in c.pods if p.kind == "Pod" and p.ips]
    ends: list[tuple[Pod | None, tuple[str, ...]]] = [(p, p.ips) for p in pods] + [(None, EXT)]
    ports = sorted({79, 80, 81, 82} | {cp.port for p in pods for cp in p.ports})
    bad = []
    for (sp, sips), (dp, dips) in itertools.product(ends, ends):
        if sp is None and dp is None:
            continue  # a pod to itself stays: through its Service it reaches the node (hairpin)
        for version in (None, 4, 6):
            want_v = version or ipaddress.ip_address(dips[0]).version
            s_ip = next((i for i in sips if ipaddress.ip_address(i).version == want_v), None)
            d_ip = next((i for i in dips if ipaddress.ip_address(i).version == want_v), None)
            if s_ip is None or d_ip is None:
                continue
            by_addr = version is not None or sp is None or dp is None
            src = _ep(c, sp, s_ip if by_addr else None)
            dst = _ep(c, dp, d_ip if by_addr else None)
            for proto, port in itertools.product(("TCP", "UDP", "SCTP"), ports):
                pkt = {"version": want_v, "src": int(ipaddress.ip_address(s_ip)),
                       "dst": int(ipaddress.ip_address(d_ip)), "proto": PROTO_NUM[proto], "port": port}
                if per_node:
                    on = {e.node_name for e in (sp, dp) if e is not None and not e.host_network}
                    got = all(walks[n].allows({**pkt, "local": _sent_by(sp, dp, n)}) for n in on)
                else:
                    got = walks[node].allows({**pkt, "local": _sent_by(sp, dp, node)})
                want = decide(c, src, dst, port, proto, opts).allowed
                if got != want:
                    bad.append(f"{src.label}({s_ip}) -> {dst.label}({d_ip}) {proto}/{port}: "
                               f"table {'allows' if got else 'denies'}, decide {'allows' if want else 'denies'}")
    return bad


# ---- agreement with decide ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_table_agrees_with_decide(name):
    c, opts = scenario(name, hostnet=True)
    assert disagreements(c, opts)[:5] == []


@pytest.mark.parametrize("name", ["named-ports", "ipblock-except", "empty-rules-and-types"])
def test_table_agrees_with_decide_ipv6_primary(name):
    c, opts = scenario(name, ipv6_primary=True)
    assert disagreements(c, opts)[:5] == []


def _random_policy(rng: random.Random, i: int) -> dict:
    def selector() -> dict:
        return rng.choice([{}, _sel(pod=rng.choice("abcd")),
                           {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]}])

    def peer() -> dict:
        kind = rng.randrange(4)
        if kind == 0:
            return {"podSelector": selector()}
        if kind == 1:
            return {"namespaceSelector": rng.choice([{}, _sel(ns=rng.choice("xyz"))])}
        if kind == 2:
            return {"namespaceSelector": _sel(ns=rng.choice("xyz")), "podSelector": selector()}
        cidr = rng.choice(["198.18.0.0/15", "198.18.1.0/24", "2001:db8::/32", "2001:db8:2::/48", "0.0.0.0/0"])
        net = ipaddress.ip_network(cidr)
        sub = list(itertools.islice(net.subnets(new_prefix=min(net.max_prefixlen, net.prefixlen + 8)), 1, 4))
        return {"ipBlock": {"cidr": cidr, "except": [str(rng.choice(sub))] if rng.random() < 0.5 else []}}

    def port() -> dict:
        proto = rng.choice(["TCP", "UDP", "SCTP"])
        choice = rng.randrange(4)
        if choice == 0:
            return {"protocol": proto}
        if choice == 1:
            return {"protocol": proto, "port": rng.choice(["web", "dns", f"serve-8{rng.randrange(2)}-{proto.lower()}",
                                                           "serve-80-udp"])}
        lo = rng.choice([79, 80, 81])
        return {"protocol": proto, "port": lo, **({"endPort": lo + rng.randrange(3)} if choice == 3 else {})}

    def rules() -> list[dict]:
        out = []
        for _ in range(rng.randrange(3)):
            rule: dict = {}
            if rng.random() < 0.7:
                rule["peers"] = [peer() for _ in range(rng.randrange(3))]
            if rng.random() < 0.6:
                rule["ports"] = [port() for _ in range(1 + rng.randrange(2))]
            out.append(rule)
        return out

    types = rng.choice([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    spec: dict = {"podSelector": selector()}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        rs = rules()
        if rs or rng.random() < 0.3:
            spec[direction] = [{**({field: r["peers"]} if "peers" in r else {}),
                                **({"ports": r["ports"]} if "ports" in r else {})} for r in rs]
    if types:
        spec["policyTypes"] = types
    return policy(rng.choice("xyz"), f"random-{i}", spec)


@pytest.mark.parametrize("seed", range(6))
def test_random_policies_agree_with_decide(seed):
    rng = random.Random(seed)
    c = world(*[_random_policy(rng, i) for i in range(1 + rng.randrange(4))], hostnet=True)
    assert disagreements(c, Options(ipblock_pods=seed % 2 == 0))[:5] == []


def test_per_node_tables_together_agree_with_decide():
    """Each node enforces its own pods; a connection passes the source's node, then the destination's."""
    objs = e2e_objects(dual_stack=True)
    for o in objs:
        if o["kind"] == "Pod":
            o["spec"]["nodeName"] = "node-1" if o["metadata"]["name"] in ("a", "b") else "node-2"
    rng = random.Random(42)
    for _ in range(4):
        c = cluster(*objs, *[_random_policy(rng, i) for i in range(3)])
        assert disagreements(c, Options(), per_node=True)[:5] == []


# ---- shape ---------------------------------------------------------------------------------------

def _rules(rs: Ruleset) -> list[str]:
    return [line.strip() for line in rs.skeleton.splitlines() if "comment" in line]


def test_every_rule_has_counter_and_comment_with_stable_id():
    c, opts = scenario("named-ports")
    rs = render(compile_plan(c, None, opts))
    for line in _rules(rs):
        if "vmap" not in line and not line.startswith("goto "):  # dispatch: the chain it leads to counts
            assert " counter " in f" {line} "
    assert any('comment "x/named-in ingress[1]"' in line for line in _rules(rs))
    assert any(line.endswith('counter drop comment "y default deny egress"') for line in _rules(rs))
    assert any(line.endswith('counter accept comment "y/named-out egress[0]"') for line in _rules(rs))
    assert any(line.endswith('comment "y/named-out egress next"') for line in _rules(rs))
    assert any(line.startswith("goto eg_") and line.endswith('comment "y/named-out egress end"') for line in _rules(rs))


def _chain(text: str, name: str) -> str:
    start = text.index(f"\tchain {name} {{\n")
    return text[start:text.index("\n\t}", start)]


def test_base_chains_order_and_dispatch():
    rs = render(compile_plan(world(), None, Options()))
    egress, ingress = _chain(rs.skeleton, "post_egress"), _chain(rs.skeleton, "post_ingress")
    assert "hook postrouting priority srcnat - 10;" in egress and "hook postrouting priority srcnat - 9;" in ingress
    for chain, order in ((egress, ["ct state established,related", "ct state invalid", "nd-neighbor-solicit",
                                   "ip saddr vmap @egress4", "ip6 saddr vmap @egress6"]),
                         (ingress, ["ct state established,related", "nd-neighbor-solicit",
                                    "ip daddr vmap @ingress4", "ip6 daddr vmap @ingress6"])):
        assert [chain.index(o) for o in order] == sorted(chain.index(o) for o in order)
    assert "daddr vmap" not in egress and "saddr vmap" not in ingress
    inp = _chain(rs.skeleton, "input")
    assert "vmap" not in inp and "accept" in inp  # traffic to the node itself is always allowed
    assert "hook output" in rs.skeleton


def test_policy_chains_test_cheap_matches_first():
    c, opts = scenario("empty-rules-and-types")
    extra = policy("x", "mixed", {"podSelector": {}, "ingress": [
        {"from": [{"podSelector": _sel(pod="b")}], "ports": _ports(("TCP", "web"))},
        {"from": [{"ipBlock": {"cidr": "198.18.0.0/16"}}]},
        {"from": [{"podSelector": _sel(pod="c")}], "ports": _ports(("UDP", 81), ("TCP", 80, 82))},
        {"ports": _ports(("SCTP",))}]})
    rs = render(compile_plan(world(*SCENARIOS["empty-rules-and-types"][0], extra), None, opts))
    chain = [line.strip() for line in _chain(rs.skeleton, f"p_{short_id('x/mixed')}_i4").splitlines()[1:]]
    # compares only; one hash lookup; two; an interval lookup. Selector-only rules have no interval
    # set, and the named-port lookup is behind a compare of its one protocol.
    assert [line.split(' comment "x/mixed ')[1] for line in chain] == [
        'ingress[3]"', 'ingress[1]"', 'ingress[2]"', 'ingress[2]"', 'ingress[0]"', 'ingress[1]"',
        'ingress next"', 'ingress end"']
    assert chain[0].startswith("meta l4proto sctp counter accept")
    assert chain[2].startswith("tcp dport 80-82 ip saddr @p_") and chain[3].startswith("udp dport 81 ip saddr @p_")
    assert chain[4].startswith("meta l4proto tcp ip daddr . meta l4proto . th dport @") and "_peer4" in chain[4]
    assert "_span4" in chain[5] and not any("_span4" in line for line in chain[:5])
    assert not any(n.endswith(("_i0_span4", "_i0_span6", "_i2_span4", "_i1_peer6", "_i1_span6"))
                   for n in rs.elements)


def test_packets_walk_only_the_policies_selecting_their_pod():
    """The cost of a new connection depends on the policies selecting its pods, not on how many
    policies their namespaces have."""
    pols = [policy("x", f"b{i}", {"podSelector": _apart(_sel(pod="b"), i), "policyTypes": ["Ingress", "Egress"],
                                  "ingress": [{"ports": _ports(("TCP", 1000 + i))}],
                                  "egress": [{"ports": _ports(("TCP", 2000 + i))}]}) for i in range(20)]
    pols += [policy("x", f"a{i}", {"podSelector": _apart(_sel(pod="a"), i), "ingress": [{"ports": _ports(("TCP", 80 + i))}]})
             for i in range(2)]
    c = world(*pols)
    walk = Walk(to_json(compile_plan(c, None, Options())))
    a, b = (int(ipaddress.ip_address(ip)) for ip in ("198.18.1.1", "198.18.1.2"))
    b_policies = sorted(f"x/b{i}" for i in range(20))  # plan order
    in_b, out_b = ([f"p_{short_id(k)}_{d}4" for k in b_policies] for d in "ie")

    def policy_chains() -> list[str]:
        return [ch for ch in walk.visited if ch.startswith("p_")]

    assert not walk.allows({"version": 4, "src": b, "dst": a, "proto": 6, "port": 81})
    assert policy_chains() == out_b and walk.visited[-1].startswith("eg_")  # all of b's, in two chunks
    assert walk.allows({"version": 4, "src": a, "dst": b, "proto": 6, "port": 1019})
    assert policy_chains() == in_b[:b_policies.index("x/b19") + 1]  # a is not isolated for egress
    assert not walk.allows({"version": 4, "src": a, "dst": b, "proto": 6, "port": 99})
    assert policy_chains() == in_b and walk.visited[-1].startswith("in_")
    assert not walk.allows({"version": 4, "src": b, "dst": a, "proto": 6, "port": 2003})  # a's ingress: 80, 81
    assert policy_chains() == out_b[:b_policies.index("x/b3") + 1] + [f"p_{short_id(f'x/a{i}')}_i4" for i in (0, 1)]
    assert disagreements(c, Options())[:5] == []


def test_policies_with_the_same_selector_share_one_walk_chain():
    """Equal podSelectors (terms and values in any order) in a namespace select the same pods:
    one chain per family holds their rules, and the walk takes one step for them."""
    terms = [{"key": "pod", "operator": "Exists"}, {"key": "zz", "operator": "DoesNotExist"}]
    same = [{"matchLabels": {"pod": "b"}, "matchExpressions": order} for order in (terms, terms[::-1])]
    exprs = [{"matchExpressions": [{"key": "pod", "operator": "In", "values": vals}]} for vals in (["b", "c"], ["c", "b"])]
    pols = [policy("x", f"s{i}", {"podSelector": sel, "ingress": [{"ports": _ports(("TCP", 1000 + i))}]})
            for i, sel in enumerate(same + exprs)]
    pols += [policy("y", "s9", {"podSelector": same[0], "ingress": [{"ports": _ports(("TCP", 1009))}]})]
    c = world(*pols)
    rs = render(compile_plan(c, None, Options()))
    chains = re.findall(r"chain (p_\w+) ", rs.skeleton)
    assert sorted(chains) == sorted(f"p_{short_id(k)}_i{v}" for k in ("x/s0", "x/s2", "y/s9") for v in (4, 6))
    shared = _chain(rs.skeleton, f"p_{short_id('x/s0')}_i4")
    assert 'comment "x/s0 ingress[0]"' in shared and 'comment "x/s1 ingress[0]"' in shared
    walk = Walk(to_json(compile_plan(c, None, Options())))
    b, c_ = (int(ipaddress.ip_address(ip)) for ip in ("198.18.1.2", "198.18.1.3"))
    assert walk.allows({"version": 4, "src": c_, "dst": b, "proto": 6, "port": 1003})
    assert [ch for ch in walk.visited if ch.startswith("p_")] == [f"p_{short_id(k)}_i4" for k in ("x/s0", "x/s2")]
    assert disagreements(c, Options())[:5] == []


def _crowded(n: int = 30) -> Cluster:
    """A namespace with n policies selecting the same pods, allowing one port each, and another
    whose n egress policies only the last of which allows anything probed."""
    pols = [policy("x", f"in{i:02d}", {"podSelector": _apart({} if i % 2 else _sel(pod="a"), i),
                                       "ingress": [{"ports": _ports(("TCP", 79 + i % 4 if i >= n - 4 else 3000 + i))}]})
            for i in range(n)]
    pols += [policy("y", f"out{i:02d}", {"podSelector": _apart({}, i), "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": _sel(ns="x")}], "ports": _ports(("UDP", 81 if i == n - 1 else 4000 + i))}]})
        for i in range(n)]
    return world(*pols)


def test_crowded_namespaces_walk_in_chunks_the_kernel_accepts():
    c = _crowded()
    doc = to_json(compile_plan(c, None, Options()))
    maps = {o["map"]["name"] for o in doc["nftables"] if "map" in o}
    assert {"ingress4", "ingress4_1", "ingress4_2", "egress6_2"} <= maps and "ingress4_3" not in maps
    assert max_depth(doc) <= 15
    assert disagreements(c, Options())[:5] == []


def test_deny_actions():
    c, opts = scenario("egress-udp81-and-deny")
    plan = compile_plan(c, None, opts)
    drop, log, audit = (render(plan, deny=d) for d in DENY_ACTIONS)
    assert drop == render(plan) and drop.elements == log.elements == audit.elements
    lines = _rules(log)
    i = lines.index('limit rate 10/second burst 20 packets log prefix "netpol deny egress y " '
                    'comment "y default deny egress log"')
    assert lines[i + 1] == 'counter drop comment "y default deny egress"'
    assert 'counter accept comment "y default deny ingress audit"' in _rules(audit)
    assert 'counter accept comment "x default deny egress audit"' in _rules(audit)
    assert not any("drop comment" in line and "default deny" in line for line in _rules(audit))
    assert log_prefix("y", "egress") == "netpol deny egress y "
    walks = {d: Walk(to_json(plan, deny=d)) for d in DENY_ACTIONS}
    ips = [int(ipaddress.ip_address(ip)) for p in c.pods if p.ips and not p.host_network for ip in p.ips[:1]]
    for src, dst, proto in itertools.product(ips, ips, (6, 17)):
        pkt = {"version": 4, "src": src, "dst": dst, "proto": proto, "port": 81}
        assert walks["log"].allows(pkt) == walks["drop"].allows(pkt) and walks["audit"].allows(pkt)
    assert not all(walks["drop"].allows({"version": 4, "src": s, "dst": d, "proto": 17, "port": 81})
                   for s, d in itertools.product(ips, ips))
    with pytest.raises(ValueError):
        render(plan, deny="reject")


def test_named_port_rule_uses_concatenated_set_per_destination():
    c, opts = scenario("named-ports")
    plan = compile_plan(c, None, opts)
    rs = render(plan)
    web = [line for line in _rules(rs) if "x/named-in ingress[0]" in line]
    assert any("ip daddr . meta l4proto . th dport @p_" in line for line in web)
    named4 = next(n for n in rs.elements if n.endswith("_i0_named4"))
    assert {"198.18.1.4 . tcp . 80", "198.18.1.1 . udp . 81"} <= rs.elements[named4]
    assert not any(e.startswith("198.18.3.") for e in rs.elements[named4])  # z pods are not selected


def test_rule_count_depends_on_policies_not_pods():
    c, opts = scenario("named-ports")
    base = render(compile_plan(c, None, opts))
    more = world(*SCENARIOS["named-ports"][0], pod("x", "e", {"pod": "b"}, ("198.18.1.9",),
                                                    container_ports((81, "UDP", "serve-81-udp"))))
    added = render(compile_plan(more, None, opts))
    assert added.skeleton == base.skeleton and added.elements != base.elements
    relabeled = world(*SCENARIOS["named-ports"][0])
    relabeled = relabeled.model_copy(update={"pods": tuple(
        p.model_copy(update={"labels": {"pod": "zz"}}) if p.key == "y/a" else p for p in relabeled.pods)})
    other = render(compile_plan(relabeled, None, opts))
    assert other.skeleton == base.skeleton and other.elements != base.elements
    for n in ("node-1", "node-9"):  # another node's view: same shape, other pods
        assert render(compile_plan(c, n, opts)).skeleton == base.skeleton
    fewer = world(*SCENARIOS["named-ports"][0][:1])
    assert render(compile_plan(fewer, None, opts)).skeleton != base.skeleton


def test_peer_runs_split_into_hash_points_and_interval_ranges():
    assert split_runs(((1, 1), (5, 7), (10, 10 + POINTS - 1), (100, 100 + POINTS)), POINTS) == (
        (1, 5, 6, 7, *range(10, 10 + POINTS)), ((100, 100 + POINTS),))
    c, opts = scenario("ipblock-except")
    rs = render(compile_plan(c, None, opts))
    peer4 = next(n for n in rs.elements if n.startswith(f"p_{short_id('x/blk')}") and n.endswith("_peer4"))
    span4 = peer4.replace("_peer4", "_span4")
    # 198.18.0.0/15 except 198.18.2.0/24 and 198.18.3.2: two short runs, two long ones
    assert rs.elements[peer4] == {"198.18.3.0", "198.18.3.1"}
    assert rs.elements[span4] == {"198.18.0.0/23", "198.18.3.3-198.19.255.255"}


def test_sets_are_declared_even_when_empty():
    c, opts = scenario("ipv6-block-only")
    rs = render(compile_plan(c, "no-such-node", opts))
    assert any(name.endswith("_peer6") for name in rs.elements)
    assert all(f"set {n} " in rs.skeleton or f"map {n} " in rs.skeleton for n in rs.elements)
    assert not any(rs.elements[n] for n in ("ingress4", "ingress6", "egress4", "egress6"))


def test_names_are_short_and_comments_bounded():
    long = "n" * 63
    pol = policy(long, "p" * 200, {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    rs = render(compile_plan(world(pol), None, Options()))
    assert all(len(n) <= 32 for n in rs.elements)
    for line in _rules(rs):
        assert len(line.split('comment "', 1)[1]) <= 121
    assert any("ingress[0]" in line and long in line for line in _rules(rs))


def test_json_has_the_same_rules_and_elements_as_text():
    c, opts = scenario("ipblock-except")
    plan = compile_plan(c, None, opts)
    rs, doc = render(plan), to_json(plan)
    rules = [o["rule"] for o in doc["nftables"] if "rule" in o]
    assert len(rules) == len(_rules(rs))
    sets = {o.get("set", o.get("map"))["name"]: o.get("set", o.get("map")).get("elem", [])
            for o in doc["nftables"] if "set" in o or "map" in o}
    assert sets.keys() == set(rs.elements)
    assert all(len(sets[n]) == len(rs.elements[n]) for n in sets)


def test_bad_table_name_is_refused():
    with pytest.raises(ValueError):
        render(compile_plan(world(), None, Options()), "bad name")


# ---- nft takes it --------------------------------------------------------------------------------

@pytest.fixture
def netns() -> Iterator:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    yield from netns_maker("npdr")


def _nft(ns: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _listing(ns: str) -> dict:
    """The kernel's view, without handles and counter values."""
    doc = json.loads(_nft(ns, "-j", "list", "table", "inet", "netpol"))
    out = []
    for obj in doc["nftables"]:
        (kind, body), = obj.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        out.append(json.dumps({kind: body}, sort_keys=True))
    return {"items": sorted(out)}


@kernel
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_nft_loads_text_and_json_alike(netns, name):
    c, opts = scenario(name, hostnet=True)
    plan = compile_plan(c, None, opts)
    a, b = netns(), netns()
    _nft(a, "-f", "-", stdin=render(plan).script())
    _nft(b, "-j", "-f", "-", stdin=json.dumps(to_json(plan)))
    assert _listing(a) == _listing(b)


@kernel
@pytest.mark.parametrize("deny", ["log", "audit"])
def test_nft_loads_deny_actions_and_crowded_namespaces(netns, deny):
    plan = compile_plan(_crowded(), None, Options())
    a, b = netns(), netns()
    _nft(a, "-f", "-", stdin=render(plan, deny=deny).script())
    _nft(b, "-j", "-f", "-", stdin=json.dumps(to_json(plan, deny=deny)))
    assert _listing(a) == _listing(b)


def _selecting_all(n: int) -> Cluster:
    return world(*[policy("x", f"p{i:02d}", {"podSelector": _apart({}, i), "ingress": [{"ports": _ports(("TCP", 1000 + i))}]})
                   for i in range(n)])


def test_chunks_keep_within_the_kernels_nesting_limit():
    """A walk of a full chunk ends CHUNK + 1 chains deep (the default deny after the last policy)."""
    chunk = render_module.CHUNK
    assert max_depth(to_json(compile_plan(_selecting_all(chunk), None, Options()))) == chunk + 1 <= 15
    assert max_depth(to_json(compile_plan(_selecting_all(3 * chunk + 1), None, Options()))) <= chunk + 1


@kernel
def test_nft_refuses_walks_16_deep(netns):
    """The limit the chunks keep to is real: one chunk of 15 would be refused."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render_module, "CHUNK", 15)
        plan = compile_plan(_selecting_all(15), None, Options())
        assert max_depth(to_json(plan)) == 16
        script = render(plan).script()
    proc = subprocess.run(["ip", "netns", "exec", netns(), "nft", "-f", "-"], input=script,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Too many links" in proc.stderr
    _nft(netns(), "-f", "-", stdin=render(compile_plan(_selecting_all(15), None, Options())).script())


@pytest.fixture
def lab() -> Iterator:
    made: list[str] = []

    def up(c: Cluster, keys: tuple[str, ...], ports: tuple[int, ...]):
        prefix = f"npd{uuid.uuid4().hex[:6]}"
        made.append(prefix)
        pods = [p for p in lab_pods(c) if p.key in keys]
        return topology.up(hosts_for(pods), prefix, [(p, proto) for p in ports for proto in ("TCP", "UDP")])

    try:
        yield up
    finally:
        for prefix in made:
            topology.down(prefix)


@kernel
def test_deny_actions_with_real_packets(lab):
    """log drops like drop; audit lets everything through and counts what drop would have dropped."""
    c, opts = scenario("ingress-from-ns-y-tcp80")
    state = lab(c, ("x/a", "y/a", "z/a"), (80,))
    plan = compile_plan(c, None, opts)
    enforcer = Enforcer(state.node_netns)
    allowed, denied = Probe("y/a", "x/a", 80, "TCP"), Probe("z/a", "x/a", 80, "UDP")
    for deny, passes in (("log", False), ("audit", True), ("drop", False)):
        enforcer.apply(render(plan, deny=deny))
        assert probe(state, [allowed, denied], timeout=0.5) == {allowed: True, denied: passes}, deny
        counters = enforcer.counters("netpol")
        assert counters["x/web ingress[0]"][0] > 0
        if deny == "audit":
            assert counters["x default deny ingress audit"][0] > 0
            assert "x default deny ingress" not in counters
        else:
            assert counters["x default deny ingress"][0] > 0


@kernel
def test_nft_loads_bundled_example_per_node(netns):
    from support.paths import POLICIES

    from netpol.k8s import load_cluster
    c = load_cluster([str(POLICIES)])
    for node in (None, "node-a", "node-b", "elsewhere"):
        ns = netns()
        _nft(ns, "-c", "-f", "-", stdin=render(compile_plan(c, node, Options())).script())
        _nft(ns, "-f", "-", stdin=render(compile_plan(c, node, Options())).script())
        assert "tenant3/db-access ingress[0]" in _nft(ns, "list", "table", "inet", "netpol")

