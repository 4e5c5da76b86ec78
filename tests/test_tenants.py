"""The tenant report: where pods may be scheduled (against a plain per-node filter written from the
scheduler's documented rules), each finding, the network part, and the CLI in every format."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import cluster, namespace, pod, policy
from support.paths import POLICIES
from typer.testing import CliRunner

from netpol.cli import app
from netpol.evaluate.placement import schedulable
from netpol.evaluate.tenants import placement_findings, report

runner = CliRunner()
KEYS, VALUES = ("zone", "tenant", "gpu"), ("a", "b", "1", "7")


# ---- the reference: one node at a time, straight from the documented rules ----

def _selector_ok(pod_spec: dict, ns_annotations: dict, labels: dict) -> bool | None:
    """None: admission refuses the pod (its nodeSelector conflicts with the namespace's)."""
    wanted = dict(pod_spec.get("nodeSelector") or {})
    text = ns_annotations.get("scheduler.alpha.kubernetes.io/node-selector", "")
    for part in [p for p in text.split(",") if p.strip()]:
        k, _, v = part.partition("=")
        if k.strip() in wanted and wanted[k.strip()] != v.strip():
            return None
        wanted[k.strip()] = v.strip()
    return all(labels.get(k) == v for k, v in wanted.items())


def _expression_ok(expr: dict, value: str | None) -> bool:
    op, values = expr["operator"], expr.get("values", [])
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if value is None or not value.lstrip("-").isdigit():
        return False
    return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])


def _affinity_ok(pod_spec: dict, node: dict) -> bool:
    terms = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if terms is None:
        return True
    labels = node["metadata"].get("labels", {})
    for term in terms["nodeSelectorTerms"]:
        exprs, fields = term.get("matchExpressions", []), term.get("matchFields", [])
        if (exprs or fields) and all(_expression_ok(e, labels.get(e["key"])) for e in exprs) and \
                all(_expression_ok(f, node["metadata"]["name"]) for f in fields):
            return True
    return False


def _tolerated(taint: dict, tolerations: list[dict]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if not t.get("key") and t.get("operator") == "Exists":
            return True
        if t.get("key") == taint["key"] and (t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", "")):
            return True
    return False


def reference(pod_spec: dict, ns_annotations: dict, node: dict) -> bool | None:
    tolerations = list(pod_spec.get("tolerations") or [])
    tolerations += json.loads(ns_annotations.get("scheduler.alpha.kubernetes.io/defaultTolerations", "[]"))
    taints = list(node.get("spec", {}).get("taints", []))
    if node.get("spec", {}).get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    selector = _selector_ok(pod_spec, ns_annotations, node["metadata"].get("labels", {}))
    if selector is None:
        return None
    if pod_spec.get("nodeName"):
        return pod_spec["nodeName"] == node["metadata"]["name"] and all(
            _tolerated(t, tolerations) for t in taints if t["effect"] == "NoExecute")
    return selector and _affinity_ok(pod_spec, node) and all(
        _tolerated(t, tolerations) for t in taints if t["effect"] in ("NoSchedule", "NoExecute"))


# ---- random specs ----

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
taint = st.fixed_dictionaries({"key": st.sampled_from(KEYS), "effect": st.sampled_from(
    ("NoSchedule", "PreferNoSchedule", "NoExecute"))}, optional={"value": st.sampled_from(VALUES)})


@st.composite
def toleration(draw):
    if draw(st.integers(0, 9)) == 0:
        return {"operator": "Exists"}
    out = {"key": draw(st.sampled_from(KEYS))}
    if draw(st.booleans()):
        out["operator"] = "Exists"
    else:
        out["value"] = draw(st.sampled_from(VALUES))
    if draw(st.booleans()):
        out["effect"] = draw(st.sampled_from(("NoSchedule", "PreferNoSchedule", "NoExecute")))
    return out


@st.composite
def expression(draw, fields: bool = False):
    op = draw(st.sampled_from(("In", "NotIn") if fields else ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")))
    key = "metadata.name" if fields else draw(st.sampled_from(KEYS))
    out = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        out["values"] = draw(st.lists(st.sampled_from(("n0", "n1", "n2") if fields else VALUES), min_size=1,
                                      max_size=2))
    elif op in ("Gt", "Lt"):
        out["values"] = [draw(st.sampled_from(("0", "3", "9")))]
    return out


@st.composite
def pod_spec(draw):
    spec: dict = {"containers": [{"name": "c"}]}
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(labels)
    if draw(st.booleans()):
        terms = [{k: v for k, v in (("matchExpressions", draw(st.lists(expression(), max_size=2))),
                                    ("matchFields", draw(st.lists(expression(True), max_size=1)))) if v}
                 for _ in range(draw(st.integers(1, 2)))]
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}
    if draw(st.booleans()):
        spec["tolerations"] = draw(st.lists(toleration(), max_size=3))
    if draw(st.integers(0, 5)) == 0:
        spec["nodeName"] = draw(st.sampled_from(("n0", "n1", "n2")))
    return spec


@st.composite
def node(draw, i):
    spec = {}
    if draw(st.booleans()):
        spec["taints"] = draw(st.lists(taint, max_size=2, unique_by=lambda t: (t["key"], t["effect"])))
    if draw(st.integers(0, 6)) == 0:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i}", "labels": draw(labels)}, "spec": spec}


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(pod_spec(), min_size=1, max_size=3), st.lists(st.integers(0, 3), min_size=3, max_size=3),
       st.data())
def test_schedulable_equals_a_per_node_filter(specs, sizes, data):
    nodes = [data.draw(node(i)) for i in range(sizes[0] % 3 + 1)]
    annotations = {}
    if sizes[1] == 1:
        annotations["scheduler.alpha.kubernetes.io/node-selector"] = "zone=a"
    if sizes[2] == 1:
        annotations["scheduler.alpha.kubernetes.io/defaultTolerations"] = '[{"key": "tenant", "operator": "Exists"}]'
    ns = namespace("t")
    ns["metadata"]["annotations"] = annotations
    pods = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"d{i}", "namespace": "t"},
             "spec": {"template": {"metadata": {"labels": {}}, "spec": s}}} for i, s in enumerate(specs)]
    c = cluster(ns, *nodes, *pods)
    for s, p in zip(specs, c.pods, strict=True):
        found, refused = schedulable(c, p)
        want = [reference(s, annotations, n) for n in nodes]
        if None in want:
            assert refused and found == [], (s, annotations)
        else:
            assert refused is None and [n.name for n in found] == [n["metadata"]["name"]
                                                                   for n, ok in zip(nodes, want, strict=True) if ok]


# ---- findings ----

def tenant_ns(name: str, **annotations: str) -> dict:
    out = namespace(name, tenant=name)
    out["metadata"]["annotations"] = annotations
    return out


def tenant_node(name: str, tenant: str | None, tainted: bool = True) -> dict:
    spec = {"taints": [{"key": "tenant", "value": tenant, "effect": "NoSchedule"}]} if tenant and tainted else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"tenant": tenant} if tenant
                                                            else {}}, "spec": spec}


def deployment(ns: str, name: str, spec: dict | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c"}], **(spec or {})}}}}


PINNED = {"nodeSelector": {"tenant": "a"}, "tolerations": [{"key": "tenant", "value": "a", "effect": "NoSchedule"}]}
BASE = [tenant_ns("a"), tenant_ns("b"), tenant_node("na", "a"), tenant_node("nb", "b"), tenant_node("shared", None),
        policy("a", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy("b", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})]


def codes(objects) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in placement_findings(cluster(*objects), "tenant", "tenant"):
        out.setdefault(f.code, []).append(f.text)
    return out


def test_a_pinned_tenant_is_isolated():
    r = report(cluster(*BASE, deployment("a", "web", PINNED), deployment("b", "api", {
        "nodeSelector": {"tenant": "b"}, "tolerations": [{"key": "tenant", "value": "b", "effect": "NoSchedule"}]})),
        "tenant")
    assert r.isolated and r.tenants == ["a", "b"] and not r.others


def test_each_finding():
    tolerant = {"tolerations": [{"operator": "Exists"}]}  # tolerates every taint, selects no node
    assert codes([*BASE, deployment("a", "web", tolerant)])["placement"] == [
        "a/web[Deployment] can be scheduled onto b's node nb (it tolerates their taints)"]
    open_b = [*BASE[:3], tenant_node("nb", "b", tainted=False), *BASE[4:]]
    found = codes([*open_b, deployment("a", "web")])
    assert found["placement"] == ["a/web[Deployment] can be scheduled onto b's node nb (nb has no taint)"]
    assert found["open-node"] == ["node nb (b) accepts pods of any namespace: it has no NoSchedule or NoExecute taint"]
    assert codes([*BASE, pod("a", "x", {}, ("198.18.0.5",), node="nb")])["runs-on"] == ["pod a/x runs on b's node nb"]
    refused = [tenant_ns("a", **{"scheduler.alpha.kubernetes.io/node-selector": "tenant=a"}), *BASE[1:],
               deployment("a", "web", {"nodeSelector": {"tenant": "b"}})]
    assert "PodNodeSelector refuses it" in codes(refused)["refused"][0]


def test_host_network_pods_share_their_node_with_whoever_may_run_there():
    agent = pod("b", "agent", {}, ("198.18.0.9",), host_network=True, node="shared")
    found = codes([*BASE, agent, deployment("a", "web"), deployment("a", "db", PINNED)])["shared-node"]
    assert len(found) == 1 and "a/web[Deployment]" in found[0] and "node shared" in found[0]


def test_the_network_part_names_an_example_and_a_rule():
    objs = [tenant_ns("a"), tenant_ns("b"), pod("a", "x", {"app": "x"}, ("198.18.0.1",)),
            pod("b", "y", {"app": "y"}, ("198.18.0.2",)),
            policy("b", "in", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}],
                                                                "ports": [{"port": 443}]}]}),
            policy("a", "in", {"podSelector": {}, "policyTypes": ["Ingress"]})]
    r = report(cluster(*objs), "tenant")
    ab, ba = r.pairs[("a", "b")], r.pairs[("b", "a")]
    assert str(ab.network) == "TCP 443" and ab.example == "a/x[Pod] → b/y[Pod]" and ab.status == "network-open"
    assert ba.network is None and ba.status == "isolated" and not r.isolated


# ---- the CLI ----

def run(*args):
    out = runner.invoke(app, ["tenants", *args])
    return out.exit_code, out.output


def test_cli_on_the_bundled_example_and_formats():
    code, text = run("--tenant-label", "tenant", "-f", str(POLICIES))
    assert code == 1
    assert "tenant2 → tenant3: NETWORK-OPEN, CO-LOCATED" in text
    assert "placement: tenant2/batch[Deployment] can be scheduled onto tenant3's node node-t3 (node-t3 has no taint)" in text
    assert "Node: node node-t3 (tenant3) accepts pods of any namespace" in text
    doc = json.loads(run("--tenant-label", "tenant", "-f", str(POLICIES), "-o", "json")[1])
    assert doc["isolated"] is False and doc["tenants"] == ["tenant1", "tenant2", "tenant3"]
    pair = next(p for p in doc["pairs"] if (p["src"], p["dst"]) == ("tenant2", "tenant3"))
    assert pair["open"] == ["network-open", "co-located"] and pair["network"]["conn"] == "All Connections"
    assert next(p for p in doc["pairs"] if (p["src"], p["dst"]) == ("tenant1", "tenant2"))["status"] == "isolated"
    assert run("--tenant-label", "tenant", "-f", str(POLICIES), "-o", "yaml")[1].startswith("tenant_label: tenant")
    md = run("--tenant-label", "tenant", "-f", str(POLICIES), "-o", "md")[1]
    assert md.startswith("### Tenant isolation") and "| `tenant2` | `tenant3` | network-open, co-located |" in md


def test_cli_exit_codes_and_errors(tmp_path):
    folder = tmp_path / "ok"
    folder.mkdir()
    import yaml
    (folder / "all.yaml").write_text(yaml.safe_dump_all([*BASE, deployment("a", "web", PINNED)]))
    assert run("--tenant-label", "tenant", "-f", str(folder))[0] == 0
    code, text = run("--tenant-label", "nope", "-f", str(folder))
    assert code == 2 and "no namespace carries the label 'nope'" in text
    assert run("--tenant-label", "tenant", "-f", str(folder), "-o", "xml")[0] == 2
    assert run("-f", str(folder))[0] == 2  # --tenant-label is required


def test_lint_reports_the_partition_findings_only_with_a_tenant_label():
    out = runner.invoke(app, ["lint", str(POLICIES), "-o", "json", "--tenant-label", "tenant"])
    found = {f["code"] for f in json.loads(out.output)}
    assert {"NP024", "NP025"} <= found
    plain_run = runner.invoke(app, ["lint", str(POLICIES), "-o", "json"])
    assert not {"NP024", "NP025", "NP026", "NP027"} & {f["code"] for f in json.loads(plain_run.output)}


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (scripts/setup installs it)")
def test_the_html_report_renders_in_a_real_browser(tmp_path):
    code, page = run("--tenant-label", "tenant", "-f", str(POLICIES), "-o", "html")
    assert code == 1
    path = tmp_path / "tenants.html"
    path.write_text(page)
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    dom = done.stdout
    assert 'data-isolated="false"' in dom and '<table id="tenants">' in dom
    assert dom.count('class="isolated"') == 4 and dom.count('class="co-located"') == 1
    assert dom.count('class="network-open"') == 1


def test_workloads_going_to_the_same_nodes_are_one_finding_in_the_report():
    tolerant = {"tolerations": [{"operator": "Exists"}]}
    r = report(cluster(*BASE, *(deployment("a", f"w{i}", tolerant) for i in range(7))), "tenant")
    (finding,) = r.pairs[("a", "b")].findings
    assert finding.text == ("a/w0[Deployment], a/w1[Deployment], a/w2[Deployment], a/w3[Deployment], "
                            "a/w4[Deployment] and 2 more can be scheduled onto b's node nb (it tolerates their taints)")
    assert len(codes([*BASE, *(deployment("a", f"w{i}", tolerant) for i in range(7))])["placement"]) == 7  # lint: each
