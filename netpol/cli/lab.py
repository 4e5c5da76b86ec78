"""`netpol lab`: the cluster as real network namespaces on this kernel, to prove enforcement."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netpol.cli import app
from netpol.cli.common import Context, Filenames, IpblockPods, Kubeconfig, load_input, options, user_errors
from netpol.cli.query import port_queries
from netpol.errors import LabError
from netpol.lab import topology
from netpol.lab.probe import Probe
from netpol.lab.probe import probe as run_probes
from netpol.lab.verify import extra_ports, hosts_for, lab_pods, verify_services
from netpol.lab.verify import verify as run_verify

lab_app = typer.Typer(no_args_is_help=True, help="The cluster as real network namespaces on this kernel (root).")
app.add_typer(lab_app, name="lab")

Prefix = Annotated[str, typer.Option("--prefix", help="Name prefix of the lab's namespaces and links.")]
Ports = Annotated[list[str] | None, typer.Option("--port", "-p", help="Port to probe; repeatable.")]
Protocols = Annotated[list[str] | None, typer.Option("--protocol", help="TCP or UDP; repeatable.")]
Output = Annotated[str, typer.Option("-o", "--output", help="json or text")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each probe.")]


@lab_app.command("up")
def up(filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
       port: Ports = None, protocol: Protocols = None, prefix: Prefix = "nplab") -> None:
    """One namespace per pod, routed through one node namespace, a server on every port."""
    with user_errors():
        cluster = load_input(filename, kubeconfig, context)
        pods = lab_pods(cluster)
        state = topology.up(hosts_for(pods), prefix, extra_ports(port_queries(port, protocol)))
    typer.echo(f"lab {prefix}: {len(state.hosts)} pods up; node namespace {state.node_netns}")


@lab_app.command("probe")
def probe(port: Ports = None, protocol: Protocols = None, output: Output = "json", prefix: Prefix = "nplab",
          timeout: Timeout = 1.0) -> None:
    """Real connections for every ordered pair, printed as the matrix JSON contract."""
    with user_errors():
        state = topology.load_state(prefix)
        if state is None:
            raise LabError(f"no lab {prefix!r} is up: run `netpol lab up -f ...` first")
        queries = port_queries(port, protocol)
        keys = sorted(state.hosts)
        plan = [Probe(s, d, q.port, q.protocol) for q in queries for s in keys for d in keys
                if isinstance(q.port, int)]
        seen = run_probes(state, plan, timeout=timeout)
    probes = [{"src": p.src, "dst": p.dst, "port": p.port, "protocol": p.protocol, "allowed": seen[p]}
              for p in plan if p in seen]
    if output == "json":
        typer.echo(json.dumps({"pods": keys, "probes": probes}, indent=1))
    else:
        for p in probes:
            typer.echo(f"{p['src']} -> {p['dst']} {p['protocol']}/{p['port']}: "
                       f"{'allowed' if p['allowed'] else 'denied'}")


@lab_app.command("verify")
def verify(filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
           port: Ports = None, protocol: Protocols = None, output: Output = "text", prefix: Prefix = "nplab",
           timeout: Timeout = 1.0, keep: Annotated[bool, typer.Option("--keep", help="Leave the lab up.")] = False,
           ipblock_pods: IpblockPods = "true",
           services: Annotated[bool, typer.Option(
               "--services", help="Probe every Service port through real DNAT, pinned to each backend in turn, "
                                  "on the pod path and on the node path (IPVS's).")] = False) -> None:
    """Up, enforce, probe, compare with the evaluator, down. Exit 1 on any disagreement."""
    with user_errors():
        cluster = load_input(filename, kubeconfig, context)
        if services:
            if port or protocol:
                raise LabError("--services probes every Service port: leave out --port and --protocol")
            result = verify_services(cluster, options(ipblock_pods), prefix, timeout, keep)
        else:
            result = run_verify(cluster, port_queries(port, protocol), options(ipblock_pods), prefix, timeout, keep)
    if output == "json":
        typer.echo(json.dumps(result.contract(), indent=1))
    else:
        for d in result.disagreements:
            via = f" backend {d['backend']} ({d['path']} path)" if "backend" in d else ""
            typer.echo(f"DISAGREE {d['src']} -> {d['dst']} {d['protocol']}/{d['port']}{via}: kernel "
                       f"{'allowed' if d['kernel'] else 'denied'}, evaluator "
                       f"{'allowed' if d['evaluator'] else 'denied'}")
        typer.echo(f"{len(result.probes)} probes over {len(result.pods)} pods: "
                   f"{len(result.disagreements)} disagreement(s)")
    raise typer.Exit(1 if result.disagreements else 0)


@lab_app.command("down")
def down(prefix: Prefix = "nplab") -> None:
    """Remove everything the lab created (also after a crash)."""
    with user_errors():
        topology.down(prefix)
    typer.echo(f"lab {prefix}: down")
