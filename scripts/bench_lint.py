#!/usr/bin/env python3
"""Benchmark `netpol lint`: a synthetic cluster of 1,000 policies over 10,000 pods, time per check.

    .venv/bin/python scripts/bench_lint.py [--namespaces 50] [--apps 20] [--replicas 10] [--yaml] [--md]

Objects are built in memory (the YAML reader is timed separately with --yaml, as it dominates otherwise).
The cluster: N namespaces in 10 tenants (label team), each with `apps` Deployment-like groups of
`replicas` pods, a default deny, an allow-DNS policy and one policy per app (ingress from a tier of the
own namespace or a tenant's namespaces, egress to the databases, some ipBlocks), with a few planted
mistakes so that every check has work to report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netpol.k8s.source import RawObject, Source  # noqa: E402
from netpol.lint.checks import all_checks  # noqa: E402
from netpol.lint.config import Settings  # noqa: E402
from netpol.lint.engine import run_checks  # noqa: E402
from netpol.lint.inputs import Input, build, load  # noqa: E402

TIERS = ("web", "api", "db")
NAME = "kubernetes.io/metadata.name"


def _meta(name: str, ns: str | None = None, **labels: str) -> dict:
    meta: dict = {"name": name, "labels": labels}
    if ns:
        meta["namespace"] = ns
    return meta


def _pod(ns: str, name: str, labels: dict, ip: str, ports: list) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": ports}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def _policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def _app_policy(k: int, j: int, n_ns: int) -> dict:
    ns, t = f"ns-{k:02d}", k % 10
    tier = TIERS[j % 3]
    sel = {"matchLabels": {"app": f"app-{j}"}}
    if tier == "db":
        ingress = [{"from": [{"podSelector": {"matchLabels": {"tier": "api"}}}], "ports": [{"port": "postgres"}]}]
    elif tier == "api":
        ingress = [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}},
                             {"namespaceSelector": {"matchLabels": {"team": f"team-{t}"}},
                              "podSelector": {"matchLabels": {"tier": "web"}}}],
                    "ports": [{"port": "http"}, {"port": 9090}]}]
    else:
        ingress = [{"from": [{"namespaceSelector": {"matchLabels": {NAME: f"ns-{(k + 1) % n_ns:02d}"}}}],
                    "ports": [{"port": "http"}]},
                   {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["198.18.0.0/15"]}}],
                    "ports": [{"port": 8080}]}]
    egress = [{"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]}]
    if tier == "api":  # reaches the web pods of the previous namespace, another tenant's, which admit it
        egress.append({"to": [{"namespaceSelector": {"matchLabels": {NAME: f"ns-{(k - 1) % n_ns:02d}"}},
                               "podSelector": {"matchLabels": {"tier": "web"}}}], "ports": [{"port": 8080}]})
    if j % 7 == 0:  # planted: split peers, a redundant rule, a misspelt named port, an ipBlock over pods
        ingress.append({"from": [{"namespaceSelector": {"matchLabels": {"team": f"team-{t}"}}},
                                 {"podSelector": {"matchLabels": {"tier": "web"}}}]})
        egress.append({"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]})
        egress.append({"to": [{"ipBlock": {"cidr": "198.18.0.0/16"}}], "ports": [{"port": "https"}]})
    return _policy(ns, f"app-{j}", {"podSelector": sel, "policyTypes": ["Ingress", "Egress"],
                                    "ingress": ingress, "egress": egress})


def objects(n_ns: int, apps: int, replicas: int) -> list[dict]:
    out: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta("kube-system")}]
    out += [_pod("kube-system", f"coredns-{i}", {"k8s-app": "kube-dns"}, f"198.19.255.{i + 1}",
                 [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]) for i in range(2)]
    n = 0
    for k in range(n_ns):
        ns, t = f"ns-{k:02d}", k % 10
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, team=f"team-{t}")})
        for j in range(apps):
            tier = TIERS[j % 3]
            ports = [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]
            if tier == "db":
                ports.append({"name": "postgres", "containerPort": 5432})
            for r in range(replicas):
                ip = f"198.18.{n // 250}.{n % 250 + 1}"
                out.append(_pod(ns, f"app-{j}-{r}", {"app": f"app-{j}", "tier": tier, "v": f"v{r % 2}"}, ip, ports))
                n += 1
        out.append(_policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
        out.append(_policy(ns, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {NAME: "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}))
        out += [_app_policy(k, j, n_ns) for j in range(apps - 2)]
    return out


def _yaml_load(objs: list[dict]) -> float:
    import yaml
    with tempfile.TemporaryDirectory(prefix="netpol-bench-") as tmp:
        path = os.path.join(tmp, "cluster.yaml")
        with open(path, "w") as fh:
            yaml.dump_all(objs, fh, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
        t0 = time.perf_counter()
        load([path])
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--apps", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--yaml", action="store_true", help="also time reading the same objects from a YAML file")
    ap.add_argument("--md", action="store_true", help="print a Markdown table")
    args = ap.parse_args()

    objs = objects(args.namespaces, args.apps, args.replicas)
    raws = [RawObject(o, Source("<bench>", 0)) for o in objs]
    t0 = time.perf_counter()
    cluster, good, errors, duplicates = build(raws)
    t_build = time.perf_counter() - t0
    inp = Input(cluster, good, errors, duplicates)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    findings = run_checks(inp, Settings(select=("ALL",), tenant_label="team"), timings)
    t_lint = time.perf_counter() - t0

    checks = all_checks()
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    rows = [("model (build_cluster)", t_build, "")] + [("index", timings["index"], "")]
    rows += [(f"{c} {checks[c].name}", timings[c], str(counts.get(c, 0))) for c in checks if c in timings]
    rows.append(("**lint total** (index + checks)", t_lint, str(len(findings))))
    print(f"{len(cluster.policies)} policies, {len(cluster.pods)} pods, {len(cluster.namespaces)} namespaces; "
          f"python {sys.version.split()[0]}")
    if args.md:
        print("\n| stage | seconds | findings |\n|---|---:|---:|")
        for name, secs, n in rows:
            print(f"| {name} | {secs:.3f} | {n} |")
    else:
        for name, secs, n in rows:
            print(f"{name:44s} {secs:8.3f} s  {n}")
    if args.yaml:
        print(f"reading the same objects from one YAML file (netpol loader): {_yaml_load(objs):.1f} s")


if __name__ == "__main__":
    main()
