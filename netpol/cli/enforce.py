"""`netpol render` and `netpol enforce`: the ruleset for a node, and putting it into a kernel.

Input is loaded, compiled and rendered in full before the kernel is touched, so bad input
changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Annotated

import typer

from netpol.agent.failmode import parse_cidrs
from netpol.cli import agent, app
from netpol.cli.common import Context, Filenames, IpblockPods, Kubeconfig, load_input, options, user_errors
from netpol.errors import NetpolError
from netpol.escape import inert, plain
from netpol.k8s.model import Cluster, IPNetwork
from netpol.nft.plan import Plan, compile_plan
from netpol.nft.render import TABLE_NAME, render, to_json
from netpol.nft.revoke import ESTABLISHED
from netpol.nft.ruleset import Ruleset

Node = Annotated[str | None, typer.Option(
    "--node", envvar="NODE_NAME",
    help="Enforce for the pods of this node (spec.nodeName; default $NODE_NAME); unset: every pod.")]
Table = Annotated[str, typer.Option("--table", help="Name of netpol's own inet table.")]


def _table(name: str) -> str:
    if not TABLE_NAME.fullmatch(name):
        raise NetpolError(f"--table {name!r}: expected letters, digits and '_' (at most 64), not starting "
                          "with a digit")
    return name


def _plan(filename: list[str] | None, kubeconfig: str | None, context: str | None, node: str | None,
          ipblock_pods: str) -> Plan:
    return _compiled(filename, kubeconfig, context, node, ipblock_pods)[1]


def _compiled(filename: list[str] | None, kubeconfig: str | None, context: str | None, node: str | None,
              ipblock_pods: str, pod_cidrs: tuple[IPNetwork, ...] | None = None) -> tuple[Cluster, Plan]:
    opts = options(ipblock_pods)
    cluster = load_input(filename, kubeconfig, context)
    return cluster, compile_plan(cluster, node, opts, pod_cidrs)


@contextlib.contextmanager
def _kernel_errors() -> Iterator[None]:
    """Without CAP_NET_ADMIN the kernel says EPERM: say what to do. (What nft or a netns refuses is
    already a NetpolError, reported like any other.)"""
    try:
        yield
    except PermissionError as exc:
        raise NetpolError(f"{exc}: netpol enforce needs root (CAP_NET_ADMIN)") from None


@app.command("render")
def render_cmd(filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
               node: Node = None, table: Table = "netpol",
               output: Annotated[str, typer.Option("-o", "--output", help="nft or json")] = "nft",
               ipblock_pods: IpblockPods = "true") -> None:
    """Print the nftables table that `enforce` would apply (nft syntax or libnftables JSON)."""
    with user_errors():
        if output not in ("nft", "json"):
            raise NetpolError(f"-o {output!r}: expected nft or json")
        name = _table(table)
        plan = _plan(filename, kubeconfig, context, node, ipblock_pods)
        text = json.dumps(to_json(plan, name), indent=1) if output == "json" else render(plan, name).script()
    typer.echo(text.rstrip("\n"))


def summary(plan: Plan, rs: Ruleset) -> str:
    elements = sum(len(e) for e in rs.elements.values())
    return (f"{len(plan.pods)} pods ({len(plan.enforced)} isolated), {len(plan.policies)} policies, "
            f"{len(rs.elements)} sets, {elements} elements")


def enforce(filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
            node: Node = None,
            netns: Annotated[str | None, typer.Option(
                "--netns", help="Network namespace (name under /run/netns, or a path); omitted: this one.")] = None,
            table: Table = "netpol",
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]
            = False,
            delete: Annotated[bool, typer.Option("--delete", help="Remove netpol's table, and only it.")] = False,
            ipblock_pods: IpblockPods = "true",
            watch: Annotated[bool, typer.Option(
                "--watch", help="Keep enforcing as the node agent, from the live cluster, until SIGTERM.")] = False,
            debounce: agent.Debounce = 0.1, resync_period: agent.ResyncPeriod = 60.0,
            fail_mode: agent.FailMode = "closed", pod_cidr: agent.PodCidr = None,
            cleanup_on_exit: agent.CleanupOnExit = False, metrics_addr: agent.MetricsAddr = None,
            log_format: agent.LogFormat = "text", log_level: agent.LogLevel = "info",
            log_denied: agent.LogDenied = False, audit: agent.Audit = False,
            established: Annotated[str, typer.Option(
                "--established", help="revoke: cut established connections the policies no longer allow (marked "
                                      "in conntrack, dropped both ways); keep: let them run.")] = "revoke",
            output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text") -> None:
    """Apply the policies to this kernel once, in one nftables transaction; with --watch, keep doing so."""
    w = agent.WatchOptions(debounce, resync_period, fail_mode, cleanup_on_exit, metrics_addr,
                           log_format, log_level, log_denied, audit)
    with user_errors():
        if not watch and w.given():
            raise NetpolError(f"the node agent's options need --watch (got {w.given()[0]})")
        if watch and (filename or dry_run or delete):
            raise NetpolError("--watch reads the live cluster and runs until stopped: "
                              "not with -f/--filename, --dry-run or --delete")
    if watch:
        return agent.watch(w, node=node, netns=netns, table=table, kubeconfig=kubeconfig, context=context,
                           ipblock_pods=ipblock_pods, established=established, pod_cidrs=agent.split_cidrs(pod_cidr))
    with user_errors():
        name = _table(table)
        where = f" in netns {netns}" if netns else ""
        if established not in ESTABLISHED:
            raise NetpolError(f"--established {established!r}: expected revoke or keep")
        if output not in ("text", "json"):
            raise NetpolError(f"-o {output!r}: expected text or json")
        if delete:
            with _kernel_errors():
                from netpol.nft.apply import Enforcer
                gone = Enforcer(netns).delete(name)
            typer.echo(f"inet {name}{where}: {'deleted' if gone else 'not present'}")
            return
        cidrs = parse_cidrs(agent.split_cidrs(pod_cidr)) or None  # None: the Node's, if in the input
        cluster, plan = _compiled(filename, kubeconfig, context, node, ipblock_pods, cidrs)
        rs = render(plan, name)
        with _kernel_errors():
            from netpol.nft.apply import Enforcer
            from netpol.nft.revoke import revoke
            enforcer = Enforcer(netns)
            if dry_run:
                changes = str(enforcer.plan(rs))
                cuts = revoke(netns, cluster, node, options(ipblock_pods), dry_run=True)
                return _report(name, where, plan, rs, changes, cuts, output, dry=True)
            start = time.monotonic()
            result = enforcer.apply(rs)
            ms = (time.monotonic() - start) * 1000
            cuts = revoke(netns, cluster, node, options(ipblock_pods)) if established == "revoke" else []
    change = {"none": "no change", "elements": f"elements +{result.added} -{result.removed}",
              "full": "table replaced"}[result.kind]
    _report(name, where, plan, rs, f"{change} in {ms:.0f} ms", cuts, output, dry=False)


def _report(name: str, where: str, plan: Plan, rs: Ruleset, change: str, cuts: list, output: str, dry: bool) -> None:
    """What enforce did (or would do), and the established connections it cut (or would cut)."""
    if output == "json":
        typer.echo(json.dumps({"table": name, "dry_run": dry, "pods": len(plan.pods), "isolated": len(plan.enforced),
                               "policies": len(plan.policies), "change": change,
                               "would_cut" if dry else "cut": [c.to_json() for c in cuts]}, indent=1))
        return
    verb = "would cut" if dry else "cut"
    head = f"{summary(plan, rs)}\n{change}" if dry else f"enforced inet {name}{where}: {summary(plan, rs)}; {change}"
    lines = [head, f"{verb} {len(cuts)} established connection{'s' if len(cuts) != 1 else ''}"
             + (":" if cuts else "")]
    lines += [f"  {inert(plain(str(c)))}" for c in cuts[:50]]
    if len(cuts) > 50:
        lines.append(f"  ... and {len(cuts) - 50} more (-o json lists them all)")
    typer.echo("\n".join(lines))


app.command()(enforce)
app.command("agent")(agent.alias_with_watch(enforce))
