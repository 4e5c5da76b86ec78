"""`netpol check` to a Service and `netpol matrix --services`: answers per backend, after DNAT."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import typer

from netpol.escape import inert, md_code, plain
from netpol.evaluate.decide import SideVerdict
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.services import ServiceVerdict, check_service, ports
from netpol.k8s.model import Cluster, Options, Pod, Service


def _status(v: ServiceVerdict) -> str:
    if not v.results:
        return "NO ENDPOINTS"
    if v.partial:
        return f"PARTIAL {v.allowed_count} of {len(v.results)} backends"
    return "ALLOWED" if v.allowed else "DENIED"


def _side(name: str, d: SideVerdict) -> str:
    return f"      {name}: " + "\n               ".join(map(plain, d.reasons))


def _text(v: ServiceVerdict) -> str:
    sp = v.port
    where = f" ({v.address})" if v.address is not None else ""
    target = f" -> targetPort {sp.target}" if sp.target != sp.port else ""
    lines = [f"{_status(v)}: {plain(v.src)} -> {plain(v.service.key)}{where} {plain(sp.label)}{target}"]
    for r in v.results:
        b = r.backend
        lines.append(f"  {plain(b.label)} ({b.address}) {sp.protocol}/{b.port}: "
                     f"{'ALLOWED' if r.verdict.allowed else 'DENIED'}")
        lines += [_side("egress ", r.verdict.egress), _side("ingress", r.verdict.ingress)]
    lines += [f"  note: {plain(n)}" for n in v.notes]
    return inert("\n".join(lines))


def check_through(cluster: Cluster, src: Endpoint, svc: Service, dst_text: str, port: int | str | None,
                  protocol: str | None, output: str, opts: Options) -> None:
    """Print the answer for every Service port asked; exit 0 only when every backend of each allows."""
    try:
        address = ipaddress.ip_address(dst_text)
    except ValueError:
        address = None
    verdicts = [check_service(cluster, src, svc, sp, address, opts) for sp in ports(svc, port, protocol)]
    if output == "json":
        docs = [v.contract() for v in verdicts]
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        typer.echo("\n".join(_text(v) for v in verdicts))
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

