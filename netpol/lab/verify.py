"""Prove the kernel agrees with the evaluator: lab up, enforce, probe every pair, compare, down."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netpol.errors import LabError
from netpol.evaluate.matrix import PortQuery, compute, resolve_port
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.services import check_service
from netpol.k8s.model import Cluster, Options, Pod
from netpol.lab import services, topology
from netpol.lab.probe import Probe, probe
from netpol.lab.topology import LabHost, LabState
from netpol.netns import run_in

# A probe that disagrees is asked once more, patiently: on a busy machine an allowed connection can
# miss a short timeout, while a dropped one stays dropped however long we wait.
RECHECK_TIMEOUT = 3.0


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
    services: list[str] | None = None  # with --services: the matrix --services contract

    def contract(self) -> dict:
        head = {"pods": self.pods} if self.services is None else {"pods": self.pods, "services": self.services}
        return {**head, "probes": self.probes, "disagreements": self.disagreements}


def extra_ports(queries: Sequence[PortQuery]) -> list[tuple[int, str]]:
    return [(q.port, q.protocol) for q in queries if isinstance(q.port, int)]


def probe_settled(state: LabState, probes: Sequence[Probe], want: Callable[[Probe], bool], timeout: float = 1.0,
                  family: str | None = None, recheck: float = RECHECK_TIMEOUT) -> dict[Probe, bool]:
    """Probe, then ask again with a long timeout the probes whose answer is not `want`'s."""
    seen = probe(state, probes, timeout=timeout, family=family)
    wrong = [p for p, got in seen.items() if got != want(p)]
    if wrong and recheck > timeout:
        seen.update(probe(state, wrong, timeout=recheck, family=family))
    return seen


def compare(cluster: Cluster, state: LabState, pods: Sequence[Pod], queries: Sequence[PortQuery],
            opts: Options, timeout: float = 1.0) -> Verification:
    """Probe the lab as it stands and compare each probe with the evaluator's matrix."""
    expected = compute(cluster, list(queries), list(pods), opts)
    plan = probes_for(pods, queries)

    def want(pr: Probe) -> bool:
        q_i, s_i, d_i = plan[pr]
        return bool(expected.allowed[q_i][s_i][d_i])

    seen = probe_settled(state, list(plan), want, timeout)
    result = Verification(pods=[p.key for p in pods])
    for pr in plan:
        if pr not in seen:
            continue  # no common address family: nothing to connect over
        row = {"src": pr.src, "dst": pr.dst, "port": pr.port, "protocol": pr.protocol, "allowed": seen[pr]}
        result.probes.append(row)
        if seen[pr] != want(pr):
            result.disagreements.append({**row, "kernel": seen[pr], "evaluator": want(pr)})
    return result


_CT_FLUSH = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE with no tuple: flush
_NLM_F_REQUEST_ACK = 0x1 | 0x4
_NETLINK_NETFILTER = 12


def _flush_here() -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER) as sock:
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, 0)  # nfgenmsg: every family, version 0
        sock.send(struct.pack("=IHHII", 16 + len(body), _CT_FLUSH, _NLM_F_REQUEST_ACK, 1, 0) + body)
        reply = sock.recv(4096)
    code = -struct.unpack_from("=i", reply, 16)[0]
    if code and code != errno.ENOENT:
        raise OSError(code, f"conntrack flush: {errno.errorcode.get(code, code)}")


def flush_conntrack(netns: str) -> None:
    """Forget the netns's tracked connections, so the next probes are new connections, judged by
    the rules in force now rather than let through as replies of flows earlier rules admitted."""
    try:
        run_in(netns, _flush_here)
    except OSError as exc:
        raise LabError(f"cannot flush conntrack in {netns}: {exc}") from None


def enforce_into(state: LabState, cluster: Cluster, opts: Options, table: str = "netpol", flush: bool = True):
    from netpol.nft.apply import Enforcer
    from netpol.nft.plan import compile_plan
    from netpol.nft.render import render
    result = Enforcer(state.node_netns).apply(render(compile_plan(cluster, None, opts), table))
    if flush:
        flush_conntrack(state.node_netns)
    return result


def verify(cluster: Cluster, queries: Sequence[PortQuery], opts: Options = Options(), prefix: str = "nplab",
           timeout: float = 1.0, keep: bool = False) -> Verification:
    pods = lab_pods(cluster)
    if not pods:
        raise LabError("nothing to probe: the input has no pods with addresses")
    probes_for(pods, queries)  # refuse what cannot be probed before building anything
    topology.down(prefix)  # a crashed run may have left one behind
    state = topology.up(hosts_for(pods), prefix, extra_ports(queries))
    try:
        enforce_into(state, cluster, opts)
        return compare(cluster, state, pods, queries, opts, timeout)
    finally:
        if not keep:
            topology.down(prefix)


def verify_services(cluster: Cluster, opts: Options = Options(), prefix: str = "nplab", timeout: float = 1.0,
                    keep: bool = False) -> Verification:
    """Every pod to every Service port, with real DNAT pinned to each backend in turn, on the pod path
    and on the node path (IPVS's), compared with `check_service`."""
    pods = lab_pods(cluster)
    plan = services.rounds(cluster, {p.key for p in pods})
    if not plan:
        raise LabError("nothing to probe: no Service of the input has a backend among the lab's pods")
    topology.down(prefix)
    state = topology.up(hosts_for(pods), prefix, services.target_ports([p for r in plan for p in r]))
    try:
        enforce_into(state, cluster, opts, flush=False)
        return probe_services(cluster, state, opts, timeout, plan)
    finally:
        if not keep:
            topology.down(prefix)


def probe_services(cluster: Cluster, state: LabState, opts: Options = Options(), timeout: float = 1.0,
                   plan: list[list[services.Pin]] | None = None) -> Verification:
    """Into a lab whose table is in force: the Service proxy, then every round of pinned backends."""
    pods = [p for p in lab_pods(cluster) if p.key in state.hosts]
    plan = services.rounds(cluster, set(state.hosts)) if plan is None else plan
    vips = {p.address for r in plan for p in r if not p.nodeport}
    services.prepare(state, sorted(vips, key=lambda a: (a.version, a)))
    result = Verification(pods=[p.key for p in pods], services=sorted({p.service.key for r in plan for p in r}))
    for pins in plan:
        services.install(state, pins)
        flush_conntrack(state.node_netns)
        _compare_round(cluster, state, pods, pins, opts, timeout, result)
    return result


def _compare_round(cluster: Cluster, state: LabState, pods: Sequence[Pod], pins: Sequence[services.Pin],
                   opts: Options, timeout: float, result: Verification) -> None:
    expected: dict[Probe, tuple[services.Pin, bool]] = {}
    for pin in pins:
        for src in pods:
            v = check_service(cluster, Endpoint(pod=src), pin.service, pin.port,
                              None if pin.nodeport else pin.address, opts)
            got = next((r.verdict.allowed for r in v.results if r.backend.address == pin.backend.address), None)
            if got is None:
                continue  # not an endpoint for this client (internalTrafficPolicy Local)
            for path in services.PATHS:
                expected[pin.probe(src.key, path)] = (pin, got)
    seen = probe_settled(state, list(expected), lambda pr: expected[pr][1], timeout)
    for pr, (pin, want) in expected.items():
        if pr not in seen:
            continue
        row = {"src": pr.src, "dst": f"{pin.service.namespace}/service/{pin.service.name}", "port": pin.port.port,
               "protocol": pin.port.protocol, "backend": pr.dst, "target_port": pin.backend.port,
               "address": pr.via, "path": pr.path, "allowed": seen[pr]}
        if pin.nodeport:
            row["node_port"] = pin.entry_port
        result.probes.append(row)
        if seen[pr] != want:
            result.disagreements.append({**row, "kernel": seen[pr], "evaluator": want})
