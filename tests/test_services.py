"""Services: reading them as the API server does, resolving their backends as kube-proxy and the
EndpointSlice controller do, and `check` / `matrix --services` answering per backend after DNAT."""

from __future__ import annotations

import json

import pytest
from support.builders import cluster, container_ports, endpoint_slice, namespace, pod, policy, service
from typer.testing import CliRunner

from netpol.cli import app
from netpol.errors import InputError, QueryError
from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint, endpoint
from netpol.evaluate.services import backends, check_service, find_service
from netpol.k8s.model import Options

VIP = "198.18.100.10"


def world(*extra: dict) -> list[dict]:
    """front/client-0 and two backends of back/api whose port `http` has different numbers; api-2
    has no `http` at all. The ingress policy admits only TCP/8080."""
    return [namespace("front"), namespace("back"),
            pod("front", "client-0", {"app": "client"}, ("198.18.1.10",), node="node-a"),
            pod("back", "api-0", {"app": "api"}, ("198.18.2.10",), container_ports((8080, "TCP", "http")), node="node-a"),
            pod("back", "api-1", {"app": "api"}, ("198.18.2.11",), container_ports((9090, "TCP", "http")), node="node-b"),
            pod("back", "api-2", {"app": "api"}, ("198.18.2.12",), container_ports((8080, "UDP", "http")), node="node-b"),
            service("back", "api", [{"name": "web", "port": 80, "targetPort": "http"},
                                    {"name": "raw", "port": 81, "targetPort": 8080}], {"app": "api"}, VIP),
            policy("back", "api-ingress", {"podSelector": {"matchLabels": {"app": "api"}},
                                           "ingress": [{"ports": [{"port": 8080}]}]}),
            *extra]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def files(tmp_path):
    def write(objects: list[dict]) -> str:
        path = tmp_path / "cluster.yaml"
        path.write_text("\n---\n".join(json.dumps(o) for o in objects))  # JSON is YAML
        return str(path)
    return write


# ---- resolution --------------------------------------------------------------------------------

def test_named_target_port_resolves_per_backend_with_the_service_protocol():
    c = cluster(*world())
    svc = find_service(c, "back/service/api")
    found = backends(c, svc, svc.ports[0], 4)
    assert [(b.label, b.port) for b in found.backends] == [("back/api-0", 8080), ("back/api-1", 9090)]
    assert any("back/api-2 is no endpoint" in n and "TCP" in n for n in found.notes)  # its http is UDP
    numeric = backends(c, svc, svc.ports[1], 4)
    assert [(b.label, b.port) for b in numeric.backends] == [("back/api-0", 8080), ("back/api-1", 8080),
                                                             ("back/api-2", 8080)]


def test_every_backend_verdict_is_decide_on_the_backend_and_its_target_port():
    c = cluster(*world())
    svc = find_service(c, VIP)
    src = endpoint(c, "front/client-0")
    v = check_service(c, src, svc, svc.ports[0], None)
    for r in v.results:
        assert r.verdict == decide(c, src, Endpoint(pod=r.backend.pod, ip=r.backend.address), r.backend.port)
    assert [r.verdict.allowed for r in v.results] == [True, False] and v.partial and not v.allowed


def test_hairpin_is_allowed_even_where_the_pods_ingress_denies_others():
    c = cluster(*world())
    svc = find_service(c, "back/svc/api")
    v = check_service(c, endpoint(c, "back/api-1"), svc, svc.ports[0], None)
    by = {r.backend.label: r.verdict for r in v.results}
    assert by["back/api-1"].allowed and "itself" in by["back/api-1"].ingress.reason
    assert by["back/api-0"].allowed  # api-0 accepts 8080 from anyone


def test_endpoint_slices_are_the_truth_for_selectorless_services():
    c = cluster(*world(
        service("back", "ext", [{"name": "db", "port": 5432}], cluster_ip="198.18.100.11"),
        endpoint_slice("back", "ext-1", "ext", [{"addresses": ["198.18.2.10"], "targetRef": {"kind": "Pod", "name": "api-0"}},
                                                {"addresses": ["198.18.9.9"]},
                                                {"addresses": ["198.18.2.11"], "conditions": {"ready": False}}],
                       [{"name": "db", "port": 6432}])))
    svc = find_service(c, "198.18.100.11")
    found = backends(c, svc, svc.ports[0], 4)
    assert [(b.label, b.port) for b in found.backends] == [("back/api-0", 6432), ("198.18.9.9", 6432)]
    assert any("not ready" in n for n in found.notes)
    v = check_service(c, endpoint(c, "front/client-0"), svc, svc.ports[0], None)
    assert [r.verdict.allowed for r in v.results] == [False, True]  # api-0 admits 8080 only; outside: no policy


def test_internal_traffic_policy_local_keeps_the_clients_node():
    c = cluster(*world(service("back", "near", [{"port": 82, "targetPort": 8080}], {"app": "api"},
                               "198.18.100.12", internalTrafficPolicy="Local")))
    svc = find_service(c, "back/service/near")
    found = backends(c, svc, svc.ports[0], 4, endpoint(c, "front/client-0").pod)
    assert [b.label for b in found.backends] == ["back/api-0"] and "internalTrafficPolicy Local" in found.notes[0]


def test_external_name_and_unknown_services_are_clear_errors():
    c = cluster(*world(service("back", "alias", [], type="ExternalName", externalName="db.example.com")))
    with pytest.raises(QueryError, match="ExternalName: a DNS alias to db.example.com, not proxied"):
        find_service(c, "back/service/alias")
    with pytest.raises(QueryError, match="no Service back/nope"):
        find_service(c, "back/svc/nope")
    assert find_service(c, "198.18.2.10") is None  # a pod's address is not a Service


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"spec": {"ports": [{"port": 80}, {"port": 81}]}}, "spec.ports[0].name", "more than one port"),
    ({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}}, "spec.ports[1].name", "duplicate"),
    ({"spec": {"ports": [{"port": 70000}]}}, "spec.ports[0].port", "out of range"),
    ({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}, "spec.ports[0].nodePort", "ClusterIP"),
    ({"spec": {"type": "Cluster", "ports": [{"port": 80}]}}, "spec.type", "unsupported value"),
    ({"spec": {"clusterIP": "10.0.0.300", "ports": [{"port": 80}]}}, "spec.clusterIP", "invalid IP"),
    ({"spec": {"ports": [{"port": 80, "targetPort": "not_a_name"}]}}, "spec.ports[0].targetPort", "IANA"),
    ({"spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}}}, "spec.selectr", "unknown field"),
    ({"spec": {"type": "ExternalName"}}, "spec.externalName", "required"),
])
def test_invalid_services_are_refused_at_the_field(change, field, fragment):
    raw = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}, **change}
    with pytest.raises(InputError) as err:
        cluster(raw)
    assert fragment in str(err.value) and field in str(err.value)


def test_invalid_endpoint_slices_are_refused_at_the_field():
    bad = endpoint_slice("n", "s-1", "s", [{"addresses": ["2001:db8::1"]}], [])
    with pytest.raises(InputError, match=r"endpoints\[0\]\.addresses\[0\].*addressType"):
        cluster(bad)
    with pytest.raises(InputError, match="addressType"):
        cluster({**bad, "addressType": "IPv5"})


# ---- command line ------------------------------------------------------------------------------

def test_check_through_a_service_reports_each_backend_and_partial(files):
    f = files(world())
    out = run("check", "front/client-0", "back/service/api", "--port", "web", "-f", f)
    assert out.exit_code == 1, out.output
    assert out.output.startswith("PARTIAL 1 of 2 backends: front/client-0 -> back/api (198.18.100.10) TCP/80 'web'")
    assert "back/api-1 (198.18.2.11) TCP/9090: DENIED" in out.output and "TCP/9090 is not among its ports" in out.output
    doc = json.loads(run("check", "front/client-0", VIP, "-p", "80", "-o", "json", "-f", f).output)
    assert {k: doc[k] for k in ("service", "address", "port", "allowed", "partial")} == {
        "service": "back/api", "address": VIP, "allowed": False, "partial": True,
        "port": {"name": "web", "port": 80, "protocol": "TCP", "targetPort": "http"}}
    assert [(b["pod"], b["port"], b["allowed"]) for b in doc["backends"]] == [("back/api-0", 8080, True),
                                                                             ("back/api-1", 9090, False)]
    assert set(doc["backends"][0]) >= {"pod", "address", "port", "allowed", "egress", "ingress"}
    raw = run("check", "front/client-0", "back/svc/api", "-p", "raw", "-f", f)
    assert raw.exit_code == 0 and raw.output.startswith("ALLOWED")


def test_check_through_a_service_without_port_answers_every_port(files):
    docs = json.loads(run("check", "front/client-0", "back/service/api", "-o", "json", "-f", files(world())).output)
    assert [d["port"]["name"] for d in docs] == ["web", "raw"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["back/service/nope"], "no Service back/nope"),
    (["back/service/api", "-p", "8080"], "has no port 8080 (its ports: TCP/80 'web', TCP/81 'raw')"),
])
def test_check_through_a_service_refuses_what_does_not_exist(files, args, fragment):
    out = run("check", "front/client-0", *args, "-f", files(world()))
    assert out.exit_code == 2 and fragment in out.output and "Traceback" not in out.output


def test_matrix_services_contract_equals_check_per_backend(files):
    f = files(world())
    doc = json.loads(run("matrix", "--services", "-o", "json", "-f", f).output)
    assert doc["services"] == ["back/api"] and "front/client-0" in doc["pods"]
    c = cluster(*world())
    svc = find_service(c, "back/service/api")
    for p in doc["probes"]:
        assert set(p) == {"src", "dst", "port", "protocol", "backend", "target_port", "allowed"}
        sp = next(s for s in svc.ports if s.port == p["port"])
        v = check_service(c, endpoint(c, p["src"]), svc, sp, None, Options())
        assert p["allowed"] == next(r.verdict.allowed for r in v.results if r.backend.label == p["backend"])
    assert len(doc["probes"]) == 4 * (2 + 3)  # 4 pods; web has 2 backends, raw 3
    text = run("matrix", "--services", "-f", f).output
    assert "back/api:TCP/80" in text and "partial 1/2" in text


def test_diff_reports_service_ports_a_change_opens_and_closes(files, tmp_path):
    old = files(world())
    wider = [o if o.get("kind") != "NetworkPolicy" else policy("back", "api-ingress", {
        "podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"ports": [{"port": 8080}, {"port": 9090}]}]})
        for o in world()]
    new = tmp_path / "new.yaml"
    new.write_text("\n---\n".join(json.dumps(o) for o in wider))
    doc = json.loads(run("diff", old, str(new), "-o", "json").output)
    web = {(s["client"], s["old"], s["new"], s["change"]) for s in doc["services"] if s["service"] == "back/api:web"}
    assert ("front/client-0[Pod]", "partial 1/2", "allowed", "opens") in web
    assert all(s["service"] == "back/api:web" for s in doc["services"])  # raw targets 8080 on all: unchanged
    text = run("diff", old, str(new)).output
    assert "opens back/api:web for front/client-0[Pod]" in text
    assert json.loads(run("diff", old, old, "-o", "json").output)["services"] == []


def node_obj(name: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


OUTSIDE = [node_obj("node-a", "198.18.0.1"), node_obj("node-b", "198.18.0.2"),
           service("back", "pub", [{"name": "web", "port": 80, "targetPort": "http", "nodePort": 30080}],
                   {"app": "api"}, type="NodePort"),
           policy("back", "from-outside", {"podSelector": {"matchLabels": {"app": "api"}},
                                           "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]})]


def test_from_outside_each_backend_sees_the_client_on_its_node_and_the_node_elsewhere(files):
    docs = json.loads(run("check", "203.0.113.7", "back/service/pub", "--via", "nodeport", "-o", "json",
                          "-f", files(world(*OUTSIDE))).output)
    seen = {(d["node"], b["pod"]): (b["source"], b["allowed"]) for d in docs for b in d["backends"]}
    # api-0 (node-a) admits TCP/8080 from anyone; api-1 (node-b) admits 9090 only from 203.0.113.0/24
    assert seen == {("node-a", "back/api-0"): ("203.0.113.7", True), ("node-a", "back/api-1"): ("198.18.0.1", False),
                    ("node-b", "back/api-0"): ("198.18.0.2", True), ("node-b", "back/api-1"): ("203.0.113.7", True)}
    assert [d["address"] for d in docs] == ["198.18.0.1", "198.18.0.2"] and all(d["via"] == "nodeport" for d in docs)


def test_from_outside_with_external_traffic_policy_local_keeps_the_client_and_the_node(files):
    local = [o if o.get("kind") != "Service" or o["metadata"]["name"] != "pub" else
             {**o, "spec": {**o["spec"], "externalTrafficPolicy": "Local"}} for o in OUTSIDE]
    out = run("check", "203.0.113.7", "back/svc/pub", "--via", "nodeport", "--node", "node-b", "-f", files(world(*local)))
    assert out.exit_code == 0, out.output
    assert "back/api-1 (198.18.2.11) TCP/9090 from 203.0.113.7: ALLOWED" in out.output and "back/api-0" not in out.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["203.0.113.7", "back/service/api", "--via", "nodeport"], "has no nodePort"),
    (["203.0.113.7", "back/service/pub", "--via", "tunnel"], "--via 'tunnel'"),
    (["front/client-0", "back/service/pub", "--via", "nodeport"], "clients outside the cluster"),
    (["203.0.113.7", "back/service/pub", "--via", "nodeport", "--node", "node-z"], "no such Node"),
    (["203.0.113.7", "back/api-0", "--via", "nodeport"], "are for connections to a Service"),
])
def test_from_outside_refuses_what_cannot_be_answered(files, args, fragment):
    out = run("check", *args, "-f", files(world(*OUTSIDE)))
    assert out.exit_code == 2 and fragment in out.output, out.output


def test_from_outside_without_node_objects_takes_node_and_node_ip(files):
    objects = [o for o in world(*OUTSIDE) if o.get("kind") != "Node"]
    assert "no Node objects" in run("check", "203.0.113.7", "back/service/pub", "--via", "nodeport",
                                    "-f", files(objects)).output
    out = run("check", "203.0.113.7", "back/service/pub", "--via", "nodeport", "--node", "node-a",
              "--node-ip", "198.18.0.9", "-f", files(objects))
    assert "from 198.18.0.9: DENIED" in out.output


def test_an_endpoint_slice_without_its_service_label_is_refused():
    bad = endpoint_slice("back", "loose", "api", [{"addresses": ["198.18.2.10"]}], [])
    del bad["metadata"]["labels"]["kubernetes.io/service-name"]
    with pytest.raises(InputError, match="kubernetes.io/service-name"):
        cluster(bad)
