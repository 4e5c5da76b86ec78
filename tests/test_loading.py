"""Loading: files, folders, stdin, multi-document YAML, JSON, lists; what the API server would fill in."""

from __future__ import annotations

import io
import json
import textwrap

import pytest
from support.builders import cluster_yaml

from netpol.errors import InputError
from netpol.k8s import load_cluster
from netpol.k8s.load import load_paths, parse_text
from netpol.k8s.model import NS_NAME_LABEL
from netpol.k8s.parse import build_cluster

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{team: {name}}}}}\n"


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_folders_are_read_recursively_and_only_yaml_yml_json(tmp_path):
    _write(tmp_path / "a.yaml", NS.format(name="a"))
    _write(tmp_path / "sub" / "b.yml", NS.format(name="b"))
    _write(tmp_path / "sub" / "deeper" / "c.json", json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}))
    _write(tmp_path / "sub" / "notes.txt", "this: [is not read")
    _write(tmp_path / "README.md", "# not read either")
    _write(tmp_path / "d.yaml.bak", NS.format(name="d"))
    c = load_cluster([str(tmp_path)])
    assert sorted(c.namespaces) == ["a", "b", "c", "default"]
    sources = {ns.name: ns.source.file for ns in c.namespaces.values() if ns.source}
    assert sources["b"] == str(tmp_path / "sub" / "b.yml")


def test_an_explicit_file_is_read_whatever_its_suffix(tmp_path):
    _write(tmp_path / "objects.txt", NS.format(name="a"))
    assert "a" in load_cluster([str(tmp_path / "objects.txt")]).namespaces


def test_several_paths_and_a_missing_one(tmp_path):
    _write(tmp_path / "a.yaml", NS.format(name="a"))
    _write(tmp_path / "b.yaml", NS.format(name="b"))
    c = load_cluster([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert {"a", "b"} <= set(c.namespaces)
    missing = str(tmp_path / "nope")
    with pytest.raises(InputError) as err:
        load_cluster([str(tmp_path / "a.yaml"), missing])
    assert err.value.file == missing and "no such file or folder" in str(err.value)


def test_unreadable_bytes_are_an_input_error(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"kind: Namespace\nmetadata: {name: \xff\xfe}\n")
    with pytest.raises(InputError, match="cannot read"):
        load_paths([str(tmp_path / "bin.yaml")])


def test_multi_document_yaml_keeps_each_objects_line():
    raws = parse_text(textwrap.dedent("""\
        # leading comment
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: a}
        ---
        ---
        # an empty document above and a comment here
        apiVersion: v1
        kind: Namespace
        metadata: {name: b}
        ...
        """), "multi.yaml")
    assert [(r.data["metadata"]["name"], r.source.line) for r in raws] == [("a", 3), ("b", 9)]
    assert str(raws[1].source) == "multi.yaml:9"


def test_json_and_utf8_bom(tmp_path):
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x", "labels": {"a": "b"}},
           "status": {"podIP": "198.18.0.5"}}
    (tmp_path / "p.json").write_text(json.dumps(doc, indent="\t"))
    (tmp_path / "q.yaml").write_bytes("\ufeffapiVersion: v1\nkind: Namespace\nmetadata: {name: q}\n".encode())
    c = load_cluster([str(tmp_path)])
    assert c.by_key["x/p"].labels == {"a": "b"} and c.by_key["x/p"].ips == ("198.18.0.5",)
    assert "q" in c.namespaces


def test_kind_list_and_typed_lists():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Namespace
          metadata: {name: x, labels: {env: prod}}
        - apiVersion: v1
          kind: Pod
          metadata: {name: a, namespace: x}
        ---
        apiVersion: v1
        kind: PodList
        items:
        - metadata: {name: b, namespace: y, labels: {app: b}}
          status: {podIP: 198.18.0.2}
        ---
        apiVersion: v1
        kind: NamespaceList
        items:
        - metadata: {name: y, labels: {env: dev}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicyList
        items:
        - metadata: {name: deny, namespace: y}
          spec: {podSelector: {}}
        """)
    assert sorted(c.by_key) == ["x/a", "y/b"]
    assert c.namespaces["x"].labels["env"] == "prod" and c.namespaces["y"].labels["env"] == "dev"
    assert [p.key for p in c.policies] == ["y/deny"]
    assert c.policies[0].source.line == 25


def test_stdin(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.stdin", io.StringIO(NS.format(name="fromstdin")))
    _write(tmp_path / "a.yaml", NS.format(name="fromfile"))
    raws = load_paths(["-", str(tmp_path)])
    assert [r.data["metadata"]["name"] for r in raws] == ["fromstdin", "fromfile"]
    assert raws[0].source.file == "<stdin>"


def test_stdin_errors_name_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Pod\nmetadata: {name: [\n"))
    with pytest.raises(InputError) as err:
        load_paths(["-"])
    assert err.value.file == "<stdin>" and err.value.line == 3


def test_unknown_kinds_and_other_api_groups_are_skipped_silently():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: cm, namespace: x}
        data: {anything: goes, port: 99999}
        ---
        apiVersion: crd.projectcalico.org/v1
        kind: NetworkPolicy
        metadata: {name: calico, namespace: x}
        spec: {selector: all(), ingress: [{action: Deny, protocol: ICMP}]}
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: cnp, namespace: x}
        spec: {endpointSelector: {}}
        ---
        kind: SomethingNew
        spec: [1, 2, 3]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: a, namespace: x}
        """)
    assert [p.key for p in c.pods] == ["x/a"] and not c.policies


def test_objects_without_namespace_go_to_default_and_namespaces_are_implied():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p, namespace: only-policy}
        spec: {podSelector: {}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: s, namespace: only-service}
        spec: {selector: {app: a}, ports: [{port: 80}]}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d, namespace: only-workload}
        spec: {template: {metadata: {labels: {app: d}}}}
        """)
    assert "default/a" in c.by_key
    assert set(c.namespaces) == {"default", "only-policy", "only-service", "only-workload"}
    for ns in c.namespaces.values():
        assert ns.labels == {NS_NAME_LABEL: ns.name}


def test_every_namespace_carries_its_metadata_name_label():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: x
          labels: {team: a, kubernetes.io/metadata.name: lies}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: y}
        """)
    assert c.namespaces["x"].labels == {"team": "a", NS_NAME_LABEL: "x"}
    assert c.namespaces["y"].labels == {NS_NAME_LABEL: "y"}
    assert c.ns_labels("never-declared") == {NS_NAME_LABEL: "never-declared"}


def test_pods_with_dual_stack_pod_ips_and_the_single_pod_ip_fallback():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: dual, namespace: x}
        status:
          podIP: 198.18.0.1
          podIPs: [{ip: 198.18.0.1}, {ip: "2001:db8::1"}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: v6first, namespace: x}
        status:
          podIPs: [{ip: "2001:db8::2"}, {ip: 198.18.0.2}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: old, namespace: x}
        status: {podIP: 198.18.0.3}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: pending, namespace: x}
        status: {phase: Pending}
        """)
    assert c.by_key["x/dual"].ips == ("198.18.0.1", "2001:db8::1")
    assert c.by_key["x/v6first"].address(None).version == 6 and str(c.by_key["x/v6first"].address(4)) == "198.18.0.2"
    assert c.by_key["x/old"].ips == ("198.18.0.3",)
    assert c.by_key["x/pending"].ips == ()
    assert {str(ip) for ip in c.by_address} == {"198.18.0.1", "2001:db8::1", "2001:db8::2", "198.18.0.2", "198.18.0.3"}


def test_pod_fields_that_matter():
    c = cluster_yaml("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: a
          namespace: x
          labels: {app: a, empty: }
          ownerReferences: [{kind: ReplicaSet, name: a-123, controller: true}]
        spec:
          nodeName: node-1
          hostNetwork: false
          initContainers:
          - name: sidecar
            ports: [{name: metrics, containerPort: 9090}]
          containers:
          - name: main
            ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53}
        status: {phase: Running, podIP: 198.18.0.1}
        """)
    p = c.by_key["x/a"]
    assert p.labels == {"app": "a", "empty": ""}
    assert p.owner == ("ReplicaSet", "a-123") and p.node_name == "node-1" and not p.host_network
    assert [(cp.name, cp.port, cp.protocol) for cp in p.ports] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9090, "TCP")]


@pytest.mark.parametrize("kind,template", [
    ("Deployment", "spec: {template: {metadata: {labels: {app: w}}}}"),
    ("StatefulSet", "spec: {template: {metadata: {labels: {app: w}}}}"),
    ("DaemonSet", "spec: {template: {metadata: {labels: {app: w}}, spec: {hostNetwork: true}}}"),
    ("ReplicaSet", "spec: {template: {metadata: {labels: {app: w}}}}"),
    ("ReplicationController", "spec: {template: {metadata: {labels: {app: w}}}}"),
    ("Job", "spec: {template: {metadata: {labels: {app: w}}}}"),
    ("CronJob", "spec: {jobTemplate: {spec: {template: {metadata: {labels: {app: w}}}}}}"),
])
def test_workload_kinds_stand_for_their_template(kind, template):
    c = build_cluster(parse_text(f"kind: {kind}\nmetadata: {{name: w, namespace: x}}\n{template}\n", "w.yaml"))
    (w,) = c.pods
    assert (w.key, w.kind, w.labels, w.ips) == (f"x/{kind.lower()}/w", kind, {"app": "w"}, ())
    assert w.host_network is (kind == "DaemonSet")


def test_bundled_example_loads():
    from support.paths import POLICIES
    c = load_cluster([str(POLICIES)])
    assert sorted(c.namespaces) == ["default", "tenant1", "tenant2", "tenant3"]
    assert {p.key for p in c.policies} == {"tenant1/default-deny", "tenant3/db-access"}
    assert c.by_key["tenant3/db-0"].ips == ("198.18.3.10", "2001:db8:3::10")


def test_no_input_and_no_cluster_is_a_clear_error(monkeypatch, tmp_path):
    from netpol.errors import NetpolError
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(NetpolError, match="no input: give -f/--filename"):
        load_cluster(None)


@pytest.mark.parametrize(("marker", "hint"), [("Chart.yaml", "helm template"), ("kustomization.yaml", "kubectl kustomize")])
def test_template_folders_say_how_to_render_them(tmp_path, marker, hint):
    from netpol.errors import InputError
    from netpol.k8s.load import load_paths
    (tmp_path / marker).write_text("apiVersion: v2\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "np.yaml").write_text("kind: {{ .Values.kind }}\n")
    with pytest.raises(InputError, match=hint) as err:
        load_paths([str(tmp_path)])
    assert err.value.file.endswith(marker)
