"""The node agent's half of `netpol enforce`: `--watch` and its options, and `netpol agent`, a plain
alias of `netpol enforce --watch` (the same command, with --watch set).

One command, so both spellings take the same options, parsed once.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from netpol.cli.common import options, user_errors
from netpol.errors import NetpolError

Debounce = Annotated[float, typer.Option("--debounce", help="--watch: seconds to gather events into one batch.")]
ResyncPeriod = Annotated[float, typer.Option(
    "--resync-period", help="--watch: seconds between drift checks of the live table.")]
FailMode = Annotated[str, typer.Option(
    "--fail-mode", help="--watch: closed: drop new pod connections until the first sync; open: allow.")]
PodCidr = Annotated[list[str] | None, typer.Option(
    "--pod-cidr", envvar="POD_CIDRS", help="This node's pod CIDR (repeatable or comma-separated; default: the "
    "Node's spec.podCIDRs when the input has it): addresses in it that no known pod holds yet are dropped until "
    "programmed; --watch's closed fail mode drops it (default: every connection the node does not send).")]


def split_cidrs(given: list[str] | None) -> tuple[str, ...]:
    return tuple(c.strip() for item in given or () for c in item.split(",") if c.strip())
CleanupOnExit = Annotated[bool, typer.Option(
    "--cleanup-on-exit", help="--watch: delete the table on SIGTERM (default: keep enforcing).")]
MetricsAddr = Annotated[str | None, typer.Option(
    "--metrics-addr", help="--watch: HOST:PORT for /metrics, /readyz and /healthz (default: none).")]
LogFormat = Annotated[str, typer.Option("--log-format", help="--watch: json or text.")]
LogLevel = Annotated[str, typer.Option("--log-level", help="--watch: debug, info, warning or error.")]
LogDenied = Annotated[bool, typer.Option(
    "--log-denied", help="--watch: kernel log (rate-limited) of new connections a policy denies.")]
Audit = Annotated[bool, typer.Option("--audit", help="--watch: log and count what policies deny, but let it pass.")]


@dataclass(frozen=True)
class WatchOptions:
    """The agent-only options, with their defaults (given without --watch, they are an error)."""

    debounce: float = 0.1
    resync_period: float = 60.0
    fail_mode: str = "closed"
    cleanup_on_exit: bool = False
    metrics_addr: str | None = None
    log_format: str = "text"
    log_level: str = "info"
    log_denied: bool = False
    audit: bool = False

    def given(self) -> list[str]:
        """The flags set away from their defaults."""
        return ["--" + name.replace("_", "-") for name, value in vars(self).items()
                if value != getattr(WatchOptions, name)]


def watch(w: WatchOptions, *, node: str | None, netns: str | None, table: str, kubeconfig: str | None,
          context: str | None, ipblock_pods: str, established: str = "revoke", pod_cidrs: tuple[str, ...] = ()) -> None:
    """Keep this node's table in step with the cluster, until SIGTERM."""
    from netpol.agent import AgentConfig, run
    with user_errors():
        if w.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise NetpolError(f"--log-level {w.log_level!r}: expected debug, info, warning or error")
        cfg = AgentConfig(node=node, kubeconfig=kubeconfig, context=context, netns=netns, table=table,
                          debounce=w.debounce, resync_period=w.resync_period, fail_mode=w.fail_mode,  # type: ignore[arg-type]
                          pod_cidrs=pod_cidrs, cleanup_on_exit=w.cleanup_on_exit, metrics_addr=w.metrics_addr,
                          log_format=w.log_format, log_level=w.log_level,  # type: ignore[arg-type]
                          log_denied=w.log_denied, audit=w.audit, established=established,
                          options=options(ipblock_pods)).check()
        code = run(cfg)
    raise typer.Exit(code)


ONCE_ONLY = ("filename", "dry_run", "delete", "output")


def alias_with_watch(enforce: Callable[..., Any]) -> Callable[..., Any]:
    """`netpol agent`: enforce with --watch set, without the options that only a single run has."""
    hints = typing.get_type_hints(enforce, include_extras=True)  # resolved where enforce is defined
    sig = inspect.signature(enforce)
    params = [p.replace(annotation=hints[name]) for name, p in sig.parameters.items()
              if name not in ("watch", *ONCE_ONLY)]

    @functools.wraps(enforce)
    def agent(**kwargs: Any) -> Any:
        return enforce(watch=True, **kwargs)

    agent.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    agent.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    agent.__doc__ = "The node agent: `netpol enforce --watch` (keeps this node's table in step, until SIGTERM)."
    return agent
