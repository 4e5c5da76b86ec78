#!/usr/bin/env python3
"""The node agent's memory per cluster pod: its store holds every pod of the cluster (peers live
anywhere), about 1% of them local. No kernel and no API: the watch events go straight into the store.

    .venv/bin/python scripts/bench_footprint.py [--pods 10000,50000,150000]

For each size, in a fresh process: the Python heap the store holds after one full list (tracemalloc,
so only what the store keeps), per pod; the process's peak RSS; and the time to fold the list and
take the first snapshot. Pods look like a Deployment's: six labels, two named ports, one address, a
node name, owner references, a status with conditions (dropped on read).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netpol.agent.store import Event, Store  # noqa: E402

NAMESPACES, NODES = 200, 100


def pod(i: int) -> dict:
    ns, k = f"ns-{i % NAMESPACES}", i % 40
    app = f"app-{k}"  # the pods of one app are its Deployment's replicas: the same labels
    return {"metadata": {"name": f"{app}-{i:06d}", "namespace": ns, "uid": f"uid-{i}", "resourceVersion": str(i),
                         "labels": {"app": app, "tier": ("web", "api", "db")[k % 3], "team": f"t{k % 7}",
                                    "pod-template-hash": f"h{k}", "version": "v1", "env": "prod"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-h", "controller": True,
                                              "uid": f"rs-{i % 97}", "apiVersion": "apps/v1"}]},
            "spec": {"nodeName": f"node-{i % NODES}", "containers": [{"name": "main", "image": "img:1", "ports": [
                {"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                       "podIPs": [{"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}],
                       "conditions": [{"type": "Ready", "status": "True"}] * 4}}


def measure(n: int) -> dict:
    namespaces = tuple({"metadata": {"name": f"ns-{k}", "labels": {"team": f"t{k % 7}"}}} for k in range(NAMESPACES))
    items = tuple(pod(i) for i in range(n))
    store = Store()
    store.apply(Event("Namespace", "SYNC", items=namespaces))
    tracemalloc.start()
    start = time.perf_counter()
    store.apply(Event("Pod", "SYNC", items=items))
    folded = time.perf_counter() - start
    held, _ = tracemalloc.get_traced_memory()
    snap_start = time.perf_counter()
    store.snapshot()
    snapped = time.perf_counter() - snap_start
    with_snapshot, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"pods": n, "store_bytes_per_pod": held / n, "with_snapshot_per_pod": with_snapshot / n,
            "fold_s": folded, "snapshot_s": snapped,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", default="10000,50000,150000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    rows = []
    for n in (int(x) for x in args.pods.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout))
        print(f"{n} pods done", file=sys.stderr, flush=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| cluster pods | store per pod | with the first snapshot | fold the list | first snapshot | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pods']:,} | {r['store_bytes_per_pod']:,.0f} B | {r['with_snapshot_per_pod']:,.0f} B | "
              f"{r['fold_s']:.1f} s | {r['snapshot_s']:.2f} s | {r['peak_rss_mb']:,.0f} MB |")


if __name__ == "__main__":
    main()
