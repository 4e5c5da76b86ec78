"""The compiler pipeline as the agent runs it: Cluster → compile_plan → render → deny actions.

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
from dataclasses import replace

from ..compile import compile_plan
from ..model import Cluster
from ..render import render
from ..ruleset import Ruleset
from .reconcile import Build, Built

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


def builder(cfg) -> Build:
    """The agent's Build for its config (node, table, options, deny actions)."""

    def build(cluster: Cluster) -> Built:
        plan = compile_plan(cluster, cfg.node, cfg.options)
        rs = deny_actions(render(plan, cfg.table), log_denied=cfg.log_denied, audit=cfg.audit)
        return Built(rs, pods=len(plan.pods), isolated=len(plan.enforced), policies=len(plan.policies))

    return build
