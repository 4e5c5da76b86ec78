"""`netpol diff`: added, removed and changed workload connections, against np-guard's own outputs
for the corpus' semanticDiff examples, and on handmade manifests through the CLI."""

from __future__ import annotations

import copy
import json
import random
import re

import pytest
from support.builders import build_sharing
from support.npguard import MAIN, NPGUARD, expected, npguard_view, on_atoms, raws
from support.shop import APPS, BASE, HEAD, checkout, policy
from typer.testing import CliRunner

from netpol.cli import app
from netpol.evaluate.diff import diff
from netpol.evaluate.workloads import NO_CONNS, External, conn_minus
from netpol.k8s.parse import build_cluster

runner = CliRunner()


def atoms_of(names) -> list[External]:
    """The coarsest ranges that respect every boundary of these external ranges."""
    edges = {4: {0, 1 << 32}}
    for name in names:
        if name.endswith("[External]"):
            ext = External.parse(name)
            edges.setdefault(ext.version, {0, 1 << (32 if ext.version == 4 else 128)}).update(
                (ext.first, ext.last + 1))
    out = []
    for version, points in sorted(edges.items()):
        points = sorted(points)
        out += [External(version, lo, hi - 1) for lo, hi in zip(points, points[1:], strict=False)]
    return out


def port_facts(conns: dict) -> set[tuple]:
    return {(s, d, p, lo, hi) for (s, d), c in conns.items() for p, ranges in c.ranges for lo, hi in ranges}


SEMANTIC = [("semanticDiff-same-topologies-old1", "semanticDiff-same-topologies-new1"),
            ("semanticDiff-same-topologies-old1", "semanticDiff-same-topologies-new3"),
            ("semanticDiff-same-topologies-new1", "semanticDiff-same-topologies-new3"),
            ("semanticDiff-different-topologies-policy-a-with-ipblock", "semanticDiff-different-topologies-policy-b"),
            ("semanticDiff-different-topologies-policy-b", "semanticDiff-different-topologies-policy-a-with-ipblock")]


@pytest.mark.skipif(not MAIN, reason="np-guard corpus not present")
@pytest.mark.parametrize("old,new", SEMANTIC)
def test_semantic_diff_matches_npguards_outputs(old, new):
    """What netpol's diff opens and closes equals the difference of np-guard's two connlists,
    port by port and address by address (on the objects as np-guard reads them)."""
    result = diff(build_sharing(npguard_view(raws(old))), build_sharing(npguard_view(raws(new))), NPGUARD)
    before, after = expected(old), expected(new)
    changes = [(c.src, c.dst, c) for c in result.changes]
    names = [n for line in before + after for n in line[:2]] + [n for c in result.changes for n in (c.src, c.dst)]
    atoms = atoms_of(names)
    b, a = on_atoms(before, atoms, atoms), on_atoms(after, atoms, atoms)
    keys = set(a) | set(b)
    want_opened = port_facts({k: conn_minus(a.get(k, NO_CONNS), b.get(k, NO_CONNS)) for k in keys})
    want_closed = port_facts({k: conn_minus(b.get(k, NO_CONNS), a.get(k, NO_CONNS)) for k in keys})
    opened = port_facts(on_atoms([(s, d, c.opened) for s, d, c in changes], atoms, atoms))
    closed = port_facts(on_atoms([(s, d, c.closed) for s, d, c in changes], atoms, atoms))
    assert (opened, closed) == (want_opened, want_closed)
    assert result.changes and result.opens == bool(want_opened)
    for c in result.changes:  # each line says what it is
        assert c.kind == ("added" if c.old.empty else "removed" if c.new.empty else "changed")


@pytest.mark.skipif(not MAIN, reason="np-guard corpus not present")
def test_semantic_diff_of_host_network_pods_is_empty():
    """The bank demo's pods are host-network pods: netpol polices none of them (see test_npguard),
    so the policy edits between old1 and new1 change nothing."""
    old, new = SEMANTIC[0]
    assert diff(build_cluster(raws(old)), build_cluster(raws(new)), NPGUARD).changes == ()


@pytest.mark.skipif(not MAIN, reason="np-guard corpus not present")
def test_semantic_diff_names_workloads_and_merges_ranges():
    old, new = SEMANTIC[3]
    result = diff(build_sharing(npguard_view(raws(old))), build_sharing(npguard_view(raws(new))), NPGUARD)
    lines = {(c.kind, c.src, c.dst, str(c.old), str(c.new), c.note) for c in result.changes}
    # policy a admitted 10.0.0.0/8 except 10.10.0.0/16 (and app-2) to app-1; b drops that policy,
    # so the rest of the address space is opened, as one range on each side of 10/8 and the hole
    app1 = "default/cog-agents-1[DaemonSet]"
    assert ("added", "0.0.0.0-9.255.255.255[External]", app1, "No Connections", "All Connections", "") in lines
    assert ("added", "10.10.0.0-10.10.255.255[External]", app1, "No Connections", "All Connections", "") in lines
    assert ("added", "11.0.0.0-255.255.255.255[External]", app1, "No Connections", "All Connections", "") in lines
    assert not any(c.dst == app1 and c.src.startswith("10.0.0.0") for c in result.changes)
    assert ("removed", "default/cog-agents-0[DaemonSet]", "default/cog-agents-3[DaemonSet]", "All Connections",
            "No Connections", "workload removed") in lines


# ---- the CLI on handmade manifests ----

def run(*args):
    out = runner.invoke(app, ["diff", *args])
    return out.exit_code, out.output


def test_cli_added_removed_changed(tmp_path):
    base, head = checkout(tmp_path, "base", BASE), checkout(tmp_path, "head", HEAD)
    code, text = run(base, head)
    assert code == 0, text
    assert text.splitlines() == [
        "Connectivity changes: 1 added, 1 changed, 1 removed; opens new connections",
        "added    shop/db[Deployment] => 10.0.0.0-10.255.255.255[External] : UDP 53",
        "           by NetworkPolicy shop/db-out modified",
        "changed  shop/web[Deployment] => shop/api[Deployment] : TCP 8080 -> TCP 8080,9090  (opens TCP 9090)",
        "           by NetworkPolicy shop/api-in modified",
        "removed  shop/api[Deployment] => shop/db[Deployment] : TCP 5432",
        "           by NetworkPolicy shop/db-in modified",
    ]
    assert run(base, head, "--fail-on-added")[0] == 1
    code, text = run(head, base, "--fail-on-added")  # the reverse closes, and opens 5432 again
    assert code == 1 and "added    shop/api[Deployment] => shop/db[Deployment] : TCP 5432" in text
    assert "closes TCP 9090" in text


def test_cli_only_closing_passes(tmp_path):
    head = list(BASE)
    head[0] = policy("api-in", "api", "  ingress: []\n")
    code, text = run(checkout(tmp_path, "base", BASE), checkout(tmp_path, "head", head), "--fail-on-added")
    assert code == 0
    assert text.splitlines()[1:] == ["removed  shop/web[Deployment] => shop/api[Deployment] : TCP 8080",
                                     "           by NetworkPolicy shop/api-in modified"]
    code, text = run(checkout(tmp_path, "same", BASE), str(tmp_path / "base"), "--fail-on-added")
    assert (code, text.strip()) == (0, "No connectivity changes.")


def test_cli_json_and_md(tmp_path):
    base, head = checkout(tmp_path, "base", BASE), checkout(tmp_path, "head", HEAD)
    code, text = run(base, head, "-o", "json")
    doc = json.loads(text)
    assert doc["summary"] == {"added": 1, "changed": 1, "removed": 1, "opens": True}
    changed = next(c for c in doc["changes"] if c["type"] == "changed")
    assert changed == {"type": "changed", "src": "shop/web[Deployment]", "dst": "shop/api[Deployment]",
                       "old": "TCP 8080", "new": "TCP 8080,9090", "opened": "TCP 9090", "closed": "No Connections",
                       "causes": ["NetworkPolicy shop/api-in modified"]}
    code, md = run(base, head, "-o", "md")
    lines = md.splitlines()
    assert lines[0] == "### NetworkPolicy connectivity changes"
    assert "| source | destination | before | after | caused by |" in md
    assert ("| ➕ added | `shop/db[Deployment]` | `10.0.0.0-10.255.255.255[External]` | No Connections | UDP 53 "
            "| `NetworkPolicy shop/db-out modified` |") in lines
    assert sum(line.startswith("| ") and not line.startswith("| | source") for line in lines) == 3  # three changes
    assert md.count("<details") == md.count("</details>") >= 1  # grouped by namespace pair


def test_cli_input_errors(tmp_path):
    base = checkout(tmp_path, "base", BASE)
    bad = checkout(tmp_path, "bad", [policy("x", "api", "  ingress: [{ports: [{port: 70000}]}]\n")])
    code, text = run(base, bad)
    assert code == 2 and "policies.yaml:7" in text and "Traceback" not in text
    assert run(base, str(tmp_path / "missing"))[0] == 2
    assert run(base, base, "-o", "xml")[0] == 2


def test_md_fits_a_pull_request_comment_and_says_what_it_left_out():
    from netpol.evaluate.diff import MD_LIMIT, Change, Diff, render_md
    from netpol.evaluate.workloads import ALL_CONNS, NO_CONNS
    changes = tuple(Change("added", f"ns{i % 40}/workload-with-a-long-name-{i}[Deployment]",
                           f"ns{(i * 7) % 40}/other-workload-{i}[Deployment]", NO_CONNS, ALL_CONNS) for i in range(3000))
    md = render_md(Diff(changes))
    assert len(md) <= MD_LIMIT < 65_536
    assert "more (netpol diff -o json lists them all)" in md
    shown = sum(line.startswith("| ➕") for line in md.splitlines())
    left = sum(int(w) for w in re.findall(r"… and (\d+) more \(", md))
    hidden = sum(int(n) for n in re.findall(r"more namespace pairs? with (\d+) changes", md))
    assert shown + left + hidden == 3000 and shown > 100  # every change shown or counted
    assert md.count("<details") == md.count("</details>")


# ---- what caused each change ----

def _world(seed: int):
    from support.builders import namespace
    from support.churn import _build, _pod, _policies
    rng = random.Random(seed)
    namespaces = [namespace(f"n{i}", team=rng.choice("tu")) for i in range(3)]
    pods = {f"p{i}": _pod(rng, f"p{i}") for i in range(10)}
    return rng, namespaces, pods, _policies(rng), _build


@pytest.mark.parametrize("seed", range(25))
def test_a_policy_change_is_named_on_every_pair_it_moved_and_only_there(seed):
    """Only one policy differs: every change names it, and nothing else (no pod changed)."""
    rng, namespaces, pods, policies, build = _world(seed)
    old = build(namespaces, pods, policies)
    gone = rng.randrange(len(policies))
    changed = [p for i, p in enumerate(policies) if i != gone]
    if rng.random() < 0.5:  # modified instead of removed: its selector now picks other pods
        changed.insert(gone, copy.deepcopy(policies[gone]))
        changed[gone]["spec"]["podSelector"] = {"matchLabels": {"app": rng.choice("abc")}}
    new = build(namespaces, pods, changed)
    key = f"{policies[gone]['metadata']['namespace']}/{policies[gone]['metadata']['name']}"
    verb = "modified" if len(changed) == len(policies) else "removed"
    result = diff(old, new)
    for c in result.changes:
        assert c.causes == (f"NetworkPolicy {key} {verb}",), c


@pytest.mark.parametrize("seed", range(25))
def test_a_relabelled_pod_is_named_on_every_pair_it_moved(seed):
    """Only one pod's labels differ: every change has it at one end and says its labels changed."""
    rng, namespaces, pods, policies, build = _world(seed)
    old = build(namespaces, pods, policies)
    name = rng.choice(sorted(pods))
    moved = copy.deepcopy(pods)
    moved[name]["metadata"]["labels"] = {"app": rng.choice("abc")}
    new = build(namespaces, moved, policies)
    ns = moved[name]["metadata"]["namespace"]
    workload = f"{ns}/{name}[Pod]"
    for c in diff(old, new).changes:
        assert workload in (c.src, c.dst) and c.causes == (f"labels of {workload} changed",), c


def test_labels_no_policy_looks_at_are_not_a_cause(tmp_path):
    """A relabelled pod at one end of a pair that changed for another reason is not named."""
    base = checkout(tmp_path, "base", BASE)
    head = checkout(tmp_path, "head", [BASE[0], BASE[1]])  # db-out removed
    (tmp_path / "head" / "apps.yaml").write_text(APPS.replace("labels: {app: web}", "labels: {app: web, v: '2'}"))
    doc = json.loads(run(base, head, "-o", "json")[1])
    assert doc["changes"] and all(c["causes"] == ["NetworkPolicy shop/db-out removed"] for c in doc["changes"])


@pytest.mark.parametrize("seed", range(25))
def test_class_by_class_differences_equal_pair_by_pair(seed):
    """The fast comparison of two atom grids finds exactly the pairs a plain comparison finds, with the
    same sets, when pods come and go, change labels and policies change."""
    from support.churn import _churn

    from netpol.evaluate.pairs import differences
    from netpol.evaluate.workloads import connectivity
    rng, namespaces, pods, policies, build = _world(seed)
    old = build(namespaces, pods, policies)
    moved = copy.deepcopy(pods)
    _churn(rng, moved)
    new = build(namespaces, moved, policies[: rng.randrange(len(policies) + 1)])
    a, b = connectivity(old), connectivity(new)
    fast = sorted(differences(a.conns, b.conns), key=lambda x: x[0])
    plain = sorted(differences(dict(a.conns.items()), dict(b.conns.items())), key=lambda x: x[0])
    assert fast == plain and fast
