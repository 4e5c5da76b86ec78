"""Established connections the policies no longer allow: found in conntrack, judged by `decide`, cut.

The table accepts replies and later packets of a connection on its conntrack entry, so a connection a
policy allowed when it started would outlive a change that denies it. After every change, each flow
that touches a local pod is judged as its first packet would be now (post-DNAT: the reply's source is
the real destination). Denied flows get REVOKE_MARK in their conntrack mark (other bits left
alone) and the base chains drop marked flows before accepting established ones. Entries are marked,
never deleted: a deleted entry would be re-created by the next mid-stream packet (`tcp_loose`) and the
connection would live on if its reverse direction is allowed. The node's own flows are left alone.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from netpol.evaluate.decide import Verdict, decide
from netpol.evaluate.matrix import Engine, PortQuery
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, IPAddress, Options
from netpol.nft.conntrack import Conntrack, Flow
from netpol.nft.render import REVOKE_MARK

ESTABLISHED = ("revoke", "keep")  # --established


@dataclass(frozen=True)
class Cut:
    """A flow the policies deny now, and why (worked out only when asked: most cuts are only counted)."""

    flow: Flow
    cluster: Cluster = field(repr=False, compare=False)
    opts: Options = field(default=Options(), repr=False, compare=False)

    @functools.cached_property
    def verdict(self) -> Verdict:
        f = self.flow
        return decide(self.cluster, _endpoint(self.cluster, f.client), _endpoint(self.cluster, f.server), f.port,
                      f.protocol, self.opts)

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
    """Flows touching a local pod that the policies deny now; `own` are the node's addresses (its own
    flows pass the table whatever the policies say)."""
    local = local_pod_addresses(cluster, node)
    judge = _Judge(cluster, opts)
    for f in flows:
        if f.mark & REVOKE_MARK or not f.live or f.client in own:
            continue
        if not (f.client in local or f.server in local):
            continue
        if not judge.allowed(f):
            yield Cut(f, cluster, opts)


class _Judge:
    """Verdicts per (client, server, protocol, port): between two pods from the matrix engine (built
    once there are enough of them to pay for it, and property-tested equal to `decide`), else from
    `decide`. Both sides count: a flow either side denies is denied (the other node cuts it too)."""

    ENGINE_AFTER = 256  # pod-to-pod questions answered by decide before the engine is built

    def __init__(self, cluster: Cluster, opts: Options) -> None:
        self.cluster, self.opts = cluster, opts
        self.seen: dict[tuple, bool] = {}
        self.engine: Engine | None = None
        self.asked = 0

    def allowed(self, f: Flow) -> bool:
        key = (f.client, f.server, f.protocol, f.port)
        hit = self.seen.get(key)
        if hit is None:
            hit = self.seen[key] = self._judge(f)
        return hit

    def _judge(self, f: Flow) -> bool:
        pods = self.cluster.by_address.get(f.client), self.cluster.by_address.get(f.server)
        if all(p is not None and p.kind == "Pod" and not p.host_network for p in pods):
            self.asked += 1
            if self.engine is None and self.asked > self.ENGINE_AFTER:
                self.engine = Engine(self.cluster, None, self.opts)
            if self.engine is not None:  # both sides: a flow either side denies is denied
                src, dst = (self.engine.index(p.key) for p in pods if p is not None)
                return self.engine.allowed(src, dst, PortQuery(f.port, f.protocol))
        return decide(self.cluster, _endpoint(self.cluster, f.client), _endpoint(self.cluster, f.server), f.port,
                      f.protocol, self.opts).allowed


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
