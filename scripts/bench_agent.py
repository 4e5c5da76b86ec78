#!/usr/bin/env python3
"""Benchmark the node agent: event-to-kernel latency of a pod add, and pod events absorbed per second.

The API is tests/support/kubestub.py on 127.0.0.1 (read through the official client, as in production);
the kernel is a scratch network namespace `npsbench<pid>` that this script makes and removes.
Latency is from the API server emitting the event to apply() returning (the rules are in the
kernel), for one pod added at a time; "after debounce" subtracts the --debounce wait. Then a
burst (as fast as the API emits) and a steady load (--rate pod events/s for 5 s) of adds,
relabels and deletes: how fast the agent absorbs them, and the latency under load.

    sudo .venv/bin/python scripts/bench_agent.py                 # 1k and 10k pods
    sudo .venv/bin/python scripts/bench_agent.py --pods 1000 --samples 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.kubestub import KubeStub  # noqa: E402

from netpol.agent import Agent, AgentConfig, BatchReport  # noqa: E402

NAMESPACES = 20
NODES = 20
POLICIES = 20


def pod(i: int, label: str = "") -> dict:
    return {"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": f"ns{i % NAMESPACES}",
                                        "labels": {"app": f"a{i % 50}", "tier": ("web", "db", "cache")[i % 3],
                                                   **({"v": label} if label else {})}},
            "spec": {"nodeName": f"n{i % NODES}", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": f"198.18.{i // 250}.{i % 250 + 1}"}}


def policy(i: int) -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": f"np{i}", "namespace": f"ns{i % NAMESPACES}"},
            "spec": {"podSelector": {"matchLabels": {"tier": ("web", "db", "cache")[i % 3]}},
                     "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"a{i}"}}},
                                           {"namespaceSelector": {"matchLabels": {"team": "t1"}}}],
                                  "ports": [{"port": "http"}, {"port": 5432}]}],
                     "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": ["198.18.200.0/24"]}}]},
                                {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}]}}


class Tracker:
    """Applied-at time per pod name, from the agent's batch reports."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.stages: dict[str, dict[str, float]] = {}
        self.batches: list[BatchReport] = []
        self.cond = threading.Condition()

    def on_batch(self, r: BatchReport) -> None:
        with self.cond:
            self.batches.append(r)
            if r.result is not None:
                for at, ev in r.events:
                    if ev.kind == "Pod" and ev.obj is not None:
                        key = f"{ev.obj['metadata']['name']}/{ev.obj['metadata']['resourceVersion']}"
                        self.done[key], self.arrived[key], self.stages[key] = r.done, at, dict(r.stages)
            self.cond.notify_all()

    def wait(self, key: str, timeout: float = 300) -> float:
        with self.cond:
            assert self.cond.wait_for(lambda: key in self.done, timeout), f"{key} never applied"
            return self.done[key]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(n: int, samples: int, burst: int, debounce: float, rate: float, netns: str) -> dict:
    stub = KubeStub(bookmark_interval=5.0).start()
    tmp = tempfile.mkdtemp()
    for i in range(NAMESPACES):
        stub.apply({"kind": "Namespace", "metadata": {"name": f"ns{i}", "labels": {"team": f"t{i % 5}"}}})
    for i in range(n):
        stub.apply(pod(i))
    for i in range(POLICIES):
        stub.apply(policy(i))
    tracker = Tracker()
    agent = Agent(AgentConfig(node="n0", kubeconfig=str(stub.kubeconfig(Path(tmp))), netns=netns, table="npsbench",
                              debounce=debounce, cleanup_on_exit=True), on_batch=tracker.on_batch)
    try:
        t0 = time.monotonic()
        agent.start()
        assert agent.wait_ready(600)
        first = time.monotonic() - t0
        latencies, delivery, stages = [], [], []
        for k in range(samples):  # one pod at a time, on this node
            obj = stub.apply(pod(n + k * NODES))
            sent = time.monotonic()
            key = f"{obj['metadata']['name']}/{obj['metadata']['resourceVersion']}"
            latencies.append(tracker.wait(key) - sent)
            delivery.append(tracker.arrived[key] - sent)
            stages.append(tracker.stages[key])
        # absorb a burst: adds, relabels and deletes as fast as the API emits them
        start = time.monotonic()
        last = None
        for k in range(burst):
            j = k % 3
            i = n + samples * NODES + k // 3
            if j == 0:
                last = stub.apply(pod(i))
            elif j == 1:
                last = stub.apply(pod(i, label="x"))
            else:
                stub.delete("Pod", f"p{i}", f"ns{i % NAMESPACES}")
        emitted = time.monotonic() - start
        probe = stub.apply(pod(n + samples * NODES + burst, label="end"))
        end = tracker.wait(f"{probe['metadata']['name']}/{probe['metadata']['resourceVersion']}")
        absorbed = (burst + 1) / (end - start)
        load = sustained(stub, tracker, n + samples * NODES + burst + 1, rate, 5.0)
        syncs = [b for b in tracker.batches if b.result is not None]
        return {"pods": n, "first_sync_s": first, "p50_ms": pct(latencies, 0.5) * 1000,
                "p99_ms": pct(latencies, 0.99) * 1000, "watch_p50_ms": pct(delivery, 0.5) * 1000, "debounce_ms": debounce * 1000,
                "events_per_s": absorbed, "load": load, "emit_per_s": burst / emitted, "batches": len(syncs),
                "elements": sum(len(e) for e in agent.reconciler.last.elements.values()), "last": last is not None,
                "stages": {k: (pct([s[k] for s in stages], 0.5), pct([s[k] for s in stages], 0.99)) for k in stages[0]}}
    finally:
        agent.stop()
        stub.stop()


def sustained(stub: KubeStub, tracker: Tracker, first: int, rate: float, seconds: float) -> dict:
    """Pod events at a steady rate (adds, relabels, deletes): event-to-kernel latency under load."""
    sent: dict[str, float] = {}
    t0 = time.monotonic()
    total = int(rate * seconds)
    for k in range(total):
        time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
        i = first + k // 3
        if k % 3 == 2:
            stub.delete("Pod", f"p{i}", f"ns{i % NAMESPACES}")
            continue
        obj = stub.apply(pod(i, label="x" if k % 3 else ""))
        sent[f"{obj['metadata']['name']}/{obj['metadata']['resourceVersion']}"] = time.monotonic()
    emitted = total / (time.monotonic() - t0)
    latencies = [tracker.wait(key) - at for key, at in sent.items()]
    return {"rate": emitted, "p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, action="append", help="cluster size (repeatable; default 1000 and 10000)")
    ap.add_argument("--samples", type=int, default=0, help="pod adds timed one by one (default: 100 at 1k, 50 at 10k)")
    ap.add_argument("--burst", type=int, default=3000, help="pod events in the throughput burst")
    ap.add_argument("--debounce", type=float, default=0.1)
    ap.add_argument("--rate", type=float, default=1000.0, help="pod events per second in the sustained load (5 s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_agent: needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    netns = f"npsbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    rows = []
    try:
        for n in args.pods or [1000, 10000]:
            samples = args.samples or (100 if n <= 2000 else 50)
            rows.append(run(n, samples, args.burst, args.debounce, args.rate, netns))
            print(f"done {n} pods", file=sys.stderr)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    print("| pods | policies | first sync | pod add p50 | p99 | p99 after debounce | watch delivery p50 | "
          "events/s absorbed | batches | elements |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pods']} | {POLICIES} | {r['first_sync_s']:.1f} s | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
              f"{r['p99_ms'] - r['debounce_ms']:.0f} ms | {r['watch_p50_ms']:.1f} ms | {r['events_per_s']:.0f} (API emitted {r['emit_per_s']:.0f}/s) | "
              f"{r['batches']} | {r['elements']} |")
    print("\nsustained load: event-to-kernel latency, debounce included")
    for r in rows:
        ld = r["load"]
        print(f"- {r['pods']} pods, {ld['rate']:.0f} pod events/s for 5 s: p50 {ld['p50_ms']:.0f} ms, "
              f"p99 {ld['p99_ms']:.0f} ms")
    print("\nper pod add, ms (p50 / p99): where the time after the debounce goes")
    print("| pods | " + " | ".join(rows[0]["stages"]) + " |")
    print("|---:|" + "---:|" * len(rows[0]["stages"]))
    for r in rows:
        print(f"| {r['pods']} | " + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in r["stages"].values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
