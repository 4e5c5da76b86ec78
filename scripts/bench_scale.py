#!/usr/bin/env python3
"""Benchmark the big outputs: workload views, diff and the pair matrix on a synthetic 10k-pod / 1k-policy
cluster, each command run through the CLI in its own process under a memory cap.

    .venv/bin/python scripts/bench_scale.py [--pods 10000] [--policies 1000] [--cap-gb 2] [--seed 7]

Two shapes of the same cluster (scripts/bench_evaluator.py's generator): bare pods (every pod its own
workload) and Deployments (the pods' templates: about one per app and namespace). Each command writes
to /dev/null; the table shows wall time, peak memory (the child's max RSS) and output size. A command
that would pass the cap fails with MemoryError instead of taking the machine down, and the table says so.
The diff compares the cluster with itself minus one policy in ten namespaces; 200 Nodes (a tenth shared,
the rest in the seven teams' pools, a few without their taint) give `netpol tenants` its partitions.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_evaluator import PORTS, objects  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def deployments(objs: list[dict]) -> list[dict]:
    """The pods as the Deployments they came from: one per namespace and app label."""
    out, seen = [], set()
    for o in objs:
        if o["kind"] != "Pod":
            out.append(o)
            continue
        meta = o["metadata"]
        labels = {k: v for k, v in meta["labels"].items() if k in ("app", "tier", "pod-template-hash")}
        key = (meta["namespace"], labels["app"])
        if key in seen:
            continue
        seen.add(key)
        ports = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in PORTS[labels["tier"]]]
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": labels["app"], "namespace": meta["namespace"]},
                    "spec": {"template": {"metadata": {"labels": labels},
                                          "spec": {"containers": [{"name": "main", "ports": ports}]}}}})
    return out


def changed(objs: list[dict]) -> list[dict]:
    """A pull request: the `web-from-anywhere` policy removed in every tenth namespace."""
    out = []
    for o in objs:
        meta = o.get("metadata", {})
        if o["kind"] == "NetworkPolicy" and meta["name"] == "web-from-anywhere" and meta["namespace"].endswith("0"):
            continue
        out.append(copy.deepcopy(o))
    return out


def partitions(count: int = 200) -> list[dict]:
    """Nodes: a tenth shared, the rest in pools of the seven teams (labelled and tainted for them)."""
    out = []
    for k in range(count):
        team = None if k < count // 10 else f"team-{k % 7}"
        meta: dict = {"name": f"node-{k:03d}", "labels": {"kubernetes.io/hostname": f"node-{k:03d}"}}
        spec: dict = {}
        if team:
            meta["labels"]["team"] = team
            if k % 50:  # a few tenant nodes without their taint
                spec["taints"] = [{"key": "team", "value": team, "effect": "NoSchedule"}]
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec,
                    "status": {"addresses": [{"type": "InternalIP", "address": f"198.19.{k // 250}.{k % 250 + 1}"}]}})
    return out


def write(path: Path, objs: list[dict]) -> None:
    with path.open("w") as f:  # JSON documents are YAML: one per line, fast to write
        for o in objs:
            f.write("---\n" + json.dumps(o) + "\n")


def run(args: list[str], cap_gb: float) -> dict:
    """One CLI run in a child process under an address-space cap: seconds, peak MB, output MB, exit code."""
    cap = int(cap_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", "from netpol.cli import main; main()", *args], stdout=out, stderr=err,
                                preexec_fn=limit, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest so far
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        size = out.tell()
        err.seek(0)
        last = err.read().decode(errors="replace").strip().splitlines()[-1:]
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "out_mb": size / 2**20, "code": code,
            "error": last if code > 1 else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--cap-gb", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--matrix-pods", type=int, default=3_000, help="pods for the pair matrix (0: skip)")
    args = parser.parse_args()
    base = objects(args.pods, args.policies, args.seed) + partitions()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape, objs in (("bare pods", base), ("Deployments", deployments(base))):
            old, new = Path(tmp, f"{len(rows)}-old.yaml"), Path(tmp, f"{len(rows)}-new.yaml")
            write(old, objs)
            write(new, changed(objs))
            commands = [("matrix --workloads -o txt", ["matrix", "--workloads", "-o", "txt", "-f", str(old)]),
                        ("matrix --workloads -o json", ["matrix", "--workloads", "-o", "json", "-f", str(old)]),
                        ("diff -o md", ["diff", str(old), str(new), "-o", "md"]),
                        ("diff -o json", ["diff", str(old), str(new), "-o", "json"]),
                        ("tenants --tenant-label team (200 nodes)", ["tenants", "--tenant-label", "team", "-f", str(old)]),
                        ("matrix --workloads --by namespace", ["matrix", "--workloads", "--by", "namespace", "-f", str(old)])]
            if shape == "bare pods" and args.matrix_pods:  # n x n probes: a smaller cluster keeps it minutes
                small = Path(tmp, "small.yaml")
                write(small, objects(args.matrix_pods, args.matrix_pods // 10, args.seed))
                commands += [(f"matrix -p 8080 -o csv ({args.matrix_pods:,} pods)",
                              ["matrix", "-p", "8080", "-o", "csv", "-f", str(small)]),
                             (f"matrix -p 8080 -o json ({args.matrix_pods:,} pods)",
                              ["matrix", "-p", "8080", "-o", "json", "-f", str(small)])]
            for label, argv in commands:
                r = run(argv, args.cap_gb)
                rows.append({"shape": shape, "command": label} | r)
                print(f"{shape}: {label}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(f"{args.pods:,} pods, {args.policies:,} policies; cap {args.cap_gb:g} GB of address space per command; "
          f"{os.cpu_count()} cores\n")
    print("| input | command | time | peak memory | output | exit |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        note = f" ({r['error'][0][:60]})" if r["error"] else ""
        print(f"| {r['shape']} | `{r['command']}` | {r['seconds']:.1f} s | {r['peak_mb']:.0f} MB | "
              f"{r['out_mb']:.1f} MB | {r['code']}{note} |")


if __name__ == "__main__":
    main()
