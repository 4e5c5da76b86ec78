"""Random clusters that churn as a watch would deliver them (incremental compile and render tests)."""

from __future__ import annotations

import random

from netpol.k8s.model import Cluster, Pod
from support.builders import cluster_sharing, container_ports, pod, policy

APPS, TIERS = ("a", "b", "c"), ("web", "db")


def _selector(rng: random.Random) -> dict:
    return rng.choice([{}, {"matchLabels": {"app": rng.choice(APPS)}},
                       {"matchExpressions": [{"key": "tier", "operator": rng.choice(["In", "NotIn"]),
                                              "values": [rng.choice(TIERS)]}]},
                       {"matchExpressions": [{"key": "tier", "operator": rng.choice(["Exists", "DoesNotExist"])}]},
                       {"matchLabels": {"app": rng.choice(APPS), "tier": rng.choice(TIERS)}}])


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
