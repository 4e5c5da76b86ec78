"""The agent's conntrack pass: after the rules change, cut the established flows they no longer allow,
and say for each which rule allowed it before and why it is denied now."""

from __future__ import annotations

import logging
import time

from netpol.agent.metrics import Metrics
from netpol.agent.store import Snapshot
from netpol.evaluate.decide import RuleRef, decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster
from netpol.nft.revoke import Cut, revoke

log = logging.getLogger("netpol.agent")
LOGGED = 20  # cut connections logged one by one per pass; the rest are counted


class Revoker:
    def __init__(self, cfg, metrics: Metrics) -> None:
        self.cfg, self.metrics = cfg, metrics
        self._before: Cluster | None = None  # the cluster of the last pass: what allowed a flow

    def __call__(self, snap: Snapshot) -> None:
        start = time.monotonic()
        cuts = revoke(self.cfg.netns, snap.cluster, self.cfg.node, self.cfg.options)
        self.metrics.revoke_seconds.observe(time.monotonic() - start)
        self.metrics.revoked.inc(len(cuts))
        for c in cuts[:LOGGED]:
            log.warning("cut an established connection the policies no longer allow", extra={"fields": {
                "flow": str(c.flow), "src": c.verdict.src, "dst": c.verdict.dst, "reason": c.reason,
                "allowed_before_by": self._allowed_before(c)}})
        if len(cuts) > LOGGED:
            log.warning("cut more established connections", extra={"fields": {"count": len(cuts) - LOGGED}})
        if cuts:
            log.info("conntrack pass", extra={"fields": {"cut": len(cuts), "ms": round(
                (time.monotonic() - start) * 1000, 1)}})
        self._before = snap.cluster

    def _allowed_before(self, c: Cut) -> str:
        """The rules that allowed the flow in the previous pass's cluster (empty: not isolated then)."""
        if self._before is None:
            return "unknown (first pass since start)"
        old = self._before
        v = decide(old, Endpoint(old.by_address.get(c.flow.client), c.flow.client),
                   Endpoint(old.by_address.get(c.flow.server), c.flow.server), c.flow.port, c.flow.protocol,
                   self.cfg.options)
        refs: list[RuleRef] = [*v.egress.allowed_by, *v.ingress.allowed_by]
        return ", ".join(f"{r.policy} rule {r.rule}" for r in refs) or "no policy isolated it"
