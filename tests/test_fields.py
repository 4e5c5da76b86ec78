"""Strict fields: a misspelt field is refused where kubectl's strict validation refuses it, located,
with the closest known name, and is never enforced or answered."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
from support.paths import POLICIES
from typer.testing import CliRunner

from netpol.cli import app
from netpol.errors import InputError
from netpol.k8s.load import parse_text
from netpol.k8s.parse import build_cluster

POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: tenant3}
spec:
  podSelector:
    matchLabels: {role: db}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: 8080}]
"""
TYPOS = [  # (replace, with, field path, the suggestion)
    ("matchLabels: {role: db}", "matchLabel: {role: db}", "spec.podSelector.matchLabel", "matchLabels"),
    ("- from:", "- fromm:", "spec.ingress[0].fromm", "from"),
    ("policyTypes:", "policyType:", "spec.policyType", "policyTypes"),
    ("ports: [{port: 8080}]", "ports: [{prot: 8080}]", "spec.ingress[0].ports[0].prot", "port"),
    ("ports: [{port: 8080}]", "ports: [{port: 8080, endport: 9090}]", "spec.ingress[0].ports[0].endport", "endPort"),
    ("{podSelector: {matchLabels: {role: frontend}}}", "{podselector: {matchLabels: {role: frontend}}}",
     "spec.ingress[0].from[0].podselector", "podSelector"),
    ("{podSelector: {matchLabels: {role: frontend}}}", "{ipBlock: {cidr: 198.18.0.0/16, expect: [198.18.1.0/24]}}",
     "spec.ingress[0].from[0].ipBlock.expect", "except"),
    ("metadata: {name: db, namespace: tenant3}", "metadata: {name: db, namespce: tenant3}", "metadata.namespce",
     "namespace"),
    ("spec:", "spex: {}\nspec:", "spex", "spec"),
]


def refusal(text: str, file: str = "in.yaml") -> InputError:
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(textwrap.dedent(text), file))
    return err.value


@pytest.mark.parametrize(("old", "new", "path", "hint"), TYPOS, ids=[t[2] for t in TYPOS])
def test_typos_in_a_policy_are_refused_with_a_suggestion(old, new, path, hint):
    text = POLICY.replace(old, new)
    err = refusal(text)
    line = next(i for i, line in enumerate(text.splitlines(), 1) if path.rsplit(".", 1)[-1].split("[")[0] + ":" in line)
    assert (err.file, err.line, err.field) == ("in.yaml", line, path)
    assert err.message == f'unknown field "{path.rsplit(".", 1)[-1]}" (did you mean "{hint}"?)'


def test_the_correct_policy_reads():
    pol = build_cluster(parse_text(POLICY, "in.yaml")).policies[0]
    assert pol.pod_selector.match_labels == (("role", "db"),) and pol.ingress[0].peers


@pytest.mark.parametrize(("doc", "path"), [
    ("kind: Pod\nmetadata: {name: p, namespace: a}\nspec: {containers: [{name: c, ports: [{containerPor: 80}]}]}",
     "spec.containers[0].ports[0].containerPor"),
    ("kind: Pod\nmetadata: {name: p, namespace: a}\nspec: {hostNetwrok: true}", "spec.hostNetwrok"),
    ("kind: Pod\nmetadata: {name: p, namespace: a, lables: {app: x}}", "metadata.lables"),
    ("kind: Pod\nmetadata: {name: p, namespace: a}\nstatus: {podIp: 198.18.0.1}", "status.podIp"),
    ("kind: Deployment\nmetadata: {name: d, namespace: a}\nspec: {template: {metadata: {label: {app: x}}}}",
     "spec.template.metadata.label"),
    ("kind: CronJob\nmetadata: {name: c, namespace: a}\nspec: {jobTemplate: {spec: {template: {spec: "
     "{containers: [{name: c, port: []}]}}}}}", "spec.jobTemplate.spec.template.spec.containers[0].port"),
    ("kind: Namespace\nmetadata: {name: a, label: {team: x}}", "metadata.label"),
    ("kind: Service\nmetadata: {name: s, namespace: a}\nspec: {selecter: {app: x}}", "spec.selecter"),
])
def test_every_modelled_kind_is_strict(doc, path):
    err = refusal("apiVersion: v1\n" + doc + "\n")
    assert err.field == path and err.line and err.message.startswith("unknown field")


def test_whole_real_objects_read_and_unmodelled_kinds_are_not_checked():
    c = build_cluster(parse_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          namespace: a
          annotations: {any/key: "anything"}
          managedFields: [{manager: kubectl, operation: Apply, fieldsV1: {"f:spec": {}}}]
        spec:
          containers:
          - name: c
            image: nginx
            resources: {limits: {cpu: "1"}}
            env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
            readinessProbe: {httpGet: {path: /, port: 80}}
          affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}
          tolerations: [{key: k, operator: Exists}]
          volumes: [{name: v, emptyDir: {}}]
        status: {phase: Running, podIP: 198.18.0.1, conditions: [{type: Ready, status: "True"}]}
        ---
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: w, namespace: a}
        spec: {anything: [1, 2], goes: here}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: np, namespace: a}
        spec: {podSelector: {}}
        status: {}
        """), "ok.yaml"))
    assert [p.key for p in c.pods] == ["a/p"] and [p.key for p in c.policies] == ["a/np"]


def test_commands_refuse_a_typo_and_lint_reports_it(tmp_path):
    shutil.copytree(POLICIES, tmp_path / "p")
    f = tmp_path / "p" / "tenant3-db.yaml"
    f.write_text(f.read_text().replace("      role: db", "      role: db\n    matchLabel: {role: x}", 1))
    assert "matchLabel:" in f.read_text()
    runner = CliRunner()
    for args in (["check", "tenant2/app-0", "tenant3/db-0", "-p", "5432"], ["matrix"], ["render"]):
        r = runner.invoke(app, [*args, "-f", str(tmp_path / "p")])
        assert r.exit_code == 2 and 'tenant3-db.yaml:' in r.output and 'unknown field "matchLabel"' in r.output, r.output
    r = runner.invoke(app, ["lint", str(tmp_path / "p"), "-o", "json"])
    found = [x for x in json.loads(r.stdout) if x["code"] == "NP000"]
    assert r.exit_code == 2 and len(found) == 1 and 'did you mean \\"matchLabels\\"' in json.dumps(found[0]["message"])


OTHERS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: tenant1}
spec: {rules: []}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: c, namespace: tenant1}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: d, namespace: tenant1}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: e, namespace: tenant1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: tenant1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: tenant1}
"""


def test_kinds_that_change_connectivity_are_named_not_passed_over(tmp_path):
    shutil.copytree(POLICIES, tmp_path / "p")
    (tmp_path / "p" / "others.yaml").write_text(OTHERS)
    c = build_cluster(parse_text(OTHERS, "o.yaml"))
    assert c.ignored == (("CiliumNetworkPolicy (cilium.io/v2)", 2), ("HTTPRoute (gateway.networking.k8s.io/v1)", 1),
                         ("Ingress (networking.k8s.io/v1)", 1), ("NetworkPolicy (projectcalico.org/v3)", 1))
    runner = CliRunner()
    for args in (["check", "tenant2/app-0", "tenant3/db-0", "-p", "5432"], ["matrix"], ["render"]):
        r = runner.invoke(app, [*args, "-f", str(tmp_path / "p")])
        assert r.exit_code in (0, 1), r.output
        assert "netpol: warning:" in r.stderr and "2 CiliumNetworkPolicy (cilium.io/v2)" in r.stderr
        assert "ConfigMap" not in r.stderr
    r = runner.invoke(app, ["check", "tenant2/app-0", "tenant3/db-0", "-p", "5432", "-f", str(POLICIES)])
    assert "warning" not in r.stderr
    r = runner.invoke(app, ["lint", str(tmp_path / "p"), "-o", "json"])
    found = [(x["file"].rsplit("/", 1)[-1], x["line"]) for x in json.loads(r.stdout) if x["code"] == "NP012"]
    assert found == [("others.yaml", 2), ("others.yaml", 7), ("others.yaml", 11), ("others.yaml", 15),
                     ("others.yaml", 19)]


@pytest.mark.parametrize(("args", "message"), [
    (["matrix", "-f", "{empty}"], "no Kubernetes objects in the input"),
    (["check", "a/b", "a/c", "-f", "{empty}"], "no Kubernetes objects in the input"),
    (["matrix", "-f", str(POLICIES), "-n", "nope"], "no namespace 'nope' in the input"),
    (["matrix", "-f", str(POLICIES), "-n", "tenant"], 'did you mean "tenant3"?'),
    (["matrix", "--workloads", "-f", str(POLICIES), "-n", "nope"], "no namespace 'nope'"),
    (["matrix", "-f", str(POLICIES), "-n", "default"], "nothing to show: the input has no pods in namespace default"),
    (["diff", "{empty}", "{empty}"], "nothing to compare"),
    (["lab", "verify", "-f", "{policies_only}"], "nothing to probe: the input has no pods with addresses"),
])
def test_runs_that_would_check_nothing_say_so(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "policies_only").mkdir()
    shutil.copy(POLICIES / "tenant3-db.yaml", tmp_path / "policies_only")
    paths = {"empty": str(tmp_path / "empty"), "policies_only": str(tmp_path / "policies_only")}
    r = CliRunner().invoke(app, [a.format(**paths) for a in args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_diff_from_nothing_is_a_real_question(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["diff", str(tmp_path / "empty"), str(POLICIES), "-o", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["summary"]["added"] > 0


def test_lint_of_nothing_is_an_input_error(tmp_path):
    r = CliRunner().invoke(app, ["lint", str(tmp_path)])
    assert r.exit_code == 2 and "NP000" in r.stdout and "no Kubernetes objects" in r.stdout


def test_version_and_short_help():
    runner = CliRunner()
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip().startswith("netpol ")
    r = runner.invoke(app, ["check", "-h"])
    assert r.exit_code == 0 and "Usage" in r.stdout and "SRC" in r.stdout.upper()


@pytest.mark.parametrize(("args", "message"), [
    ((5432, "tcp"), "protocol 'tcp'"), ((70000,), "out of range"), ((0,), "out of range"),
    ((True,), "a number or a name"), (("Web_Port",), "port name 'Web_Port'"), ((5432.0,), "a number or a name"),
])
def test_port_queries_check_their_arguments(args, message):
    from netpol.errors import QueryError
    from netpol.evaluate.matrix import PortQuery
    with pytest.raises(QueryError, match=message):
        PortQuery(*args)
    assert PortQuery(5432, "UDP") == (5432, "UDP") and PortQuery("postgres").protocol == "TCP"


def test_the_shipped_field_lists_are_the_clients():
    """fields.json (scripts/gen_fields.py) holds what the installed client's models say: a field the
    file has, the client has with the same type (a newer client may know more: regenerate then)."""
    from kubernetes import client

    from netpol.k8s.fields import MODELS, SCHEMA_FILE
    shipped = json.loads(SCHEMA_FILE.read_text())
    assert set(MODELS.values()) <= set(shipped)
    for model, fields in shipped.items():
        cls = getattr(client, model)
        theirs = {cls.attribute_map[a]: t for a, t in cls.openapi_types.items()}
        assert fields.items() <= theirs.items(), model


def test_queries_take_kubectl_names_and_workload_list_names():
    from support.builders import cluster

    from netpol.evaluate.resolve import endpoint
    c = cluster({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                 "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
                 "spec": {"template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": []}}}})
    for text in ("shop/deployment/web", "shop/deploy/web", "shop/deployments/web", "shop/Deployment/web",
                 "shop/web[Deployment]"):
        assert endpoint(c, text).pod.key == "shop/deployment/web", text
    assert endpoint(c, "shop/sts/db").pod.key == endpoint(c, "shop/db[StatefulSet]").pod.key == "shop/statefulset/db"
