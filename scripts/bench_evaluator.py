#!/usr/bin/env python3
"""Benchmark the evaluator: load, the full one-port matrix, point queries, and the naive per-pair `decide`.

    .venv/bin/python scripts/bench_evaluator.py [--sizes small,medium,large] [--seed 7] [--sample 3000]
                                                [--cnps 100]

Sizes: small 1k pods / 100 policies, medium 10k / 1k, large 30k / 3k. The synthetic cluster has one
namespace per 10 policies (labels team, env), 100 pods per namespace in 10 apps of 5 tiers (db pods carry a
unique StatefulSet pod-name label), named container ports, ~10% dual-stack pods, a few host-network pods and
one CronJob per namespace. Each namespace has 10 policies: default deny, named-port ingress, podSelector,
matchExpressions (In, NotIn, Exists, DoesNotExist), namespaceSelector AND podSelector, ipBlock with except,
endPort ranges, UDP/SCTP and egress. The naive baseline runs `decide` on sampled pairs and extrapolates to
all n*n pairs; the sampled verdicts are also checked against the matrix.

With `--cnps N` (default 100) the same cluster is run again with N ClusterNetworkPolicies (Admin tenant
guardrails with Pass, Deny and Accept, networks and nodes peers, named ports, tied priorities; Baseline
defaults) and a few Nodes: the tiered matrix is timed against the plain one in the same process, and
sampled pairs are checked against `decide`.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netpol.evaluate.decide import decide  # noqa: E402
from netpol.evaluate.matrix import Engine, PortQuery, resolve_port  # noqa: E402
from netpol.evaluate.resolve import Endpoint  # noqa: E402
from netpol.k8s.parse import build_cluster  # noqa: E402
from netpol.k8s.source import RawObject, Source  # noqa: E402

SIZES = {"small": (1_000, 100), "medium": (10_000, 1_000), "large": (30_000, 3_000)}
TIERS = ("web", "api", "db", "cache", "worker")
PORTS = {"web": [("http", 8080, "TCP"), ("metrics", 9090, "TCP")],
         "api": [("http", 8080, "TCP"), ("grpc", 50051, "TCP"), ("metrics", 9090, "TCP")],
         "db": [("postgres", 5432, "TCP")],
         "cache": [("redis", 6379, "TCP"), ("gossip", 7946, "UDP")],
         "worker": [("metrics", 9090, "TCP"), ("sig", 9000, "SCTP")]}
NAME = "kubernetes.io/metadata.name"


def _ns_name(k: int) -> str:
    return f"ns-{k:04d}"


def _pod(ns: str, name: str, labels: dict, ports: list, ips: list[str], host: bool) -> dict:
    spec: dict = {"containers": [{"name": "main", "ports": [
        {"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]}]}
    if host:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec, "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}}


def _pods(k: int, per_ns: int, rnd: random.Random, counter: list[int]) -> list[dict]:
    ns, out = _ns_name(k), []
    for i in range(per_ns - 1):
        app = i % 10
        tier = TIERS[app % 5]
        labels = {"app": f"app-{app}", "tier": tier, "pod-template-hash": f"h{k}-{app}"}
        if rnd.random() < 0.2:
            labels["track"] = "canary"
        if tier == "db":
            labels["statefulset.kubernetes.io/pod-name"] = f"db-{k}-{i}"
        n = counter[0] = counter[0] + 1
        v4 = f"198.18.{n >> 8 & 0xff}.{n & 0xff}" if n < 65536 else f"198.19.{n >> 8 & 0xff}.{n & 0xff}"
        ips = [v4]
        if rnd.random() < 0.1:
            ips = [f"2001:db8::{n:x}", v4] if rnd.random() < 0.5 else [v4, f"2001:db8::{n:x}"]
        host = rnd.random() < 0.01
        if host:
            ips = [f"198.19.255.{n % 250 + 1}"]
        out.append(_pod(ns, f"{tier}-{app}-{i}", labels, PORTS[tier], ips, host))
    out.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup", "namespace": ns},
                "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "backup"}},
                                                               "spec": {"containers": [{"name": "b"}]}}}}}})
    return out


def _policies(k: int, n_ns: int) -> list[dict]:
    ns, team = _ns_name(k), f"team-{k % 7}"
    near = _ns_name((k + 1) % n_ns)
    block = f"198.18.{k % 256}.0/24"
    specs = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "web-from-anywhere": {"podSelector": {"matchLabels": {"tier": "web"}},
                              "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]},
        "api-from-web": {"podSelector": {"matchLabels": {"tier": "api"}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
                                      "ports": [{"port": "http"}, {"port": "grpc"}]}]},
        "db-from-api": {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
                        "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["api", "worker"]},
                            {"key": "track", "operator": "DoesNotExist"}]}}], "ports": [{"port": 5432}]}]},
        "cache-from-team": {"podSelector": {"matchLabels": {"tier": "cache"}},
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}},
                                                   "podSelector": {"matchExpressions": [
                                                       {"key": "tier", "operator": "NotIn", "values": ["db"]}]}}],
                                         "ports": [{"port": "redis"}, {"protocol": "UDP", "port": 7946}]}]},
        "db-egress": {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": [block]}}],
                                  "ports": [{"port": 5432}, {"port": 30000, "endPort": 32767}]},
                                 {"to": [{"namespaceSelector": {"matchLabels": {NAME: near}}}],
                                  "ports": [{"protocol": "UDP", "port": 53}]}]},
        "metrics-scrape": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                           "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NAME: _ns_name(0)}},
                                                  "podSelector": {"matchLabels": {"app": "app-0"}}}],
                                        "ports": [{"port": "metrics"}]}]},
        "canary-range": {"podSelector": {"matchLabels": {"track": "canary"}},
                         "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                             {"key": "env", "operator": "In", "values": ["staging", "dev"]}]}}],
                                      "ports": [{"port": 8000, "endPort": 8100}]}]},
        "worker-sctp": {"podSelector": {"matchLabels": {"tier": "worker"}},
                        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "SCTP", "port": "sig"}]},
                                    {"from": [{"ipBlock": {"cidr": "2001:db8::/32"}}]}]},
        "lb-ingress": {"podSelector": {"matchLabels": {"tier": "web"}},
                       "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": [block]}}],
                                    "ports": [{"port": 8080}, {"port": 443}]}]},
    }
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": name, "namespace": ns}, "spec": spec} for name, spec in specs.items()]


def objects(pods: int, policies: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    n_ns = max(1, policies // 10)
    out: list[dict] = []
    counter = [0]
    for k in range(n_ns):
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": _ns_name(k), "labels": {
            "team": f"team-{k % 7}", "env": ("prod", "staging", "dev")[k % 3]}}})
        out += _pods(k, pods // n_ns, rnd, counter)
        out += _policies(k, n_ns)
    return out


def _cnp(name: str, tier: str, priority: int, subject: dict, ingress: list, egress: list) -> dict:
    spec = {"tier": tier, "priority": priority, "subject": subject}
    spec |= ({"ingress": ingress} if ingress else {}) | ({"egress": egress} if egress else {})
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def cluster_policies(count: int, n_ns: int) -> list[dict]:
    """Tenant guardrails, cycling through five shapes (priorities tie every 50)."""
    out = []
    for i in range(count):
        team, ns = {"matchLabels": {"team": f"team-{i % 7}"}}, {"matchLabels": {NAME: _ns_name(i % n_ns)}}
        shape = i % 5
        if shape == 0:  # a tenant talks to itself, never to other tenants
            out.append(_cnp(f"tenant-{i}", "Admin", i % 50, {"namespaces": team},
                            [{"action": "Pass", "from": [{"namespaces": team}]},
                             {"action": "Deny", "from": [{"namespaces": {"matchExpressions": [
                                 {"key": "team", "operator": "Exists"}]}}]}],
                            [{"action": "Deny", "to": [{"networks": ["198.19.0.0/16", "2001:db8:ffff::/48"]}]}]))
        elif shape == 1:  # monitoring scrapes metrics everywhere
            out.append(_cnp(f"monitoring-{i}", "Admin", i % 50, {"namespaces": {}},
                            [{"action": "Accept", "from": [{"pods": {"namespaceSelector": ns, "podSelector": {
                                "matchLabels": {"app": "app-0"}}}}], "protocols": [{"destinationNamedPort": "metrics"}]}],
                            []))
        elif shape == 2:  # databases take no traffic from dev
            out.append(_cnp(f"db-guard-{i}", "Admin", i % 50, {"pods": {"podSelector": {"matchLabels": {"tier": "db"}}}},
                            [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}],
                              "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]}],
                            [{"action": "Accept", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]))
        elif shape == 3:  # the default between environments
            out.append(_cnp(f"env-default-{i}", "Baseline", i % 50, {"namespaces": {"matchLabels": {"env": "prod"}}},
                            [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "staging"}}}]}],
                            [{"action": "Deny", "to": [{"networks": ["198.18.0.0/16"]}],
                              "protocols": [{"udp": {"destinationPort": {"range": {"start": 1000, "end": 2000}}}}]}]))
        else:  # web ports open to the tenant's own namespaces in the baseline
            out.append(_cnp(f"web-baseline-{i}", "Baseline", i % 50, {"pods": {"podSelector": {"matchLabels": {
                "tier": "web"}}}}, [{"action": "Accept", "from": [{"namespaces": team}],
                                     "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8100}}}}]}],
                            []))
    return out


def nodes() -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{k}", "labels": {
        "role": "infra" if k < 3 else "worker"}}, "status": {"addresses": [
            {"type": "InternalIP", "address": f"198.19.255.{k + 1}"}]}} for k in range(10)]


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run_tiers(objs: list[dict], count: int, seed: int, sample: int, plain_s: float) -> dict:
    """The same cluster with `count` ClusterNetworkPolicies: the tiered matrix against the plain one."""
    extra = cluster_policies(count, max(1, sum(o["kind"] == "Namespace" for o in objs))) + nodes()
    raws = [RawObject(o, Source("synthetic", i + 1)) for i, o in enumerate(objs + extra)]
    cluster = build_cluster(raws)
    q = PortQuery(8080)
    start = time.perf_counter()
    engine = Engine(cluster)
    table = engine.table(q)
    bits = table.bits()
    tiered_s = time.perf_counter() - start
    n, rnd = len(engine.pods), np.random.default_rng(seed + 1)
    eps = [Endpoint(pod=p) for p in engine.pods]
    picks = list(zip(rnd.integers(0, n, sample).tolist(), rnd.integers(0, n, sample).tolist(), strict=False))
    want = [decide(cluster, eps[s], eps[d], q.port, q.protocol).allowed for s, d in picks]
    assert [bool(bits[s, d >> 3] & (0x80 >> (d & 7))) for s, d in picks] == want, "tiered matrix and decide disagree"
    return {"cnps": len(cluster.cluster_policies), "tiered": tiered_s, "tier_ratio": tiered_s / plain_s,
            "tier_classes": f"{table.grid.shape[0]}x{table.grid.shape[1]}",
            "tier_allowed": float(np.unpackbits(bits, axis=1, count=n).mean())}


def run(size: str, seed: int, sample: int, cnps: int = 0) -> dict:
    n_pods, n_pol = SIZES[size]
    objs = objects(n_pods, n_pol, seed)
    raws = [RawObject(o, Source("synthetic", i + 1)) for i, o in enumerate(objs)]
    cluster, load_s = _timed(lambda: build_cluster(raws))
    q = PortQuery(8080)
    engine, compile_s = _timed(lambda: Engine(cluster))
    table, table_s = _timed(lambda: engine.table(q))
    bits, bits_s = _timed(table.bits)
    n = len(engine.pods)
    named, named_s = _timed(lambda: engine.table(PortQuery("metrics")).bits())
    rnd = np.random.default_rng(seed)
    src, dst = rnd.integers(0, n, 1_000_000), rnd.integers(0, n, 1_000_000)
    engine.allowed(0, 0, q)  # builds the fast lookup once
    pairs = list(zip(src.tolist(), dst.tolist(), strict=False))
    allowed = engine.allowed
    _, point_s = _timed(lambda: [allowed(s, d, q) for s, d in pairs])
    _, batch_s = _timed(lambda: engine.allowed_many(src, dst, q))
    # the naive baseline: decide on sampled pairs, extrapolated to n*n; check they agree with the matrix
    eps = [Endpoint(pod=p) for p in engine.pods]
    picks = list(zip(rnd.integers(0, n, sample).tolist(), rnd.integers(0, n, sample).tolist(), strict=False))
    start = time.perf_counter()
    want = [decide(cluster, eps[s], eps[d], q.port, q.protocol).allowed for s, d in picks]
    naive_pair = (time.perf_counter() - start) / sample
    got = [bool(bits[s, d >> 3] & (0x80 >> (d & 7))) for s, d in picks]
    named_q = PortQuery("metrics")
    for s, d in picks[:500]:
        port = resolve_port(engine.pods[d], named_q)
        ref = port is not None and decide(cluster, eps[s], eps[d], port, "TCP").allowed
        assert engine.allowed(s, d, named_q) == ref, (engine.keys[s], engine.keys[d])
    assert got == want, "matrix and decide disagree"
    matrix_s = compile_s + table_s + bits_s
    tiers = run_tiers(objs, cnps, seed, sample, matrix_s) if cnps else {}
    return tiers | {"size": size, "pods": n, "policies": len(cluster.policies), "units": engine.n_units,
            "classes": f"{table.grid.shape[0]}x{table.grid.shape[1]}", "load": load_s, "compile": compile_s,
            "matrix": matrix_s, "named": named_s, "allowed": float(np.unpackbits(bits, axis=1, count=n).mean()),
            "point": 1_000_000 / point_s, "batch": 1_000_000 / batch_s, "naive": naive_pair * n * n,
            "ratio": naive_pair * n * n / matrix_s}


def table_md(rows: list[dict]) -> str:
    head = ("| size | pods | policies | units | classes (src x dst) | load (build_cluster) | compile | "
            "matrix TCP/8080 (incl. compile) | + named port | allowed | point queries/s | batched/s | "
            "naive decide (extrapolated) | speed-up |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['size']} | {r['pods']:,} | {r['policies']:,} | {r['units']:,} | {r['classes']} | "
                     f"{r['load']:.2f} s | {r['compile']:.2f} s | {r['matrix']:.2f} s | {r['named']:.2f} s | "
                     f"{r['allowed']:.1%} | {r['point'] / 1e6:.1f} M | {r['batch'] / 1e6:.0f} M | "
                     f"{r['naive']:,.0f} s | {r['ratio']:,.0f}x |")
    tiered = [r for r in rows if r.get("cnps")]
    if tiered:
        lines += ["", "| size | pods | policies | ClusterNetworkPolicies | classes (src x dst) | "
                      "matrix TCP/8080 with tiers (incl. compile) | ÷ without tiers | allowed |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['pods']:,} | {r['policies']:,} | {r['cnps']} | {r['tier_classes']} | "
                  f"{r['tiered']:.2f} s | {r['tier_ratio']:.2f} | {r['tier_allowed']:.1%} |" for r in tiered]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=int, default=3000, help="pairs for the naive baseline")
    parser.add_argument("--cnps", type=int, default=100, help="ClusterNetworkPolicies for the tiered run (0: none)")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        rows.append(run(size.strip(), args.seed, args.sample, args.cnps))
        print(f"{size}: done", file=sys.stderr, flush=True)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}\n")
    print(table_md(rows))


if __name__ == "__main__":
    main()
