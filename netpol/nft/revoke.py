"""Established connections the policies no longer allow: found in conntrack, judged by `decide`, cut.

The table accepts replies and later packets of a connection on its conntrack entry, so a connection a
policy allowed when it started would outlive a change that denies it. After every change, each flow
that touches a local pod is judged as its first packet would be now (post-DNAT: the reply's source is
the real destination), on the sides this node enforces (egress when the client is a local pod,
ingress when the server is). Denied flows get REVOKE_MARK in their conntrack mark (other bits left
alone) and the base chains drop marked flows before accepting established ones. Entries are marked,
never deleted: a deleted entry would be re-created by the next mid-stream packet (`tcp_loose`) and the
connection would live on if its reverse direction is allowed. The node's own flows are left alone.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netpol.evaluate.decide import Verdict, decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, IPAddress, Options
from netpol.nft.conntrack import Conntrack, Flow
from netpol.nft.render import REVOKE_MARK

ESTABLISHED = ("revoke", "keep")  # --established


@dataclass(frozen=True)
class Cut:
    """A flow the policies deny now, and why."""

    flow: Flow
    verdict: Verdict

    @property
    def reason(self) -> str:
        sides = [s for s in (self.verdict.egress, self.verdict.ingress) if not s.allowed]
        return " | ".join(r for s in sides for r in s.reasons)

    def to_json(self) -> dict:
        f = self.flow
        return {"protocol": f.protocol, "src": self.verdict.src, "src_address": str(f.client),
                "src_port": f.original.sport, "dst": self.verdict.dst, "dst_address": str(f.server), "port": f.port,
                "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.verdict.src} -> {self.verdict.dst} {self.flow}: {self.reason}"


def local_pod_addresses(cluster: Cluster, node: str | None) -> set[IPAddress]:
    """Addresses of the policed pods whose rules this node holds (None: every node's)."""
    return {a for p in cluster.pods if p.kind == "Pod" and not p.host_network
            and (node is None or p.node_name == node) for a in p.addresses}


def denied(cluster: Cluster, node: str | None, flows: Iterable[Flow], own: set[IPAddress],
           opts: Options = Options()) -> Iterator[Cut]:
    """Flows touching a local pod that the sides this node enforces deny now; `own` are the node's
    addresses (its own flows pass the table whatever the policies say)."""
    local = local_pod_addresses(cluster, node)
    seen: dict[tuple, Verdict] = {}
    for f in flows:
        if f.mark & REVOKE_MARK or not f.live or f.client in own:
            continue
        client_local, server_local = f.client in local, f.server in local
        if not (client_local or server_local):
            continue
        key = (f.client, f.server, f.protocol, f.port)
        v = seen.get(key)
        if v is None:
            v = seen[key] = decide(cluster, _endpoint(cluster, f.client), _endpoint(cluster, f.server), f.port,
                                   f.protocol, opts)
        if (client_local and not v.egress.allowed) or (server_local and not v.ingress.allowed):
            yield Cut(f, v)


def _endpoint(cluster: Cluster, address: IPAddress) -> Endpoint:
    return Endpoint(pod=cluster.by_address.get(address), ip=address)


def node_addresses(netns: str | None) -> set[IPAddress]:
    """The addresses on the netns's own interfaces."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", "addr", "show"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        return set()
    return {ipaddress.ip_address(a["local"]) for link in json.loads(done.stdout or "[]")
            for a in link.get("addr_info", []) if "local" in a}


def revoke(netns: str | None, cluster: Cluster, node: str | None, opts: Options = Options(),
           dry_run: bool = False) -> list[Cut]:
    """Mark (unless dry_run) and return the flows the cluster's policies deny now."""
    with Conntrack(netns) as ct:
        cuts = list(denied(cluster, node, ct.flows(), node_addresses(netns), opts))
        if cuts and not dry_run:
            ct.set_mark([c.flow for c in cuts], REVOKE_MARK)
    return cuts
