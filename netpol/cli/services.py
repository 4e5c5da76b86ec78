"""`netpol check` to a Service and `netpol matrix --services`: answers per backend, after DNAT."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass

import typer

from netpol.cli.common import as_yaml, paint, side_lines
from netpol.errors import QueryError
from netpol.escape import inert, md_code, plain
from netpol.evaluate.decide import SideVerdict
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.services import VIAS, ServiceVerdict, check_external, check_service, ports
from netpol.k8s.model import Cluster, IPAddress, Options, Pod, Service


def _status(v: ServiceVerdict) -> str:
    if not v.results:
        return "NO ENDPOINTS"
    if v.partial:
        return f"PARTIAL {v.allowed_count} of {len(v.results)} backends"
    return "ALLOWED" if v.allowed else "DENIED"


def _side(name: str, d: SideVerdict) -> str:
    return f"      {name}: " + "\n               ".join(side_lines(d))


def _text(v: ServiceVerdict) -> str:
    sp = v.port
    where = f" ({v.address})" if v.address is not None else ""
    target = f" -> targetPort {sp.target}" if sp.target != sp.port else ""
    via = ""
    if v.via is not None:
        entry = f"nodePort {sp.node_port}" if v.via == "nodeport" else v.via
        via = f" via {entry} on {v.node}"
    lines = [f"{_status(v)}: {plain(v.src)} -> {plain(v.service.key)}{where} {plain(sp.label)}{target}{via}"]
    for r in v.results:
        b = r.backend
        seen = f" from {r.verdict.src}" if v.via is not None else ""
        lines.append(f"  {plain(b.label)} ({b.address}) {sp.protocol}/{b.port}{seen}: "
                     f"{'ALLOWED' if r.verdict.allowed else 'DENIED'}")
        lines += [_side("egress ", r.verdict.egress), _side("ingress", r.verdict.ingress)]
    lines += [f"  note: {plain(n)}" for n in v.notes]
    return inert("\n".join(lines))


@dataclass(frozen=True)
class Outside:
    """`--via`: the client is outside the cluster and enters through these nodes."""

    via: str
    nodes: tuple[str, ...] = ()
    node_ip: str | None = None


def check_through(cluster: Cluster, src: Endpoint, svc: Service, dst_text: str, port: int | str | None,
                  protocol: str | None, output: str, opts: Options, outside: Outside | None = None) -> None:
    """Print the answer for every Service port asked; exit 0 only when every backend of each allows."""
    try:
        address = ipaddress.ip_address(dst_text)
    except ValueError:
        address = None
    if outside is None:
        verdicts = [check_service(cluster, src, svc, sp, address, opts) for sp in ports(svc, port, protocol)]
    else:
        verdicts = _from_outside(cluster, src, svc, port, protocol, opts, outside)
    if output in ("json", "yaml"):
        docs = [v.contract() for v in verdicts]
        text = json.dumps(docs[0] if len(docs) == 1 else docs, indent=2)
        typer.echo(as_yaml(text) if output == "yaml" else text)
    else:
        typer.echo(paint("\n".join(_text(v) for v in verdicts)))
    raise typer.Exit(0 if all(v.allowed for v in verdicts) else 1)


# ---- matrix --services ------------------------------------------------------------------------

def service_probes(cluster: Cluster, sources: list[Pod], services: list[Service], asked: list[int | str] | None,
                   opts: Options) -> Iterator[dict]:
    """One probe per (source pod, Service port, backend): the `matrix --services` contract."""
    for svc in services:
        for sp in _ports_asked(svc, asked):
            for src in sources:
                v = check_service(cluster, Endpoint(pod=src), svc, sp, None, opts)
                for r in v.results:
                    yield {"src": src.key, "dst": f"{svc.namespace}/service/{svc.name}", "port": sp.port,
                           "protocol": sp.protocol, "backend": r.backend.label, "target_port": r.backend.port,
                           "allowed": r.verdict.allowed}


def _ports_asked(svc: Service, asked: list[int | str] | None):
    return [sp for sp in svc.ports if asked is None or sp.port in asked or sp.name in asked]


def proxied(cluster: Cluster) -> list[Service]:
    """Services kube-proxy sends traffic for (ExternalName is a DNS alias only)."""
    return [s for s in cluster.services if s.type != "ExternalName"]


def _cells(probes: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, Service port) -> (backends allowed, backends)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for p in probes:
        key = (p["src"], f"{p['dst'].replace('/service/', '/')}:{p['protocol']}/{p['port']}")
        ok, n = out.get(key, (0, 0))
        out[key] = (ok + p["allowed"], n + 1)
    return out


def _word(ok: int, n: int) -> str:
    return "allowed" if ok == n else "denied" if ok == 0 else f"partial {ok}/{n}"


def render(probes: list[dict], pods: list[str], services: list[str], output: str) -> str:
    if output == "json":
        return json.dumps({"pods": pods, "services": services, "probes": probes}, indent=1)
    cells = _cells(probes)
    columns = sorted({col for _, col in cells})
    rows = [src for src in pods if any((src, c) in cells for c in columns)]
    if output == "md":
        out = ["| client \\ Service port | " + " | ".join(map(md_code, columns)) + " |",
               "|---" * (len(columns) + 1) + "|"]
        out += [f"| {md_code(r)} | " + " | ".join(_word(*cells[(r, c)]) if (r, c) in cells else "–" for c in columns)
                + " |" for r in rows]
        return "\n".join(out)
    width = max([len(r) for r in rows] + [6])
    lines = []
    for i, c in enumerate(columns):
        lines.append(f"[{i}] {plain(c)}")
    lines.append(" " * width + "  " + "  ".join(f"[{i}]".ljust(12) for i in range(len(columns))))
    for r in rows:
        lines.append(plain(r).ljust(width) + "  " + "  ".join(
            (_word(*cells[(r, c)]) if (r, c) in cells else "-").ljust(12) for c in columns))
    return inert("\n".join(lines)) if rows else "no Service has endpoints in the input"



def _from_outside(cluster: Cluster, src: Endpoint, svc: Service, port: int | str | None, protocol: str | None,
                  opts: Options, outside: Outside) -> list[ServiceVerdict]:
    if outside.via not in VIAS:
        raise QueryError(f"--via {outside.via!r}: expected {', '.join(VIAS)}")
    if src.ip is None or src.pod is not None:
        raise QueryError("--via is for clients outside the cluster: give SRC as an address that is no pod's")
    nodes = receiving_nodes(cluster, outside, src.ip.version)
    return [check_external(cluster, src.ip, svc, sp, outside.via, name, ip, opts)
            for sp in ports(svc, port, protocol) for name, ip in nodes]


def receiving_nodes(cluster: Cluster, outside: Outside, version: int) -> list[tuple[str, IPAddress]]:
    """(name, address of the client's family) of each node the connection may enter on."""
    known = {n.name: n for n in cluster.nodes}
    if outside.node_ip is not None:
        if len(outside.nodes) != 1:
            raise QueryError("--node-ip needs exactly one --node")
        try:
            return [(outside.nodes[0], ipaddress.ip_address(outside.node_ip))]
        except ValueError:
            raise QueryError(f"--node-ip {outside.node_ip!r}: not an IP address") from None
    names = list(outside.nodes) or sorted(known)
    if not names:
        raise QueryError("the input has no Node objects: give --node NAME --node-ip ADDRESS (the node the "
                         "connection enters on)")
    out = []
    for name in names:
        if name not in known:
            raise QueryError(f"--node {name}: no such Node in the input (give --node-ip too)")
        ip = known[name].ip(version)
        if ip is None:
            raise QueryError(f"Node {name} has no IPv{version} InternalIP or ExternalIP")
        out.append((name, ip))
    return out
