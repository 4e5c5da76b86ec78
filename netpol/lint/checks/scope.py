"""What the input holds that the linted answer leaves out."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.k8s.ignored import ignored
from netpol.lint.context import Context
from netpol.lint.registry import Hit, Location, check


@check("NP012", "not-evaluated", "warning", "An object changes connectivity, but netpol does not evaluate its kind.")
def not_evaluated(ctx: Context) -> Iterator[Hit]:
    """
    An Ingress or a Gateway route opens paths into pods; a Cilium or Calico policy allows or denies on
    top of NetworkPolicy. netpol evaluates NetworkPolicy v1 and the policy.networking.k8s.io tiers
    (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy) only, so every answer
    about such an input leaves these objects out; the other commands say so on stderr.

        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy     # enforced by Cilium, not counted by netpol
    """
    for raw in ctx.input.raws:
        kind = ignored(raw)
        if kind is not None:
            line, col = raw.position(("kind",))
            yield Location(raw.source.file, line, col, raw), f"{kind}: netpol does not evaluate this kind; " \
                "answers about this input leave it out"
