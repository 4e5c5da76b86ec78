"""The compiler pipeline as the agent runs it, paying per batch for what changed.

Snapshot → plan: `update_plan` from the last plan when only pods changed (the common case; it
looks only at the addresses those pods held or hold), else `compile_plan`. Plan → ruleset:
`render(..., previous=)` the ruleset last applied, so sets whose plan parts are unchanged are
reused without formatting, unchanged sets are the same objects, the changed ones are listed, and
`Enforcer.apply` sends just those elements (nfnetlink fast path) without reading the table back.

`--log-denied` / `--audit` are render's `deny="log"` / `deny="audit"`: what each namespace's
default-deny chain does (see `netpol.nft.render`).
"""

from __future__ import annotations

import time

from netpol.agent.failmode import parse_cidrs
from netpol.agent.reconcile import Built
from netpol.agent.store import Snapshot
from netpol.nft.plan import Plan, compile_plan
from netpol.nft.render import render
from netpol.nft.ruleset import Ruleset
from netpol.nft.update import update_plan


def deny_mode(cfg) -> str:
    """render's deny action for the agent's flags (--audit wins over --log-denied)."""
    return "audit" if cfg.audit else "log" if cfg.log_denied else "drop"


class Pipeline:
    """Builds each batch's ruleset, remembering the last plan."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._plan: Plan | None = None
        self._version = -1  # the snapshot version the plan is of

    def __call__(self, snap: Snapshot, applied: Ruleset | None) -> Built:
        cfg, t0 = self.cfg, time.perf_counter()
        plan, self._plan = self._plan, None  # kept only if this batch compiles
        if plan is not None and snap.changes is not None and snap.since == self._version:
            plan, how = update_plan(plan, snap.cluster, snap.changes, cfg.node, cfg.options), "update"
        else:
            plan, how = compile_plan(snap.cluster, cfg.node, cfg.options, parse_cidrs(cfg.pod_cidrs)), "full"
        self._plan, self._version = plan, snap.version
        t1 = time.perf_counter()
        # render compares with what was applied: equal skeleton and sets are shared, changes listed
        rs = render(plan, cfg.table, previous=applied, deny=deny_mode(cfg))
        t2 = time.perf_counter()
        return Built(rs, pods=len(plan.pods), isolated=len(plan.enforced), policies=len(plan.policies),
                     compiled=how, compile_ms=(t1 - t0) * 1000, render_ms=(t2 - t1) * 1000)
