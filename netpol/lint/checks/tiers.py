"""ClusterNetworkPolicy tiers: orders that the spec leaves undefined, and rules no offline check can decide."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.evaluate.tiers import subject_of
from netpol.k8s.model import ClusterNetworkPolicy
from netpol.lint.context import Context
from netpol.lint.registry import Hit, Location, check


def at_cnp(ctx: Context, cnp: ClusterNetworkPolicy, *path: str | int) -> Location:
    raw = ctx.input.raw_of(cnp.kind, "", cnp.name)
    if raw is None:
        src = cnp.source
        return Location(src.file if src else "<input>", src.line if src else 0, 0, None)
    return Location.of(raw, tuple(path))


@check("NP018", "cnp-priority-tie", "warning",
       "Two ClusterNetworkPolicies of one tier share a priority and a subject pod: their order is undefined.")
def priority_tie(ctx: Context) -> Iterator[Hit]:
    """
    Within a tier, a lower `priority` goes first; for equal priorities the spec leaves the order to the
    implementation ("no way for the user to reliably determine which one it will choose").
    kube-network-policies, Calico and netpol order them by name, but other implementations may not: give
    policies whose subjects overlap distinct priorities.
    """
    pods = [p for p in ctx.cluster.pods if not p.host_network]
    tiers = ctx.cluster.cluster_policies
    for i, a in enumerate(tiers):
        for b in tiers[i + 1:]:
            if (a.tier, a.priority) != (b.tier, b.priority):
                continue
            shared = next((p for p in pods if subject_of(ctx.cluster, a, p) and subject_of(ctx.cluster, b, p)), None)
            if shared is None and pods:
                continue
            why = f"both select {shared.key}" if shared is not None else "no pods in the input to tell"
            yield at_cnp(ctx, b, "spec", "priority"), \
                f"{b.tier} ClusterNetworkPolicy {b.name} has priority {b.priority} like {a.name} ({why}): their " \
                f"order is undefined; netpol applies {a.name} first (by name)"


@check("NP019", "cnp-domain-names", "info", "A domainNames peer: what the names resolve to is not known offline.")
def domain_names(ctx: Context) -> Iterator[Hit]:
    """
    `domainNames` peers match the addresses DNS answers for the names at the time of the connection.
    Offline, netpol cannot know them: `check` and `matrix` take such peers as matching nothing and say
    so in their explanation ("unverified").
    """
    for cnp in ctx.cluster.cluster_policies:
        for i, rule in enumerate(cnp.egress):
            for j, peer in enumerate(rule.peers):
                if peer.domain_names:
                    yield at_cnp(ctx, cnp, "spec", "egress", i, "to", j, "domainNames"), \
                        f"egress rule {i} of {cnp.name} matches {', '.join(peer.domain_names)}: not verifiable " \
                        "offline (answers take it as matching nothing)"
