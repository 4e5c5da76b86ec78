"""Strict fields: an object netpol models may hold only the fields its API type has, as kubectl's
strict field validation requires (the default since Kubernetes 1.27).

A typo is not a harmless extra: `podSelector: {matchLabel: ...}` read leniently selects every pod of
the namespace, and `ingress: [{fromm: ...}]` allows from anywhere. The field lists come from the
official client's models (the OpenAPI schema of the API it was generated from), kept in fields.json
(scripts/gen_fields.py writes it; importing the client would cost 0.3 s a run). Kinds netpol does
not model are not checked: their fields are not its business.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netpol.k8s.source import Path_, RawObject

# kind -> the client model of its API type
MODELS = {"NetworkPolicy": "V1NetworkPolicy", "Pod": "V1Pod", "Namespace": "V1Namespace", "Service": "V1Service",
          "Deployment": "V1Deployment", "StatefulSet": "V1StatefulSet", "DaemonSet": "V1DaemonSet",
          "ReplicaSet": "V1ReplicaSet", "ReplicationController": "V1ReplicationController", "Job": "V1Job",
          "CronJob": "V1CronJob", "EndpointSlice": "V1EndpointSlice", "Node": "V1Node"}
_CONTAINER = re.compile(r"(List|Dict)\[(?:str, )?(.+)\]")  # List[V1Container], Dict[str, str]

# ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, a CRD the client has no models for): its
# fields, from the CRD's schema (standard and experimental channels together)
CRD_MODELS = {"ClusterNetworkPolicy": "CNP", "AdminNetworkPolicy": "ANP",  # kind -> model, beside MODELS
              "BaselineAdminNetworkPolicy": "BANP"}
_CRD_MODELS = {
    "CNP": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "CNPSpec", "status": "object"},
    "CNPSpec": {"tier": "str", "priority": "int", "subject": "CNPSubject", "ingress": "List[CNPIngressRule]",
                "egress": "List[CNPEgressRule]"},
    "CNPSubject": {"namespaces": "V1LabelSelector", "pods": "CNPPods"},
    "CNPPods": {"namespaceSelector": "V1LabelSelector", "podSelector": "V1LabelSelector"},
    "CNPIngressRule": {"name": "str", "action": "str", "from": "List[CNPSubject]", "protocols": "List[CNPProtocol]"},
    "CNPEgressRule": {"name": "str", "action": "str", "to": "List[CNPEgressPeer]", "protocols": "List[CNPProtocol]"},
    "CNPEgressPeer": {"namespaces": "V1LabelSelector", "pods": "CNPPods", "networks": "List[str]",
                      "nodes": "V1LabelSelector", "domainNames": "List[str]"},
    "CNPProtocol": {"tcp": "CNPPortOf", "udp": "CNPPortOf", "sctp": "CNPPortOf", "destinationNamedPort": "str"},
    "CNPPortOf": {"destinationPort": "CNPPort"},
    "CNPPort": {"number": "int", "range": "CNPRange"},
    "CNPRange": {"start": "int", "end": "int"},
    # v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy, read as the Admin and Baseline tiers
    "ANP": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "ANPSpec", "status": "object"},
    "BANP": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "BANPSpec", "status": "object"},
    "ANPSpec": {"priority": "int", "subject": "ANPPeer", "ingress": "List[ANPIngressRule]",
                "egress": "List[ANPEgressRule]"},
    "BANPSpec": {"subject": "ANPPeer", "ingress": "List[ANPIngressRule]", "egress": "List[ANPEgressRule]"},
    "ANPPeer": {"namespaces": "object", "pods": "object"},  # old shapes are refused by the reader itself
    "ANPIngressRule": {"name": "str", "action": "str", "from": "List[ANPPeer]", "ports": "List[ANPPort]"},
    "ANPEgressRule": {"name": "str", "action": "str", "to": "List[ANPEgressPeer]", "ports": "List[ANPPort]"},
    "ANPEgressPeer": {"namespaces": "object", "pods": "object", "networks": "List[str]", "nodes": "V1LabelSelector"},
    "ANPPort": {"portNumber": "ANPPortNumber", "namedPort": "str", "portRange": "ANPPortRange"},
    "ANPPortNumber": {"protocol": "str", "port": "int"},
    "ANPPortRange": {"protocol": "str", "start": "int", "end": "int"},
}


# Fields the API once had and exports still carry: NetworkPolicy status (alpha, 1.24-1.27), which
# netpol ignores like any status.
_LEGACY = {"V1NetworkPolicy": {"status": "object"}}


SCHEMA_FILE = Path(__file__).with_name("fields.json")  # written by scripts/gen_fields.py


@functools.cache
def _schema() -> dict[str, dict[str, str]]:
    return json.loads(SCHEMA_FILE.read_text()) | _CRD_MODELS


@functools.cache
def _fields(model: str) -> dict[str, str] | None:
    """JSON field name -> type of a model; None for a type that is not a model."""
    found = _schema().get(model)
    return None if found is None else found | _LEGACY.get(model, {})


@functools.cache
def _shape(typ: str) -> tuple[str, Any]:
    """("List"|"Dict", inner type), ("model", its fields), or ("scalar", None)."""
    container = _CONTAINER.fullmatch(typ)
    if container:
        return container.group(1), container.group(2)
    fields = _fields(typ)
    return ("scalar", None) if fields is None else ("model", fields)


def _unknown(node: Any, typ: str, path: Path_) -> Iterator[tuple[Path_, list[str]]]:
    """(path, known names) for every field the type does not have, depth first in input order.
    Scalars are not descended into: most values are."""
    kind, what = _shape(typ)
    if kind == "model" and isinstance(node, dict):
        for key, value in node.items():
            if key not in what:
                yield path + (key,), list(what)
            elif isinstance(value, dict | list):
                yield from _unknown(value, what[key], path + (key,))
    elif kind == "List" and isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _unknown(item, what, path + (i,))
    elif kind == "Dict" and isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _unknown(value, what, path + (key,))


def check(raw: RawObject) -> None:
    """Refuse the first field of a modelled object that its API type does not have, located, with
    the closest known name."""
    model = MODELS.get(raw.kind) or CRD_MODELS.get(raw.kind)
    if model is None:
        return
    for path, known in _unknown(raw.data, model, ()):
        name = str(path[-1])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise raw.error(f'unknown field "{name}"{hint}', path)

