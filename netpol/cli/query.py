"""`netpol check` and `netpol matrix`: offline answers from the evaluator."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Optional

import typer

from ..conns import ConnSet, connections
from ..decide import Verdict, decide
from ..errors import QueryError
from ..matrix import Matrix, PortQuery, compute
from ..model import PROTOCOLS
from ..resolve import Endpoint, endpoint
from . import app
from .common import Context, Filenames, IpblockPods, Kubeconfig, cluster_from, options, user_errors

Protocol = Annotated[str, typer.Option("--protocol", help="TCP, UDP or SCTP.")]


def _protocol(value: str) -> str:
    proto = value.upper()
    if proto not in PROTOCOLS:
        raise QueryError(f"--protocol {value!r}: expected TCP, UDP or SCTP")
    return proto


def _port(value: str) -> int | str:
    if value.isdigit():
        number = int(value)
        if not 1 <= number <= 65535:
            raise QueryError(f"--port {value}: out of range 1-65535")
        return number
    return value


def _resolve_named(dst: Endpoint, name: str, protocol: str) -> int:
    ports = [p for p in (dst.pod.named_port(name) if dst.pod else []) if p.protocol == protocol]
    if not ports:
        raise QueryError(f"--port {name}: {dst.label} declares no {protocol} port named {name!r}")
    return ports[0].port


def _text(v: Verdict, conns: ConnSet | None = None) -> str:
    head = f"{'ALLOWED' if v.allowed else 'DENIED'}: {v.src} -> {v.dst} {v.protocol}/{v.port}"
    if conns is not None:
        head = f"{'DENIED' if conns.empty else 'ALLOWED'}: {v.src} -> {v.dst}: {conns}\n" \
               f"  at {v.protocol}/{v.port}:"
    return "\n".join([head, f"  egress:  {v.egress.reason}", f"  ingress: {v.ingress.reason}"])


@app.command()
def check(src: Annotated[str, typer.Argument(help="ns/pod, ns/kind/name or an IP address")],
          dst: Annotated[str, typer.Argument(help="ns/pod, ns/kind/name or an IP address")],
          port: Annotated[Optional[str], typer.Option(
              "--port", "-p", help="Port number or the destination's port name; omitted: every port.")] = None,
          protocol: Protocol = "TCP",
          output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
          filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
          ipblock_pods: IpblockPods = "true") -> None:
    """Can SRC reach DST on a port, and which policy and rule decided? Exit 0 allowed, 1 denied."""
    with user_errors():
        if output not in ("text", "json"):
            raise QueryError(f"-o {output!r}: expected text or json")
        proto = _protocol(protocol)
        cluster = cluster_from(filename, kubeconfig, context)
        s, d = endpoint(cluster, src), endpoint(cluster, dst)
        opts = options(ipblock_pods)
        conns = None
        if port is None:  # every port: the verdict shown is at the first allowed port, if any
            conns = connections(cluster, s, d, opts)
            number = _first_port(conns, proto)
        else:
            number = _port(port)
            if isinstance(number, str):
                number = _resolve_named(d, number, proto)
        verdict = decide(cluster, s, d, number, proto, opts)
    doc = verdict.contract()
    if conns is not None:
        doc.update(port=None, allowed=not conns.empty, connections=str(conns))
    typer.echo(json.dumps(doc, indent=2) if output == "json" else _text(verdict, conns))
    raise typer.Exit(0 if doc["allowed"] else 1)


def _first_port(conns: ConnSet, protocol: str) -> int:
    ranges = dict(conns.ranges)
    for proto in [protocol] + sorted(ranges):
        if ranges.get(proto):
            return ranges[proto][0][0]
    return 1


def _render_text(m: Matrix) -> str:
    blocks = []
    width = max([len(p) for p in m.pods] + [4])
    for q, grid in zip(m.queries, m.allowed):
        lines = [f"{q.protocol}/{q.port}  (. allowed, X denied; rows are sources, columns destinations)"]
        cols = [str(i) for i in range(len(m.pods))]
        lines.append(" " * (width + 1) + " ".join(c.rjust(2) for c in cols))
        for i, (src, row) in enumerate(zip(m.pods, grid)):
            lines.append(f"{src.ljust(width)} " + " ".join(("." if a else "X").rjust(2) for a in row)
                         + f"   {i}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _render_csv(m: Matrix) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["src", "dst", "port", "protocol", "allowed"])
    for p in m.probes():
        w.writerow([p["src"], p["dst"], p["port"], p["protocol"], str(p["allowed"]).lower()])
    return buf.getvalue().rstrip("\n")


def _render_md(m: Matrix) -> str:
    out = []
    for q, grid in zip(m.queries, m.allowed):
        out.append(f"**{q.protocol}/{q.port}** (rows: sources, columns: destinations)\n")
        out.append("| src \\ dst | " + " | ".join(m.pods) + " |")
        out.append("|---" * (len(m.pods) + 1) + "|")
        for src, row in zip(m.pods, grid):
            out.append(f"| {src} | " + " | ".join("✅" if a else "❌" for a in row) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n")


RENDERERS = {"text": _render_text, "csv": _render_csv, "md": _render_md,
             "json": lambda m: json.dumps({"pods": list(m.pods), "probes": m.probes()}, indent=1)}


@app.command()
def matrix(port: Annotated[Optional[list[str]], typer.Option("--port", "-p", help="Port or name; repeatable.")] = None,
           protocol: Annotated[Optional[list[str]], typer.Option("--protocol", help="Repeatable.")] = None,
           namespace: Annotated[Optional[list[str]], typer.Option("--namespace", "-n", help="Repeatable.")] = None,
           output: Annotated[str, typer.Option("-o", "--output", help="text, json, csv or md")] = "text",
           filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
           ipblock_pods: IpblockPods = "true") -> None:
    """Every ordered pair of pods (and workloads), for each port and protocol."""
    with user_errors():
        if output not in RENDERERS:
            raise QueryError(f"-o {output!r}: expected text, json, csv or md")
        protos = [_protocol(p) for p in (protocol or ["TCP"])]
        queries = [PortQuery(_port(p), proto) for p in (port or ["80"]) for proto in protos]
        cluster = cluster_from(filename, kubeconfig, context)
        pods = [p for p in cluster.pods if not namespace or p.namespace in namespace]
        result = compute(cluster, queries, pods, options(ipblock_pods))
    typer.echo(RENDERERS[output](result))
