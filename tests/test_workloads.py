"""Workload-level connectivity: grouping, external ranges, exactness against `connections`, the CLI."""

from __future__ import annotations

import json
import random

import pytest
from support.paths import CORPUS
from support.shop import frontend_backend
from typer.testing import CliRunner

from netpol.cli import app
from netpol.evaluate.conns import connections
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.workloads import ALL_CONNS, NO_CONNS, External, conn_minus, connectivity, parse_conns, workloads
from netpol.k8s.load import parse_text
from netpol.k8s.model import Options
from netpol.k8s.parse import build_cluster
from netpol.k8s.source import RawObject, Source

runner = CliRunner()


def cluster_of(text: str):
    return build_cluster(parse_text(text, "test.yaml"))


PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: web-abc-1, namespace: shop, labels: {app: web},
  ownerReferences: [{kind: ReplicaSet, name: web-abc, controller: true}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-abc-2, namespace: shop, labels: {app: web, extra: x},
  ownerReferences: [{kind: ReplicaSet, name: web-abc, controller: true}]}
---
apiVersion: v1
kind: Pod
metadata: {name: etcd-node1, namespace: kube-system, labels: {component: etcd},
  ownerReferences: [{kind: Node, name: node1, controller: true}]}
---
apiVersion: v1
kind: Pod
metadata: {name: odd-1, namespace: shop, labels: {app: odd}, ownerReferences: [{name: odd, controller: true}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec: {template: {metadata: {labels: {app: api}}, spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec: {jobTemplate: {spec: {template: {metadata: {labels: {app: report}}, spec: {containers: [{name: c}]}}}}}
"""


def test_workload_names_follow_npguard():
    names = [w.name for w in workloads(cluster_of(PODS))]
    assert names == ["kube-system/etcd-node1[Pod]", "shop/api[Deployment]", "shop/odd[Pod]",
                     "shop/report[CronJob]", "shop/web-abc[ReplicaSet]"]
    web = next(w for w in workloads(cluster_of(PODS)) if w.name == "shop/web-abc[ReplicaSet]")
    assert len(web.pods) == 2  # the label `extra` is used by no selector: one workload


def test_pods_the_policies_tell_apart_are_separate_workloads():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: extra-only, namespace: shop}
spec: {podSelector: {matchLabels: {extra: x}}, ingress: []}
"""
    names = [w.name for w in workloads(cluster_of(PODS + policy))]
    assert "shop/web-abc[ReplicaSet]" not in names
    assert {"shop/web-abc-1[Pod]", "shop/web-abc-2[Pod]"} <= set(names)
    result = connectivity(cluster_of(PODS + policy))
    assert result.get("shop/web-abc-2[Pod]", "shop/web-abc-1[Pod]") == ALL_CONNS
    assert result.get("shop/web-abc-1[Pod]", "shop/web-abc-2[Pod]") == NO_CONNS  # web-abc-2 is isolated


def test_external_ranges_and_lines():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
    ports: [{port: http}, {protocol: UDP, port: 53, endPort: 54}]
"""
    result = connectivity(cluster_of(PODS + policy))
    assert [e.name for e in result.sources] == [
        "0.0.0.0-9.255.255.255[External]", "10.0.0.0-10.0.255.255[External]",
        "10.1.0.0-10.1.255.255[External]", "10.2.0.0-10.255.255.255[External]",
        "11.0.0.0-255.255.255.255[External]"]
    assert [e.name for e in result.destinations] == ["0.0.0.0-255.255.255.255[External]"]
    lines = result.txt().splitlines()
    assert "10.0.0.0-10.0.255.255[External] => shop/api[Deployment] : TCP 8080,UDP 53-54" in lines
    assert not any(line.startswith("10.1.0.0") and "api" in line for line in lines)
    assert "shop/web-abc[ReplicaSet] => shop/api[Deployment] : All Connections" not in lines
    assert lines == sorted(lines)
    assert not any("No Connections" in line for line in lines)


def test_ipv6_space_appears_with_ipv6_blocks():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  egress: [{to: [{ipBlock: {cidr: "2001:db8::/32"}}]}]
  policyTypes: [Egress]
"""
    result = connectivity(cluster_of(PODS + policy))
    assert [e.name for e in result.destinations] == [
        "0.0.0.0-255.255.255.255[External]", "::-2001:db7:ffff:ffff:ffff:ffff:ffff:ffff[External]",
        "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff[External]",
        "2001:db9::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff[External]"]
    api = "shop/api[Deployment]"
    assert result.get(api, "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff[External]") == ALL_CONNS
    assert result.get(api, "0.0.0.0-255.255.255.255[External]") == NO_CONNS


def test_conn_strings_and_arithmetic():
    c = parse_conns("SCTP 1-9002,9004-65535,TCP 1-65535,UDP 1-65535")
    assert str(c) == "SCTP 1-9002,9004-65535,TCP 1-65535,UDP 1-65535"
    assert str(conn_minus(ALL_CONNS, c)) == "SCTP 9003"
    assert str(conn_minus(parse_conns("TCP 80,443,UDP 53"), parse_conns("TCP 443"))) == "TCP 80,UDP 53"
    assert parse_conns("All Connections") == ALL_CONNS and str(parse_conns("No Connections")) == "No Connections"
    assert External.parse("10.0.0.0-10.255.255.255[External]") == External(4, 10 << 24, (11 << 24) - 1)


# ---- exactness: one representative per class and per range equals every member and address ----

LABELS = [{"app": "a"}, {"app": "b"}, {"app": "b", "tier": "x"}, {"tier": "x"}, {}]
CIDRS = [("10.0.0.0/8", ["10.1.0.0/16"]), ("0.0.0.0/0", ["192.168.0.0/16"]), ("192.168.1.0/24", []),
         ("10.1.2.0/24", [])]


def random_cluster(rng: random.Random):
    objs = [{"kind": "Namespace", "metadata": {"name": ns, "labels": {"team": team}}}
            for ns, team in (("n1", "red"), ("n2", "blue"))]
    for i in range(rng.randint(3, 6)):
        ports = [{"name": rng.choice(["web", "dns"]), "containerPort": rng.choice([80, 53, 8080]),
                  "protocol": rng.choice(["TCP", "UDP"])}]
        tmpl = {"metadata": {"labels": rng.choice(LABELS)}, "spec": {"containers": [{"name": "c", "ports": ports}]}}
        objs.append({"kind": "Deployment", "metadata": {"name": f"d{i}", "namespace": rng.choice(["n1", "n2"])},
                     "spec": {"template": tmpl}})
    for i in range(rng.randint(0, 3)):  # pods with addresses, two per ReplicaSet
        labels, ns = rng.choice(LABELS), rng.choice(["n1", "n2"])
        for j in range(2):
            ip = rng.choice(["10.1.2.", "10.2.0.", "192.168.1."]) + str(10 * i + j + 1)
            objs.append({"kind": "Pod", "metadata": {
                "name": f"rs{i}-{j}", "namespace": ns, "labels": labels,
                "ownerReferences": [{"kind": "ReplicaSet", "name": f"rs{i}", "controller": True}]},
                "status": {"podIP": ip}})
    for i in range(rng.randint(2, 5)):
        policy = {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
                  "metadata": {"name": f"p{i}", "namespace": rng.choice(["n1", "n2"])},
                  "spec": {"podSelector": {"matchLabels": rng.choice(LABELS + [{}, {}])}}}
        for direction, field in (("ingress", "from"), ("egress", "to")):
            if rng.random() < 0.6:
                policy["spec"][direction] = [random_rule(rng, field) for _ in range(rng.randint(0, 2))]
        objs.append(policy)
    return build_cluster(RawObject(o, Source("gen", 0)) for o in objs)


def random_rule(rng: random.Random, field: str) -> dict:
    peers = []
    for _ in range(rng.randint(0, 2)):
        pick = rng.random()
        if pick < 0.4:
            cidr, excepts = rng.choice(CIDRS)
            peers.append({"ipBlock": {"cidr": cidr, "except": excepts}})
        elif pick < 0.7:
            peers.append({"podSelector": {"matchLabels": rng.choice(LABELS)}})
        else:
            peers.append({"namespaceSelector": {"matchLabels": {"team": rng.choice(["red", "blue"])}}})
    ports = rng.choice([[], [{"port": 80}], [{"port": "web"}], [{"protocol": "UDP", "port": 50, "endPort": 60}],
                        [{"protocol": "UDP", "port": "dns"}, {"port": 8080}]])
    return {field: peers, "ports": ports}


@pytest.mark.parametrize("seed", range(25))
def test_representatives_are_exact(seed):
    rng = random.Random(seed)
    cluster = random_cluster(rng)
    opts = Options(ipblock_pods=rng.random() < 0.5)
    result = connectivity(cluster, opts)
    wls = workloads(cluster, opts)
    for a in wls:
        for b in wls:
            if a is not b:
                assert result.get(a.name, b.name) == connections(cluster, Endpoint(pod=a.rep), Endpoint(pod=b.rep), opts)
        for ext in result.destinations:
            addr = ext.first + rng.randint(0, ext.last - ext.first)
            want = connections(cluster, Endpoint(pod=a.rep), Endpoint(ip=External(ext.version, addr, addr).address), opts)
            assert result.get(a.name, ext.name) == want, ext.name
        for ext in result.sources:
            addr = ext.first + rng.randint(0, ext.last - ext.first)
            want = connections(cluster, Endpoint(ip=External(ext.version, addr, addr).address), Endpoint(pod=a.rep), opts)
            assert result.get(ext.name, a.name) == want, ext.name


# ---- CLI ----

EXAMPLE = CORPUS / "netpol-analysis-example-minimal"
needs_corpus = pytest.mark.skipif(not EXAMPLE.exists(), reason="np-guard corpus not present")


@needs_corpus
def test_cli_matrix_workloads_txt_is_npguards_output():
    out = runner.invoke(app, ["matrix", "--workloads", "-o", "txt", "-f", str(EXAMPLE / "manifests")])
    assert out.exit_code == 0, out.output
    golden = (EXAMPLE / "expected" / "netpol-analysis-example-minimal_connlist_output.txt").read_text()
    assert out.output.split("\n")[:-1] == golden.strip().split("\n")


@needs_corpus
def test_cli_matrix_workloads_json():
    out = runner.invoke(app, ["matrix", "--workloads", "-o", "json", "-f", str(EXAMPLE / "manifests")])
    doc = json.loads(out.output)
    assert doc["workloads"] == ["default/backend[Deployment]", "default/frontend[Deployment]"]
    assert {"src": "default/frontend[Deployment]", "dst": "default/backend[Deployment]", "conn": "TCP 9090",
            "ports": {"TCP": [[9090, 9090]]}} in doc["connections"]


@needs_corpus
@pytest.mark.parametrize("args", [["-o", "yaml"], ["--port", "80"]])
def test_cli_matrix_workloads_usage_errors(args):
    out = runner.invoke(app, ["matrix", "--workloads", *args, "-f", str(EXAMPLE / "manifests")])
    assert out.exit_code == 2 and "netpol: error:" in out.output


def test_cli_matrix_workloads_input_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n"
                   "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n")
    out = runner.invoke(app, ["matrix", "--workloads", "-o", "txt", "-f", str(bad)])
    assert out.exit_code == 2 and "bad.yaml:6" in out.output and "Traceback" not in out.output


def test_a_block_whose_excepts_leave_nothing_is_no_crash():
    """An IPv6 ipBlock whose `except` ranges cover all of it, in a cluster without other IPv6: no
    address of its family is cut, and every answer stands."""
    cluster = build_cluster(RawObject(o, Source("gen", i + 1)) for i, o in enumerate([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p0", "namespace": "n"},
         "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "198.18.0.1"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "n"},
         "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {
             "cidr": "2001:db8::/126", "except": ["2001:db8::/127", "2001:db8::2/127"]}}]}]}}]))
    for ipblock_pods in (True, False):
        result = connectivity(cluster, Options(ipblock_pods=ipblock_pods))
        assert not any(s == "n/p0[Pod]" for s, _, _ in result.lines())  # isolated for egress, nothing allowed


# ---- views: namespaces as wholes, one workload in focus ----

@pytest.mark.parametrize("seed", range(20))
def test_namespace_view_is_the_union_of_its_workload_lines(seed):
    from netpol.evaluate.views import OUTSIDE, by_namespace
    from netpol.evaluate.workloads import conn_set
    result = connectivity(random_cluster(random.Random(seed)))
    want: dict = {}
    for s, d, c in result.lines():
        key = tuple(OUTSIDE if n.endswith("[External]") else n.split("/")[0] for n in (s, d))
        for proto, ranges in c.ranges:
            want.setdefault(key, {}).setdefault(proto, []).extend(ranges)
    got = {(s, d): c for s, d, c in by_namespace(result).lines()}
    assert got == {k: conn_set(v) for k, v in want.items()}
    assert got  # every world connects something


@pytest.mark.parametrize("seed", range(10))
def test_focus_keeps_the_lines_into_or_out_of_one_workload(seed):
    from netpol.evaluate.views import focused
    result = connectivity(random_cluster(random.Random(seed)))
    name = result.workloads[seed % len(result.workloads)]
    every = list(result.lines())
    short = name.rsplit("[", 1)[0]  # ns/name finds it too (names are unique per namespace here)
    assert list(focused(result, short, None).lines()) == [x for x in every if name in x[:2]]
    assert list(focused(result, name, "ingress").lines()) == [x for x in every if x[1] == name]
    assert list(focused(result, name, "egress").lines()) == [x for x in every if x[0] == name]


def test_cli_views_and_csv(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "all.yaml").write_text(frontend_backend("shop"))
    def run(*args):
        out = runner.invoke(app, ["matrix", "--workloads", "-f", str(folder), *args])
        return out.exit_code, out.output
    code, text = run("--by", "namespace")
    assert code == 0 and text.splitlines() == ["(outside) => shop : TCP 8080", "shop => (outside) : UDP 53",
                                               "shop => shop : TCP 9090"]
    code, text = run("--focus", "backend", "-o", "csv")
    assert code == 0 and text.splitlines() == ["src,dst,conn", "shop/frontend[Deployment],shop/backend[Deployment],TCP 9090"]
    assert run("--focus", "frontend", "--focus-direction", "egress")[1].splitlines() == [
        "shop/frontend[Deployment] => 0.0.0.0-255.255.255.255[External] : UDP 53",
        "shop/frontend[Deployment] => shop/backend[Deployment] : TCP 9090"]
    for bad in (["--focus", "nope"], ["--by", "node"], ["--focus-direction", "up", "--focus", "backend"],
                ["--focus-direction", "ingress"], ["--by", "namespace", "--focus", "backend"]):
        code, text = run(*bad)
        assert code == 2 and "Traceback" not in text, (bad, text)
    assert runner.invoke(app, ["matrix", "--by", "namespace", "-f", str(folder)]).exit_code == 2  # needs --workloads
