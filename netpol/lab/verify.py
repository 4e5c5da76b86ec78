"""Prove the kernel agrees with the evaluator: lab up, enforce, probe every pair, compare, down."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..matrix import PortQuery, compute, resolve_port
from ..model import Cluster, Pod
from ..resolve import Options
from . import topology
from .probe import Probe, probe
from .topology import LabError, LabHost, LabState


def lab_pods(cluster: Cluster) -> list[Pod]:
    """Pods the lab can host: real pods with an address, off the host network."""
    return [p for p in cluster.pods if p.kind == "Pod" and p.ips and not p.host_network]


def hosts_for(pods: Sequence[Pod]) -> list[LabHost]:
    return [LabHost(key=p.key, ips=p.ips, ports=tuple(sorted({(cp.port, cp.protocol) for cp in p.ports})))
            for p in pods]


def probes_for(pods: Sequence[Pod], queries: Sequence[PortQuery]) -> dict[Probe, tuple[int, int, int]]:
    """Every ordered pair per query; named ports resolve on the destination (unresolved: no probe)."""
    out: dict[Probe, tuple[int, int, int]] = {}
    for q_i, q in enumerate(queries):
        if q.protocol == "SCTP":
            raise LabError("SCTP cannot be probed: this kernel has no SCTP sockets")
        for d_i, dst in enumerate(pods):
            port = resolve_port(dst, q)
            if port is None:
                continue
            for s_i, src in enumerate(pods):
                out[Probe(src.key, dst.key, port, q.protocol)] = (q_i, s_i, d_i)
    return out


@dataclass
class Verification:
    pods: list[str]
    probes: list[dict] = field(default_factory=list)
    disagreements: list[dict] = field(default_factory=list)

    def contract(self) -> dict:
        return {"pods": self.pods, "probes": self.probes, "disagreements": self.disagreements}


def extra_ports(queries: Sequence[PortQuery]) -> list[tuple[int, str]]:
    return [(q.port, q.protocol) for q in queries if isinstance(q.port, int)]


def compare(cluster: Cluster, state: LabState, pods: Sequence[Pod], queries: Sequence[PortQuery],
            opts: Options, timeout: float = 1.0) -> Verification:
    """Probe the lab as it stands and compare each probe with the evaluator's matrix."""
    expected = compute(cluster, list(queries), list(pods), opts)
    plan = probes_for(pods, queries)
    seen = probe(state, list(plan), timeout=timeout)
    result = Verification(pods=[p.key for p in pods])
    for pr, (q_i, s_i, d_i) in plan.items():
        if pr not in seen:
            continue
        kernel, want = seen[pr], bool(expected.allowed[q_i][s_i][d_i])
        row = {"src": pr.src, "dst": pr.dst, "port": pr.port, "protocol": pr.protocol, "allowed": kernel}
        result.probes.append(row)
        if kernel != want:
            result.disagreements.append({**row, "kernel": kernel, "evaluator": want})
    return result


def enforce_into(state: LabState, cluster: Cluster, opts: Options, table: str = "netpol"):
    from ..apply import Enforcer
    from ..compile import compile_plan
    from ..render import render
    return Enforcer(state.node_netns).apply(render(compile_plan(cluster, None, opts), table))


def verify(cluster: Cluster, queries: Sequence[PortQuery], opts: Options = Options(), prefix: str = "nplab",
           timeout: float = 1.0, keep: bool = False) -> Verification:
    pods = lab_pods(cluster)
    topology.down(prefix)  # a crashed run may have left one behind
    state = topology.up(hosts_for(pods), prefix, extra_ports(queries))
    try:
        enforce_into(state, cluster, opts)
        return compare(cluster, state, pods, queries, opts, timeout)
    finally:
        if not keep:
            topology.down(prefix)
