"""ClusterNetworkPolicy (v1alpha2): validated as the API server does, and the tier walk of each side,
with scenarios in the spirit of the upstream conformance suite (network-policy-api `conformance/`)."""

from __future__ import annotations

import json

import pytest
from support.builders import cluster, container_ports, namespace, pod, policy
from typer.testing import CliRunner

from netpol.cli import app
from netpol.errors import InputError
from netpol.evaluate.conns import connections
from netpol.evaluate.decide import decide
from netpol.evaluate.matrix import PortQuery, compute
from netpol.evaluate.resolve import Endpoint, endpoint
from netpol.evaluate.workloads import connectivity
from netpol.k8s.model import Options
from netpol.nft.plan import compile_plan


def cnp(name: str, tier: str, priority: int, subject: dict, ingress: list | None = None,
        egress: list | None = None) -> dict:
    spec: dict = {"tier": tier, "priority": priority, "subject": subject}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def ns_sel(**labels: str) -> dict:
    return {"namespaces": {"matchLabels": labels}}


def rule(action: str, peers: list, protocols: list | None = None, name: str | None = None,
         direction: str = "from") -> dict:
    out: dict = {"action": action, direction: peers}
    if protocols is not None:
        out["protocols"] = protocols
    if name is not None:
        out["name"] = name
    return out


def tcp(port: int) -> dict:
    return {"tcp": {"destinationPort": {"number": port}}}


# Two tenants and a shared namespace: gryffindor and slytherin (tenant label "house"), and "ministry".
BASE = [namespace("gryffindor", house="gryffindor"), namespace("slytherin", house="slytherin"),
        namespace("ministry", shared="yes"),
        pod("gryffindor", "harry", {"app": "student"}, ("198.18.1.1",), container_ports((80, "TCP", "web"))),
        pod("slytherin", "draco", {"app": "student"}, ("198.18.2.1",), container_ports((8080, "TCP", "web"))),
        pod("ministry", "desk", {"app": "desk"}, ("198.18.3.1",), container_ports((80, "TCP", "web"))),
        pod("kube-system", "agent", {"app": "agent"}, ("198.18.0.7",), host_network=True, node="node-1")]
HOUSES = {"namespaces": {"matchExpressions": [{"key": "house", "operator": "Exists"}]}}


def world(*objects: dict):
    return cluster(*BASE, *objects)


def verdict(c, src: str, dst: str, port: int = 80):
    return decide(c, endpoint(c, src), endpoint(c, dst), port)


# ---- the tier walk -------------------------------------------------------------------------------

def test_admin_deny_beats_a_networkpolicy_allow_and_says_what_it_passed_over():
    c = world(policy("slytherin", "open", {"podSelector": {}, "ingress": [{}]}),
              cnp("houses-apart", "Admin", 10, HOUSES, ingress=[rule("Deny", [HOUSES], name="no-other-house")]))
    v = verdict(c, "gryffindor/harry", "slytherin/draco", 8080)
    assert not v.allowed and v.ingress.tier == "Admin"
    assert v.ingress.decided_by.model_dump() == {"kind": "ClusterNetworkPolicy", "policy": "cnp/houses-apart",
                                                 "rule": 0, "rule_name": "no-other-house", "action": "Deny"}
    assert "NetworkPolicy would have allowed" in v.ingress.reason and "(priority 10)" in v.ingress.reason
    assert verdict(c, "gryffindor/harry", "gryffindor/harry").allowed  # a pod to its own IP: not subject


def test_admin_accept_overrides_isolation_but_not_the_other_side():
    c = world(policy("ministry", "closed", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
              cnp("to-ministry", "Admin", 5, HOUSES,
                  egress=[rule("Accept", [ns_sel(shared="yes")], direction="to")]))
    v = verdict(c, "gryffindor/harry", "ministry/desk")
    assert v.egress.allowed and v.egress.tier == "Admin"
    assert not v.allowed and v.ingress.tier == "NetworkPolicy"  # an egress Accept does not bypass ingress


def test_pass_hands_over_to_networkpolicy_then_baseline_and_priorities_and_rule_order_count():
    pass_all = cnp("pass", "Admin", 1, HOUSES, ingress=[rule("Pass", [HOUSES])])
    deny = cnp("deny", "Admin", 2, HOUSES, ingress=[rule("Deny", [HOUSES])])
    baseline = cnp("base", "Baseline", 1, HOUSES, ingress=[rule("Deny", [ns_sel(house="gryffindor")]),
                                                           rule("Accept", [HOUSES])])
    c = world(pass_all, deny, baseline)
    v = verdict(c, "gryffindor/harry", "slytherin/draco", 8080)  # Pass, no NetworkPolicy: Baseline decides
    assert not v.allowed and v.ingress.tier == "Baseline" and v.ingress.decided_by.rule == 0
    assert "Admin cnp/pass (priority 1) ingress rule 0 passes" in v.ingress.reason
    assert verdict(c, "slytherin/draco", "gryffindor/harry").allowed  # Baseline rule 1
    c2 = world(pass_all, deny, baseline, policy("slytherin", "np", {"podSelector": {}, "ingress": [{}]}))
    v2 = verdict(c2, "gryffindor/harry", "slytherin/draco", 8080)
    assert v2.allowed and v2.ingress.tier == "NetworkPolicy"  # NetworkPolicy decides: Baseline never asked
    first_deny = world(cnp("deny", "Admin", 1, HOUSES, ingress=[rule("Deny", [HOUSES])]),
                       cnp("pass", "Admin", 2, HOUSES, ingress=[rule("Pass", [HOUSES])]))
    assert verdict(first_deny, "gryffindor/harry", "slytherin/draco", 8080).ingress.tier == "Admin"


def test_baseline_cannot_undo_a_networkpolicy_deny_nor_beat_its_allow():
    c = world(policy("slytherin", "closed", {"podSelector": {}}),
              cnp("base", "Baseline", 1, HOUSES, ingress=[rule("Accept", [HOUSES])]))
    assert not verdict(c, "gryffindor/harry", "slytherin/draco", 8080).allowed
    c = world(policy("slytherin", "open", {"podSelector": {}, "ingress": [{}]}),
              cnp("base", "Baseline", 1, HOUSES, ingress=[rule("Deny", [HOUSES])]))
    assert verdict(c, "gryffindor/harry", "slytherin/draco", 8080).allowed


def test_equal_priorities_go_by_name():
    c = world(cnp("b-accept", "Admin", 3, HOUSES, ingress=[rule("Accept", [HOUSES])]),
              cnp("a-deny", "Admin", 3, HOUSES, ingress=[rule("Deny", [HOUSES])]))
    assert verdict(c, "gryffindor/harry", "slytherin/draco", 8080).ingress.decided_by.policy == "cnp/a-deny"


def test_ports_named_ports_networks_and_nodes():
    named = world(cnp("web-only", "Admin", 1, HOUSES, ingress=[
        rule("Accept", [HOUSES], [{"destinationNamedPort": "web"}]), rule("Deny", [HOUSES])]))
    assert verdict(named, "gryffindor/harry", "slytherin/draco", 8080).allowed  # draco's web is 8080
    assert not verdict(named, "gryffindor/harry", "slytherin/draco", 80).allowed
    ranged = world(cnp("r", "Admin", 1, HOUSES, egress=[
        rule("Deny", [{"networks": ["198.18.2.0/24"]}], [{"tcp": {"destinationPort": {"range": {"start": 8000,
                                                                                                 "end": 9000}}}}],
             direction="to")]))
    assert not verdict(ranged, "gryffindor/harry", "slytherin/draco", 8080).allowed  # networks match pods too
    assert verdict(ranged, "gryffindor/harry", "slytherin/draco", 9001).allowed
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2", "labels": {"role": "worker"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.8"}]}}
    other = pod("kube-system", "agent-2", {"app": "agent"}, ("198.18.0.8",), host_network=True, node="node-2")
    nodes = world(node, other, cnp("no-nodes", "Admin", 1, HOUSES, egress=[
        rule("Deny", [{"nodes": {"matchLabels": {"role": "worker"}}}], direction="to")]))
    assert not verdict(nodes, "gryffindor/harry", "kube-system/agent-2").allowed
    assert verdict(nodes, "gryffindor/harry", "kube-system/agent").allowed  # its own node: always
    assert verdict(nodes, "gryffindor/harry", "198.18.9.9").allowed


def test_domain_names_are_never_silently_decided():
    c = world(cnp("dns", "Admin", 1, HOUSES, egress=[
        rule("Accept", [{"domainNames": ["api.example.com"]}], direction="to"), rule("Deny", [{"networks": ["0.0.0.0/0"]}],
                                                                                   direction="to")]))
    v = verdict(c, "gryffindor/harry", "203.0.113.5", 443)
    assert not v.allowed and "unverified" in v.egress.reason and "api.example.com" in v.egress.reason


def test_ingress_peers_never_match_addresses_or_host_network_pods():
    c = world(cnp("deny-all-houses-in", "Admin", 1, HOUSES, ingress=[rule("Deny", [{"namespaces": {}}])]))
    assert verdict(c, "203.0.113.5", "gryffindor/harry").allowed
    assert verdict(c, "kube-system/agent", "gryffindor/harry").allowed
    assert not verdict(c, "ministry/desk", "gryffindor/harry").allowed


# ---- every path agrees with decide ---------------------------------------------------------------

TIERED = [policy("slytherin", "np", {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]}),
          cnp("a", "Admin", 1, HOUSES, ingress=[rule("Pass", [ns_sel(house="gryffindor")], [tcp(8080)]),
                                                rule("Deny", [HOUSES], [tcp(80), tcp(8080)])]),
          cnp("b", "Baseline", 1, {"namespaces": {}}, ingress=[rule("Deny", [{"namespaces": {}}], [tcp(80)])])]


def test_matrix_connections_and_workloads_agree_with_decide():
    c = world(*TIERED)
    pods = [p for p in c.pods if not p.host_network]
    m = compute(c, [PortQuery(80), PortQuery(8080), PortQuery("web")], pods)
    for qi, q in enumerate(m.queries):
        for i, s in enumerate(pods):
            for j, d in enumerate(pods):
                port = q.port if isinstance(q.port, int) else next((cp.port for cp in d.named_port(q.port)), None)
                want = port is not None and decide(c, Endpoint(pod=s), Endpoint(pod=d), port).allowed
                assert m.is_allowed(i, j, qi) == want, (q, s.key, d.key)
    for s in pods:
        for d in pods:
            conns = connections(c, Endpoint(pod=s), Endpoint(pod=d))
            for port in (79, 80, 81, 8079, 8080, 8081):
                assert conns.allows("TCP", port) == decide(c, Endpoint(pod=s), Endpoint(pod=d), port).allowed
    wl = connectivity(c)
    assert wl.get("gryffindor/harry[Pod]", "slytherin/draco[Pod]").allows("TCP", 8080)  # Pass, then NP
    assert not wl.get("ministry/desk[Pod]", "slytherin/draco[Pod]").allows("TCP", 80)


def test_replicas_a_networks_peer_tells_apart_are_separate_workloads():
    """`networks` matches pod addresses whatever --ipblock-pods says: replicas on either side of it are
    listed one by one, each with its own connections."""
    def replica(name: str, ip: str) -> dict:
        out = pod("gryffindor", name, {"app": "owl"}, (ip,))
        out["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "owls",
                                               "uid": "u1", "controller": True}]
        return out
    c = world(replica("owl-1", "198.18.5.1"), replica("owl-2", "198.18.6.1"),
              cnp("no-5", "Admin", 1, {"namespaces": {}}, ingress=[rule("Deny", [HOUSES])],
                  egress=[rule("Deny", [{"networks": ["198.18.5.0/24"]}], direction="to")]))
    for opts in (Options(), Options(ipblock_pods=False)):
        wl = connectivity(c, opts)
        assert "gryffindor/owls[ReplicaSet]" not in wl.workloads
        assert wl.get("ministry/desk[Pod]", "gryffindor/owl-1[Pod]").empty
        assert wl.get("ministry/desk[Pod]", "gryffindor/owl-2[Pod]").allows("TCP", 80)


# ---- validation ----------------------------------------------------------------------------------

def test_a_valid_policy_reads():
    c = world(*TIERED)
    assert [(p.name, str(p.tier), p.priority) for p in c.cluster_policies] == [("a", "Admin", 1), ("b", "Baseline", 1)]


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"tier": "Platform"}, "spec.tier", "not one of Admin, Baseline"),
    ({"priority": 1001}, "spec.priority", "0 to 1000"),
    ({"subject": {}}, "spec.subject", "exactly one of namespaces, pods"),
    ({"subject": {"pods": {"namespaceSelector": {}}}}, "spec.subject.pods.podSelector", "required"),
    ({"ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}, "spec.ingress[0].action", "renamed Allow"),
    ({"ingress": [{"action": "Deny", "from": []}]}, "spec.ingress[0].from", "1 to 25"),
    ({"ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}]}, "spec.ingress[0].from[0].networks",
     "unknown field"),
    ({"egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.1"]}]}]}, "spec.egress[0].to[0].networks[0]",
     "invalid CIDR"),
    ({"egress": [{"action": "Accept", "to": [{"domainNames": ["*bad.example.com"]}]}]},
     "spec.egress[0].to[0].domainNames[0]", "invalid domain name"),
    ({"egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}],
                  "protocols": [{"destinationNamedPort": "web"}]}]}, "spec.egress[0].protocols", "no named ports"),
    ({"ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{"tcp": {}}]}]},
     "spec.ingress[0].protocols[0].tcp.destinationPort", "required"),
    ({"ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                   "protocols": [{"udp": {"destinationPort": {"range": {"start": 9, "end": 9}}}}]}]},
     "spec.ingress[0].protocols[0].udp.destinationPort.range", "less than end"),
    ({"ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}] * 26}, "spec.ingress", "0 to 25"),
    ({"subjct": HOUSES}, "spec.subjct", 'did you mean "subject"'),
    ({"ingress": [{"action": "Deny", "name": "x" * 101, "from": [{"namespaces": {}}]}]}, "spec.ingress[0].name",
     "at most 100"),
])
def test_invalid_policies_are_refused_at_the_field(change, field, fragment):
    raw = cnp("x", "Admin", 1, HOUSES)
    raw["spec"] = {**raw["spec"], **change}
    with pytest.raises(InputError) as err:
        cluster(raw)
    assert fragment in str(err.value) and field in str(err.value), str(err.value)


# ---- command line --------------------------------------------------------------------------------

def write(tmp_path, objects: list[dict]) -> str:
    path = tmp_path / "in.yaml"
    path.write_text("\n---\n".join(json.dumps(o) for o in objects))
    return str(path)


def test_check_says_which_tier_decided(tmp_path):
    f = write(tmp_path, [*BASE, *TIERED])
    run = CliRunner().invoke
    out = run(app, ["check", "gryffindor/harry", "slytherin/draco", "-p", "80", "-o", "json", "-f", f])
    doc = json.loads(out.output)
    assert doc["ingress"]["tier"] == "Admin" and doc["ingress"]["decided_by"]["policy"] == "cnp/a"
    assert {"isolated", "isolated_by", "allowed_by", "reason"} <= set(doc["ingress"])
    text = run(app, ["check", "gryffindor/harry", "slytherin/draco", "-p", "8080", "-f", f]).output
    assert "passes" in text and "ALLOWED" in text
    assert "ClusterNetworkPolicy" not in run(app, ["check", "gryffindor/harry", "slytherin/draco", "-f", f]).stderr


def test_lint_reports_ties_whose_order_decides_and_domain_names(tmp_path):
    def codes(*objects):
        out = json.loads(CliRunner().invoke(app, ["lint", write(tmp_path, [*BASE, *objects]), "-o", "json"]).output)
        return {f["code"]: f["message"] for f in out}
    accept = cnp("b", "Admin", 3, HOUSES, ingress=[rule("Accept", [HOUSES])])
    names = cnp("a", "Admin", 3, HOUSES, egress=[rule("Accept", [{"domainNames": ["api.example.com"]}],
                                                      direction="to")])
    found = codes(accept, names)
    assert "NP018" not in found and "api.example.com" in found["NP019"]  # tied, but never both decide
    deny = cnp("a", "Admin", 3, HOUSES, ingress=[rule("Deny", [HOUSES], [tcp(8080)])])
    assert "slytherin/draco → gryffindor/harry TCP/8080: a denies, b accepts" in codes(accept, deny)["NP018"]


def _random_world(rng) -> list[dict]:
    labels = [{"app": "a"}, {"app": "b"}, {"app": "a", "tier": "x"}]
    objs: list[dict] = [namespace("n1", team="red"), namespace("n2", team="blue")]
    for i in range(rng.randint(3, 6)):
        objs.append(pod(rng.choice(["n1", "n2"]), f"p{i}", rng.choice(labels), (f"198.18.{i % 3}.{i + 1}",),
                        container_ports((rng.choice([80, 8080]), "TCP", "web"))))
    for i in range(rng.randint(0, 2)):
        objs.append(policy(rng.choice(["n1", "n2"]), f"np{i}", {"podSelector": {"matchLabels": rng.choice(labels)},
                                                                "ingress": [{"ports": [{"port": "web"}]}]}))
    peers = [{"namespaces": {"matchLabels": {"team": "red"}}}, {"pods": {"podSelector": {"matchLabels": {"app": "b"}}}},
             {"namespaces": {}}]
    for i in range(rng.randint(1, 4)):
        subject = rng.choice([{"namespaces": {}}, {"pods": {"podSelector": {"matchLabels": rng.choice(labels)}}}])
        ports = rng.choice([None, [tcp(80)], [{"destinationNamedPort": "web"}],
                            [{"tcp": {"destinationPort": {"range": {"start": 79, "end": 8080}}}}]])
        r = rule(rng.choice(["Accept", "Deny", "Pass"]), [rng.choice(peers)], ports)
        egress = dict(r, to=r.pop("from")) if rng.random() < 0.4 else None
        egress_net = rule(rng.choice(["Accept", "Deny"]), [{"networks": ["198.18.1.0/24"]}], direction="to")
        objs.append(cnp(f"c{i}", rng.choice(["Admin", "Baseline"]), rng.randint(0, 3), subject,
                        ingress=None if egress else [r], egress=[egress, egress_net] if egress else None))
    return objs


@pytest.mark.parametrize("seed", range(30))
def test_random_tiers_every_member_of_a_workload_and_every_port_agree_with_decide(seed):
    import random
    c = cluster(*_random_world(random.Random(seed)))
    opts = Options(ipblock_pods=seed % 2 == 0)  # networks peers match pod addresses either way
    wl = connectivity(c, opts)
    names = {p.key: n for n in wl.workloads for p in c.pods if n.startswith(p.namespace + "/" + p.name + "[")}
    for s in c.pods:
        for d in c.pods:
            if s is d:
                continue
            conns = connections(c, Endpoint(pod=s), Endpoint(pod=d), opts)
            if s.key in names and d.key in names:
                assert wl.get(names[s.key], names[d.key]) == conns, (s.key, d.key)
            for port in (79, 80, 81, 8079, 8080, 8081):
                assert conns.allows("TCP", port) == decide(c, Endpoint(pod=s), Endpoint(pod=d), port,
                                                           opts=opts).allowed, \
                    (s.key, d.key, port)


# ---- the table ---------------------------------------------------------------------------------

def _walk_disagreements(c) -> list[str]:
    import ipaddress

    from support.fake_table import PROTO_NUM, Walk

    from netpol.nft.render import to_json
    walk = Walk(to_json(compile_plan(c)))
    pods = [p for p in c.pods if p.ips]
    bad = []
    for s in pods:
        for d in pods:
            if s is d:
                continue
            for port in (79, 80, 81, 8079, 8080, 8081):
                pkt = {"version": 4, "src": int(ipaddress.ip_address(s.ips[0])), "dst": int(ipaddress.ip_address(d.ips[0])),
                       "proto": PROTO_NUM["TCP"], "port": port,
                       "local": s.host_network and s.node_name == d.node_name}
                want = decide(c, Endpoint(pod=s), Endpoint(pod=d), port).allowed
                if walk.allows(pkt) != want:
                    bad.append(f"{s.key} -> {d.key} {port}: table {'allows' if not want else 'denies'}")
    return bad


def test_the_rendered_table_walks_the_tiers_as_decide_does():
    assert _walk_disagreements(world(*TIERED)) == []


@pytest.mark.parametrize("seed", range(30))
def test_random_tiers_in_the_table_agree_with_decide(seed):
    import random
    assert _walk_disagreements(cluster(*_random_world(random.Random(seed)))) == []


# ---- v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy -------------------------------------

def anp(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def test_v1alpha1_policies_are_the_admin_and_baseline_tiers():
    c = world(anp("AdminNetworkPolicy", "a", {"priority": 5, "subject": HOUSES, "ingress": [
                  {"action": "Allow", "from": [{"namespaces": {"matchLabels": {"shared": "yes"}}}],
                   "ports": [{"portNumber": {"protocol": "TCP", "port": 8080}}]},
                  {"action": "Deny", "from": [{"namespaces": {}}]}]}),
              anp("BaselineAdminNetworkPolicy", "default", {"subject": {"namespaces": {}}, "egress": [
                  {"action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]}]}))
    assert [(p.key, str(p.tier)) for p in c.cluster_policies] == [("anp/a", "Admin"), ("banp/default", "Baseline")]
    v = verdict(c, "ministry/desk", "slytherin/draco", 8080)
    assert v.allowed and v.ingress.decided_by.policy == "anp/a" and v.ingress.decided_by.action == "Accept"
    assert not verdict(c, "ministry/desk", "slytherin/draco", 80).allowed
    assert not verdict(c, "ministry/desk", "203.0.113.9").allowed


@pytest.mark.parametrize(("kind", "name", "spec", "fragment"), [
    ("BaselineAdminNetworkPolicy", "mine", {"subject": {"namespaces": {}}}, "must be named default"),
    ("BaselineAdminNetworkPolicy", "default", {"subject": {"namespaces": {}},
                                              "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]},
     "not one of Allow, Deny"),
    ("AdminNetworkPolicy", "x", {"priority": 1, "subject": {"namespaces": {}}, "ingress": [
        {"action": "Deny", "from": [{"namespaces": {"sameLabels": ["tenant"]}}]}]}, "older v1alpha1"),
    ("AdminNetworkPolicy", "x", {"priority": 1, "subject": {"namespaces": {}}, "ingress": [
        {"action": "Deny", "from": [{"namespaces": {}}], "ports": [{"portRange": {"start": 9, "end": 9}}]}]},
     "less than end"),
])
def test_invalid_v1alpha1_policies_are_refused(kind, name, spec, fragment):
    with pytest.raises(InputError, match=fragment):
        cluster(anp(kind, name, spec))


def _lint(tmp_path, objects: list[dict]) -> dict[str, list[str]]:
    out = json.loads(CliRunner().invoke(app, ["lint", write(tmp_path, objects), "-o", "json", "--fail-on",
                                              "error"]).output)
    found: dict[str, list[str]] = {}
    for f in out:
        found.setdefault(f["code"], []).append(f["message"])
    return found


def test_lint_finds_unreachable_baselines_admin_accepts_over_isolation_and_shadowed_rules(tmp_path):
    closed = policy("slytherin", "closed", {"podSelector": {}})
    base = cnp("base", "Baseline", 1, {"namespaces": {"matchLabels": {"house": "slytherin"}}},
               ingress=[rule("Deny", [HOUSES])])
    admin = cnp("open-up", "Admin", 1, HOUSES, ingress=[rule("Accept", [ns_sel(shared="yes")]),
                                                        rule("Deny", [ns_sel(shared="yes")], [tcp(80)]),
                                                        rule("Deny", [HOUSES], [tcp(80)])])
    found = _lint(tmp_path, [*BASE, closed, base, admin])
    assert "never consulted" in found["NP020"][0] and "banp" not in found["NP020"][0]
    assert any("accepts before NetworkPolicy" in m and "slytherin/draco" in m for m in found["NP021"])
    assert len(found["NP022"]) == 1 and "rule 1" in found["NP022"][0] and "rule 0" in found["NP022"][0]
    quiet = _lint(tmp_path, [*BASE, base, cnp("fine", "Admin", 1, HOUSES, ingress=[
        rule("Deny", [ns_sel(shared="yes")], [tcp(80)]), rule("Accept", [ns_sel(shared="yes")])])])
    assert not {"NP020", "NP021", "NP022"} & set(quiet)


def test_lint_finds_rules_shadowed_by_an_earlier_policy_and_passes_with_no_effect(tmp_path):
    first = cnp("a-first", "Admin", 1, {"namespaces": {}}, ingress=[rule("Deny", [HOUSES])])
    # selects only houses (all of which a-first selects): its Accept from houses never matches
    later = cnp("b-later", "Admin", 2, HOUSES, ingress=[rule("Accept", [HOUSES]),
                                                        rule("Accept", [ns_sel(shared="yes")])])
    found = _lint(tmp_path, [*BASE, first, later])
    assert len(found["NP022"]) == 1
    assert "ingress rule 0 of cnp/b-later never matches: rule 0 of cnp/a-first (priority 1)" in found["NP022"][0]
    # a-first selecting fewer pods than b-later does not shadow it
    narrow = cnp("a-first", "Admin", 1, {"namespaces": {"matchLabels": {"house": "gryffindor"}}},
                 ingress=[rule("Deny", [HOUSES])])
    assert "NP022" not in _lint(tmp_path, [*BASE, narrow, later])
    # Pass with nothing after it that could match the houses: no effect; with a later Deny for them: needed
    useless = cnp("pass", "Admin", 1, HOUSES, ingress=[rule("Pass", [HOUSES]), rule("Deny", [ns_sel(shared="yes")])])
    found = _lint(tmp_path, [*BASE, useless])
    assert len(found["NP023"]) == 1 and "ingress rule 0 of cnp/pass passes" in found["NP023"][0]
    needed = cnp("z-deny", "Admin", 5, {"namespaces": {}}, ingress=[rule("Deny", [{"namespaces": {}}])])
    assert "NP023" not in _lint(tmp_path, [*BASE, useless, needed])


def test_cross_tenant_lint_counts_the_tiers(tmp_path):
    """NP011 with --tenant-label: an Admin Accept between houses is reported at that rule; an Admin Deny
    removes what the houses' own open policies would report."""
    def lint(objects):
        out = json.loads(CliRunner().invoke(app, ["lint", write(tmp_path, objects), "-o", "json",
                                                  "--tenant-label", "house"]).output)
        return [f["message"] for f in out if f["code"] == "NP011"]
    isolated = [policy(h, "closed", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
                for h in ("gryffindor", "slytherin")]
    assert lint([*BASE, *isolated]) == []
    accept = cnp("houses-talk", "Admin", 1, HOUSES, ingress=[rule("Accept", [HOUSES], [tcp(80)])],
                 egress=[rule("Accept", [HOUSES], [tcp(80)], direction="to")])
    found = lint([*BASE, *isolated, accept])
    assert any(m.startswith("ingress rule 0 of cnp/houses-talk accepts connections across tenants") and
               "slytherin → gryffindor (e.g. slytherin/draco → gryffindor/harry TCP/80)" in m for m in found), found
    open_ = lint(BASE)  # nothing isolates anyone: every house reaches every other
    assert open_
    deny = cnp("houses-apart", "Admin", 1, HOUSES, ingress=[rule("Deny", [HOUSES])])
    assert lint([*BASE, deny]) == []
