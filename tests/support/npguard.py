"""The np-guard corpus: its examples, its expected connectivity, and the objects as np-guard reads them."""

from __future__ import annotations

import bisect
import copy
import functools
import json

from netpol.evaluate.conns import ConnSet
from netpol.evaluate.workloads import External, parse_conns
from netpol.k8s import fields
from netpol.k8s.load import load_paths
from netpol.k8s.model import Options
from netpol.k8s.source import RawObject
from support.paths import CORPUS

INDEX = json.loads((CORPUS / "index.json").read_text()) if CORPUS.exists() else {"examples": []}


MAIN = {e["path"]: e for e in INDEX["examples"] if e["group"] == "main"}


NPGUARD = Options(ipblock_pods=False)


# Examples the API server would refuse (and netpol refuses, located), with what it says. The
# comparisons read them as np-guard does: the policy named with '_' renamed with '-' (which changes
# no connection), and a misspelt field dropped, as a lenient decoder would.
REFUSED = {
    "example_pods_w_same_owner_and_labels_gap_with_good_match_expression":
        ("netpol.yaml", 4, "metadata.name", "invalid name 'use_common_labels_same_values'"),
    "netpol_named_port_test": ("pods.yaml", 32, "spec.template.spec.containers[0].ports[1].containerport",
                               'unknown field "containerport" (did you mean "containerPort"?)'),
    "netpol_named_port_test_2": ("pods.yaml", 32, "spec.template.spec.containers[0].ports[1].containerport",
                                 'unknown field "containerport" (did you mean "containerPort"?)'),
}


ANP = {e["path"]: e for e in INDEX["examples"] if e["group"] == "anp"}


@functools.cache
def raws(example: str) -> tuple[RawObject, ...]:
    return tuple(_pod_selectors(_lenient(_renamed(r))) for r in load_paths([str(CORPUS / example / "manifests")]))


def _pod_selectors(raw: RawObject) -> RawObject:
    """v1alpha1 `pods` peers without a podSelector (the CRD requires one; np-guard reads Go's zero
    value, the empty selector): given the empty selector, as np-guard reads them."""
    if raw.kind not in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
        return raw
    data = copy.deepcopy(raw.data)
    spec = data.get("spec") or {}
    for peer in [spec.get("subject") or {}] + [p for d, f in (("ingress", "from"), ("egress", "to"))
                                               for r in spec.get(d) or () for p in r.get(f) or ()]:
        if isinstance(peer.get("pods"), dict):
            peer["pods"].setdefault("podSelector", {})
    return RawObject(data, raw.source, raw.lines, raw.cols)


def _lenient(raw: RawObject) -> RawObject:
    """The object without the fields its API type does not have."""
    gone = [path for path, _ in fields._unknown(raw.data, fields.MODELS.get(raw.kind, ""), ())]
    if not gone:
        return raw
    data = copy.deepcopy(raw.data)
    for path in gone:
        node = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return RawObject(data, raw.source, raw.lines, raw.cols)


def _renamed(raw: RawObject) -> RawObject:
    """A NetworkPolicy named with '_' (refused by the API server) renamed with '-'."""
    name = (raw.data.get("metadata") or {}).get("name")
    if raw.kind != "NetworkPolicy" or "_" not in str(name):
        return raw
    data = {**raw.data, "metadata": {**raw.data["metadata"], "name": name.replace("_", "-")}}
    return RawObject(data, raw.source, raw.lines, raw.cols)


def npguard_view(objects) -> list[RawObject]:
    """The objects as np-guard reads them: host-network pods policed, finished pods present."""
    out = []
    for raw in objects:
        data = raw.data
        if raw.kind == "Pod" and ((data.get("spec") or {}).get("hostNetwork")
                                  or (data.get("status") or {}).get("phase") in ("Succeeded", "Failed")):
            data = copy.deepcopy(data)
            data["spec"].pop("hostNetwork", None)
            data["status"].pop("phase", None)
        out.append(RawObject(data, raw.source, raw.lines, raw.cols))
    return out


def expected(example: str) -> list[tuple[str, str, str]]:
    entry = MAIN.get(example) or ANP[example]
    text = (CORPUS / example / entry["expected_connlist"]["txt"]).read_text()
    return [tuple(line.replace(" => ", " : ", 1).split(" : ", 2)) for line in text.splitlines() if line.strip()]


def cuts(lines, side: int) -> list[External]:
    return [External.parse(line[side]) for line in lines if line[side].endswith("[External]")]


def on_atoms(lines, src_atoms: list[External], dst_atoms: list[External]) -> dict[tuple[str, str], ConnSet]:
    """Lines `(src, dst, conn)` with external ranges cut into atoms: {(src, dst): connections}."""
    memo: dict[tuple[str, int], list[str]] = {}

    def split(name: str, atoms: list[External]) -> list[str]:
        if not name.endswith("[External]"):
            return [name]
        if (name, id(atoms)) not in memo:
            ext = External.parse(name)
            i = bisect.bisect_left(atoms, External(ext.version, ext.first, ext.first))
            out = []
            while i < len(atoms) and atoms[i].version == ext.version and atoms[i].last <= ext.last:
                out.append(atoms[i].name)
                i += 1
            assert out and External.parse(out[-1]).last == ext.last, f"{name} is not a union of atoms"
            memo[(name, id(atoms))] = out
        return memo[(name, id(atoms))]

    out: dict[tuple[str, str], ConnSet] = {}
    for src, dst, conn in lines:
        c = parse_conns(conn) if isinstance(conn, str) else conn
        for s in split(src, src_atoms):
            for d in split(dst, dst_atoms):
                out[(s, d)] = c
    return out


def facts(lines, src_atoms: list[External], dst_atoms: list[External]) -> set[tuple]:
    """(src-atom, dst-atom, protocol, lo, hi) for every allowed port range."""
    return {(s, d, p, lo, hi) for (s, d), c in on_atoms(lines, src_atoms, dst_atoms).items()
            for p, ranges in c.ranges for lo, hi in ranges}
