"""Node partitions: tenants' workloads kept on their own nodes (opt-in with --tenant-label, whose key
also names the tenant of a node). Shares its findings with `netpol tenants`."""

from __future__ import annotations

from collections.abc import Iterator
from weakref import WeakKeyDictionary

from netpol.evaluate.tenants import Finding, placement_findings
from netpol.k8s.model import NS_NAME_LABEL, Node, Pod
from netpol.lint.context import Context
from netpol.lint.registry import Hit, check

_FOUND: WeakKeyDictionary[Context, tuple[Finding, ...]] = WeakKeyDictionary()  # one run per lint, not kept after


def _findings(ctx: Context) -> tuple[Finding, ...]:
    found = _FOUND.get(ctx)
    if found is None:
        # no --tenant-label: nodes have no tenant to compare with
        found = () if ctx.tenant_label == NS_NAME_LABEL else \
            tuple(placement_findings(ctx.cluster, ctx.tenant_label, ctx.tenant_label, ctx.opts))
        _FOUND[ctx] = found
    return found


def _hits(ctx: Context, code: str) -> Iterator[Hit]:
    for f in _findings(ctx):
        if f.code != code:
            continue
        if isinstance(f.at, Node):
            yield ctx.at_object("Node", "", f.at.name, f.at.source, "metadata", "labels"), f.text
        elif isinstance(f.at, Pod):
            pod = f.at
            if pod.kind == "Pod":
                yield ctx.at_pod(pod, ("spec",)), f.text
            else:
                yield ctx.at_object(pod.kind, pod.namespace, pod.name, pod.source, "spec", "template", "spec"), f.text


@check("NP024", "off-partition", "error", "A tenant's workload can be scheduled onto another tenant's nodes "
       "(opt-in: --tenant-label KEY).", default=False)
def off_partition(ctx: Context) -> Iterator[Hit]:
    """
    With `--tenant-label KEY`, namespaces and nodes carrying KEY belong to the tenant it names. A
    workload whose nodeSelector, required node affinity and tolerations (after the namespace's
    PodNodeSelector and PodTolerationRestriction annotations) let it onto another tenant's node may
    share that machine with the other tenant's pods. Pin it with a nodeSelector on its own partition.
    """
    yield from _hits(ctx, "placement")


@check("NP025", "open-tenant-node", "warning", "A tenant's node has no NoSchedule or NoExecute taint: any "
       "namespace's pods may land on it (opt-in: --tenant-label KEY).", default=False)
def open_tenant_node(ctx: Context) -> Iterator[Hit]:
    """
    A node labelled for a tenant but not tainted accepts every pod whose selectors do not steer it
    elsewhere, including other tenants' pods without any nodeSelector. Taint tenant nodes
    (`KEY=<tenant>:NoSchedule`) and give the tenant's pods the matching toleration.
    """
    yield from _hits(ctx, "open-node")


@check("NP026", "pod-on-other-tenant-node", "error", "A pod runs on another tenant's node (opt-in: "
       "--tenant-label KEY).", default=False)
def pod_on_other_node(ctx: Context) -> Iterator[Hit]:
    """
    A running pod (`spec.nodeName`) of one tenant on a node labelled for another: the partition did not
    hold (it was scheduled before the taint, bound by name, or tolerates too much).
    """
    yield from _hits(ctx, "runs-on")


@check("NP027", "host-network-shared-node", "warning", "A tenant's host-network pod shares a node with another "
       "tenant's workloads: traffic to its own node is always allowed (opt-in: --tenant-label KEY).", default=False)
def host_network_shared_node(ctx: Context) -> Iterator[Hit]:
    """
    Traffic between a pod and its own node is always allowed, and a host-network pod sends from the
    node's address: it reaches every pod that can run on its node, whatever NetworkPolicy or
    ClusterNetworkPolicy say. Keep host-network pods on nodes only their own tenant may use.
    """
    yield from _hits(ctx, "shared-node")
