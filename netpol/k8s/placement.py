"""Reading placement: a pod spec's nodeSelector, required node affinity, tolerations and nodeName,
a Node's taints, and the namespace annotations that admission merges into pods, validated as the
API server does (operators, effects, value counts) with file, line and field."""

from __future__ import annotations

from netpol.k8s import names
from netpol.k8s.cursor import At
from netpol.k8s.model import NodeRequirement, NodeSelectorTerm, Placement, Taint, Toleration
from netpol.k8s.source import Path_

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
# admission plugins' namespace annotations (PodNodeSelector, PodTolerationRestriction)
NODE_SELECTOR = "scheduler.alpha.kubernetes.io/node-selector"
DEFAULT_TOLERATIONS = "scheduler.alpha.kubernetes.io/defaultTolerations"
TOLERATIONS_WHITELIST = "scheduler.alpha.kubernetes.io/tolerationsWhitelist"
NAMESPACE_ANNOTATIONS = (NODE_SELECTOR, DEFAULT_TOLERATIONS, TOLERATIONS_WHITELIST)


_EMPTY = Placement()
_FIELDS = ("nodeSelector", "affinity", "tolerations", "nodeName")


def placement(at: At, spec: Path_) -> Placement:
    found = at.get(spec, dict) or {}
    if not any(f in found for f in _FIELDS):  # most pods say nothing about their node
        return _EMPTY
    terms = None
    required = spec + ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
    if at.get(required, dict) is not None:
        path = required + ("nodeSelectorTerms",)
        terms = tuple(_term(at, path + (i,)) for i, _ in enumerate(at.items(path)))
    tolerations = tuple(toleration(at, spec + ("tolerations", i))
                        for i, _ in enumerate(at.items(spec + ("tolerations",))))
    selector = tuple(sorted(at.labels(spec + ("nodeSelector",)).items()))
    return Placement(node_selector=selector, terms=terms, tolerations=tolerations,
                     node_name=at.name(spec + ("nodeName",), names.dns1123_subdomain))


def _term(at: At, path: Path_) -> NodeSelectorTerm:
    return NodeSelectorTerm(
        expressions=tuple(_requirement(at, path + ("matchExpressions", i))
                          for i, _ in enumerate(at.items(path + ("matchExpressions",)))),
        fields=tuple(_requirement(at, path + ("matchFields", i), fields=True)
                     for i, _ in enumerate(at.items(path + ("matchFields",)))))


def _requirement(at: At, path: Path_, fields: bool = False) -> NodeRequirement:
    key = at.get(path + ("key",), str)
    if not key:
        raise at.fail("key is required", path + ("key",))
    if fields and key != "metadata.name":
        raise at.fail(f"matchFields key {key!r}: only metadata.name is supported", path + ("key",))
    op = at.get(path + ("operator",), str)
    allowed = ("In", "NotIn") if fields else NODE_OPERATORS
    if op not in allowed:
        raise at.fail(f"operator {op!r}: expected one of {', '.join(allowed)}", path + ("operator",))
    values = tuple(at.get(path + ("values", i), str) for i, _ in enumerate(at.items(path + ("values",))))
    if op in ("In", "NotIn") and not values:
        raise at.fail(f"{op} needs at least one value", path + ("values",))
    if op in ("Exists", "DoesNotExist") and values:
        raise at.fail(f"{op} takes no values", path + ("values",))
    if op in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        raise at.fail(f"{op} takes one integer value", path + ("values",))
    return NodeRequirement(key=key, operator=op, values=values)


def toleration(at: At, path: Path_) -> Toleration:
    op = at.get(path + ("operator",), str) or "Equal"
    if op not in ("Equal", "Exists"):
        raise at.fail(f"operator {op!r}: expected Equal or Exists", path + ("operator",))
    key, value = at.get(path + ("key",), str) or "", at.get(path + ("value",), str) or ""
    if op == "Exists" and value:
        raise at.fail("value must be empty when operator is Exists", path + ("value",))
    if not key and op != "Exists":
        raise at.fail("operator must be Exists when key is empty", path + ("operator",))
    effect = at.get(path + ("effect",), str) or ""
    if effect and effect not in EFFECTS:
        raise at.fail(f"effect {effect!r}: expected one of {', '.join(EFFECTS)}", path + ("effect",))
    return Toleration(key=key, operator=op, value=value, effect=effect)


def taints(at: At) -> tuple[Taint, ...]:
    out = []
    for i, _ in enumerate(at.items(("spec", "taints"))):
        path = ("spec", "taints", i)
        key, effect = at.get(path + ("key",), str), at.get(path + ("effect",), str)
        if not key:
            raise at.fail("key is required", path + ("key",))
        if effect not in EFFECTS:
            raise at.fail(f"effect {effect!r}: expected one of {', '.join(EFFECTS)}", path + ("effect",))
        out.append(Taint(key=key, value=at.get(path + ("value",), str) or "", effect=effect))
    if at.get(("spec", "unschedulable"), bool):  # what the scheduler sees for a cordoned node
        out.append(Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule"))
    return tuple(out)


def namespace_annotations(at: At) -> tuple[tuple[str, str], ...]:
    found = at.labels(("metadata", "annotations"), values=None)
    return tuple((k, found[k]) for k in NAMESPACE_ANNOTATIONS if k in found)
