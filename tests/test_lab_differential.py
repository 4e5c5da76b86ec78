"""The kernel against the evaluator, with real packets: random clusters, live updates, refused changes.

One lab (prefix `nprd<random>`) holds a fixed pool of hosts with assorted address families; each random
example turns some of them into pods of a random cluster (the rest are external clients), enforces
the rendered table in the node netns, probes every ordered pair over IPv4 and IPv6 on TCP and UDP,
and requires the kernel to answer exactly as `decide` (by address) and `matrix.compute` (by name).
The lab stays up across examples, so each example's table replaces the last one's (full or element
updates). Every netns here is named `nprd<random>-*` and removed even when a test fails.
"""

from __future__ import annotations

import io
import ipaddress
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from netpol.errors import ApplyError
from netpol.evaluate.decide import decide
from netpol.evaluate.matrix import PortQuery, compute, resolve_port
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, Options
from netpol.k8s.parse import build_cluster
from netpol.k8s.source import RawObject, Source
from netpol.lab import LabHost, Probe, topology
from netpol.lab.verify import flush_conntrack, lab_pods, probe_settled
from netpol.netns import run_in
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from netpol.nft.ruleset import Ruleset

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]

# Hosts of the lab: IPv4-only, dual-stack either way round, IPv6-only; spread so CIDRs cut between them.
POOL = (
    ("198.18.0.1",), ("198.18.0.2",), ("198.18.0.9",), ("198.18.1.5",), ("198.18.3.77",),
    ("198.18.200.4",), ("198.18.0.3", "2001:db8::3"), ("198.18.1.6", "2001:db8::1:6"),
    ("198.18.64.10", "2001:db8::ff:a"), ("198.18.255.250", "2001:db8::ffff:fffa"),
    ("2001:db8::5", "198.18.0.5"), ("2001:db8::8000:1", "198.18.128.1"), ("2001:db8::7",), ("2001:db8::a:1",),
)
ANCHORS = {v: [a for ips in POOL for a in map(ipaddress.ip_address, ips) if a.version == v] for v in (4, 6)}
PREFIX = f"nprd{uuid.uuid4().hex[:6]}"  # unique: the same tests may run in parallel (mutation runs, CI)
NUMBERS = (80, 81, 8080)  # every lab host serves these on TCP and UDP
PROTOS = ("TCP", "UDP")
NAMES = ("serve-80-tcp", "serve-81-udp", "web", "dns")
QUERIES = [PortQuery(n, p) for n in NUMBERS + NAMES for p in PROTOS]
NAMESPACES = ("alpha", "beta", "gamma")
VALUES = ("a", "b")
SEL_KEYS = ("app", "tier", "team", "kubernetes.io/metadata.name")
TIMEOUT = 0.3
# Each example costs about half a second of real probing, so shrinking (minutes) is opt-in: NETPOL_LAB_SHRINK=1.
# The failure report carries the whole cluster as YAML anyway.
SETTINGS = settings(max_examples=int(os.environ.get("NETPOL_LAB_EXAMPLES", "50")), deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")), print_blob=True,
                    phases=[p for p in Phase if p is not Phase.shrink or os.environ.get("NETPOL_LAB_SHRINK")],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def slot_key(i: int) -> str:
    return f"lab/s{i}"


@pytest.fixture(scope="module")
def lab() -> Iterator:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        state = topology.up([LabHost(slot_key(i), ips) for i, ips in enumerate(POOL)], PREFIX,
                            [(n, p) for n in NUMBERS for p in PROTOS])
        yield state, Enforcer(state.node_netns)
        if not topology._alive(state.server_pid):  # say why the lab broke, before down removes the log
            log = topology._log_path(PREFIX)
            pytest.fail(f"the lab server {state.server_pid} died: {log.read_text()[-2000:] if log.exists() else ''}")
    finally:
        topology.down(PREFIX)


# ---- random worlds ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodSpec:
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str | None, int, str], ...]  # (name, number, protocol)
    host_network: bool = False


@dataclass(frozen=True)
class World:
    namespaces: tuple[tuple[str, tuple[tuple[str, str], ...] | None], ...]  # None: not declared
    pods: tuple[tuple[int, PodSpec], ...]  # (pool slot, spec)
    policies: tuple[dict, ...]
    externals: tuple[int, ...]  # pool slots probed as non-pod clients and servers

    def objects(self) -> list[dict]:
        out: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": dict(lbl)}}
                           for n, lbl in self.namespaces if lbl is not None]
        for slot, p in self.pods:
            ports = [{"containerPort": num, "protocol": proto, **({"name": name} if name else {})}
                     for name, num, proto in p.ports]
            spec: dict = {"containers": [{"name": "c", "image": "agnhost", "ports": ports}]}
            if p.host_network:
                spec["hostNetwork"] = True
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"p{slot}", "namespace": p.namespace, "labels": dict(p.labels)},
                        "spec": spec, "status": {"phase": "Running", "podIP": POOL[slot][0],
                                                 "podIPs": [{"ip": ip} for ip in POOL[slot]]}})
        return out + list(self.policies)

    def yaml(self) -> str:
        buf = io.StringIO()
        YAML(typ="safe", pure=True).dump_all(self.objects(), buf)
        return buf.getvalue()

    def cluster(self) -> Cluster:
        return build_cluster(RawObject(o, Source("generated", i + 1)) for i, o in enumerate(self.objects()))


labels = st.dictionaries(st.sampled_from(("app", "tier", "team")), st.sampled_from(VALUES), max_size=2).map(
    lambda d: tuple(sorted(d.items())))


@st.composite
def selector(draw) -> dict:
    out: dict = {}
    if draw(st.integers(0, 3)) == 0:
        return out  # empty: matches everything
    if draw(st.booleans()):
        out["matchLabels"] = draw(st.dictionaries(st.sampled_from(SEL_KEYS[:3]), st.sampled_from(VALUES),
                                                  min_size=1, max_size=1))
    exprs = []
    for _ in range(draw(st.integers(0 if out else 1, 2))):
        op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        expr: dict = {"key": draw(st.sampled_from(SEL_KEYS)), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(VALUES + NAMESPACES), min_size=1, max_size=2, unique=True))
        exprs.append(expr)
    if exprs:
        out["matchExpressions"] = exprs
    return out


@st.composite
def ip_block(draw, hosts: dict[int, list]) -> dict:
    """A CIDR (or all of a family) cut by excepts, both mostly around the world's own hosts."""
    v = draw(st.sampled_from((4, 4, 6)))
    near = st.sampled_from(hosts[v]) if hosts[v] else st.nothing()
    if draw(st.integers(0, 4)) == 0:  # the whole family, with holes in the lab ranges
        block = ipaddress.ip_network("0.0.0.0/0" if v == 4 else "::/0")
        text = str(block)
    else:
        lens = (15, 16, 20, 23, 24, 28, 31, 32) if v == 4 else (32, 64, 96, 110, 112, 120, 127, 128)
        anchor = draw(st.one_of(near, near, st.sampled_from(ANCHORS[v])))
        block = ipaddress.ip_network(f"{anchor}/{draw(st.sampled_from(lens))}", strict=False)
        text = f"{anchor}/{block.prefixlen}" if draw(st.booleans()) else str(block)
    excepts = []
    inside = [a for a in hosts[v] if a in block] or [a for a in ANCHORS[v] if a in block]
    for _ in range(draw(st.integers(0, 2)) if block.prefixlen < block.max_prefixlen and inside else 0):
        room = block.max_prefixlen - block.prefixlen
        length = block.max_prefixlen - draw(st.integers(0, min(room - 1, 12)))
        excepts.append(str(ipaddress.ip_network(f"{draw(st.sampled_from(inside))}/{length}", strict=False)))
    return {"cidr": text, **({"except": excepts} if excepts else {})}


@st.composite
def peer(draw, hosts: dict[int, list]) -> dict:
    kind = draw(st.sampled_from(("pod", "ns", "both", "ip", "ip")))
    if kind == "ip":
        return {"ipBlock": draw(ip_block(hosts))}
    out = {}
    if kind in ("pod", "both"):
        out["podSelector"] = draw(selector())
    if kind in ("ns", "both"):
        out["namespaceSelector"] = draw(selector())
    return out


@st.composite
def policy_port(draw) -> dict:
    out: dict = {}
    proto = draw(st.sampled_from((None, "TCP", "UDP", "UDP", "SCTP")))
    if proto:
        out["protocol"] = proto
    kind = draw(st.sampled_from(("all", "number", "range", "name", "name")))
    if kind == "number":
        out["port"] = draw(st.sampled_from((79, 80, 81, 443, 8080)))
    elif kind == "range":
        out["port"], out["endPort"] = draw(st.sampled_from(((79, 80), (80, 81), (81, 8080), (81, 81), (1, 79))))
    elif kind == "name":
        out["port"] = draw(st.sampled_from(NAMES + ("nope",)))
    return out


@st.composite
def rule(draw, peers_field: str, hosts: dict[int, list]) -> dict:
    out: dict = {}
    # absent and empty both mean "everything": common enough to be tested, rare enough that rules restrict
    shape = draw(st.sampled_from(("absent", "empty") + ("some",) * 6))
    if shape != "absent":
        out[peers_field] = draw(st.lists(peer(hosts), min_size=1, max_size=3)) if shape == "some" else []
    shape = draw(st.sampled_from(("absent", "empty") + ("some",) * 4))
    if shape != "absent":
        out["ports"] = draw(st.lists(policy_port(), min_size=1, max_size=3)) if shape == "some" else []
    return out


@st.composite
def policy(draw, name: str, namespaces: tuple[str, ...], hosts: dict[int, list]) -> dict:
    # often every pod of the namespace, so most policies isolate someone
    spec: dict = {"podSelector": draw(st.one_of(st.just({}), selector()))}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        shape = draw(st.sampled_from(("absent", "empty", "allow-all", "some", "some")))
        if shape == "empty":
            spec[direction] = []
        elif shape == "allow-all":
            spec[direction] = [{}]
        elif shape == "some":
            spec[direction] = draw(st.lists(rule(field, hosts), min_size=1, max_size=2))
    types = draw(st.sampled_from((None, None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(namespaces))}, "spec": spec}


@st.composite
def pod_spec(draw, namespaces: tuple[str, ...]) -> PodSpec:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    ports = tuple((n, draw(st.sampled_from(NUMBERS)), draw(st.sampled_from(PROTOS + PROTOS + ("SCTP",))))
                  for n in names)
    if draw(st.integers(0, 3)) == 0:
        ports += ((None, draw(st.sampled_from(NUMBERS)), "TCP"),)
    return PodSpec(draw(st.sampled_from(namespaces)), draw(labels), ports, draw(st.integers(0, 9)) == 0)


@st.composite
def world(draw) -> World:
    nss = NAMESPACES[:draw(st.integers(2, 3))]
    declared = tuple((n, draw(labels) if draw(st.integers(0, 5)) else None) for n in nss)
    slots = draw(st.permutations(range(len(POOL))))
    count = draw(st.integers(4, 8))
    pods = tuple((s, draw(pod_spec(nss))) for s in sorted(slots[:count]))
    externals = tuple(sorted(slots[count:count + draw(st.integers(0, 2))]))
    hosts = {v: [a for s in slots[:count + len(externals)] if (a := _addr(s, v))] for v in (4, 6)}
    used = tuple(sorted({p.namespace for _, p in pods}))  # mostly where the pods are
    policies = tuple(draw(policy(f"pol{i}", used if draw(st.integers(0, 4)) else nss, hosts))
                     for i in range(draw(st.sampled_from((1, 2, 3, 1, 2, 4, 0)))))
    return World(declared, pods, policies, externals)


@st.composite
def changed(draw, w: World) -> World:
    """The same policies over changed pods and namespaces: what the kernel must take as element updates."""
    pods = dict(w.pods)
    nss = dict(w.namespaces)
    externals = set(w.externals)
    free = [s for s in range(len(POOL)) if s not in pods and s not in externals]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("relabel-pod", "relabel-ns", "drop-pod", "add-pod", "move-pod")))
        if op == "relabel-ns":
            name = draw(st.sampled_from(sorted(nss)))
            nss[name] = draw(labels.filter(lambda new, old=nss[name]: new != old))
        elif op == "add-pod" and free:
            slot = free.pop(draw(st.integers(0, len(free) - 1)))
            pods[slot] = draw(pod_spec(tuple(nss)))
        elif op == "drop-pod" and len(pods) > 2:  # its address stays, as an external client
            slot = draw(st.sampled_from(sorted(pods)))
            del pods[slot]
            externals.add(slot)
        elif op == "move-pod" and len(nss) > 1:
            slot = draw(st.sampled_from(sorted(pods)))
            ns = draw(st.sampled_from(sorted(set(nss) - {pods[slot].namespace})))
            pods[slot] = replace(pods[slot], namespace=ns)
        else:
            slot = draw(st.sampled_from(sorted(pods)))
            pods[slot] = replace(pods[slot], labels=draw(labels.filter(lambda new, old=pods[slot]: new != old.labels)))
    return World(tuple(nss.items()), tuple(sorted(pods.items())), w.policies, tuple(sorted(externals)))


# ---- judging the kernel ----------------------------------------------------------------------------

def _addr(slot: int, version: int):
    return next((ipaddress.ip_address(a) for a in POOL[slot] if ipaddress.ip_address(a).version == version), None)


@dataclass
class Judgement:
    probes: int  # probes the kernel answered
    denied: int  # of them, denied: a run that never denies would prove little
    bad: list[str]  # disagreements with decide or the matrix


def judge(state, w: World, opts: Options) -> Judgement:
    """Probe every ordered pair of the world's hosts over each family; the kernel must equal decide by
    address, and on the destination's primary family, the matrix by name."""
    cluster = w.cluster()
    slots = sorted([s for s, _ in w.pods] + list(w.externals))
    probes = [Probe(slot_key(s), slot_key(d), n, p) for s in slots for d in slots for n in NUMBERS for p in PROTOS]
    slot_of = {slot_key(s): s for s in slots}

    def by_address(pr: Probe, version: int) -> bool:
        ends = []
        for key in (pr.src, pr.dst):
            ip = _addr(slot_of[key], version)
            ends.append(Endpoint(pod=cluster.by_address.get(ip), ip=ip))
        return decide(cluster, ends[0], ends[1], pr.port, pr.protocol, opts).allowed

    def run(version: int) -> dict[Probe, tuple[bool, bool]]:  # probe -> (kernel, decide)
        family = f"ipv{version}"
        want = {pr: by_address(pr, version) for pr in probes
                if _addr(slot_of[pr.src], version) and _addr(slot_of[pr.dst], version)}
        seen = probe_settled(state, list(want), want.__getitem__, TIMEOUT, family)
        assert seen.keys() == want.keys()
        return {pr: (got, want[pr]) for pr, got in seen.items()}

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip((4, 6), pool.map(run, (4, 6)), strict=False))
    bad = [f"{pr.src}({_addr(slot_of[pr.src], v)}) -> {pr.dst}({_addr(slot_of[pr.dst], v)}) {pr.protocol}/"
           f"{pr.port}: kernel {'allows' if got else 'denies'}, decide {'allows' if want else 'denies'}"
           for v, seen in results.items() for pr, (got, want) in seen.items() if got != want]
    bad += _by_name(cluster, w, opts, results)
    return Judgement(sum(len(r) for r in results.values()),
                     sum(not got for r in results.values() for got, _ in r.values()), bad)


def _by_name(cluster: Cluster, w: World, opts: Options, results: dict) -> list[str]:
    """`netpol matrix`'s answer for pod pairs, against what the kernel did on the primary family."""
    pods = lab_pods(cluster)
    slot = {f"{p.namespace}/p{s}": s for s, p in w.pods}
    m = compute(cluster, QUERIES, pods, opts)
    bad = []
    for k, q in enumerate(QUERIES):
        for j, dst in enumerate(pods):
            port = resolve_port(dst, q)
            if port is None:
                continue
            version = dst.addresses[0].version
            for i, src in enumerate(pods):
                pr = Probe(slot_key(slot[src.key]), slot_key(slot[dst.key]), port, q.protocol)
                if pr in results[version] and results[version][pr][0] != bool(m.allowed[k][i][j]):
                    bad.append(f"{src.key} -> {dst.key} {q.protocol}/{q.port}: kernel "
                               f"{'allows' if results[version][pr][0] else 'denies'}, matrix disagrees")
    return bad


def _report(w: World, opts: Options, bad: list[str], where: str) -> str:
    flags = " ".join(f"-p {p}" for p in NUMBERS + NAMES)
    return (f"{len(bad)} disagreement(s) {where}:\n  " + "\n  ".join(bad[:12]) +
            f"\n--- reproduce: save the YAML below as repro.yaml, then\n  netpol lab verify -f repro.yaml {flags} "
            f"--protocol TCP --protocol UDP --ipblock-pods {str(opts.ipblock_pods).lower()}\n"
            f"  (lab/sN are pool slots: pod pN, or an external client at POOL[N]; by-address lines: "
            f"netpol check SRC_IP DST_IP --port P --protocol X)\n---\n{w.yaml()}")


def enforce(lab, w: World, opts: Options):
    state, enforcer = lab
    result = enforcer.apply(render(compile_plan(w.cluster(), None, opts)))
    flush_conntrack(state.node_netns)
    return result


def test_random_clusters_kernel_agrees_with_evaluator(lab):
    state, enforcer = lab
    stats: Counter = Counter()

    @SETTINGS
    @given(st.data(), world(), st.booleans())
    def example(data, w: World, ipblock_pods: bool):
        opts = Options(ipblock_pods=ipblock_pods)
        later = data.draw(changed(w), label="changed")
        for step, current in (("as generated", w), ("after pod/namespace changes", later)):
            before = enforcer.handles("netpol")
            try:
                result = enforce(lab, current, opts)
            except ApplyError as exc:
                raise AssertionError(_report(current, opts, [f"apply refused: {exc}"], step)) from exc
            stats[result.kind] += 1
            if current is later:  # same policies: the table's shape must not move, only its elements
                assert result.kind in ("elements", "none"), result
                assert enforcer.handles("netpol") == before
            j = judge(state, current, opts)
            stats["probes"] += j.probes
            stats["denied"] += j.denied
            assert not j.bad, _report(current, opts, j.bad, step)
        stats["examples"] += 1

    example()
    print(f"\ndifferential: {dict(stats)}")
    assert stats["examples"] >= min(10, SETTINGS.max_examples) and stats["probes"] > 100 * stats["examples"]
    assert stats["full"] and stats["elements"] and stats["probes"] > stats["denied"] > stats["probes"] // 20


def test_flush_forgets_tracked_connections(lab):
    """Without the flush, a flow admitted by an earlier table would pass as a reply under the next."""
    state, _ = lab

    def count() -> int:
        return int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())

    w = World((("alpha", None),), ((0, PodSpec("alpha", (), ())), (1, PodSpec("alpha", (), ()))), (), ())
    enforce(lab, w, Options())
    probe_settled(state, [Probe(slot_key(0), slot_key(1), 80, "UDP")], lambda _: True, TIMEOUT)
    assert run_in(state.node_netns, count) > 0
    flush_conntrack(state.node_netns)
    assert run_in(state.node_netns, count) == 0


# ---- live updates on a fixed cluster ---------------------------------------------------------------

BASE = World(
    namespaces=(("alpha", (("team", "a"),)), ("beta", (("team", "b"),))),
    pods=((0, PodSpec("alpha", (("app", "db"),), (("web", 8080, "TCP"),))),
          (1, PodSpec("alpha", (("app", "web"),), ())),
          (6, PodSpec("beta", (("app", "web"),), ())),
          (10, PodSpec("beta", (("app", "cli"),), (("dns", 81, "UDP"),)))),
    policies=(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "db", "namespace": "alpha"},
         "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}},
                                         "namespaceSelector": {"matchLabels": {"team": "a"}}}],
                               "ports": [{"port": "web"}, {"port": 80, "protocol": "UDP"}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "egress", "namespace": "beta"},
         "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/23",
                                                                     "except": ["198.18.0.9/32"]}}]}]}},
    ),
    externals=(2,))
NEW = (2, PodSpec("alpha", (("app", "web"),), ()))  # slot 2: an external client until it becomes a pod


def _expect(state, *cases: tuple[int, int, int, bool]) -> None:
    """(src slot, dst slot, TCP port, allowed) probed together; denied cases cost one short timeout."""
    want = {Probe(slot_key(s), slot_key(d), port, "TCP"): ok for s, d, port, ok in cases}
    seen = probe_settled(state, list(want), want.__getitem__, TIMEOUT)
    wrong = [f"{p.src} -> {p.dst} {p.port}: {'allowed' if seen[p] else 'denied'}" for p in want if seen[p] != want[p]]
    assert not wrong, wrong


def _agrees(state, w: World, opts: Options = Options()) -> None:
    j = judge(state, w, opts)
    assert j.probes > 100 and j.denied and not j.bad, _report(w, opts, j.bad, "after a live update")


def test_live_updates_follow_the_evaluator(lab):
    state, enforcer = lab
    enforcer.delete("netpol")
    assert enforce(lab, BASE, Options()).kind == "full"
    _agrees(state, BASE)
    _expect(state, (1, 0, 8080, True), (6, 0, 8080, False), (2, 0, 8080, False))

    steps = [  # (what changes, world after it, kind the kernel must see)
        ("add pod", replace(BASE, pods=tuple(sorted(BASE.pods + (NEW,))), externals=()), "elements"),
        ("relabel pod", None, "elements"),
        ("relabel namespace", None, "elements"),
        ("delete policy", None, "full"),
        ("add policy", None, "full"),
    ]
    w = BASE
    for what, after, kind in steps:
        if what == "relabel pod":  # the new pod stops being a web pod
            after = replace(w, pods=tuple((s, replace(p, labels=(("app", "cli"),)) if s == 2 else p)
                                          for s, p in w.pods))
        elif what == "relabel namespace":  # beta joins team a: its web pod now reaches the db
            after = replace(w, namespaces=(("alpha", (("team", "a"),)), ("beta", (("team", "a"),))))
        elif what == "delete policy":
            after = replace(w, policies=w.policies[:1])
        elif what == "add policy":
            deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "deny", "namespace": "alpha"},
                    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}}
            after = replace(w, policies=w.policies + (deny,))
        before = enforcer.handles("netpol")
        result = enforce(lab, after, Options())
        assert result.kind == kind, (what, result)
        if kind == "elements":
            assert enforcer.handles("netpol") == before and result.added + result.removed > 0, what
        _agrees(state, after)
        w = after
        _expect(state, {"add pod": (2, 0, 8080, True), "relabel pod": (2, 0, 8080, False),
                        "relabel namespace": (6, 0, 8080, True),
                        "delete policy": (10, 2, 80, True),  # beta's egress limit is gone
                        "add policy": (1, 0, 8080, False)}[what])


def _db_policy(v6: dict, v4: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": "alpha"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "ingress": [{"from": [{"ipBlock": v6}, {"ipBlock": v4}], "ports": [{"port": "web"}]}]}}


def test_live_updates_of_ip_blocks_named_ports_and_leaving_pods(lab):
    """A block growing to a whole family (its IPv6 interval now starts at address 0), a pod leaving (its
    address now an external client's, no longer a hole in the blocks) and a named port moving: each is
    an element change of the live table, and packets follow."""
    state, enforcer = lab
    opts = Options(ipblock_pods=False)  # pods are holes in the blocks: pods coming and going move them
    db, web = PodSpec("alpha", (("app", "db"),), (("web", 8080, "TCP"),)), PodSpec("alpha", (("app", "web"),), ())
    w = World((("alpha", None),), ((7, db), (8, web)),
              (_db_policy({"cidr": "2001:db8::/64"}, {"cidr": "198.18.0.0/16"}),), (2, 3, 12, 13))
    enforce(lab, w, opts)
    _expect(state, (8, 7, 8080, False), (2, 7, 8080, True), (3, 7, 8080, True))
    _agrees(state, w, opts)
    steps = [
        replace(w, policies=(_db_policy({"cidr": "::/0", "except": ["2001:db8::/117"]},
                                        {"cidr": "0.0.0.0/0", "except": ["198.18.0.8/29"]}),)),
        replace(w, policies=(_db_policy({"cidr": "::/0", "except": ["2001:db8::/117"]},
                                        {"cidr": "0.0.0.0/0", "except": ["198.18.0.8/29"]}),),
                pods=((7, replace(db, ports=(("web", 81, "TCP"),))),), externals=(2, 3, 8, 12, 13)),
    ]
    for after in steps:
        before = enforcer.handles("netpol")
        result = enforce(lab, after, opts)
        assert result.kind == "elements" and enforcer.handles("netpol") == before
        _agrees(state, after, opts)
    _expect(state, (8, 7, 81, True), (8, 7, 8080, False), (2, 7, 81, False), (3, 7, 81, True))


# ---- refused transactions leave the old rules in force -----------------------------------------------

def test_refused_apply_keeps_previous_rules_in_force(lab):
    state, enforcer = lab
    enforce(lab, BASE, Options())
    good = render(compile_plan(BASE.cluster(), None, Options()))
    denied, allowed = (6, 0, 8080, False), (1, 0, 8080, True)
    _expect(state, denied, allowed)
    before = enforcer.handles("netpol")
    no_dispatch = {n: e for n, e in good.elements.items() if not n.startswith("ingress")}  # would open all
    bad = [  # (ruleset, the path apply takes)
        # the ingress dispatch entries would go, but one new entry jumps to a missing chain
        (Ruleset(good.table, good.skeleton, {**no_dispatch, "ingress4": frozenset({"198.18.0.250 : jump nope"})}),
         "elements"),
        # every drop turned into accept, plus a chain jumping nowhere
        (Ruleset(good.table, good.skeleton.replace("drop", "accept") + "\n\tchain broken {\n\t\tjump nope\n\t}",
                 good.elements), "full"),
        # elements for a set the skeleton does not declare
        (Ruleset(good.table, good.skeleton, {**no_dispatch, "undeclared": frozenset({"198.18.0.1"})}), "full"),
    ]
    for rs, kind in bad:
        assert enforcer.plan(rs).kind == kind
        with pytest.raises(ApplyError):
            enforcer.apply(rs)
        assert enforcer.handles("netpol") == before
        _expect(state, denied, allowed)
    _agrees(state, BASE)
    assert enforcer.apply(good).kind == "none"  # nothing of the refused changes stuck


def test_judge_sees_a_doctored_table(lab):
    """The judge can fail: a table whose dispatch maps are emptied lets through what decide denies."""
    state, enforcer = lab
    good = render(compile_plan(BASE.cluster(), None, Options()))
    enforcer.apply(Ruleset(good.table, good.skeleton, {n: e for n, e in good.elements.items()
                                                       if not n.startswith(("ingress", "egress"))}))
    flush_conntrack(state.node_netns)
    bad = judge(state, BASE, Options()).bad
    assert any("kernel allows, decide denies" in b for b in bad)
    assert any("matrix disagrees" in b for b in bad)
