"""Where the scheduler may put a pod: the nodes a pod (or a workload's template) can be scheduled
on, from what admission and the scheduler's filters read, and nothing else.

Admission first, as the namespace's plugins do: PodNodeSelector merges the namespace's
`scheduler.alpha.kubernetes.io/node-selector` into the pod's nodeSelector (a conflicting key
rejects the pod); PodTolerationRestriction adds the namespace's default tolerations and rejects a
pod whose tolerations are not all in the namespace's whitelist. Then per node: nodeName (set:
that node only; the scheduler is bypassed, so only NoExecute taints still keep the pod off), the
nodeSelector's labels, required node affinity (terms ORed, requirements ANDed; matchFields on the
node's name) and taints (NoSchedule and NoExecute must be tolerated; a cordoned node counts as
tainted). Resources, pod (anti-)affinity, topology spread and preferences are not modelled: they
can only narrow the set, never widen it.

Nodes that agree on labels and taints answer alike, so each class is asked once per pod kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netpol.k8s.model import Cluster, Namespace, Node, NodeRequirement, NodeSelectorTerm, Placement, Pod, Toleration
from netpol.k8s.placement import DEFAULT_TOLERATIONS, NODE_SELECTOR, TOLERATIONS_WHITELIST

BLOCKING = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Admitted:
    """A pod as admission leaves it: its placement with the namespace's additions, or why it is refused."""

    placement: Placement
    refused: str | None = None


def _selector_text(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


def _tolerations_text(text: str) -> tuple[Toleration, ...]:
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(Toleration(key=t.get("key") or "", operator=t.get("operator") or "Equal",
                            value=t.get("value") or "", effect=t.get("effect") or "")
                 for t in items if isinstance(t, dict))


def admit(pod: Pod, ns: Namespace | None) -> Admitted:
    p = pod.placement
    if ns is None:
        return Admitted(p)
    selector = dict(p.node_selector)
    extra = _selector_text(ns.annotation(NODE_SELECTOR) or "")
    for k, v in extra.items():
        if k in selector and selector[k] != v:
            return Admitted(p, f"its nodeSelector {k}={selector[k]} conflicts with namespace {ns.name}'s "
                               f"node-selector {k}={v} (PodNodeSelector refuses it)")
        selector[k] = v
    tolerations = p.tolerations + tuple(t for t in _tolerations_text(ns.annotation(DEFAULT_TOLERATIONS) or "")
                                        if t not in p.tolerations)
    allowed = ns.annotation(TOLERATIONS_WHITELIST)
    if allowed is not None:
        whitelist = _tolerations_text(allowed)
        stray = [t for t in p.tolerations if t not in whitelist]
        if stray:
            return Admitted(p, f"toleration {stray[0].key or '*'} is not in namespace {ns.name}'s whitelist "
                               "(PodTolerationRestriction refuses it)")
    return Admitted(Placement(node_selector=tuple(sorted(selector.items())), terms=p.terms, tolerations=tolerations,
                              node_name=p.node_name))


def _requirement(req: NodeRequirement, value: str | None) -> bool:
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if req.operator == "In":
        return value is not None and value in req.values
    if req.operator == "NotIn":
        return value is None or value not in req.values
    try:  # Gt, Lt: both sides integers, else no match
        number, bound = int(value or ""), int(req.values[0])
    except ValueError:
        return False
    return number > bound if req.operator == "Gt" else number < bound


def _term(term: NodeSelectorTerm, node: Node) -> bool:
    if not term.expressions and not term.fields:
        return False  # an empty term matches no node
    return all(_requirement(r, node.labels.get(r.key)) for r in term.expressions) and \
        all(_requirement(r, node.name) for r in term.fields)


def untolerated(tolerations: Sequence[Toleration], node: Node, effects: Iterable[str] = BLOCKING) -> list[str]:
    wanted = set(effects)
    return [t.describe() for t in node.taints if t.effect in wanted and not any(x.tolerates(t) for x in tolerations)]


def fits(p: Placement, node: Node) -> bool:
    if p.node_name is not None:  # bound directly: only NoExecute taints still evict it
        return p.node_name == node.name and not untolerated(p.tolerations, node, ("NoExecute",))
    if any(node.labels.get(k) != v for k, v in p.node_selector):
        return False
    if p.terms is not None and not any(_term(t, node) for t in p.terms):
        return False
    return not untolerated(p.tolerations, node)


def schedulable(cluster: Cluster, pod: Pod) -> tuple[list[Node], str | None]:
    """The nodes the pod may run on, or why admission refuses it."""
    admitted = admit(pod, cluster.namespaces.get(pod.namespace))
    if admitted.refused:
        return [], admitted.refused
    classes: dict[tuple, bool] = {}
    out = []
    names_matter = admitted.placement.node_name is not None or any(
        t.fields for t in admitted.placement.terms or ())
    for node in cluster.nodes:
        key = (node.name if names_matter else None, node.labels, node.taints)
        hit = classes.get(key)
        if hit is None:
            hit = classes[key] = fits(admitted.placement, node)
        if hit:
            out.append(node)
    return out, None
