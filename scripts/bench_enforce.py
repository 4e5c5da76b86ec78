#!/usr/bin/env python3
"""Benchmark enforcement at scale: render, apply, one-pod updates, and the data plane.

    sudo .venv/bin/python scripts/bench_enforce.py            # 1k pods/100 policies and 10k/1k
    sudo .venv/bin/python scripts/bench_enforce.py --quick    # fewer samples, shorter floods

Synthetic clusters (seeded, so every run sees the same one) mix podSelectors, matchExpressions,
namespaceSelectors, named ports whose numbers differ per pod, endPort ranges and ipBlocks with
excepts; pod IPs are scattered over 198.18.0.0/15 (a tenth dual-stack in 2001:db8::/32) so
selector peers do not collapse into a few ranges. All kernel work happens in network namespaces
named `npd<pid>...` that this script creates and removes, even when it fails.

Data plane: a two-pod lab (`netpol.lab`, routed through a node netns) whose pods are two of the
cluster's pods, selected by several policies of their namespaces and allowed only by the last of
those, so every new packet walks every policy that selects its pods. A one-way UDP flood (no reply
ever comes, so every packet is conntrack NEW and walks the ruleset; counted at the receiver's UDP
layer) and a TCP connect loop are measured with no table, with a conntrack-only table (the floor
any stateful ruleset pays), with our table, and with a naive rendering of the same plan: one
linear rule per pod address in dispatch and per peer address in the policy chains, as
iptables-style enforcers do. Measurements interleave the setups and keep the best of several
rounds, so noise from other work on the machine shrinks.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from netpol.k8s.model import (  # noqa: E402
    EGRESS,
    INGRESS,
    Cluster,  # noqa: E402
)
from netpol.k8s.parse import build_cluster  # noqa: E402
from netpol.k8s.source import RawObject, Source  # noqa: E402
from netpol.nft.apply import Enforcer  # noqa: E402
from netpol.nft.elements import address_text, port_text  # noqa: E402
from netpol.nft.plan import FAMILIES, Plan, compile_plan  # noqa: E402
from netpol.nft.render import render, short_id  # noqa: E402
from netpol.nft.ruleset import Ruleset  # noqa: E402

PREFIX = "npd"
TABLE = "netpol"
OUT = ROOT / ".dev" / "readme-bench-enforce.md"
APPS, TIERS = 20, ("web", "db", "cache", "batch")
TCP_PORT, UDP_PORT = 80, 9


# ---- synthetic clusters ----------------------------------------------------

def _addr4(n: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.0")) + n))


def _addr6(n: int) -> str:
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:100::")) + n))


@dataclass(frozen=True)
class Synthetic:
    objects: list[dict]
    client: str  # ns/pod keys of the two lab pods
    server: str
    next_ip: Callable[[int], str]


def _pod(rng: random.Random, i: int, ns: str, n: int, dual: bool) -> dict:
    http = rng.choice((80, 8080))  # the same name means different numbers on different pods
    ports = [{"name": "http", "containerPort": http}, {"name": "metrics", "containerPort": 9090}]
    if i % 7 == 0:
        ports.append({"name": "dns", "containerPort": 53, "protocol": "UDP"})
    ips = [_addr4(n)] + ([_addr6(n)] if dual else [])
    return {"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": ns, "labels": {
                "app": f"a{rng.randrange(APPS)}", "tier": rng.choice(TIERS), "v": f"v{rng.randrange(3)}"}},
            "spec": {"nodeName": f"n{i % 20}", "containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}}


def _selector(rng: random.Random) -> dict:
    kind = rng.randrange(4)
    if kind == 0:
        return {}
    if kind == 1:
        return {"matchLabels": {"tier": rng.choice(TIERS)}}
    if kind == 2:
        return {"matchExpressions": [{"key": "app", "operator": "In",
                                      "values": [f"a{rng.randrange(APPS)}" for _ in range(3)]}]}
    return {"matchLabels": {"tier": rng.choice(TIERS)},
            "matchExpressions": [{"key": "v", "operator": "NotIn", "values": ["v0"]}]}


def _ingress(rng: random.Random, n_ns: int) -> dict:
    kind = rng.randrange(5)
    app = {"matchLabels": {"app": f"a{rng.randrange(APPS)}"}}
    if kind == 0:
        return {"from": [{"podSelector": app}], "ports": [{"port": 8080}]}
    if kind == 1:
        return {"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(5)}"}},
                          "podSelector": app}], "ports": [{"port": "http"}]}
    if kind == 2:
        return {"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": f"ns{rng.randrange(n_ns)}"}}}],
                "ports": [{"port": "metrics"}, {"port": 9100, "endPort": 9110}]}
    if kind == 3:
        return {"from": [{"ipBlock": {"cidr": "198.19.0.0/16", "except": ["198.19.128.0/20"]}},
                         {"ipBlock": {"cidr": "2001:db8:ff00::/40"}}],
                "ports": [{"port": 443}, {"port": 8000, "endPort": 8999}]}
    return {"from": [{"podSelector": {"matchLabels": {"tier": rng.choice(TIERS)},
                                      "matchExpressions": [{"key": "app", "operator": "In",
                                                            "values": [f"a{rng.randrange(APPS)}"]}]}}]}


def _egress(rng: random.Random) -> dict:
    kind = rng.randrange(3)
    if kind == 0:
        return {"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                        "podSelector": {"matchLabels": {"app": f"a{rng.randrange(APPS)}"}}}],
                "ports": [{"port": "dns", "protocol": "UDP"}, {"port": 53}]}
    if kind == 1:
        return {"to": [{"ipBlock": {"cidr": "198.19.0.0/17", "except": ["198.19.64.0/24"]}}],
                "ports": [{"port": 5432}]}
    return {"to": [{"podSelector": {"matchLabels": {"app": f"a{rng.randrange(APPS)}"}}}],
            "ports": [{"port": "http"}]}


def _policy(ns: str, name: str, spec: dict) -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def synthetic(pods: int, policies: int, seed: int = 7) -> Synthetic:
    rng = random.Random(seed)
    n_ns = max(4, pods // 100)
    objects: list[dict] = [{"kind": "Namespace", "metadata": {"name": f"ns{i}", "labels": {
        "team": f"t{i % 5}", "env": ("prod", "staging", "dev")[i % 3]}}} for i in range(n_ns)]
    # Scattered addresses below 198.19.0.0 (ipBlocks above it), so peers stay many small pieces.
    slots = rng.sample(range(1, 65000), pods + 64)
    for i in range(pods):
        objects.append(_pod(rng, i, f"ns{rng.randrange(n_ns)}", slots[i], i % 10 == 0))
    client, server = objects[n_ns + pods // 2], objects[n_ns + pods // 2 + 1]
    for obj, role in ((client, "client"), (server, "server")):
        obj["metadata"]["labels"]["bench"] = role
        obj["metadata"]["labels"]["tier"] = "web"  # some of the generated policies select it too
    cns, sns = client["metadata"]["namespace"], server["metadata"]["namespace"]
    for j in range(policies - 2):
        spec: dict = {"podSelector": _selector(rng), "ingress": [_ingress(rng, n_ns)
                                                                 for _ in range(rng.randrange(1, 3))]}
        if j % 3 == 0:
            spec["egress"] = [_egress(rng) for _ in range(rng.randrange(1, 3))]
            spec["policyTypes"] = ["Ingress", "Egress"]
        objects.append(_policy(f"ns{j % n_ns}", f"np{j}", spec))
    # The two lab pods are allowed only by these, which sort last in their namespaces' chains.
    ports = [{"port": TCP_PORT}, {"port": UDP_PORT, "protocol": "UDP"}]
    objects.append(_policy(sns, "zz-bench-in", {
        "podSelector": {"matchLabels": {"bench": "server"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cns}},
            "podSelector": {"matchLabels": {"bench": "client"}}}], "ports": ports}]}))
    objects.append(_policy(cns, "zz-bench-out", {
        "podSelector": {"matchLabels": {"bench": "client"}}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": sns}},
            "podSelector": {"matchLabels": {"bench": "server"}}}], "ports": ports}]}))
    spare = iter(slots[pods:])
    key = lambda o: f"{o['metadata']['namespace']}/{o['metadata']['name']}"  # noqa: E731
    return Synthetic(objects, key(client), key(server), lambda _i: _addr4(next(spare)))


def build(objects: list[dict]) -> Cluster:
    return build_cluster(RawObject(o, Source(f"<bench:{i}>", 0)) for i, o in enumerate(objects))


def extra_pod(syn: Synthetic, i: int) -> dict:
    return {"kind": "Pod", "metadata": {"name": f"new{i}", "namespace": "ns1", "labels": {
                "app": "a3", "tier": "web", "v": "v1"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": syn.next_ip(i)}}


# ---- the naive renderer ------------------------------------------------------

EG_OK, IN_OK = 0x10000, 0x20000  # packet mark bits: "some egress / ingress rule allowed it"
_IP = {4: "ip", 6: "ip6"}


def _ports(plan_rule) -> list[str]:
    if plan_rule.ports is None:
        return []
    return [f"meta l4proto {p.protocol.lower()} th dport {port_text((p.lo, p.hi))}" for p in plan_rule.ports]


def naive_script(plan: Plan, table: str = "naive") -> str:
    """The plan as iptables-style enforcers write it: linear dispatch (one rule per pod address),
    a chain per pod jumping to each policy that selects it, one rule per peer address and port
    in the policy chains, and a mark that says "allowed" checked when the pod chain ends."""
    chains: dict[str, list[str]] = {}
    fwd = ["ct state established,related accept", "ct state invalid drop",
           "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept",
           f"meta mark set meta mark & {0xFFFFFFFF ^ (EG_OK | IN_OK):#x}"]
    for pol in plan.policies:
        pid = short_id(pol.key)
        for d in pol.directions:
            body: list[str] = []
            bit = IN_OK if d == INGRESS else EG_OK
            allow = f"counter meta mark set meta mark | {bit:#x} return"
            own, other = ("daddr", "saddr") if d == INGRESS else ("saddr", "daddr")
            for r in pol.rules(d):
                peers_chain = f"np_{pid}_{d[0]}{r.index}"
                peer_rules = []
                for v in FAMILIES:
                    spans = [None] if r.peers is None else [address_text(v, s) for s in r.peers[v]]
                    for s in spans:
                        match = f"{_IP[v]} {other} {s} " if s is not None else f"meta nfproto ipv{v} "
                        for port in _ports(r) or ([""] if r.any_port else []):
                            body.append(f"{match}{port} {allow}".replace("  ", " "))
                        peer_rules.append(f"{match}{allow}")
                if r.named is not None:
                    chains[peers_chain] = peer_rules
                    for v in FAMILIES:
                        for n in sorted(r.named[v], key=lambda n: (int(n.address), n.protocol, n.port)):
                            body.append(f"{_IP[v]} {'daddr'} {n.address} meta l4proto {n.protocol.lower()} "
                                        f"th dport {n.port} jump {peers_chain}")
            chains[f"pol_{pid}_{d[0]}"] = body
    for d in (EGRESS, INGRESS):
        field = "saddr" if d == EGRESS else "daddr"
        bit = EG_OK if d == EGRESS else IN_OK
        selecting: dict = {}
        for p in plan.policies:
            if d in p.directions:
                for v in FAMILIES:
                    for a in p.selected[v]:
                        selecting.setdefault(a, []).append(f"jump pol_{short_id(p.key)}_{d[0]}")
        for k, addr in enumerate(sorted(plan.isolated[d], key=lambda a: (a.version, int(a)))):
            name = f"pod_{d[0]}{k}"
            jumps = selecting.get(addr, [])
            tail = [f"meta mark & {bit:#x} == 0 counter drop"] + (["accept"] if d == INGRESS else [])
            chains[name] = jumps + tail
            fwd.append(f"{_IP[addr.version]} {field} {addr} jump {name}")
    out = [f"table inet {table} {{"]
    for name, rules in chains.items():
        out.append(f"chain {name} {{\n" + "\n".join(rules) + "\n}")
    out.append("chain post {\ntype filter hook postrouting priority srcnat - 10; policy accept;\n"  # where ours is
               + "\n".join(fwd) + "\n}")
    out.append("}")
    return "\n".join(out) + "\n"


def naive_rules(script: str) -> int:
    return sum(1 for line in script.splitlines() if line and not line.startswith(("chain", "table", "}", "type")))


# ---- measuring -------------------------------------------------------------------

def timed(fn: Callable[[], object], n: int = 1) -> tuple[float, object]:
    """Median seconds over n runs, and the last result."""
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


@contextlib.contextmanager
def scratch_netns(tag: str) -> Iterator[str]:
    name = f"{PREFIX}{os.getpid()}{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


# the pods' ranges as the node's pod CIDRs: the table holds back addresses it does not know (and pays
# for a set of known addresses that every pod add updates)
POD_CIDRS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))


@dataclass
class ControlRow:
    scale: str
    elements: int
    sets: int
    compile_s: float
    render_s: float
    apply_s: float
    add_fast_ms: float = 0.0
    add_fast_all: str = ""
    add_full_s: float = 0.0
    add_pipeline_s: float = 0.0
    add_ungated_ms: float = 0.0  # the same pod adds without pod CIDRs (no set of known addresses)


def control_plane(pods: int, policies: int, samples: int) -> tuple[ControlRow, Synthetic, Plan, Ruleset]:
    syn = synthetic(pods, policies)
    cluster = build(syn.objects)
    compile_s, plan = timed(lambda: compile_plan(cluster, pod_cidrs=POD_CIDRS), 3)
    render_s, rs = timed(lambda: render(plan, TABLE), 3)
    row = ControlRow(f"{pods // 1000}k pods / {policies} policies", sum(map(len, rs.elements.values())),
                     len(rs.elements), compile_s, render_s, 0.0)
    with scratch_netns("u") as ns:  # first, as a baseline in this process: no gate
        enf = Enforcer(ns)
        objects, last = list(syn.objects), render(compile_plan(cluster), TABLE)
        enf.apply(last)
        ungated = []
        for i in range(samples):
            objects.append(extra_pod(syn, i))
            nxt = render(compile_plan(build(objects)), TABLE, previous=last)
            t = time.perf_counter()
            assert enf.apply(nxt).fast
            ungated.append(time.perf_counter() - t)
            last = nxt
        row.add_ungated_ms = statistics.median(ungated) * 1000
    with scratch_netns("a") as ns:
        enf = Enforcer(ns)
        t = time.perf_counter()
        assert enf.apply(rs).kind == "full"
        row.apply_s = time.perf_counter() - t
        objects, last, fast, pipeline = list(syn.objects), rs, [], []
        for i in range(samples):  # one pod at a time, the agent's way: render against the last ruleset
            objects.append(extra_pod(syn, i))
            t = time.perf_counter()
            nxt = render(compile_plan(build(objects), pod_cidrs=POD_CIDRS), TABLE, previous=last)
            pipeline.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = enf.apply(nxt)
            fast.append(time.perf_counter() - t)
            assert result.fast and result.kind == "elements", result
            last = nxt
        assert enf.drift(last) == [], "fast path left the table out of step"
        row.add_fast_ms = statistics.median(fast) * 1000
        row.add_fast_all = f"{min(fast) * 1000:.1f}-{max(fast) * 1000:.1f}"
        row.add_pipeline_s = statistics.median(pipeline)
        objects.append(extra_pod(syn, samples))  # the same change through the full comparison
        nxt = render(compile_plan(build(objects), pod_cidrs=POD_CIDRS), TABLE, previous=last)
        enf.forget()
        t = time.perf_counter()
        assert enf.apply(nxt).kind == "elements"
        row.add_full_s = time.perf_counter() - t
    return row, syn, plan, rs


# ---- the data plane ----------------------------------------------------------------

FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
send, buf, n, end = s.send, b"x" * 18, 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    for _ in range(500):
        try:
            send(buf)
        except OSError:
            pass
    n += 500
print(n)
"""
CONNECTS = """
import socket, struct, sys, time
addr, n, end = (sys.argv[1], int(sys.argv[2])), 0, time.monotonic() + float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
while time.monotonic() < end:
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect(addr)
        n += 1
    except OSError:
        pass
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # reset: no TIME_WAIT pile-up
    s.close()
print(n)
"""


def _run_in_pod(netns: str, code: str, *args: str, timeout: float = 120) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, check=True, timeout=timeout).stdout.strip()


def _udp_delivered(netns: str) -> int:
    """Datagrams that reached the receiver's UDP layer (read or dropped for a full buffer)."""
    from netpol.netns import run_in
    text = run_in(netns, lambda: Path("/proc/thread-self/net/snmp").read_text())
    head, values = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")][:2]
    row = dict(zip(head, map(int, values), strict=False))
    return row["InDatagrams"] + row["RcvbufErrors"]


def _nft(netns: str, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=stdin, text=True,
                   capture_output=True, check=True)


FLOOR = """table inet floor {
chain post {
type filter hook postrouting priority srcnat - 10; policy accept;
ct state established,related accept
ct state invalid drop
}
}
"""
FORWARD = "oursfwd"  # our table as it was before it moved to postrouting: the forward hook
SETUPS = (("none", None), ("conntrack", "floor"), ("ours", TABLE), ("forward", FORWARD), ("naive", "naive"))


def _select(node: str, active: str | None) -> None:
    """Only `active`'s hooks on: every other table dormant (a dormant table sees no packets)."""
    for table in (TABLE, FORWARD, "naive", "floor"):
        _nft(node, "add", "table", "inet", table, *(() if table == active else ("{ flags dormant; }",)))


def _refused_quickly(client: str, addr: str) -> bool:
    """A TCP connect to a port nobody serves: refused at once when allowed through, dropped (timeout)
    when a table denies it."""
    code = ("import socket, sys\ns = socket.socket(); s.settimeout(0.5)\n"
            "try:\n    s.connect((sys.argv[1], 81)); print('open')\n"
            "except ConnectionRefusedError:\n    print('refused')\nexcept OSError:\n    print('dropped')\n")
    return _run_in_pod(client, code, addr) == "refused"


def at_forward(skeleton: str) -> str:
    hooks = {"hook postrouting priority srcnat - 10": "hook forward priority filter",
             "hook postrouting priority srcnat - 9": "hook forward priority filter + 1"}
    for new, old in hooks.items():
        assert new in skeleton
        skeleton = skeleton.replace(new, old)
    return skeleton


@dataclass
class DataRow:
    scale: str
    naive_rules: int
    pps: dict
    cps: dict


def data_plane(syn: Synthetic, plan: Plan, rs: Ruleset, scale: str, rounds: int, seconds: float) -> DataRow:
    import socket

    from netpol.lab import LabHost, topology
    from netpol.netns import run_in
    cluster = build(syn.objects)
    client, server = cluster.by_key[syn.client], cluster.by_key[syn.server]
    prefix = f"{PREFIX}{os.getpid() % 100000}"
    script = naive_script(plan)
    state = topology.up([LabHost(syn.client, client.ips), LabHost(syn.server, server.ips, ((TCP_PORT, "TCP"),))],
                        prefix)
    sink = None
    try:
        node, cns, sns = state.node_netns, state.hosts[syn.client], state.hosts[syn.server]
        dst = server.ips[0]
        sink = run_in(sns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.bind((dst, UDP_PORT))
        Enforcer(node).apply(rs)
        Enforcer(node).apply(Ruleset(FORWARD, at_forward(rs.skeleton), rs.elements))
        _nft(node, "-f", "-", stdin=script)
        _nft(node, "-f", "-", stdin=FLOOR)
        for setup, denies in ((TABLE, True), (FORWARD, True), ("naive", True), ("floor", False), (None, False)):
            _select(node, setup)
            assert _refused_quickly(cns, dst) is not denies, f"{setup or 'no table'}: port 81 not as expected"
        pps: dict = {label: [] for label, _ in SETUPS}
        cps: dict = {label: [] for label, _ in SETUPS}
        for _ in range(rounds):
            for label, table in SETUPS:
                _select(node, table)
                before = _udp_delivered(sns)
                _run_in_pod(cns, FLOOD, dst, str(UDP_PORT), str(seconds))
                pps[label].append((_udp_delivered(sns) - before) / seconds)
                cps[label].append(int(_run_in_pod(cns, CONNECTS, dst, str(TCP_PORT), str(seconds))) / seconds)
        _select(node, TABLE)
        hits = Enforcer(node).counters(TABLE)
        allow = f"{server.namespace}/zz-bench-in ingress[0]"
        assert hits.get(allow, (0, 0))[0] > 0, f"the flood never reached {allow}"
        return DataRow(scale, naive_rules(script), {k: max(v) for k, v in pps.items()},
                       {k: max(v) for k, v in cps.items()})
    finally:
        if sink is not None:
            sink.close()
        topology.down(prefix)


# ---- report ------------------------------------------------------------------------

def markdown(control: list[ControlRow], data: list[DataRow]) -> str:
    lines = ["| scale | sets / elements | compile | render | full apply (new table) | pod add: apply, fast path "
             "(median, range) | pod add without pod CIDRs | pod add: same change, full compare | "
             "pod add: compile+render |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in control:
        lines.append(f"| {r.scale} | {r.sets} / {r.elements} | {r.compile_s:.2f} s | {r.render_s:.2f} s | "
                     f"{r.apply_s:.1f} s | **{r.add_fast_ms:.1f} ms** ({r.add_fast_all}) | {r.add_ungated_ms:.1f} ms | "
                     f"{r.add_full_s:.2f} s "
                     f"({r.add_full_s * 1000 / r.add_fast_ms:.0f}x) | {r.add_pipeline_s:.2f} s |")
    lines += ["", "| scale | naive rules | UDP pps: none / conntrack only / ours / naive | conntrack ÷ none | "
              "ours ÷ none | ours ÷ naive | ours ÷ ours at forward | TCP connects/s: none / conntrack only / ours / "
              "naive | ours ÷ none | ours ÷ naive |", "|---|---|---|---|---|---|---|---|---|---|"]
    for d in data:
        p, c = d.pps, d.cps
        lines.append(f"| {d.scale} | {d.naive_rules} | {p['none']:.0f} / {p['conntrack']:.0f} / {p['ours']:.0f} / "
                     f"{p['naive']:.0f} | {p['conntrack'] / p['none']:.2f} | **{p['ours'] / p['none']:.2f}** | "
                     f"**{p['ours'] / max(p['naive'], 1):.1f}x** | {p['ours'] / p['forward']:.2f} | "
                     f"{c['none']:.0f} / {c['conntrack']:.0f} / "
                     f"{c['ours']:.0f} / {c['naive']:.0f} | {c['ours'] / c['none']:.2f} | "
                     f"{c['ours'] / max(c['naive'], 1):.1f}x |")
    return "\n".join(lines) + "\n"


EXPLAIN = """\
## Enforcement benchmark

`sudo .venv/bin/python scripts/bench_enforce.py [--quick]` measures, in one run, on synthetic clusters
(seeded; mixed podSelectors and matchExpressions, namespaceSelectors, named ports whose numbers differ
per pod, endPort ranges, ipBlocks with excepts; pod IPs scattered over 198.18.0.0/15, a tenth dual-stack).
Everything runs in network namespaces named `npd<pid>...` that the script creates and removes.

- **compile / render**: `compile_plan` (every pod local, the worst case) and `render`, median of 3.
- **full apply**: `Enforcer.apply` of the whole table into an empty netns, including the read-back.
- **pod add**: one pod at a time is added to the cluster, compiled, rendered with `previous=` the last
  ruleset, and applied: the Enforcer knows the table it last verified and the kernel's ruleset
  generation, so the change goes out as one nfnetlink batch and only the added elements are read back.
  "full compare" is the same change after `forget()`: list and normalise the whole table, diff, apply
  through libnftables, read the whole table back (what every apply did before).
- **data plane**: a two-pod lab (`netpol.lab`, traffic routed through the node netns) whose pods are two
  of the cluster's pods, each selected by several policies of its namespace and allowed only by the last
  of them, so new packets walk every policy that selects their pods. The same plan is also loaded as a
  naive table: one rule per pod address in dispatch, a chain per pod jumping to each selecting policy,
  one rule per peer address and port (iptables style); and "conntrack only" is a table with just the
  two conntrack rules, the floor any stateful ruleset pays. One table is active at a time (the others
  dormant). UDP: a one-way flood; no reply ever comes, so every packet is conntrack NEW and walks the
  ruleset; counted at the receiver's UDP layer. TCP: connect+reset loop; only the SYN walks the
  ruleset. Best of the rounds.

Targets: pod add < 5 ms; ours ÷ none >= 0.85; ours ÷ naive >= 4x at 1k and >= 20x at 10k.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter floods")
    parser.add_argument("--no-data-plane", action="store_true", help="skip the lab measurements")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: network namespaces and nftables", file=sys.stderr)
        return 2
    samples, rounds, seconds = (5, 2, 1.0) if args.quick else (15, 3, 2.0)
    control, data = [], []
    for pods, policies in ((1000, 100), (10000, 1000)):
        row, syn, plan, rs = control_plane(pods, policies, samples)
        control.append(row)
        print(markdown(control, []).split("\n\n")[0].splitlines()[-1], flush=True)
        if not args.no_data_plane:
            data.append(data_plane(syn, plan, rs, row.scale, rounds, seconds))
            print(markdown([], data).split("\n\n")[1].splitlines()[-1], flush=True)
    table = markdown(control, data)
    print()
    print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(EXPLAIN + "\n" + table + RESULTS_NOTE)
    print(f"saved {OUT}")
    return 0


RESULTS_NOTE = """
Reading the numbers:
- Layout (render): a new connection's packet is dispatched by its pod's address straight into the chain
  of the first policy selecting that pod, and from there by a per-policy map to the next one: it walks
  only the policies that select its pods, each chain testing compares before hash lookups before
  interval lookups. Before, each namespace chain tested every rule of every policy in the namespace;
  the UDP flood went from 0.39 / 0.48 of no table to 0.65 / 0.79, and from 2.8x / 19.7x the naive
  table to 4.3x / 34.8x (1k / 10k).
- Per-packet work (quick runs; the UDP ratios move by a few hundredths between runs): a rule whose peers
  hold no ipBlock of the packet's family tests one hash set of pod addresses and no interval set
  (sets 1210 -> 894 at 1k, 12646 -> 9182 at 10k); a named-port lookup whose entries share one protocol
  sits behind a `meta l4proto` compare; with both, the UDP flood went 0.65 -> 0.72 (1k) and 0.79 ->
  0.85 (10k) of no table. Policies of a namespace with equal podSelectors (canonical form: term and
  value order ignored) now share one chain per family and one walk step: 0.74 / 0.84 (1k / 10k,
  quick run; the full run in the table: 0.74 / 0.86), sets 832 / 8482, elements 12324 -> 9855 /
  198903 -> 173507. At 1k the target 0.85 is still missed:
  on this kernel a set lookup costs about 55 ns (an interval lookup two to six times that), a compare
  about 3 ns, against about 4.3 µs per packet with no table; the lab pods are still selected by
  several groups, each a few lookups, before the last policy allows them. The conntrack floor alone
  is 0.94-1.00.
- Pod add at 10k pods on one node: 11.2 ms (18.9 ms before these changes; 1k: 1.5 ms, 2.3 before),
  still over the 5 ms target. Adding any jump or goto element makes the kernel re-validate the
  table's jump graph, walking every jump/goto element of every verdict map, about 0.25 µs each; walks
  hold one per (pod, selecting group of policies): 34012 here, 59408 before grouping. Walks end in a
  static `goto` rule and cross chunks with `return` elements, which validation does not follow, to
  keep that down. A real node (~100 pods) holds about 1% of these elements. Element changes without
  jumps cost ~4 ms at this size.
- The kernel refuses jump/goto paths deeper than 16 chains, counting every map element whether a
  packet can take it or not, so a namespace with more than 12 walk steps (policies with rules in a
  direction; those with equal podSelectors count once) is walked in chunks of 12 (the walk returns to the base chain, whose next dispatch map goes on).
- The kernel finds each set by name walking the table's set list, so render declares the dispatch
  maps first and IPv4 sets before IPv6 ones.
"""


if __name__ == "__main__":
    sys.exit(main())
