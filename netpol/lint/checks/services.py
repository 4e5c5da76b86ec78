"""Services and policies that do not meet: policies see traffic after kube-proxy's DNAT and before its SNAT."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.evaluate.services import find_port
from netpol.k8s.model import DIRECTIONS, INGRESS, PolicyPort, Rule, Service, ServicePort
from netpol.lint.context import PEERS_FIELD, Context
from netpol.lint.index import members
from netpol.lint.registry import Hit, Location, check


def service_pods(ctx: Context, svc: Service) -> int:
    """Pods and workloads of the Service's namespace whose labels its selector matches (equality)."""
    idx, bits = ctx.index, 0
    for i in members(idx.in_ns.get(svc.namespace, 0)):
        if svc.selects(idx.pods[i]):
            bits |= 1 << i
    return bits


def at_service(ctx: Context, svc: Service, *path: str | int) -> Location:
    return ctx.at_object("Service", svc.namespace, svc.name, svc.source, *path)


def _covers(entry: PolicyPort, number: int, protocol: str) -> bool:
    return entry.protocol == protocol and isinstance(entry.port, int) and \
        entry.port <= number <= (entry.end_port or entry.port)


def _allows_number(rule: Rule, number: int, protocol: str) -> bool:
    return not rule.ports or any(e.port is None and e.protocol == protocol or _covers(e, number, protocol)
                                 for e in rule.ports)


@check("NP013", "service-port-not-pod-port", "warning",
       "A rule names a Service's port where the pods receive on another (targetPort).")
def service_port_not_pod_port(ctx: Context) -> Iterator[Hit]:
    """
    kube-proxy rewrites a connection to a Service into one to a backend pod on the Service port's
    `targetPort` before any policy sees it (in iptables, nftables and IPVS mode alike). A rule that
    allows the Service `port` therefore allows nothing of that Service's traffic when the pods listen
    on another number: write the container port (or its name) instead.

        # Service back/api: port 80 -> targetPort 8080 (named http)
        ingress:
        - ports:
          - port: 80        # never seen after DNAT; write 8080 or http
    """
    idx = ctx.index
    for svc in ctx.cluster.services:
        pods = service_pods(ctx, svc)
        if not pods:
            continue
        for pol in ctx.cluster.policies:
            for direction in DIRECTIONS:
                for i, rule in enumerate(pol.rules(direction)):
                    dests = (idx.selected(pol) if direction == INGRESS else idx.rule_peers(pol, rule)) & pods
                    if not dests:
                        continue
                    for j, entry in enumerate(rule.ports):
                        for sp in svc.ports:
                            msg = _service_port_hit(ctx, dests, rule, entry, sp, svc)
                            if msg:
                                yield ctx.at_rule(pol, direction, i, "ports", j, "port"), f"{direction} rule {i}: {msg}"


def _service_port_hit(ctx: Context, dests: int, rule: Rule, entry: PolicyPort, sp: ServicePort,
                      svc: Service) -> str | None:
    if not _covers(entry, sp.port, sp.protocol) or sp.target == sp.port:
        return None
    pods = [ctx.index.pods[i] for i in members(dests)]
    if any(cp.port == sp.port and cp.protocol == sp.protocol for p in pods for cp in p.ports):
        return None  # some pods do listen on the Service port itself
    targets = sorted({n for p in pods if (n := find_port(p, sp)) is not None})
    if not targets or all(_allows_number(rule, n, sp.protocol) for n in targets):
        return None
    named = f" ({sp.target})" if isinstance(sp.target, str) else ""
    return (f"port {sp.protocol}/{sp.port} is Service {svc.key}'s port {sp.name or sp.port}; its pods receive on "
            f"{', '.join(map(str, targets))}{named} after DNAT, which this rule does not allow")


@check("NP014", "ipblock-service-address", "warning", "An ipBlock covers a Service address.")
def ipblock_service_address(ctx: Context) -> Iterator[Hit]:
    """
    Policies match the connection after kube-proxy's DNAT: the destination is the backend pod, never
    the ClusterIP, external IP or load-balancer address of a Service. An ipBlock written for a
    Service address matches none of its traffic; select the backend pods (podSelector /
    namespaceSelector), or for a Service without selector the addresses of its EndpointSlices.

        egress:
        - to:
          - ipBlock: {cidr: 10.96.0.10/32}    # the ClusterIP of kube-dns: never matched
    """
    for pol, direction, i, _, j, block in ctx.ip_block_peers():
        hits = [(s, a) for s in ctx.cluster.services for a in s.addresses if block.contains(a)]
        if not hits:
            continue
        svc, address = hits[0]
        more = f" and {len(hits) - 1} more" if len(hits) > 1 else ""
        yield ctx.at_rule(pol, direction, i, PEERS_FIELD[direction], j, "ipBlock", "cidr"), \
            f"{direction} rule {i} ipBlock {block.describe()} covers {address}, an address of " \
            f"Service {svc.key}{more}; policies see the backend pod after DNAT, never a Service address"


@check("NP015", "external-source-behind-snat", "warning",
       "An ingress ipBlock for outside clients on backends of a NodePort/LoadBalancer Service that masquerades.")
def external_source_behind_snat(ctx: Context) -> Iterator[Hit]:
    """
    With `externalTrafficPolicy: Cluster` (the default), a connection that enters on a node without
    the chosen backend is masqueraded to that node's address before it is forwarded: the backend's
    policy sees the node, not the client. An ingress ipBlock for outside clients then matches only when
    the load balancer happened to pick the backend's own node. Set `externalTrafficPolicy: Local`, or
    also allow the node addresses.
    """
    idx = ctx.index
    exposed = [(s, service_pods(ctx, s)) for s in ctx.cluster.services
               if s.type in ("NodePort", "LoadBalancer") and s.external_traffic_policy == "Cluster"]
    for svc, pods in exposed:
        for pol in ctx.cluster.policies:
            if not pol.affects(INGRESS) or not idx.selected(pol) & pods:
                continue
            for i, rule in enumerate(pol.ingress):
                for j, peer in enumerate(rule.peers):
                    if peer.ip_block is None or peer.ip_block.network.prefixlen == 0:
                        continue  # everything stays matched whatever the source becomes
                    yield ctx.at_rule(pol, INGRESS, i, "from", j, "ipBlock", "cidr"), \
                        f"ingress rule {i} ipBlock {peer.ip_block.describe()} admits outside clients of {svc.type} " \
                        f"Service {svc.key} (externalTrafficPolicy Cluster): it matches only when the connection " \
                        f"enters on the backend's node; elsewhere the source is the receiving node's address"


@check("NP016", "service-target-port-undeclared", "warning",
       "A Service's named targetPort that some of its pods do not declare.")
def service_target_port_undeclared(ctx: Context) -> Iterator[Hit]:
    """
    A named `targetPort` resolves on each pod: the first container port with that name and the
    Service port's protocol. A selected pod without one is no endpoint of that port, so part of the
    Service's pods never receive its traffic.
    """
    idx = ctx.index
    for svc in ctx.cluster.services:
        pods = service_pods(ctx, svc)
        for k, sp in enumerate(svc.ports):
            if not isinstance(sp.target, str) or not pods:
                continue
            missing = pods & ~idx.declares(sp.target, sp.protocol)
            if missing:
                n = missing.bit_count()
                yield at_service(ctx, svc, "spec", "ports", k, "targetPort"), \
                    f"Service {svc.key} port {sp.name or sp.port} targets {sp.target!r}; {n} of its pods " \
                    f"({idx.keys(missing)}) declare no {sp.protocol} port of that name and are no endpoint of it"


@check("NP017", "duplicate-service", "warning", "A Service defined twice (the later one is left out).")
def duplicate_service(ctx: Context) -> Iterator[Hit]:
    """
    Two objects with the same namespace and name: the API server keeps one. netpol keeps the first it
    read and leaves the other out; other commands refuse such input.
    """
    yield from ctx.input.duplicates
