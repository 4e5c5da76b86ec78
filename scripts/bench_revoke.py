#!/usr/bin/env python3
"""Benchmark cutting established connections: the conntrack pass, and how soon a flow is cut.

    sudo .venv/bin/python scripts/bench_revoke.py            # 1k, 10k and 100k flows
    sudo .venv/bin/python scripts/bench_revoke.py --quick    # 1k and 10k

- **conntrack pass**: a network namespace (`npv<pid>...`, created and removed here) holds N UDP flows
  between random pods of the 1k-pod / 100-policy synthetic cluster of `bench_enforce.py` (random
  ports: many distinct verdicts), created over ctnetlink. One pass lists them, judges each with
  `decide` (cached per client, server, protocol and port) and marks the denied ones; the dump alone
  is reported too. Median of 3 passes on fresh flows.
- **time to cut**: a two-pod lab with an open TCP connection that a policy allows; the policy is
  tightened, the table applied, the pass run (what `netpol enforce` does before it returns): the
  time from the apply's return to the flow's mark, and a check that the next packet is dropped.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_enforce import build, synthetic  # noqa: E402

from netpol.k8s.model import Options  # noqa: E402
from netpol.nft.conntrack import CT_NEW, TUPLE_ORIG, TUPLE_REPLY, Conntrack, Tuple  # noqa: E402
from netpol.nft.netlink import NLM_F_CREATE, attr  # noqa: E402
from netpol.nft.render import REVOKE_MARK  # noqa: E402
from netpol.nft.revoke import denied, node_addresses, revoke  # noqa: E402

PREFIX = "npv"
TIMEOUT = 7  # CTA_TIMEOUT


def _create(ct: Conntrack, flows: list[tuple[str, str, int, int]]) -> None:
    """UDP entries (client, server, client port, server port), as `conntrack -I` would make them."""
    reqs = []
    for c, s, sport, dport in flows:
        a, b = ipaddress.ip_address(c), ipaddress.ip_address(s)
        body = (Tuple(a, b, 17, sport, dport).encode(TUPLE_ORIG) + Tuple(b, a, 17, dport, sport).encode(TUPLE_REPLY)
                + attr(TIMEOUT, struct.pack(">I", 600)))
        reqs.append((CT_NEW, NLM_F_CREATE, socket.AF_INET if a.version == 4 else socket.AF_INET6, body))
    for i in range(0, len(reqs), 512):
        codes = ct._channel.ask(reqs[i:i + 512])
        assert not any(codes), f"conntrack create failed: {set(codes)}"


def pass_cost(n: int, cluster, rng: random.Random) -> tuple[float, float, int]:
    """(seconds for a whole pass, seconds for the dump alone, flows cut) over n fresh flows."""
    pods = [p for p in cluster.pods if p.kind == "Pod" and p.ips and not p.host_network]
    flows = []
    for _ in range(n):
        a, b = rng.sample(pods, 2)
        flows.append((a.ips[0], next((ip for ip in b.ips if (":" in ip) == (":" in a.ips[0])), b.ips[0]),
                      rng.randrange(1024, 65535), rng.choice((53, 80, 443, 5432, 8080, 9090))))
    flows = [f for f in flows if (":" in f[0]) == (":" in f[1])]
    ns = f"{PREFIX}{os.getpid()}c{n}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        with Conntrack(ns) as ct:
            _create(ct, flows)
            t = time.perf_counter()
            listed = sum(1 for _ in ct.flows())
            dump = time.perf_counter() - t
            assert listed >= len(flows) * 0.99, (listed, len(flows))
            t = time.perf_counter()
            cuts = revoke(ns, cluster, None, Options())
            whole = time.perf_counter() - t
            marked = sum(1 for f in ct.flows() if f.mark & REVOKE_MARK)
            assert marked == len(cuts)
            again = list(denied(cluster, None, ct.flows(), node_addresses(ns), Options()))
            assert again == [], "a marked flow was judged again"
        return whole, dump, len(cuts)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def time_to_cut(rounds: int) -> list[float]:
    """Seconds from the apply's return to the flow's mark, over rounds of tighten / loosen."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.builders import cluster, namespace, pod, policy
    from support.flows import Conn, Echo

    from netpol.lab import LabHost, topology
    from netpol.nft.apply import Enforcer
    from netpol.nft.plan import compile_plan
    from netpol.nft.render import render

    ips = {"a/client": "198.18.0.10", "a/server": "198.18.0.11"}

    def world(open_: bool) -> object:
        rule = [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}] if open_ else []
        return cluster(namespace("a"), pod("a", "client", {"app": "client"}, (ips["a/client"],)),
                       pod("a", "server", {"app": "server"}, (ips["a/server"],)),
                       policy("a", "server", {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": rule}))

    prefix = f"{PREFIX}{os.getpid() % 10000}l"
    state = topology.up([LabHost(k, (ip,)) for k, ip in ips.items()], prefix)
    echo = Echo(state.hosts["a/server"], ips["a/server"], 7000, 7001)
    out = []
    try:
        enf = Enforcer(state.node_netns)
        for _ in range(rounds):
            enf.apply(render(compile_plan(world(True))))
            conn = Conn(state, "a/client", ips["a/client"], ips["a/server"], 7000)
            assert conn.echoes()
            closed = world(False)
            enf.apply(render(compile_plan(closed)))
            t = time.perf_counter()
            cuts = revoke(state.node_netns, closed, None)
            out.append(time.perf_counter() - t)
            assert len(cuts) == 1 and not conn.echoes(0.3)
            conn.sock.close()
    finally:
        echo.close()
        topology.down(prefix)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k flows only, fewer rounds")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: network namespaces and conntrack", file=sys.stderr)
        return 2
    syn = synthetic(1000, 100)
    cluster = build(syn.objects)
    rng = random.Random(11)
    print("| flows | pass: list, judge, mark | of which the dump | per flow | flows cut |")
    print("|---|---|---|---|---|")
    for n in (1000, 10000) if args.quick else (1000, 10000, 100000):
        runs = [pass_cost(n, cluster, rng) for _ in range(1 if args.quick and n > 1000 else 3)]
        whole, dump = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {n} | {whole:.3f} s | {dump:.3f} s | {whole / n * 1e6:.1f} µs | {runs[-1][2]} |", flush=True)
    cuts = sorted(time_to_cut(10 if args.quick else 40))
    p50, p99 = cuts[len(cuts) // 2], cuts[min(len(cuts) - 1, int(len(cuts) * 0.99))]
    print(f"\ntime from the apply's return to the flow's mark: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
          f"({len(cuts)} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
