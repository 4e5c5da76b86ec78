"""deploy/: the manifests parse and say what the agent needs (and no more); the Containerfile installs
what the code imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from ruamel.yaml import YAML
from support.paths import ROOT

from netpol.k8s.load import load_paths
from netpol.k8s.parse import build_cluster

DEPLOY = ROOT / "deploy"


def docs(name: str) -> list[dict]:
    return [d for d in YAML(typ="safe").load_all((DEPLOY / name).read_text()) if d]


def by_kind(name: str) -> dict[str, dict]:
    return {d["kind"]: d for d in docs(name)}


def test_manifests_parse_and_netpol_reads_them():
    kinds = [d["kind"] for name in ("rbac.yaml", "daemonset.yaml") for d in docs(name)]
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]
    cluster = build_cluster(load_paths([str(DEPLOY)]))  # netpol itself reads the folder (a workload)
    assert [p.key for p in cluster.pods] == ["kube-system/daemonset/netpol-agent"]


def test_daemonset_runs_the_agent_on_the_host_network():
    ds = by_kind("daemonset.yaml")["DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["serviceAccountName"] == "netpol-agent"
    (c,) = spec["containers"]
    assert c["args"][:2] == ["enforce", "--watch"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert not c["securityContext"].get("privileged")
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    metrics = next(a for a in c["args"] if a.startswith("--metrics-addr="))
    (port,) = [p for p in c["ports"] if p["name"] == "metrics"]
    assert metrics.endswith(f":{port['containerPort']}")
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_daemonset_args_are_agent_options():
    from typer.main import get_command

    from netpol.cli import app
    group = get_command(app)
    agent = group.commands["agent"]
    known = {o for p in agent.params for o in p.opts}
    (c,) = by_kind("daemonset.yaml")["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    for arg in c["args"][2:]:
        assert arg.split("=", 1)[0] in known, arg


def test_rbac_is_read_only_and_minimal():
    rbac = by_kind("rbac.yaml")
    rules = rbac["ClusterRole"]["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    from netpol.agent.source import CUSTOM
    from netpol.agent.store import KINDS
    core = {"Namespace": ("", "namespaces"), "Pod": ("", "pods"), "Node": ("", "nodes"),
            "NetworkPolicy": ("networking.k8s.io", "networkpolicies")}
    watched = {core.get(k) or (CUSTOM[k]["group"], CUSTOM[k]["plural"]) for k in KINDS}
    # exactly what the agent watches (and gets: its own Node), read only
    assert granted == {(g, r, v) for g, r in watched for v in ("get", "list", "watch")}
    binding = rbac["ClusterRoleBinding"]
    sa = rbac["ServiceAccount"]["metadata"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": rbac["ClusterRole"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]


def _third_party_imports() -> set[str]:
    """Top-level modules imported anywhere in the package that are neither stdlib nor netpol."""
    out = set()
    for path in (ROOT / "netpol").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return {m for m in out if m not in sys.stdlib_module_names and m != "netpol"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_containerfile_installs_what_the_code_imports():
    lines = (DEPLOY / "Containerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in lines.splitlines() if not ln.lstrip().startswith("#")))
    assert re.search(r"^FROM \S*python:3\.1[1-9]", text, re.M)
    apt = re.search(r"apt-get install[^\n&]*", text)
    assert apt and "libnftables1" in apt.group(0).split()  # what pip-nftables loads with ctypes
    assert re.search(r"^COPY pyproject.toml", text, re.M) and re.search(r"^COPY netpol ", text, re.M)
    assert re.search(r"pip install [^\n]*\s\.(\s|$)", text)  # the package, with its declared dependencies
    declared = {_norm(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0])
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    missing = {m: dists.get(m) for m in _third_party_imports()
               if not any(_norm(d) in declared for d in dists.get(m, [m]))}
    assert not missing, f"imported but not in [project.dependencies]: {missing}"
    assert re.search(r'^ENTRYPOINT \["netpol"\]', text, re.M)
