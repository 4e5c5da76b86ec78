"""The compiler pipeline as the agent runs it, paying per batch for what changed.

Snapshot → plan: `update_plan` from the last plan when only pods changed (the common case; it
looks only at the addresses those pods held or hold), else `compile_plan`. Plan → ruleset:
`render(..., previous=)` the ruleset last applied, so unchanged sets are the same objects and
the changed ones are listed, and `Enforcer.apply` sends just those elements (nfnetlink fast
path) without reading the table back.

`--log-denied` and `--audit` change only what each namespace chain's final default-deny rule
does. render has no option for that yet, so the agent rewrites those rules in the skeleton,
found by the comment render gives them (`<ns> default deny <direction>`):

- log-denied: a rate-limited `log prefix "netpol deny <direction> <ns> "` rule (no verdict)
  before the drop; the logged SRC= (egress) or DST= (ingress) is the pod's address;
- audit: the drop becomes log + `counter accept` (ingress) or `counter return` (egress, so the
  destination's ingress policy is still evaluated and logged), with the comment marked `audit`.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import replace

from ..compile import Plan, compile_plan, update_plan
from ..render import render
from ..ruleset import Ruleset
from .reconcile import Built
from .store import Snapshot

_DENY = re.compile(r'^(?P<indent>[ \t]*)counter drop comment "(?P<ns>[a-z0-9.-]+) default deny (?P<dir>ingress|egress)"$',
                   re.MULTILINE)
LOG_RATE = "limit rate 10/second burst 20 packets"


def log_prefix(namespace: str, direction: str) -> str:
    return f"netpol deny {direction} {namespace} "[:60]  # the kernel keeps 127 bytes


def deny_actions(rs: Ruleset, *, log_denied: bool = False, audit: bool = False) -> Ruleset:
    """Rewrite every default-deny rule for --log-denied / --audit; unchanged when neither is set."""
    if not (log_denied or audit):
        return rs

    def one(m: re.Match) -> str:
        ind, ns, d = m["indent"], m["ns"], m["dir"]
        log = f'{ind}{LOG_RATE} log prefix "{log_prefix(ns, d)}" comment "{ns} default deny {d} log"\n'
        if not audit:
            return log + m[0]
        verdict = "accept" if d == "ingress" else "return"
        return log + f'{ind}counter {verdict} comment "{ns} default deny {d} audit"'

    return replace(rs, skeleton=_DENY.sub(one, rs.skeleton))


class Pipeline:
    """Builds each batch's ruleset, remembering the last plan and what render made of it."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._plan: Plan | None = None
        self._version = -1  # the snapshot version the plan is of
        self._made: list[tuple[Ruleset, Ruleset]] = []  # recent (as returned, as rendered), newest last

    def __call__(self, snap: Snapshot, applied: Ruleset | None) -> Built:
        cfg, t0 = self.cfg, time.perf_counter()
        plan, self._plan = self._plan, None  # kept only if this batch compiles
        if plan is not None and snap.changes is not None and snap.since == self._version:
            plan, how = update_plan(plan, snap.cluster, snap.changes, cfg.node, cfg.options), "update"
        else:
            plan, how = compile_plan(snap.cluster, cfg.node, cfg.options), "full"
        self._plan, self._version = plan, snap.version
        t1 = time.perf_counter()
        # Only pods changed: the skeleton is the same, unchanged sets are shared and changes listed.
        # Otherwise the skeleton may change and apply compares the whole table anyway.
        rendered_before = self._rendered(applied) if how == "update" else None
        rendered = render(plan, cfg.table, previous=rendered_before)
        rs = self._deny_actions(rendered, applied, rendered_before)
        self._made = [*self._made[-1:], (rs, rendered)]
        t2 = time.perf_counter()
        return Built(rs, pods=len(plan.pods), isolated=len(plan.enforced), policies=len(plan.policies),
                     compiled=how, compile_ms=(t1 - t0) * 1000, render_ms=(t2 - t1) * 1000)

    def _rendered(self, applied: Ruleset | None) -> Ruleset | None:
        """What render made of the ruleset last applied (they differ by the deny actions)."""
        for rs, rendered in self._made:
            if rs is applied:
                return rendered
        return None if self.cfg.log_denied or self.cfg.audit else applied

    def _deny_actions(self, rendered: Ruleset, applied: Ruleset | None, before: Ruleset | None) -> Ruleset:
        cfg = self.cfg
        if not (cfg.log_denied or cfg.audit):
            return rendered
        if applied is not None and before is not None and rendered.diffed_from(before):  # before: of applied
            # the same rewrite of the same skeleton: keep the element changes render listed, now
            # from the ruleset as applied, so apply can still trust them
            return Ruleset(rendered.table, applied.skeleton, rendered.elements, weakref.ref(applied), rendered.changes)
        return deny_actions(rendered, log_denied=cfg.log_denied, audit=cfg.audit)


def builder(cfg) -> Pipeline:
    """The agent's Build for its config (node, table, options, deny actions)."""
    return Pipeline(cfg)
