"""The fast matrix equals the reference `decide` on every pair, and a few laws of the spec hold.

Clusters and policies are random raw Kubernetes objects, parsed by `build_cluster`, so parsing is exercised
too. Failures print the falsifying example and a `@reproduce_failure` blob (the example database is off).
"""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netpol.evaluate.decide import decide
from netpol.evaluate.matrix import Engine, PortQuery, compute, resolve_port
from netpol.evaluate.resolve import Endpoint, selects
from netpol.k8s.model import Options
from netpol.k8s.parse import build_cluster
from netpol.k8s.source import RawObject, Source

SETTINGS = settings(max_examples=150, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EQUALITY = settings(SETTINGS, max_examples=400)
V4, V6 = ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32")
KEYS, VALUES = ("app", "tier"), ("a", "b")  # few, so selectors often match
NAMESPACES = ("ns0", "ns1", "ns2")
PORT_NAMES = ("http", "dns", "web")
PORT_NUMBERS = (53, 80, 81, 8080)
PROTOCOLS = ("TCP", "UDP", "SCTP")

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


def _address(net, small: int):
    """An address of `net`: mostly among its first few, sometimes anywhere in it."""
    return st.one_of(st.integers(0, small), st.integers(0, net.num_addresses - 1)).map(
        lambda off: net.network_address + off)


v4 = _address(V4, 20)
v6 = _address(V6, 20)
ips = st.one_of(st.just(()), st.tuples(v4), st.tuples(v6), st.tuples(v4, v6), st.tuples(v6, v4), st.tuples(v6, v4))


def _near(net, anchors, small: int = 20, weight: int = 1):
    """An address of `net`, often one of the pods' (`anchors`) so blocks and excepts cut between pods."""
    anchors = [a for a in anchors if a in net]
    return st.one_of(*[st.sampled_from(anchors)] * weight, _address(net, small)) if anchors \
        else _address(net, small)


@st.composite
def cidr(draw, net, anchors=()):
    """A CIDR inside `net`, written with host bits sometimes set, and `except` entries strictly inside."""
    prefix = draw(st.one_of(st.integers(net.max_prefixlen - 8, net.max_prefixlen - 1),
                            st.integers(net.prefixlen, net.max_prefixlen - 1)))
    addr = draw(_near(net, anchors, weight=3))
    block = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    text = f"{addr}/{prefix}" if draw(st.booleans()) else str(block)
    excepts = []
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):
        sub_prefix = draw(st.integers(max(prefix + 1, net.max_prefixlen - 4), net.max_prefixlen))
        inner = draw(_near(block, anchors, min(block.num_addresses - 1, 31)))
        excepts.append(str(ipaddress.ip_network(f"{inner}/{sub_prefix}", strict=False)))
    out = {"cidr": text}
    if excepts:
        out["except"] = excepts
    return out


@st.composite
def selector(draw):
    out: dict = {}
    if draw(st.integers(0, 2)) == 0:
        return out
    if draw(st.booleans()):
        out["matchLabels"] = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1))
    exprs = []
    for _ in range(draw(st.integers(0, 1))):
        op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        expr = {"key": draw(st.sampled_from(KEYS + ("kubernetes.io/metadata.name",))), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(VALUES + NAMESPACES), min_size=1, max_size=2))
        exprs.append(expr)
    if exprs:
        out["matchExpressions"] = exprs
    return out


@st.composite
def peer(draw, anchors):
    kind = draw(st.sampled_from(("pod", "ns", "both", "v4", "v4", "v6")))
    if kind == "v4":
        return {"ipBlock": draw(cidr(V4, anchors))}
    if kind == "v6":
        return {"ipBlock": draw(cidr(V6, anchors))}
    out = {}
    if kind in ("pod", "both"):
        out["podSelector"] = draw(selector())
    if kind in ("ns", "both"):
        out["namespaceSelector"] = draw(selector())
    return out


@st.composite
def policy_port(draw):
    out = {}
    if draw(st.booleans()):
        out["protocol"] = draw(st.sampled_from(PROTOCOLS))
    kind = draw(st.sampled_from(("none", "number", "range", "range", "name", "name")))
    if kind == "number":
        out["port"] = draw(st.sampled_from(PORT_NUMBERS))
    elif kind == "range":
        out["port"] = draw(st.sampled_from(PORT_NUMBERS))
        out["endPort"] = out["port"] + draw(st.sampled_from((0, 1, 30, 8000)))
    elif kind == "name":
        out["port"] = draw(st.sampled_from(PORT_NAMES + ("nope",)))
    return out


@st.composite
def rule(draw, peers_field, anchors):
    out = {}
    shape = draw(st.sampled_from(("absent", "empty") + ("some",) * 6))  # absent or empty: every peer
    if shape != "absent":
        out[peers_field] = draw(st.lists(peer(anchors), min_size=1, max_size=3)) if shape == "some" else []
    shape = draw(st.sampled_from(("absent", "empty", "some", "some")))
    if shape != "absent":
        out["ports"] = draw(st.lists(policy_port(), min_size=1, max_size=3)) if shape == "some" else []
    return out


@st.composite
def policy(draw, name, anchors=()):
    spec: dict = {"podSelector": draw(selector())}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        shape = draw(st.sampled_from(("absent", "empty", "some", "some")))
        if shape != "absent":
            spec[direction] = draw(st.lists(rule(field, anchors), min_size=1, max_size=2)) if shape == "some" else []
    types = draw(st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(NAMESPACES[:2]))}, "spec": spec}


container_port = st.fixed_dictionaries(
    {"containerPort": st.sampled_from(PORT_NUMBERS)},
    optional={"name": st.sampled_from(PORT_NAMES), "protocol": st.sampled_from(PROTOCOLS)})


@st.composite
def pod(draw, index, used):
    ns = draw(st.sampled_from(NAMESPACES[:2]) if draw(st.integers(0, 3)) else st.sampled_from(NAMESPACES))
    spec = {"containers": [{"name": "c", "ports": draw(st.lists(container_port, max_size=3))}]}
    if draw(st.integers(0, 5)) == 0:
        spec["hostNetwork"] = True
    node = draw(st.sampled_from((None, "n1", "n2")))  # host-network pods reach pods of their node
    if node:
        spec["nodeName"] = node
    kind = draw(st.sampled_from(("Pod",) * 5 + ("Deployment", "CronJob")))
    meta = {"name": f"p{index}", "namespace": ns}
    if kind == "Pod":
        addrs = [a for a in draw(ips) if a not in used]
        used.update(addrs)
        out = {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "labels": draw(labels)}, "spec": spec}
        if addrs:
            out["status"] = {"podIP": str(addrs[0]), "podIPs": [{"ip": str(a)} for a in addrs]}
        return out
    template = {"metadata": {"labels": draw(labels)}, "spec": spec}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                "spec": {"jobTemplate": {"spec": {"template": template}}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {"template": template}}


@st.composite
def cluster_objects(draw, min_policies=0, max_policies=6):
    objs = []
    for ns in NAMESPACES:
        if draw(st.integers(0, 4)):  # sometimes undeclared: it then carries only its name label
            objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": draw(labels)}})
    used: set = set()
    objs += [draw(pod(i, used)) for i in range(draw(st.integers(2, 8)))]
    anchors = sorted(used, key=lambda a: (a.version, a))
    objs += [draw(policy(f"pol{i}", anchors)) for i in range(draw(st.integers(min_policies, max_policies)))]
    return objs


ALL_QUERIES = [PortQuery(p, proto) for p in PORT_NUMBERS + PORT_NAMES for proto in PROTOCOLS]
queries = st.lists(st.builds(PortQuery, st.sampled_from(PORT_NUMBERS + PORT_NAMES), st.sampled_from(PROTOCOLS)),
                   min_size=1, max_size=3, unique=True)


def build(objs):
    return build_cluster(RawObject(o, Source("generated", i + 1)) for i, o in enumerate(objs))


def reference(cluster, pods, q, opts):
    """The matrix as `decide` sees it, one pair at a time."""
    out = np.zeros((len(pods), len(pods)), bool)
    for j, dst in enumerate(pods):
        port = resolve_port(dst, q)
        if port is None:
            continue
        for i, src in enumerate(pods):
            out[i, j] = decide(cluster, Endpoint(pod=src), Endpoint(pod=dst), port, q.protocol, opts).allowed
    return out


@EQUALITY
@given(cluster_objects(min_policies=1), st.booleans(), st.randoms(use_true_random=False))
def test_matrix_equals_decide(objs, ipblock_pods, rnd):
    qs = ALL_QUERIES  # every port and name the generator uses: port bugs show whenever a rule decides
    cluster = build(objs)
    opts = Options(ipblock_pods=ipblock_pods)
    pods = list(cluster.pods)
    if rnd.random() < 0.3:  # a subset, in any order: peers still resolve over everything
        pods = rnd.sample(pods, rnd.randint(1, len(pods)))
    if rnd.random() < 0.1:  # one pod listed twice: both positions are that pod talking to itself
        pods.append(rnd.choice(pods))
    m = compute(cluster, qs, pods, opts)
    engine = Engine(cluster, pods, opts)
    n = len(pods)
    src, dst = np.divmod(np.arange(n * n), n)
    assert m.pods == tuple(p.key for p in pods)
    for k, q in enumerate(qs):
        want = reference(cluster, pods, q, opts)
        assert (m.grid(k) == want).all(), (q, np.argwhere(m.grid(k) != want).tolist())
        assert (engine.allowed_many(src, dst, q).reshape(n, n) == want).all()
        assert [[engine.allowed(i, j, q) for j in range(n)] for i in range(n)] == want.tolist()
    probes = m.probes()
    assert len(probes) == len(qs) * n * n
    assert all(type(p["allowed"]) is bool and type(p["src"]) is str for p in probes)


@SETTINGS
@given(cluster_objects(max_policies=0), queries)
def test_no_policies_allow_everything(objs, qs):
    cluster = build(objs)
    m = compute(cluster, qs)
    for k, q in enumerate(qs):
        resolves = np.array([resolve_port(p, q) is not None for p in cluster.pods])
        assert (m.grid(k) == resolves[None, :]).all()


@SETTINGS
@given(cluster_objects(max_policies=3), st.sampled_from(NAMESPACES), st.sampled_from(PORT_NUMBERS),
       st.sampled_from(PROTOCOLS))
def test_default_deny_isolates_a_namespace(objs, ns, port, proto):
    # policies are additive, so the law needs the deny to be the namespace's only policy
    objs = [o for o in objs if o["kind"] != "NetworkPolicy" or o["metadata"]["namespace"] != ns]
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    before, after = build(objs), build(objs + [deny])
    q = [PortQuery(port, proto)]
    old, new = compute(before, q).grid(), compute(after, q).grid()
    pods = after.pods
    policed = np.array([p.namespace == ns and not p.host_network for p in pods])
    is_self = np.eye(len(pods), dtype=bool) & np.array([p.kind == "Pod" for p in pods])[None, :]
    # traffic to and from a pod's own node (a host-network pod there) stays allowed
    host = np.array([p.host_network for p in pods])
    node = np.array([p.node_name or "" for p in pods])
    same_node = (node[:, None] == node[None, :]) & (node[:, None] != "")
    local = same_node & (host[:, None] ^ host[None, :])
    touched = policed[:, None] | policed[None, :]
    assert (new[touched & ~is_self & ~local] == False).all()  # noqa: E712
    assert new[is_self].all()
    assert (new[~touched] == old[~touched]).all()


@SETTINGS
@given(cluster_objects(min_policies=1), st.data(), queries)
def test_adding_a_policy_never_removes_what_an_isolated_pod_allowed(objs, data, qs):
    extra = data.draw(policy("added", [ipaddress.ip_address(ip["ip"]) for o in objs
                                       for ip in o.get("status", {}).get("podIPs", [])]))
    before, after = build(objs), build(objs + [extra])
    added = next(p for p in after.policies if p.name == "added")
    pods = after.pods
    for q in qs:
        old, new = compute(before, [q]).grid(), compute(after, [q]).grid()
        for j, dst in enumerate(pods):
            port = resolve_port(dst, q)
            if port is None:
                continue
            for i, src in enumerate(pods):
                if not old[i, j]:
                    continue
                v = decide(before, Endpoint(pod=src), Endpoint(pod=dst), port, q.protocol)
                # the added policy only matters where it selects a pod not yet isolated that way
                newly = (added.affects("egress") and selects(added, src) and not v.egress.isolated) or \
                        (added.affects("ingress") and selects(added, dst) and not v.ingress.isolated)
                assert newly or new[i, j], (src.key, dst.key, q)


def test_engine_point_queries_by_key():
    objs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "ns0", "labels": {"app": n}},
             "status": {"podIP": f"198.18.0.{i + 1}"}} for i, n in enumerate("abc")]
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "only-a", "namespace": "ns0"},
                 "spec": {"podSelector": {"matchLabels": {"app": "c"}},
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}})
    engine = Engine(build(objs))
    a, b, c = (engine.index(f"ns0/{n}") for n in "abc")
    assert engine.allowed(a, c) and not engine.allowed(b, c) and engine.allowed(c, c) and engine.allowed(c, b)
    m = engine.matrix([PortQuery(80)])
    assert m.is_allowed(a, c) and not m.is_allowed(b, c)
    empty = compute(build([]), [PortQuery(80)])
    assert empty.pods == () and empty.probes() == []


# ---- ClusterNetworkPolicy tiers ----

@st.composite
def cnp_peer(draw, anchors, egress: bool):
    kinds = ("ns", "pods", "pods-ns") + (("networks", "networks", "nodes", "domains") if egress else ())
    kind = draw(st.sampled_from(kinds))
    if kind == "ns":
        return {"namespaces": draw(selector())}
    if kind.startswith("pods"):
        pods = {"podSelector": draw(selector())}
        if kind == "pods-ns":
            pods["namespaceSelector"] = draw(selector())
        return {"pods": pods}
    if kind == "nodes":
        return {"nodes": draw(selector())}
    if kind == "domains":
        return {"domainNames": ["api.example.com"]}
    nets = [draw(cidr(draw(st.sampled_from((V4, V6))), anchors))["cidr"] for _ in range(draw(st.integers(1, 2)))]
    return {"networks": list(dict.fromkeys(str(ipaddress.ip_network(n, strict=False)) for n in nets))}


@st.composite
def cnp_protocols(draw, names: bool):
    out = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(("number", "range") + (("name",) if names else ())))
        proto = draw(st.sampled_from(("tcp", "udp", "sctp")))
        if kind == "name":
            out.append({"destinationNamedPort": draw(st.sampled_from(PORT_NAMES))})
        elif kind == "number":
            out.append({proto: {"destinationPort": {"number": draw(st.sampled_from(PORT_NUMBERS))}}})
        else:
            start = draw(st.sampled_from(PORT_NUMBERS))
            out.append({proto: {"destinationPort": {"range": {"start": start, "end": start + draw(
                st.sampled_from((1, 30, 8000)))}}}})
    return out


@st.composite
def cluster_policy(draw, name, anchors):
    subject = draw(st.sampled_from(("ns", "pods")))
    spec: dict = {"tier": draw(st.sampled_from(("Admin", "Baseline"))), "priority": draw(st.integers(0, 2)),
                  "subject": {"namespaces": draw(selector())} if subject == "ns"
                  else {"pods": {"namespaceSelector": draw(selector()), "podSelector": draw(selector())}}}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        rules = []
        for i in range(draw(st.integers(0, 3))):
            r = {"action": draw(st.sampled_from(("Accept", "Deny", "Pass"))),
                 field: draw(st.lists(cnp_peer(anchors, direction == "egress"), min_size=1, max_size=2))}
            if draw(st.booleans()):  # no named ports towards addresses (the API refuses them)
                r["protocols"] = draw(cnp_protocols(all("namespaces" in p or "pods" in p for p in r[field])))
            if draw(st.booleans()):
                r["name"] = f"r{i}"
            rules.append(r)
        if rules:
            spec[direction] = rules
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


@st.composite
def node(draw, index, anchors):
    addresses = [{"type": draw(st.sampled_from(("InternalIP", "ExternalIP", "Hostname"))),
                  "address": str(draw(_near(draw(st.sampled_from((V4, V6))), anchors)))}
                 for _ in range(draw(st.integers(0, 2)))]
    addresses = [a for a in addresses if a["type"] != "Hostname"]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{index + 1}", "labels": draw(labels)},
            "status": {"addresses": list({a["address"]: a for a in addresses}.values())}}


@st.composite
def tiered_objects(draw):
    objs = draw(cluster_objects(max_policies=3))
    anchors = sorted({ipaddress.ip_address(ip["ip"]) for o in objs for ip in o.get("status", {}).get("podIPs", [])},
                     key=lambda a: (a.version, a))
    objs += [draw(node(i, anchors)) for i in range(draw(st.integers(0, 2)))]
    objs += [draw(cluster_policy(f"c{i}", anchors)) for i in range(draw(st.integers(1, 4)))]
    return objs


@EQUALITY
@given(tiered_objects(), st.booleans())
def test_matrix_with_tiers_equals_decide(objs, ipblock_pods):
    """Admin, NetworkPolicy and Baseline folded over classes give `decide`'s verdict on every pair."""
    cluster = build(objs)
    opts = Options(ipblock_pods=ipblock_pods)
    pods = list(cluster.pods)
    m = compute(cluster, ALL_QUERIES, pods, opts)
    for k, q in enumerate(ALL_QUERIES):
        want = reference(cluster, pods, q, opts)
        assert (m.grid(k) == want).all(), (q, np.argwhere(m.grid(k) != want).tolist())


@SETTINGS
@given(st.one_of(cluster_objects(min_policies=1), tiered_objects()), st.booleans())
def test_workload_connections_from_port_atoms_equal_connections(objs, ipblock_pods):
    """`matrix --workloads` reads every pair's connection set from one table per port atom: each
    equals the reference per-pair `connections` (dual-stack, host-network pods, named ports, tiers)."""
    from netpol.evaluate.conns import connections
    from netpol.evaluate.workloads import connectivity, workloads
    cluster = build(objs)
    opts = Options(ipblock_pods=ipblock_pods)
    result = connectivity(cluster, opts)
    wls = workloads(cluster, opts)
    listed = {(s, d): c for s, d, c in result.lines()}
    for a in wls:
        for b in wls:
            if a is not b:
                want = connections(cluster, Endpoint(pod=a.rep), Endpoint(pod=b.rep), opts)
                assert result.get(a.name, b.name) == want, (a.name, b.name)
                assert listed.get((a.name, b.name), want if want.empty else None) == want
    assert len(listed) == len(result.conns)
