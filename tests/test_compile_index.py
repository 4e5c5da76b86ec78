"""compile's label index against brute force: on random clusters, every selected set, peer set,
named port and isolation the plan holds equals what resolve's own functions say pod by pod."""

from __future__ import annotations

import random

import pytest
from support.builders import cluster, container_ports, namespace, pod, policy
from support.churn import APPS, TIERS, _selector

from netpol.evaluate.resolve import Endpoint, peer_matches, selects
from netpol.k8s.model import DIRECTIONS, Cluster, Options
from netpol.nft.plan import FAMILIES, NamedPort, compile_plan
from netpol.spans import merge


def _peer(rng: random.Random) -> dict:
    kind = rng.randrange(3)
    if kind == 0:
        return {"podSelector": _selector(rng)}
    if kind == 1:
        return {"namespaceSelector": rng.choice([{}, {"matchLabels": {"team": rng.choice("tu")}}])}
    return {"namespaceSelector": {"matchLabels": {"team": rng.choice("tu")}}, "podSelector": _selector(rng)}


def _random_cluster(seed: int) -> Cluster:
    rng = random.Random(seed)
    objects = [namespace(f"n{i}", team=rng.choice("tu")) for i in range(3)]
    for i in range(24):
        labels = {"app": rng.choice(APPS)} | ({"tier": rng.choice(TIERS)} if rng.random() < 0.7 else {})
        ips = (f"198.18.{i // 7}.{i * 3 % 250 + 1}",) + ((f"2001:db8::{i + 1:x}",) if i % 3 == 0 else ())
        objects.append(pod(f"n{rng.randrange(3)}", f"p{i}", labels, ips if i % 11 else (),
                           container_ports((rng.choice((80, 81)), "TCP", "web"), (53, "UDP", "dns")),
                           host_network=i % 9 == 4, node=rng.choice(("node-1", "node-2"))))
    for j in range(10):
        rules = [{"from" if d == "ingress" else "to": [_peer(rng) for _ in range(rng.randrange(1, 3))],
                  "ports": rng.choice([[], [{"port": "web"}], [{"port": "dns", "protocol": "UDP"}, {"port": 80}]])}
                 for d in ("ingress", "egress") for _ in range(rng.randrange(0, 2))]
        spec = {"podSelector": _selector(rng), "policyTypes": ["Ingress", "Egress"],
                "ingress": [r for r in rules if "from" in r], "egress": [r for r in rules if "to" in r]}
        objects.append(policy(f"n{j % 3}", f"np{j}", spec))
    return cluster(*objects)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("node", [None, "node-1"])
def test_plan_equals_brute_force(seed: int, node: str | None) -> None:
    c, opts = _random_cluster(seed), Options()
    plan = compile_plan(c, node, opts)
    real = [p for p in c.pods if p.kind == "Pod" and p.ips]
    local = [p for p in real if not p.host_network and (node is None or p.node_name == node)]
    by_key = {pol.key: pol for pol in c.policies}
    for planned in plan.policies:
        pol = by_key[planned.key]
        chosen = [p for p in local if selects(pol, p)]
        for v in FAMILIES:
            assert planned.selected[v] == tuple(sorted({a for p in chosen for a in p.addresses if a.version == v}))
        for d in planned.directions:
            for r, rule in zip(planned.rules(d), pol.rules(d), strict=False):
                if rule.peers:
                    matched = [p for p in real if any(peer_matches(c, pol, peer, Endpoint(pod=p), None, opts)
                                                      for peer in rule.peers)]
                    for v in FAMILIES:
                        assert r.peers[v] == merge((int(a), int(a)) for p in matched for a in p.addresses
                                                   if a.version == v), (planned.key, d, r.index)
                names = [e for e in rule.ports if isinstance(e.port, str)]
                if names:  # a named port means what the destination pod calls it
                    targets = chosen if d == "ingress" else real
                    want = {v: set() for v in FAMILIES}
                    for p in targets:
                        for a in p.addresses:
                            if r.peers is not None and d == "egress" and not any(
                                    lo <= int(a) <= hi for lo, hi in r.peers[a.version]):
                                continue
                            want[a.version] |= {NamedPort(a, e.protocol, cp.port) for e in names
                                                for cp in p.named_port(e.port) if cp.protocol == e.protocol}
                    assert {v: set(r.named[v]) for v in FAMILIES} == want
    for d in DIRECTIONS:
        isolated = {a: p.namespace for p in local for a in p.addresses
                    if any(pol.affects(d) and selects(pol, p) for pol in c.policies)}
        assert dict(plan.isolated[d]) == isolated
