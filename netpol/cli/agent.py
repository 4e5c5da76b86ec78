"""`netpol enforce --watch` (also `netpol agent`): the node agent, keeping the kernel in step with the API.

`netpol enforce --watch [options]` hands its own options (--node, --netns, --table, --kubeconfig,
--context, --ipblock-pods) and everything else on its command line to `watch()`, which parses
them with the `agent` command below, so both spellings take the same options.
"""

from __future__ import annotations

from typing import Annotated

import typer

from netpol.cli import app
from netpol.cli.common import Context, IpblockPods, Kubeconfig, options, user_errors
from netpol.errors import NetpolError


def agent(
        kubeconfig: Kubeconfig = None, context: Context = None,
        node: Annotated[str | None, typer.Option(
            "--node", envvar="NODE_NAME", help="Enforce for this node's pods (default: $NODE_NAME; unset: every pod).")]
        = None,
        netns: Annotated[str | None, typer.Option("--netns", help="Network namespace to enforce in.")] = None,
        table: Annotated[str, typer.Option("--table", help="Name of netpol's own inet table.")] = "netpol",
        debounce: Annotated[float, typer.Option("--debounce", help="Seconds to gather events into one batch.")] = 0.1,
        resync_period: Annotated[float, typer.Option(
            "--resync-period", help="Seconds between drift checks of the live table.")] = 60.0,
        fail_mode: Annotated[str, typer.Option(
            "--fail-mode", help="closed: drop new forwarded pod connections until the first sync; open: allow.")]
        = "closed",
        pod_cidr: Annotated[list[str] | None, typer.Option(
            "--pod-cidr", envvar="POD_CIDRS", help="Pod CIDR the closed fail mode drops (repeatable; "
            "default: every forwarded connection).")] = None,
        cleanup_on_exit: Annotated[bool, typer.Option(
            "--cleanup-on-exit", help="Delete the table on SIGTERM (default: keep enforcing).")] = False,
        metrics_addr: Annotated[str | None, typer.Option(
            "--metrics-addr", help="HOST:PORT for /metrics, /readyz and /healthz (default: none).")] = None,
        log_format: Annotated[str, typer.Option("--log-format", help="json or text.")] = "text",
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
        log_denied: Annotated[bool, typer.Option(
            "--log-denied", help="Kernel log (rate-limited) of new connections a policy denies.")] = False,
        audit: Annotated[bool, typer.Option(
            "--audit", help="Log and count what policies deny, but let it pass.")] = False,
        ipblock_pods: IpblockPods = "true") -> None:
    """Keep this node's nftables table in step with the cluster, until SIGTERM (the node agent)."""
    from netpol.agent import AgentConfig, run
    with user_errors():
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise NetpolError(f"--log-level {log_level!r}: expected debug, info, warning or error")
        cidrs = tuple(c.strip() for item in pod_cidr or () for c in item.split(",") if c.strip())
        cfg = AgentConfig(node=node, kubeconfig=kubeconfig, context=context, netns=netns, table=table,
                          debounce=debounce, resync_period=resync_period, fail_mode=fail_mode,  # type: ignore[arg-type]
                          pod_cidrs=cidrs, cleanup_on_exit=cleanup_on_exit, metrics_addr=metrics_addr,
                          log_format=log_format, log_level=log_level, log_denied=log_denied,  # type: ignore[arg-type]
                          audit=audit, options=options(ipblock_pods)).check()
        code = run(cfg)
    raise typer.Exit(code)


app.command("agent")(agent)


def enforce_watch(extra: list[str], *, watch: bool, once_only: bool, node: str | None, netns: str | None,
                  table: str, kubeconfig: str | None, context: str | None, ipblock_pods: str) -> None:
    """`netpol enforce --watch ...`: enforce's own options plus the agent's, parsed by `agent`."""
    with user_errors():
        if not watch:
            raise NetpolError(f"unexpected argument {extra[0]!r} (the node agent's options need --watch)")
        if once_only:
            raise NetpolError("--watch reads the live cluster and runs until stopped: "
                              "not with -f/--filename, --dry-run or --delete")
    given = (("--node", node), ("--netns", netns), ("--table", table), ("--kubeconfig", kubeconfig),
             ("--context", context), ("--ipblock-pods", ipblock_pods))
    args = [a for flag, value in given if value is not None for a in (flag, value)]
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(agent)
    typer.main.get_command(single).main(args=args + list(extra), prog_name="netpol enforce --watch")
