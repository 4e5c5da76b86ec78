"""Services: which pods a connection to a Service reaches, and on which port, as kube-proxy sends it.

Policies never see a Service: kube-proxy rewrites the destination (DNAT) before the policy hook, so
a connection to a Service port is a connection to one backend pod on its resolved target port. A
named targetPort resolves per backend, as the EndpointSlice controller does: the first container
port with that name and the Service port's protocol; a pod without one is no endpoint of that port.
When the input has EndpointSlices for a Service they are the truth (selector-less Services have
nothing else); otherwise the selector's pods are the backends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from netpol.errors import QueryError
from netpol.evaluate.decide import Verdict, decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.model import Cluster, EndpointSlice, IPAddress, Options, Pod, Service, ServicePort

SERVICE_WORDS = ("service", "svc", "services")


@dataclass(frozen=True)
class Backend:
    """One endpoint of a Service port: the pod (None: an address that is no pod of the input), the
    address kube-proxy sends to, and the port it sends to there."""

    pod: Pod | None
    address: IPAddress
    port: int

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(pod=self.pod, ip=self.address)

    @property
    def label(self) -> str:
        return self.pod.key if self.pod is not None else str(self.address)


@dataclass(frozen=True)
class Backends:
    port: ServicePort
    backends: tuple[Backend, ...]
    notes: tuple[str, ...] = ()


def service_key(text: str) -> str | None:
    """`ns/service/name` or `ns/svc/name` -> `ns/name`; None for anything else."""
    parts = text.split("/")
    if len(parts) == 3 and parts[1].lower() in SERVICE_WORDS:
        return f"{parts[0]}/{parts[2]}"
    return None


def find_service(cluster: Cluster, text: str) -> Service | None:
    """The Service a query names, by `ns/service/name` or by one of its addresses; None when the
    text names no Service (a pod, a workload or another address)."""
    key = service_key(text)
    if key is not None:
        for svc in cluster.services:
            if svc.key == key:
                return _proxied(svc)
        raise QueryError(f"{text!r}: no Service {key} in the input")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return next((_proxied(s) for s in cluster.services if ip in s.addresses), None)


def _proxied(svc: Service) -> Service:
    if svc.type == "ExternalName":
        raise QueryError(f"Service {svc.key} is ExternalName: a DNS alias to {svc.external_name}, not proxied; "
                         "no Service or pod policy applies to the name itself. Check the address it resolves "
                         "to instead: netpol check SRC <address>")
    return svc


def ports(svc: Service, asked: int | str | None, protocol: str | None) -> list[ServicePort]:
    """The Service ports a query means: by number or name (None: every port), of a protocol if given."""
    found = [sp for sp in svc.ports if (asked is None or asked in (sp.port, sp.name))
             and (protocol is None or sp.protocol == protocol)]
    if not found:
        listed = ", ".join(sp.label for sp in svc.ports) or "none"
        what = f"port {asked}" if asked is not None else "a port"
        raise QueryError(f"Service {svc.key} has no {what}{f' of {protocol}' if protocol else ''} "
                         f"(its ports: {listed})")
    return found


def version_of(svc: Service, src: Endpoint, address: IPAddress | None) -> int | None:
    """The family of a connection to the Service: the address asked, else its primary ClusterIP."""
    if address is not None:
        return address.version
    if svc.addresses:
        return svc.addresses[0].version
    own = src.address(None)
    return own.version if own is not None else None


def find_port(pod: Pod, sp: ServicePort) -> int | None:
    """targetPort on one pod, as the EndpointSlice controller resolves it."""
    target = sp.target
    if isinstance(target, int):
        return target
    return next((cp.port for cp in pod.ports if cp.name == target and cp.protocol == sp.protocol), None)


def slices_of(cluster: Cluster, svc: Service) -> list[EndpointSlice]:
    return [s for s in cluster.endpoint_slices if s.namespace == svc.namespace and s.service == svc.name]


def backends(cluster: Cluster, svc: Service, sp: ServicePort, version: int | None,
             client: Pod | None = None) -> Backends:
    """The endpoints of one Service port for a client (internalTrafficPolicy Local keeps those on
    the client's node), with notes on the pods that are no endpoint and why."""
    slices = slices_of(cluster, svc)
    notes: list[str] = []
    if slices:
        found = list(_from_slices(cluster, slices, sp, version, notes))
    elif svc.selector is None:
        found = []
        notes.append(f"Service {svc.key} has no selector and the input has no EndpointSlice for it")
    else:
        found = list(_from_selector(cluster, svc, sp, version, notes))
    if svc.internal_traffic_policy == "Local" and client is not None and client.node_name:
        local = [b for b in found if b.pod is not None and b.pod.node_name == client.node_name]
        if len(local) < len(found):
            notes.append(f"internalTrafficPolicy Local: only endpoints on {client.node_name} "
                         f"({len(local)} of {len(found)}); with none, kube-proxy drops the connection")
        found = local
    if svc.headless:
        notes.append("headless: clients reach the endpoints' own addresses (DNS), with the same verdicts")
    return Backends(sp, tuple(found), tuple(notes))


def _from_selector(cluster: Cluster, svc: Service, sp: ServicePort, version: int | None,
                   notes: list[str]) -> Iterator[Backend]:
    assert svc.selector is not None
    for pod in cluster.pods:
        if pod.kind != "Pod" or not svc.selects(pod):
            continue
        address = pod.address(version)
        if address is None:
            continue
        port = find_port(pod, sp)
        if port is None:
            notes.append(f"{pod.key} is no endpoint of port {sp.label}: it declares no {sp.protocol} "
                         f"container port named {sp.target!r}")
            continue
        yield Backend(pod, address, port)


def _from_slices(cluster: Cluster, slices: list[EndpointSlice], sp: ServicePort, version: int | None,
                 notes: list[str]) -> Iterator[Backend]:
    for s in slices:
        if s.address_type == "FQDN" or (version is not None and s.address_type != f"IPv{version}"):
            continue
        port = next((p for p in s.ports if p.name == sp.name and p.protocol == sp.protocol), None)
        if port is None:
            continue
        for e in s.endpoints:
            address = ipaddress.ip_address(e.addresses[0])
            pod = cluster.by_key.get(e.target) if e.target else None
            pod = pod or cluster.by_address.get(address)
            if not e.ready:
                notes.append(f"endpoint {e.addresses[0]} of EndpointSlice {s.name} is not ready: no traffic")
                continue
            number = port.port if port.port is not None else sp.port
            yield Backend(pod, address, number)


@dataclass(frozen=True)
class BackendVerdict:
    backend: Backend
    verdict: Verdict


@dataclass(frozen=True)
class ServiceVerdict:
    """A connection to one Service port, answered per backend."""

    src: str
    service: Service
    address: IPAddress | None
    port: ServicePort
    results: tuple[BackendVerdict, ...]
    notes: tuple[str, ...]
    via: str | None = None  # from outside: nodeport, loadbalancer or externalip
    node: str | None = None  # the node the connection enters on

    @property
    def allowed_count(self) -> int:
        return sum(r.verdict.allowed for r in self.results)

    @property
    def allowed(self) -> bool:
        return bool(self.results) and self.allowed_count == len(self.results)

    @property
    def partial(self) -> bool:
        return 0 < self.allowed_count < len(self.results)

    def contract(self) -> dict:
        """The JSON shape DESIGN.md fixes for `netpol check` to a Service."""
        sp = self.port
        return {"service": self.service.key, "address": None if self.address is None else str(self.address),
                "port": {"name": sp.name, "port": sp.port, "protocol": sp.protocol, "targetPort": sp.target},
                "allowed": self.allowed, "partial": self.partial,
                "backends": [{"pod": r.backend.pod.key if r.backend.pod else None, "address": str(r.backend.address),
                              "port": r.backend.port, "allowed": r.verdict.allowed,
                              "egress": r.verdict.contract()["egress"], "ingress": r.verdict.contract()["ingress"]}
                             | ({"source": r.verdict.src} if self.via else {})
                             for r in self.results],
                "notes": list(self.notes)} | ({"via": self.via, "node": self.node} if self.via else {})


def check_service(cluster: Cluster, src: Endpoint, svc: Service, sp: ServicePort, address: IPAddress | None,
                  opts: Options = Options()) -> ServiceVerdict:
    """decide() for every backend of one Service port, as the policies see it after DNAT."""
    found = backends(cluster, svc, sp, version_of(svc, src, address), src.pod)
    results = tuple(BackendVerdict(b, decide(cluster, src, b.endpoint, b.port, sp.protocol, opts))
                    for b in found.backends)
    return ServiceVerdict(src.label, svc, address if address is not None else _primary(svc), sp, results,
                          found.notes)


def _primary(svc: Service) -> IPAddress | None:
    return svc.addresses[0] if svc.addresses else None


VIAS = ("nodeport", "loadbalancer", "externalip")


def entry_address(svc: Service, sp: ServicePort, via: str, node_ip: IPAddress | None) -> IPAddress | None:
    """Where an outside client connects: the node's address (NodePort), or the Service's own."""
    if via == "nodeport":
        if sp.node_port is None:
            raise QueryError(f"Service {svc.key} is {svc.type}: port {sp.label} has no nodePort")
        return node_ip
    found = svc.load_balancer_ips if via == "loadbalancer" else svc.external_ips
    if via == "loadbalancer" and svc.type != "LoadBalancer":
        raise QueryError(f"Service {svc.key} is {svc.type}, not LoadBalancer")
    if via == "externalip" and not found:
        raise QueryError(f"Service {svc.key} has no externalIPs")
    return ipaddress.ip_address(found[0]) if found else None


def check_external(cluster: Cluster, client: IPAddress, svc: Service, sp: ServicePort, via: str, node: str,
                   node_ip: IPAddress, opts: Options = Options()) -> ServiceVerdict:
    """A connection from outside entering on `node` (NodePort, load balancer, external IP), as each
    backend's policy sees it before SNAT: from the client when the backend runs on that node or the
    Service keeps traffic local (externalTrafficPolicy Local), else from the node's own address, as
    kube-proxy masquerades it to forward it to another node."""
    found = backends(cluster, svc, sp, client.version)
    local_only = svc.external_traffic_policy == "Local"
    notes = list(found.notes)
    results = []
    for b in found.backends:
        here = b.pod is not None and b.pod.node_name == node
        if local_only and not here:
            continue
        source = client if here or local_only else node_ip
        v = decide(cluster, Endpoint(ip=source), b.endpoint, b.port, sp.protocol, opts)
        results.append(BackendVerdict(b, v))
    if local_only:
        notes.append(f"externalTrafficPolicy Local: only endpoints on {node}, which see the client's address"
                     + ("; there are none, so kube-proxy drops the connection" if not results else ""))
    elif any(r.verdict.src != str(client) for r in results):
        notes.append(f"endpoints on other nodes see {node}'s address {node_ip}: kube-proxy masquerades what it "
                     "forwards (externalTrafficPolicy Cluster)")
    return ServiceVerdict(str(client), svc, entry_address(svc, sp, via, node_ip), sp, tuple(results), tuple(notes),
                          via, node)
