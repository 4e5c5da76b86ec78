"""Build clusters from plain dicts, and compare whole reachability tables against expectations.

The e2e world mirrors the upstream Kubernetes NetworkPolicy e2e suite: namespaces x, y, z (label ns=<name>),
pods a, b, c in each (label pod=<name>), each serving 80 and 81 on TCP, UDP and SCTP under the names
`serve-80-tcp`, `serve-81-udp`, ...
"""

from __future__ import annotations

import itertools
import textwrap

from netpol.evaluate.decide import Verdict, decide
from netpol.evaluate.resolve import endpoint
from netpol.k8s.load import parse_text
from netpol.k8s.model import Cluster, Options
from netpol.k8s.parse import build_cluster
from netpol.k8s.parse import pod as parse_pod
from netpol.k8s.source import RawObject, Source

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PROTOCOLS = ("TCP", "UDP", "SCTP")
E2E_PODS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in PODS)


def namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def container_ports(*ports: tuple[int, str] | tuple[int, str, str]) -> list[dict]:
    """(number, protocol[, name]) -> containerPort entries."""
    out = []
    for entry in ports:
        item = {"containerPort": entry[0], "protocol": entry[1]}
        if len(entry) > 2:
            item["name"] = entry[2]
        out.append(item)
    return out


def serve_ports(numbers=(80, 81)) -> list[dict]:
    return container_ports(*[(n, proto, f"serve-{n}-{proto.lower()}") for n in numbers for proto in PROTOCOLS])


def pod(ns: str, name: str, labels: dict | None = None, ips: tuple[str, ...] = (), ports: list | None = None,
        host_network: bool = False, phase: str = "Running", node: str = "node-1") -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "agnhost", "ports": ports or []}]}
    if host_network:
        spec["hostNetwork"] = True
    status: dict = {"phase": phase}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels if labels is not None else {}},
            "spec": spec, "status": status}


def policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cluster(*objects: dict) -> Cluster:
    return build_cluster(RawObject(o, Source(f"<test:{i}>", 0)) for i, o in enumerate(objects))


def cluster_sharing(*objects: dict) -> Cluster:
    """A cluster whose pods may claim one address (files are refused that; a Cluster made in code,
    mid-reuse, is not): compile and update must still agree on it."""
    return build_sharing([RawObject(o, Source(f"<test:{i}>", 0)) for i, o in enumerate(objects)])


def build_sharing(raws: list[RawObject]) -> Cluster:
    """build_cluster, without refusing pods that share an address."""
    def addressless(r: RawObject) -> RawObject:
        status = {k: v for k, v in (r.data.get("status") or {}).items() if k not in ("podIP", "podIPs")}
        return RawObject({**r.data, "status": status}, r.source, r.lines, r.cols)
    others = build_cluster([addressless(r) if r.kind == "Pod" else r for r in raws])
    parsed = {p.key: p for p in (parse_pod(r) for r in raws if r.kind == "Pod") if p is not None}
    pods = tuple(parsed[p.key] if p.kind == "Pod" else p for p in others.pods)
    return others.model_copy(update={"pods": pods})


def cluster_yaml(text: str, file: str = "test.yaml") -> Cluster:
    return build_cluster(parse_text(textwrap.dedent(text), file))


def e2e_ip(ns: str, p: str, version: int = 4) -> str:
    n, m = NAMESPACES.index(ns) + 1, PODS.index(p) + 1
    return f"198.18.{n}.{m}" if version == 4 else f"2001:db8:{n}::{m}"


def e2e_objects(dual_stack: bool = False, ipv6_primary: bool = False) -> list[dict]:
    out = [namespace(ns, ns=ns) for ns in NAMESPACES]
    for ns, p in itertools.product(NAMESPACES, PODS):
        ips = (e2e_ip(ns, p, 4),)
        if dual_stack:
            ips = (e2e_ip(ns, p, 4), e2e_ip(ns, p, 6))
        if ipv6_primary:
            ips = (e2e_ip(ns, p, 6),) + ((e2e_ip(ns, p, 4),) if dual_stack else ())
        out.append(pod(ns, p, {"pod": p}, ips, serve_ports()))
    return out


def e2e(*policies: dict, extra: tuple[dict, ...] = (), **kw) -> Cluster:
    return cluster(*e2e_objects(**kw), *extra, *policies)


def check(c: Cluster, src: str, dst: str, port: int = 80, protocol: str = "TCP",
          opts: Options = Options()) -> Verdict:
    return decide(c, endpoint(c, src), endpoint(c, dst), port, protocol, opts)


class Expect:
    """A reachability table: every ordered pair starts at `default`; a pod always reaches itself."""

    def __init__(self, pods=E2E_PODS, default: bool = True) -> None:
        self.pods = tuple(pods)
        self.cells = {(s, d): default or s == d for s in self.pods for d in self.pods}

    def to(self, dst: str, allowed: bool) -> Expect:
        for s in self.pods:
            if s != dst:
                self.cells[(s, dst)] = allowed
        return self

    def from_(self, src: str, allowed: bool) -> Expect:
        for d in self.pods:
            if d != src:
                self.cells[(src, d)] = allowed
        return self

    def pair(self, src: str, dst: str, allowed: bool) -> Expect:
        self.cells[(src, dst)] = allowed
        return self


def actual(c: Cluster, pods=E2E_PODS, port: int = 80, protocol: str = "TCP",
           opts: Options = Options()) -> dict[tuple[str, str], bool]:
    return {(s, d): check(c, s, d, port, protocol, opts).allowed for s in pods for d in pods}


def assert_table(c: Cluster, expect: Expect, port: int = 80, protocol: str = "TCP",
                 opts: Options = Options()) -> None:
    got = actual(c, expect.pods, port, protocol, opts)
    wrong = [f"{s} -> {d}: expected {'allowed' if want else 'denied'}"
             for (s, d), want in expect.cells.items() if got[(s, d)] != want]
    assert not wrong, f"{protocol}/{port}: " + "; ".join(wrong)


def service(ns: str, name: str, ports: list[dict], selector: dict | None = None, cluster_ip: str | None = None,
            **spec: object) -> dict:
    """ports: ServicePort dicts ({"name", "port", "targetPort", "protocol", ...})."""
    body: dict = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def endpoint_slice(ns: str, name: str, service_name: str, endpoints: list[dict], ports: list[dict],
                   address_type: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type, "endpoints": endpoints, "ports": ports}
