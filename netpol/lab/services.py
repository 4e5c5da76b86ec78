"""The lab's kube-proxy: Service DNAT in the node netns, shaped like kube-proxy's nftables mode, and the
probes that prove policies hold for traffic sent to Services.

kube-proxy picks a backend at random; the lab pins one instead, round by round: in round k every
Service port sends to its k-th backend, so each backend is probed in turn with real DNAT (prerouting
for pod-sent traffic, output for the node path), hairpin masquerade included (kube-proxy marks a
connection whose source is its own backend and masquerades it at srcnat). NodePorts are probed at the
node's own address, DNATed wherever the destination is local and always masqueraded. The node path (a pod's
address sent from the node, LOCAL_OUT -> POSTROUTING: IPVS's path) gets its replies back through a
connection mark and a local route, so its probes complete like any other.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from netpol.errors import LabError
from netpol.evaluate.services import Backend, backends
from netpol.k8s.model import Cluster, IPAddress, Service, ServicePort
from netpol.lab.probe import NODE_PATH, NODE_PATH_MARK, POD_PATH, Probe
from netpol.lab.topology import GATEWAY_V4, GATEWAY_V6, LabState
from netpol.netns import run_in

TABLE = "netpol_lab_proxy"
MASQUERADE_MARK = 0x4000  # kube-proxy's own bit
REPLY_MARK = 0x200  # replies of node-path connections: routed to the node's own sockets
REPLY_TABLE = 100
IP = {4: "ip", 6: "ip6"}
PATHS = (POD_PATH, NODE_PATH)
NODE_ADDRESS = {4: GATEWAY_V4, 6: GATEWAY_V6}  # the lab node's own address, as pods reach it


@dataclass(frozen=True)
class Pin:
    """In one round, a Service address and port sent to one backend: a ClusterIP and Service port,
    or (nodeport) the node's own address and the port's nodePort."""

    service: Service
    address: IPAddress
    port: ServicePort
    backend: Backend
    nodeport: bool = False

    @property
    def entry_port(self) -> int:
        return self.port.node_port if self.nodeport and self.port.node_port else self.port.port

    def probe(self, src: str, path: str) -> Probe:
        assert self.backend.pod is not None
        return Probe(src, self.backend.pod.key, self.entry_port, self.port.protocol, str(self.address), path)


def rounds(cluster: Cluster, lab_keys: set[str]) -> list[list[Pin]]:
    """Round k pins every Service address and port to its k-th backend among the lab's pods
    (kube-proxy would pick among them at random); SCTP ports are left out (no SCTP sockets here)."""
    out: list[list[Pin]] = []
    for svc in cluster.services:
        if svc.type == "ExternalName" or svc.headless:
            continue
        entries = [(a, False) for a in svc.addresses]
        if svc.type in ("NodePort", "LoadBalancer"):
            entries += [(ipaddress.ip_address(NODE_ADDRESS[4]), True)]  # the node's own address
        for address, nodeport in entries:
            for sp in svc.ports:
                if sp.protocol == "SCTP" or (nodeport and not sp.node_port):
                    continue
                found = [b for b in backends(cluster, svc, sp, address.version).backends
                         if b.pod is not None and b.pod.key in lab_keys]
                for k, b in enumerate(found):
                    while len(out) <= k:
                        out.append([])
                    out[k].append(Pin(svc, address, sp, b, nodeport))
    return out


def target_ports(pins: Sequence[Pin]) -> list[tuple[int, str]]:
    """Ports the lab's servers must listen on: every backend's target port."""
    return sorted({(p.backend.port, p.port.protocol) for p in pins})


def _dnat(p: Pin) -> list[str]:
    v, proto = p.address.version, p.port.protocol.lower()
    match = f"{IP[v]} daddr {p.address} {proto} dport {p.port.port}"
    if p.nodeport:  # any local address, as kube-proxy matches NodePorts; always masqueraded (ETP Cluster)
        match = f"meta nfproto ipv{v} fib daddr type local {proto} dport {p.entry_port}"
        to = f"{p.backend.address}:{p.backend.port}" if v == 4 else f"[{p.backend.address}]:{p.backend.port}"
        return [f"{match} meta mark set meta mark or {MASQUERADE_MARK:#x}", f"{match} dnat {IP[v]} to {to}"]
    to = f"[{p.backend.address}]:{p.backend.port}" if v == 6 else f"{p.backend.address}:{p.backend.port}"
    return [f"{match} {IP[v]} saddr {p.backend.address} meta mark set meta mark or {MASQUERADE_MARK:#x}",
            f"{match} dnat {IP[v]} to {to}"]


def table_text(pins: Sequence[Pin]) -> str:
    rules = "".join(f"\t\t{r}\n" for p in pins for r in _dnat(p))
    return (f"table inet {TABLE} {{\n"
            "\tchain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }\n"
            "\tchain output { type nat hook output priority -100; policy accept; jump services; }\n"
            f"\tchain services {{\n{rules}\t}}\n"
            "\tchain postrouting { type nat hook postrouting priority srcnat; policy accept; "
            f"meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade; }}\n"
            "\tchain node_path_out { type filter hook output priority mangle; policy accept; "
            f"meta mark {NODE_PATH_MARK:#x} ct mark set {REPLY_MARK:#x}; }}\n"
            "\tchain node_path_in { type filter hook prerouting priority mangle; policy accept; "
            f"ct mark {REPLY_MARK:#x} meta mark set {REPLY_MARK:#x}; }}\n"
            "}\n")


def install(state: LabState, pins: Sequence[Pin]) -> None:
    """Replace the proxy table in the node netns with one that pins these backends."""
    text = f"table inet {TABLE}\ndelete table inet {TABLE}\n" + table_text(pins)

    def load() -> None:
        import nftables
        rc, _, err = nftables.Nftables().cmd(text)
        if rc != 0:
            raise LabError(f"cannot load the lab's Service table: {err.strip()}")

    run_in(state.node_netns, load)


def prepare(state: LabState, addresses: Sequence[IPAddress]) -> None:
    """Routes the node needs: Service addresses on a link of their own (so the node path can send to
    them, as IPVS puts them on kube-ipvs0; DNAT then routes anew), and node-path replies to the
    node's own sockets. The link is a veth pair (this kernel has no dummy links)."""
    dummy = f"{state.prefix}svc"
    cmds = [["link", "add", dummy, "type", "veth", "peer", "name", f"{state.prefix}svp"],
            ["link", "set", dummy, "up"], ["link", "set", f"{state.prefix}svp", "up"]]
    cmds += [["route", "add", f"{a}/{a.max_prefixlen}", "dev", dummy] for a in addresses]
    for v, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
        cmds += [[f"-{v}", "rule", "add", "fwmark", hex(REPLY_MARK), "lookup", str(REPLY_TABLE)],
                 [f"-{v}", "route", "add", "local", everything, "dev", "lo", "table", str(REPLY_TABLE)]]
    for cmd in cmds:
        done = subprocess.run(["ip", "-n", state.node_netns, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            raise LabError(f"ip {' '.join(cmd)} in {state.node_netns}: {done.stderr.strip()}")
