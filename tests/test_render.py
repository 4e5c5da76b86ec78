"""render: the table's shape, its JSON twin, and a packet walk through it that must agree with decide.

`Walk` interprets the rendered libnftables JSON the way the kernel does for a new connection (no
conntrack entry yet), so every scenario can be checked against the evaluator on every pair, port,
protocol and family in milliseconds. The kernel tests (test_enforce_kernel) prove the walk right
with real packets on the same scenarios; here `kernel`-marked tests only check that nft takes
each rendered table and its JSON, into namespaces made here (prefix `npe`).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from builders import cluster, container_ports, e2e_objects, namespace, pod, policy
from netpol.compile import compile_plan
from netpol.decide import decide
from netpol.model import Cluster, Pod
from netpol.render import render, to_json
from netpol.resolve import Endpoint, Options
from netpol.ruleset import Ruleset

kernel = pytest.mark.kernel
PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132, "TCP": 6, "UDP": 17, "SCTP": 132}
EXT = ("198.18.9.9", "2001:db8:9::9")  # an address no pod holds


# ---- scenarios (shared with test_enforce_kernel) ------------------------------------------------

def _sel(**labels: str) -> dict:
    return {"matchLabels": labels}


def world(*policies: dict, ipv6_primary: bool = False, hostnet: bool = False) -> Cluster:
    """The e2e world, dual-stack, plus pods whose port names mean different numbers."""
    extra = [pod("x", "d", {"pod": "d"}, ("198.18.1.4", "2001:db8:1::4"), container_ports((80, "TCP", "web"))),
             pod("z", "d", {"pod": "d"}, ("198.18.3.4", "2001:db8:3::4"),
                 container_ports((81, "TCP", "web"), (80, "UDP", "dns")))]
    if ipv6_primary:
        extra = [pod("x", "d", {"pod": "d"}, ("2001:db8:1::4", "198.18.1.4"),
                     container_ports((80, "TCP", "web")))]
    if hostnet:
        extra.append(pod("kube-system", "agent", {"pod": "a"}, ("198.18.200.1",),
                         container_ports((80, "TCP", "web"), (81, "UDP", "serve-81-udp")),
                         host_network=True, node="node-h"))
    return cluster(*e2e_objects(dual_stack=True, ipv6_primary=ipv6_primary),
                   namespace("kube-system"), *extra, *policies)


def _ports(*items: tuple) -> list[dict]:
    out = []
    for item in items:
        entry: dict = {"protocol": item[0]}
        if len(item) > 1 and item[1] is not None:
            entry["port"] = item[1]
        if len(item) > 2:
            entry["endPort"] = item[2]
        out.append(entry)
    return out


SCENARIOS: dict[str, tuple[list[dict], Options]] = {
    "deny-ingress-x": ([policy("x", "deny", {"podSelector": {}})], Options()),
    "ingress-from-ns-y-tcp80": ([policy("x", "web", {
        "podSelector": _sel(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": _sel(ns="y")}], "ports": _ports(("TCP", 80))}]})],
        Options()),
    "ingress-ns-and-pod": ([policy("x", "and", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": _sel(ns="y"), "podSelector": _sel(pod="b")},
                              {"podSelector": _sel(pod="c")}]}]})], Options()),
    "egress-udp81-and-deny": ([
        policy("x", "out", {"podSelector": {}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"podSelector": _sel(pod="b")}], "ports": _ports(("UDP", 81))},
                                       {"to": [{"namespaceSelector": _sel(ns="z")}],
                                        "ports": _ports(("TCP", 80))}]}),
        policy("y", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], Options()),
    "ipblock-except": ([
        policy("x", "blk", {"podSelector": _sel(pod="a"), "ingress": [{"from": [{"ipBlock": {
            "cidr": "198.18.0.0/15", "except": ["198.18.2.0/24", "198.18.3.2/32"]}}]}]}),
        policy("y", "blk6", {"podSelector": _sel(pod="b"), "policyTypes": ["Egress"], "egress": [{"to": [
            {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:3::/48"]}},
            {"ipBlock": {"cidr": "198.18.1.0/24", "except": ["198.18.1.2/31"]}},
            {"ipBlock": {"cidr": "198.18.1.0/25"}}]}]})], Options()),
    "named-ports": ([
        policy("x", "named-in", {"podSelector": {}, "ingress": [
            {"ports": _ports(("UDP", "serve-81-udp"), ("TCP", "web"))},
            {"from": [{"namespaceSelector": _sel(ns="z")}], "ports": _ports(("TCP", "serve-80-tcp"))}]}),
        policy("y", "named-out", {"podSelector": _sel(pod="a"), "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {}}], "ports": _ports(("TCP", "web"), ("UDP", "dns"))},
            {"to": [{"ipBlock": {"cidr": "198.18.1.0/24"}}], "ports": _ports(("UDP", "serve-80-udp"))},
            {"ports": _ports(("TCP", "serve-81-udp"))}]})],  # a name the pods use for UDP only
        Options()),
    "endport-and-protocol-only": ([
        policy("y", "range", {"podSelector": {}, "ingress": [
            {"from": [{"namespaceSelector": _sel(ns="x")}], "ports": _ports(("TCP", 80, 81))},
            {"from": [{"namespaceSelector": _sel(ns="z")}], "ports": _ports(("UDP", 81, 90), ("UDP", 79, 80))},
            {"from": [{"podSelector": _sel(pod="c")}], "ports": _ports(("UDP",))}]})], Options()),
    "ipv6-block-only": ([policy("z", "v6", {"podSelector": _sel(pod="c"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "2001:db8:1::/48"}}]}]})], Options()),
    "ipblock-pods-false": ([
        policy("x", "blk", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/15"}},
                                                  {"podSelector": _sel(pod="b")}]}],
                            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}},
                                               {"ipBlock": {"cidr": "::/0"}}]}]})],
        Options(ipblock_pods=False)),
    "empty-rules-and-types": ([
        policy("x", "all-in", {"podSelector": _sel(pod="a"), "ingress": [{}]}),
        policy("x", "none-out", {"podSelector": _sel(pod="a"), "policyTypes": ["Egress"]}),
        policy("y", "egress-only", {"podSelector": {}, "policyTypes": ["Egress"],
                                    "ingress": [{"from": [{"podSelector": _sel(pod="zzz")}]}],
                                    "egress": [{"to": [{"namespaceSelector": _sel(ns="x")}]}]}),
        policy("z", "two", {"podSelector": _sel(pod="a"), "ingress": [{"from": [{"podSelector": {}}]}]}),
        policy("z", "three", {"podSelector": {}, "ingress": [{"ports": _ports(("TCP", 81))}]})], Options()),
}


def scenario(name: str, **kw) -> tuple[Cluster, Options]:
    policies, opts = SCENARIOS[name]
    return world(*policies, **kw), opts


# ---- a packet walk through the rendered JSON ----------------------------------------------------

def _atom(value: Any) -> tuple[int, int]:
    if isinstance(value, dict) and "prefix" in value:
        net = ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")
        return int(net.network_address), int(net.broadcast_address)
    if isinstance(value, dict) and "range" in value:
        return _atom(value["range"][0])[0], _atom(value["range"][1])[1]
    if isinstance(value, int):
        return value, value
    if value in PROTO_NUM:
        return PROTO_NUM[value], PROTO_NUM[value]
    n = int(ipaddress.ip_address(value))
    return n, n


class Walk:
    """The forward hook of one rendered table, for the first packet of a connection."""

    def __init__(self, doc: dict) -> None:
        self.sets: dict[str, list[tuple[list[tuple[int, int]], Any]]] = {}
        self.chains: dict[str, list[list[dict]]] = {}
        for obj in doc["nftables"]:
            (kind, body), = obj.items()
            if kind in ("set", "map"):
                self.sets[body["name"]] = [self._elem(e) for e in body.get("elem", [])]
            elif kind == "chain":
                self.chains[body["name"]] = []
            elif kind == "rule":
                self.chains[body["chain"]].append(body["expr"])

    @staticmethod
    def _elem(e: Any) -> tuple[list[tuple[int, int]], Any]:
        data = None
        if isinstance(e, list):
            e, data = e
        fields = e["concat"] if isinstance(e, dict) and "concat" in e else [e]
        return [_atom(f) for f in fields], data

    def _value(self, expr: dict, pkt: dict) -> Any:
        if "concat" in expr:
            parts = [self._value(x, pkt) for x in expr["concat"]]
            return None if None in parts else parts
        if "meta" in expr:
            return pkt["proto"]
        p = expr["payload"]
        if p["protocol"] == "th":
            return pkt["port"]
        if p["protocol"] != {4: "ip", 6: "ip6"}[pkt["version"]]:
            return None  # an ip6 match never matches an IPv4 packet, and vice versa
        return pkt["src" if p["field"] == "saddr" else "dst"]

    def _lookup(self, name: str, value: Any) -> Any:
        value = value if isinstance(value, list) else [value]
        for fields, data in self.sets[name]:
            if all(lo <= v <= hi for v, (lo, hi) in zip(value, fields)):
                return data if data is not None else True
        return None

    def _match(self, m: dict, pkt: dict) -> bool:
        left = m["left"]
        if "ct" in left:
            return False  # a new, valid connection
        if left.get("payload", {}).get("protocol") == "icmpv6":
            return False
        value = self._value(left, pkt)
        return value is not None and self._lookup(m["right"][1:], value) is not None

    def chain(self, name: str, pkt: dict) -> str | None:
        for exprs in self.chains[name]:
            for e in exprs:
                if "match" in e:
                    if not self._match(e["match"], pkt):
                        break
                elif "vmap" in e:
                    value = self._value(e["vmap"]["key"], pkt)
                    target = None if value is None else self._lookup(e["vmap"]["data"][1:], value)
                    if target is None:
                        break
                    verdict = self.chain(target["jump"]["target"], pkt)
                    if verdict is not None:
                        return verdict
                    break
                elif "counter" in e:
                    continue
                else:
                    (word, _), = e.items()
                    return None if word == "return" else word
        return None

    def allows(self, pkt: dict) -> bool:
        return self.chain("forward", pkt) != "drop"


def _ep(c: Cluster, p: Pod | None, ip: str | None) -> Endpoint:
    if ip is None:
        return Endpoint(pod=p)
    addr = ipaddress.ip_address(ip)
    return Endpoint(pod=c.by_address.get(addr), ip=addr)


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
        if (sp is not None and sp is dp) or (sp is None and dp is None):
            continue
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
                    got = all(walks[n].allows(pkt) for n in on)
                else:
                    got = walks[node].allows(pkt)
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
        if "vmap" not in line:
            assert " counter " in f" {line} "
    assert any('comment "x/named-in ingress[1]"' in line for line in _rules(rs))
    assert any(line.endswith('counter drop comment "y default deny egress"') for line in _rules(rs))
    assert any(line.endswith('counter return comment "y/named-out egress[0]"') for line in _rules(rs))


def test_base_chains_order_and_dispatch():
    rs = render(compile_plan(world(), None, Options()))
    text = rs.skeleton
    fwd = text[text.index("chain forward"):text.index("chain input")]
    order = ["ct state established,related", "ct state invalid", "nd-neighbor-solicit", "ip saddr vmap @egress4",
             "ip6 saddr vmap @egress6", "ip daddr vmap @ingress4", "ip6 daddr vmap @ingress6"]
    assert [fwd.index(o) for o in order] == sorted(fwd.index(o) for o in order)
    inp = text[text.index("chain input"):text.index("chain output")]
    assert "vmap" not in inp and "accept" in inp  # traffic to the node itself is always allowed
    assert "hook output" in text


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
    made: list[str] = []

    def make() -> str:
        name = f"npe-r{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


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
def test_nft_loads_bundled_example_per_node(netns):
    from netpol.inputs import load_cluster
    from conftest import POLICIES
    c = load_cluster([str(POLICIES)])
    for node in (None, "node-a", "node-b", "elsewhere"):
        ns = netns()
        _nft(ns, "-c", "-f", "-", stdin=render(compile_plan(c, node, Options())).script())
        _nft(ns, "-f", "-", stdin=render(compile_plan(c, node, Options())).script())
        assert "tenant3/db-access ingress[0]" in _nft(ns, "list", "table", "inet", "netpol")

