"""Kinds that change what connects but that netpol does not evaluate: an answer that leaves them out
must say so, not pass in silence.

Ingress and Gateway routes open paths into pods; other engines' policies (Cilium, Calico) allow or
deny on top of NetworkPolicy (the policy.networking.k8s.io tiers are read).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from netpol.k8s.source import RawObject

# API group -> kinds of it that change connectivity ("*": every kind of the group)
GROUPS: dict[str, frozenset[str]] = {
    "networking.k8s.io": frozenset({"Ingress", "NetworkPolicy"}),  # NetworkPolicy: only v1 is read
    "gateway.networking.k8s.io": frozenset({"Gateway", "HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute",
                                            "UDPRoute"}),
    "route.openshift.io": frozenset({"Route"}),
    "cilium.io": frozenset({"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}),
    "crd.projectcalico.org": frozenset({"NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                                        "StagedGlobalNetworkPolicy"}),
    "projectcalico.org": frozenset({"NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                                    "StagedGlobalNetworkPolicy"}),
    "policy.networking.k8s.io": frozenset({"AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
                                           "ClusterNetworkPolicy"}),
}
READ = {("networking.k8s.io", "NetworkPolicy"), ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy"),
        ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy"),
        ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy")}


def ignored(raw: RawObject) -> str | None:
    """`Kind (group/version)` when the object is of a kind netpol does not evaluate but that changes
    what connects; None otherwise."""
    api = str(raw.data.get("apiVersion") or "")
    group = api.rpartition("/")[0]
    if raw.kind not in GROUPS.get(group, ()) or (group, raw.kind) in READ or (api, raw.kind) in READ:
        return None
    return f"{raw.kind} ({api})"


def summary(raws: Iterable[RawObject]) -> tuple[tuple[str, int], ...]:
    """How many objects of each ignored kind the input holds, most first."""
    counts = Counter(k for k in map(ignored, raws) if k is not None)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def warning(counts: tuple[tuple[str, int], ...]) -> str | None:
    """The sentence a command prints on stderr, or None."""
    if not counts:
        return None
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts)
    return (f"the input holds objects that change connectivity but that netpol does not evaluate: {kinds}; "
            "the answer leaves them out")
