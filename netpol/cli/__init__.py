"""The `netpol` command line. Each face of netpol registers its commands from its own module."""

from __future__ import annotations

import sys

import typer

from netpol.errors import NetpolError
from netpol.escape import inert, plain

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Kubernetes NetworkPolicy: enforce with nftables, check and lint offline.")


def fail(message: str, code: int = 2) -> None:
    typer.echo(inert(f"netpol: error: {plain(message)}"), err=True)
    raise typer.Exit(code)


def _register() -> None:
    from netpol.cli import query  # noqa: F401  (commands register on import)
    for optional in ("enforce", "lab", "lint", "agent", "review"):
        try:
            __import__(f"{__name__}.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{optional}":
                raise


def main() -> None:
    _register()
    try:
        app(standalone_mode=True)
    except NetpolError as exc:  # errors outside a command body (e.g. during option parsing)
        typer.echo(inert(f"netpol: error: {plain(str(exc))}"), err=True)
        sys.exit(2)
