"""Named ports that resolve on no destination pod."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.k8s.model import DIRECTIONS, INGRESS, PROTOCOLS
from netpol.lint.context import Context
from netpol.lint.registry import Hit, check


@check("NP003", "named-port-undeclared", "warning",
       "A named port that no selected destination declares (or declares with another protocol).")
def named_port(ctx: Context) -> Iterator[Hit]:
    """
    A named port resolves on the destination pod: for ingress the pods the policy selects, for egress the
    pods the rule's peers match. If none of them declares a container port of that name *and protocol*,
    the entry allows nothing. A frequent cause is the protocol: `port: dns` with the default `protocol: TCP`
    when the pods name their UDP port `dns`.

    Quiet when the destinations are unknown (no pod in the input matches them: see NP001, NP002).

        ingress:
        - ports:
          - port: http-metrics      # the pods call it `metrics`
    """
    if not ctx.has_pods:
        return
    idx = ctx.index
    for pol in ctx.cluster.policies:
        for direction in DIRECTIONS:
            for i, rule in enumerate(pol.rules(direction)):
                named = [(j, e, e.port) for j, e in enumerate(rule.ports) if isinstance(e.port, str)]
                if not named:
                    continue
                dests = idx.selected(pol) if direction == INGRESS else idx.rule_peers(pol, rule)
                if not dests:
                    continue
                for j, entry, name in named:
                    if dests & idx.declares(name, entry.protocol):
                        continue
                    others = [p for p in PROTOCOLS if p != entry.protocol and dests & idx.declares(name, p)]
                    whom = "pods it selects" if direction == INGRESS else "pods its peers match"
                    msg = f"{direction} rule {i} port {entry.protocol}/{entry.port}: none of the {whom} " \
                          f"declares a {entry.protocol} port named {entry.port!r}"
                    if others:
                        holders = idx.keys(dests & idx.declares(name, others[0]), 2)
                        msg += f" ({holders} declare{'s' if ',' not in holders else ''} it as {others[0]}; " \
                               f"set protocol: {others[0]})"
                    yield ctx.at_rule(pol, direction, i, "ports", j, "port"), msg
