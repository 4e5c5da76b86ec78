"""`netpol check` and `netpol matrix`: offline answers from the evaluator."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netpol.cli import app, streams
from netpol.cli.common import (
    Context,
    Filenames,
    IpblockPods,
    Kubeconfig,
    as_yaml,
    in_namespaces,
    load_input,
    options,
    paint,
    side_lines,
    user_errors,
)
from netpol.cli.connsets import print_connection_sets
from netpol.cli.services import Outside, check_through, proxied, render, service_probes
from netpol.errors import QueryError
from netpol.escape import inert, md_code, plain
from netpol.evaluate.conns import MAX_PORT, ConnSet, connections, port_edges
from netpol.evaluate.decide import Verdict, decide
from netpol.evaluate.matrix import Matrix, PortQuery, compute, resolve_port
from netpol.evaluate.resolve import Endpoint, endpoint
from netpol.evaluate.services import find_service
from netpol.k8s.model import PROTOCOLS


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
    if dst.pod is None:
        raise QueryError(f"--port {name}: {dst.label} is an address, not a pod; a port name needs a pod")
    number = resolve_port(dst.pod, PortQuery(name, protocol))
    if number is None:
        raise QueryError(f"--port {name}: {dst.label} declares no {protocol} port named {name!r}")
    return number


def port_queries(port: list[str] | None, protocol: list[str] | None) -> list[PortQuery]:
    """Every --port with every --protocol (defaults: 80, TCP; `matrix` without either shows connection sets)."""
    protos = [_protocol(p) for p in (protocol or ["TCP"])]
    return [PortQuery(_port(p), proto) for p in (port or ["80"]) for proto in protos]


def _text(v: Verdict, allowed: bool, conns: ConnSet | None = None, why: str = "") -> str:
    src, dst = plain(v.src), plain(v.dst)
    head = f"{'ALLOWED' if allowed else 'DENIED'}: {src} -> {dst} {v.protocol}/{v.port}"
    if conns is not None:
        head = f"{'ALLOWED' if allowed else 'DENIED'}: {src} -> {dst}: {conns}\n  at {v.protocol}/{v.port} ({why}):"
    indent = "\n           "
    return inert("\n".join([head, "  egress:  " + indent.join(side_lines(v.egress)),
                            "  ingress: " + indent.join(side_lines(v.ingress))]))


@app.command()
def check(src: Annotated[str, typer.Argument(help="ns/pod, ns/kind/name or an IP address")],
          dst: Annotated[str, typer.Argument(
              help="ns/pod, ns/kind/name, ns/service/name (or ns/svc/name) or an IP address (a Service's: "
                   "that Service)")],
          port: Annotated[str | None, typer.Option(
              "--port", "-p", help="Port number or the destination's port name (a Service's port number or "
                                   "name); omitted: every port.")] = None,
          protocol: Annotated[str | None, typer.Option(
              "--protocol", help="TCP, UDP or SCTP (default TCP; without --port: any protocol).")] = None,
          output: Annotated[str, typer.Option("-o", "--output", help="text, json or yaml")] = "text",
          filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
          ipblock_pods: IpblockPods = "true",
          via: Annotated[str | None, typer.Option(
              "--via", help="To a Service from outside the cluster: nodeport, loadbalancer or externalip.")] = None,
          node: Annotated[list[str] | None, typer.Option(
              "--node", help="--via: the node the connection enters on (repeatable; default: every Node).")] = None,
          node_ip: Annotated[str | None, typer.Option(
              "--node-ip", help="--via: that node's address, when the input has no Node object for it.")] = None,
          ) -> None:
    """Can SRC reach DST on a port, and which policy and rule decided? Exit 0 allowed, 1 denied (or, to a
    Service, denied or allowed by only some backends)."""
    with user_errors():
        if output not in ("text", "json", "yaml"):
            raise QueryError(f"-o {output!r}: expected text, json or yaml")
        proto = _protocol(protocol) if protocol is not None else None
        number = _port(port) if port is not None else None
        opts = options(ipblock_pods)
        cluster = load_input(filename, kubeconfig, context)
        s = endpoint(cluster, src)
        svc = find_service(cluster, dst)
        outside = Outside(via, tuple(node or ()), node_ip) if via is not None else None
        if svc is not None:
            return check_through(cluster, s, svc, dst, number, proto, output, opts, outside)
        if outside is not None or node or node_ip:
            raise QueryError("--via, --node and --node-ip are for connections to a Service (ns/service/name)")
        d = endpoint(cluster, dst)
        conns, why = None, ""
        if number is None:  # every port: the verdict shown is at the first allowed port, if any
            conns = connections(cluster, s, d, opts)
            proto, number, why = _where_to_show(cluster, s, d, conns, proto)
            allowed = any(conns.ranges_of(p) for p in ([proto] if protocol is not None else PROTOCOLS))
        elif isinstance(number, str):
            number = _resolve_named(d, number, proto or "TCP")
        verdict = decide(cluster, s, d, number, proto or "TCP", opts)
    doc = verdict.contract()
    if conns is not None:
        doc.update(port=None, allowed=allowed, connections=str(conns))
    if output == "text":
        typer.echo(paint(_text(verdict, doc["allowed"], conns, why)))
    else:
        text = json.dumps(doc, indent=2)
        typer.echo(as_yaml(text) if output == "yaml" else text)
    raise typer.Exit(0 if doc["allowed"] else 1)


def _where_to_show(cluster, src: Endpoint, dst: Endpoint, conns: ConnSet, protocol: str | None
                   ) -> tuple[str, int, str]:
    """Where to explain the verdict when no port was asked, and why there: the first allowed port (TCP
    first), else the first port a relevant rule names, so the reason speaks of peers rather than of
    port 1."""
    protos = [protocol] if protocol else ["TCP", "UDP", "SCTP"]
    for proto in protos:
        if conns.ranges_of(proto):
            return proto, conns.ranges_of(proto)[0][0], "the first allowed port"
    for proto in protos:
        named = [e for e in port_edges(cluster, src, dst, proto) if 1 < e <= MAX_PORT]
        if named:
            return proto, named[0], "nothing is allowed; the first port a rule of these pods names"
    return protos[0], 1, "nothing is allowed and no rule names a port"


def _render_text(m: Matrix) -> str:
    blocks = []
    width = max([len(p) for p in m.pods] + [4])
    for q, grid in zip(m.queries, m.allowed, strict=False):
        lines = [f"{q.protocol}/{q.port}  (. allowed, X denied; rows are sources, columns destinations)"]
        cols = [str(i) for i in range(len(m.pods))]
        lines.append(" " * (width + 1) + " ".join(c.rjust(2) for c in cols))
        for i, (src, row) in enumerate(zip(m.pods, grid, strict=False)):
            lines.append(f"{src.ljust(width)} " + " ".join(("." if a else "X").rjust(2) for a in row)
                         + f"   {i}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _render_md(m: Matrix) -> str:
    out = []
    for q, grid in zip(m.queries, m.allowed, strict=False):
        out.append(f"**{q.protocol}/{q.port}** (rows: sources, columns: destinations)\n")
        out.append("| src \\ dst | " + " | ".join(map(md_code, m.pods)) + " |")
        out.append("|---" * (len(m.pods) + 1) + "|")
        for src, row in zip(m.pods, grid, strict=False):
            out.append(f"| {md_code(src)} | " + " | ".join("✅" if a else "❌" for a in row) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n")


RENDERERS = {"text": _render_text, "md": _render_md}
PROBE_COLUMNS = ["src", "dst", "port", "protocol", "allowed"]
STREAMS = {  # the matrix contract, probe by probe
    "json": lambda m: streams.as_json(list(m.pods), "probes", m.iter_probes()),
    "yaml": lambda m: streams.as_yaml(list(m.pods), "probes", m.iter_probes()),
    "csv": lambda m: streams.as_csv(PROBE_COLUMNS, lambda p: [*(p[c] for c in PROBE_COLUMNS[:-1]),
                                                              str(p["allowed"]).lower()], m.iter_probes()),
}
READABLE = 500  # pods a text or md matrix may show: beyond, nobody reads it (and it would be huge)


@app.command()
def matrix(port: Annotated[list[str] | None, typer.Option("--port", "-p", help="Port or name; repeatable.")] = None,
           protocol: Annotated[list[str] | None, typer.Option("--protocol", help="Repeatable.")] = None,
           namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n", help="Repeatable.")] = None,
           output: Annotated[str, typer.Option("-o", "--output", help="text, json, yaml, csv or md")] = "text",
           filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
           ipblock_pods: IpblockPods = "true",
           workloads: Annotated[bool, typer.Option(
               "--workloads", help="Workload-level connections over every port, as np-guard lists them "
                                   "(-o txt, json, csv or md).")] = False,
           by: Annotated[str | None, typer.Option(
               "--by", metavar="namespace", help="With --workloads: namespace x namespace, each pair's union "
                                                 "of what its workloads may open.")] = None,
           focus: Annotated[str | None, typer.Option(
               "--focus", metavar="WORKLOAD", help="With --workloads: only connections into or out of this "
                                                   "workload (ns/name[Kind], ns/name or name).")] = None,
           focus_direction: Annotated[str | None, typer.Option(
               "--focus-direction", metavar="ingress|egress", help="With --focus: only into (ingress) or out "
                                                                   "of (egress) it.")] = None,
           services: Annotated[bool, typer.Option(
               "--services", help="Every pod to every Service port, per backend after DNAT (-p: Service ports "
                                  "by number or name; -o text, json or md).")] = False) -> None:
    """Every ordered pair of pods (and workloads), for each port and protocol; without --port, each
    pair's allowed connection set."""
    if services:
        return service_matrix(port, namespace, output, filename, kubeconfig, context, ipblock_pods)
    if workloads or by or focus or focus_direction:
        from netpol.cli.review import WorkloadView, workload_matrix
        return workload_matrix(bool(port or protocol), namespace, output, filename, kubeconfig, context,
                               ipblock_pods, WorkloadView(workloads, by, focus, focus_direction))
    with user_errors():
        if output not in RENDERERS and output not in STREAMS:
            hint = " (txt is for --workloads)" if output == "txt" else ""
            raise QueryError(f"-o {output!r}: expected text, json, yaml, csv or md{hint}")
        queries = port_queries(port, protocol) if port or protocol else []
        cluster = load_input(filename, kubeconfig, context)
        pods = in_namespaces(cluster, namespace)
        if output in RENDERERS and len(pods) > READABLE:
            raise QueryError(f"{len(pods)} pods: a {output} matrix of more than {READABLE} is unreadable; narrow "
                             "it with --namespace, list connections with --workloads, or write -o csv / -o json")
        if not queries:  # no port asked: each pair's allowed connection set, not a silent TCP/80
            return print_connection_sets(cluster, pods, options(ipblock_pods), output)
        result = compute(cluster, queries, pods, options(ipblock_pods))
    if output in STREAMS:
        return streams.write(STREAMS[output](result))
    typer.echo(RENDERERS[output](result))


def service_matrix(port: list[str] | None, namespace: list[str] | None, output: str, filename, kubeconfig,
                   context, ipblock_pods: str) -> None:
    with user_errors():
        if output not in ("text", "json", "md"):
            raise QueryError(f"-o {output!r}: expected text, json or md with --services")
        asked = [_port(p) for p in port] if port else None
        cluster = load_input(filename, kubeconfig, context)
        pods = [p for p in in_namespaces(cluster, namespace) if p.kind == "Pod" and p.ips]
        chosen = proxied(cluster)
        if not chosen:
            raise QueryError("no Service to show: the input has no Service (ExternalName ones are not proxied)")
        probes = list(service_probes(cluster, pods, chosen, asked, options(ipblock_pods)))
    typer.echo(render(probes, [p.key for p in pods], [s.key for s in chosen], output))
