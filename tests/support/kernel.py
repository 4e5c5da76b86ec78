"""Kernel helpers: network namespaces, veth pairs, real connects, nft in a namespace, and the lab
(pods as namespaces) with probes compared against decide. Everything made here is removed."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator

from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, Options
from netpol.lab import LabHost, Probe, probe, topology
from netpol.lab.verify import hosts_for, lab_pods
from netpol.netns import run_in
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from support.worlds import EXT

_seq = itertools.count()


T = "npbt"


SKELETON = """
set allow4 { type ipv4_addr; flags interval; auto-merge; }
set plain4 { type ipv4_addr; flags interval; }
set allow6 { type ipv6_addr; flags interval; }
set svc { type ipv4_addr . inet_proto . inet_service; flags interval; }
set svc6 { type ipv6_addr . inet_proto . inet_service; }
map disp4 { type ipv4_addr : verdict; }
map disp6 { type ipv6_addr : verdict; flags interval; }
chain ing_x { ip saddr @allow4 counter accept comment "ns/x ingress[0]"; counter drop comment "ns/x default"; }
chain forward {
  type filter hook forward priority 0; policy accept;
  ct state established,related accept
  ip daddr vmap @disp4
  ip6 daddr vmap @disp6
  ip daddr . meta l4proto . th dport @svc counter accept comment "ns/x egress[0]"
}
"""


ELEMENTS = {
    "allow4": {"198.18.0.0/24", "198.18.1.0/24", "198.18.2.0-198.18.2.255", "198.18.9.1"},
    "plain4": {"198.18.4.0-198.18.4.255", "198.18.5.7"},
    "allow6": {"2001:db8::/64", "2001:db8:1::1"},
    "svc": {"198.18.0.1 . tcp . 80", "198.18.0.2 . udp . 1000-2000", "198.18.3.0/24 . 6 . 443"},
    "svc6": {"2001:db8::1 . tcp . 80"},
    "disp4": {"198.18.0.1 : jump ing_x", "198.18.0.2 : drop"},
    "disp6": {"2001:db8::/64 : jump ing_x"},
}


def sh(*args: str, ns: str | None = None, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def nft(ns: str, *args: str) -> str:
    return sh("nft", *args, ns=ns)


def rule_handles(ns: str) -> list[int]:
    doc = json.loads(nft(ns, "-j", "list", "table", "inet", T))
    return [o["rule"]["handle"] for o in doc["nftables"] if "rule" in o]


def netns_maker(prefix: str) -> Iterator[Callable[[], str]]:
    """Yields a maker of fresh network namespaces named PREFIX<pid>x<n>; all removed afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"{prefix}{os.getpid()}x{next(_seq)}"
        sh("ip", "netns", "add", name)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def veth_pair(client: str, server: str, veth: str) -> None:
    """client 198.18.0.1/24 <-> server 198.18.0.2/24 over one veth pair."""
    sh("ip", "link", "add", f"{veth}a", "netns", client, "type", "veth", "peer", f"{veth}b", "netns", server)
    for where, dev, addr in ((client, f"{veth}a", "198.18.0.1/24"), (server, f"{veth}b", "198.18.0.2/24")):
        sh("ip", "addr", "add", addr, "dev", dev, ns=where)
        sh("ip", "link", "set", dev, "up", ns=where)


def connects(client_ns: str, addr: str, port: int) -> bool:
    """A real TCP connect from inside client_ns."""
    sock = run_in(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.settimeout(0.5)
    try:
        sock.connect((addr, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


PORTS = (79, 80, 81, 82)


TIMEOUT = 0.5


def lab_maker() -> Iterator:
    """Yields `up(cluster, ports)`: the cluster's pods (and an external host) as a lab, prefix `npe`;
    every lab made is taken down afterwards, even when the test fails."""
    made: list[str] = []

    def up(c: Cluster, ports=PORTS):
        prefix = f"npe{uuid.uuid4().hex[:6]}"
        made.append(prefix)
        hosts = hosts_for(lab_pods(c)) + [LabHost("ext/ext", EXT)]
        return topology.up(hosts, prefix, [(p, proto) for p in ports for proto in ("TCP", "UDP")])

    try:
        yield up
    finally:
        for prefix in made:
            topology.down(prefix)


def _endpoint(c: Cluster, key: str, addr: str | None) -> Endpoint:
    if key == "ext/ext":
        return Endpoint(ip=ipaddress.ip_address(addr))
    if addr is None:
        return Endpoint(pod=c.by_key[key])
    ip = ipaddress.ip_address(addr)
    return Endpoint(pod=c.by_address.get(ip), ip=ip)


def _ip_of(ips: tuple[str, ...], version: int) -> str | None:
    return next((i for i in ips if ipaddress.ip_address(i).version == version), None)


def probe_all(state, c: Cluster, opts: Options, protocols=("TCP", "UDP"), ports=PORTS) -> tuple[int, list[str]]:
    """Probe every ordered pair, by primary address and by IPv6; kernel verdicts must equal decide's.
    Pod-to-pod by primary address is exactly the question `netpol matrix` answers."""
    keys = sorted(state.hosts)
    probes = [Probe(s, d, port, proto) for s, d in itertools.permutations(keys, 2)
              for port in ports for proto in protocols]
    bad, count = [], 0
    for family in (None, "ipv6"):
        seen = probe(state, probes, timeout=TIMEOUT, family=family)
        count += len(seen)
        for p, got in seen.items():
            version = 6 if family else ipaddress.ip_address(state.ips[p.dst][0]).version
            by_addr = family is not None or "ext/ext" in (p.src, p.dst)
            s_ip, d_ip = _ip_of(state.ips[p.src], version), _ip_of(state.ips[p.dst], version)
            src = _endpoint(c, p.src, s_ip if by_addr else None)
            dst = _endpoint(c, p.dst, d_ip if by_addr else None)
            want = decide(c, src, dst, p.port, p.protocol, opts).allowed
            if got != want:
                bad.append(f"{p.src}({s_ip}) -> {p.dst}({d_ip}) {p.protocol}/{p.port}: kernel "
                           f"{'allows' if got else 'denies'}, decide {'allows' if want else 'denies'}")
    return count, bad


def enforce(state, c: Cluster, opts: Options):
    return Enforcer(state.node_netns).apply(render(compile_plan(c, None, opts)))
