"""Isolation per namespace: pods nothing isolates, and allow-all rules that void a default deny."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.k8s.model import DIRECTIONS, INGRESS, NetworkPolicy, Rule
from netpol.lint.context import Context
from netpol.lint.registry import Hit, check


@check("NP005", "not-isolated", "info", "Pods that no policy isolates for ingress (or egress), per namespace.")
def not_isolated(ctx: Context) -> Iterator[Hit]:
    """
    A pod is isolated for ingress (egress) only when some policy of its namespace selects it with Ingress
    (Egress) in its policyTypes; until then every connection to (from) it is allowed. Reported once per
    namespace and direction, pointing at the Namespace object (or the first pod of the namespace).
    Host-network pods are left out: policies never apply to them.

    The usual remedy is a default-deny policy per namespace plus explicit allows:

        spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
    """
    idx = ctx.index
    for ns, bits in idx.in_ns.items():
        pods = bits & idx.policed
        for direction in DIRECTIONS:
            open_ = pods & ~ctx.isolated(direction)
            if not open_:
                continue
            n, total = open_.bit_count(), pods.bit_count()
            yield ctx.at_namespace(ns), \
                f"{n} of {total} pod{'s' if total != 1 else ''} in namespace {ns} " \
                f"{'is' if n == 1 else 'are'} not isolated for {direction} ({idx.keys(open_)})"


def _default_deny(pol: NetworkPolicy, direction: str) -> bool:
    return pol.pod_selector.empty and pol.affects(direction) and not pol.rules(direction)


def _allow_all(rule: Rule) -> str | None:
    """How a rule allows every peer on every port, if it does."""
    if rule.ports:
        return None
    if not rule.peers:
        return "anywhere"
    for peer in rule.peers:
        if peer.ip_block is None and peer.namespace_selector is not None and peer.namespace_selector.empty \
                and (peer.pod_selector is None or peer.pod_selector.empty):
            return "every pod in every namespace"
    return None


@check("NP010", "allow-all-voids-deny", "warning",
       "An allow-all rule in a namespace that also has a default-deny policy (the deny is void).")
def allow_all_voids_deny(ctx: Context) -> Iterator[Hit]:
    """
    A default-deny policy (empty podSelector, the direction in policyTypes, no rules for it) only means
    something while no other policy allows everything to the same pods: policies are additive, so an
    allow-all rule (`- {}`, or a peer `namespaceSelector: {}` with no podSelector, and no ports) on a
    policy selecting every pod of the namespace undoes the deny. Reported at the allow-all rule.

        spec:
          podSelector: {}
          ingress:
          - {}          # allows everything; the namespace's default-deny no longer denies anything
    """
    idx = ctx.index
    for ns in ctx.cluster.namespaces:
        pols = ctx.cluster.policies_in(ns)
        for direction in DIRECTIONS:
            denies = [p for p in pols if _default_deny(p, direction)]
            if not denies:
                continue
            everyone = idx.in_ns.get(ns, 0) & idx.policed
            for pol in pols:
                if not pol.affects(direction):
                    continue
                covers = pol.pod_selector.empty or (everyone and idx.selected(pol) == everyone)
                if not covers:
                    continue
                for i, rule in enumerate(pol.rules(direction)):
                    how = _allow_all(rule)
                    if how is None:
                        continue
                    word = "from" if direction == INGRESS else "to"
                    yield ctx.at_rule(pol, direction, i), \
                        f"{direction} rule {i} of {pol.key} allows all ports {word} {how} for every pod of " \
                        f"{ns}, which voids default-deny {', '.join(d.key for d in denies)} for {direction}"
