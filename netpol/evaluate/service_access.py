"""Which client workloads reach which Service ports, from workload connectivity: for review in CI.

A Service port reaches its backends on their target ports after DNAT, so a client workload reaches it
through a backend workload when their connection set allows that backend's target port. A client
that is itself a backend reaches that backend (its own pods through their Service: hairpin).
"""

from __future__ import annotations

from dataclasses import dataclass

from netpol.evaluate.services import find_port
from netpol.evaluate.workloads import Connectivity, workload_name
from netpol.k8s.model import Cluster, Service, ServicePort


@dataclass(frozen=True)
class Access:
    """Backends of one Service port a client reaches, of how many."""

    reached: int
    backends: int

    @property
    def word(self) -> str:
        if self.reached == self.backends:
            return "allowed"
        return "denied" if self.reached == 0 else f"partial {self.reached}/{self.backends}"


def port_label(svc: Service, sp: ServicePort) -> str:
    return f"{svc.key}:{sp.name or sp.port}"


def _backends(cluster: Cluster, svc: Service, sp: ServicePort) -> dict[str, int]:
    """Backend workload -> its target port (its first pod or template that resolves one)."""
    out: dict[str, int] = {}
    for p in (p for p in cluster.pods if svc.selects(p)):
        port = find_port(p, sp)
        if port is not None:
            out.setdefault(workload_name(p), port)
    return out


def service_access(cluster: Cluster, conn: Connectivity) -> dict[tuple[str, str], Access]:
    """(client workload, `ns/service:port`) -> Access, for every Service port with backends."""
    out: dict[tuple[str, str], Access] = {}
    for svc in cluster.services:
        if svc.type == "ExternalName":
            continue
        for sp in svc.ports:
            backends = _backends(cluster, svc, sp)
            if not backends:
                continue
            for client in conn.workloads:
                reached = sum(client == b or conn.get(client, b).allows(sp.protocol, port)
                              for b, port in backends.items())
                out[(client, port_label(svc, sp))] = Access(reached, len(backends))
    return out
