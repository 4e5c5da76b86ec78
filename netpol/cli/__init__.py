"""The `netpol` command line. Each face of netpol registers its commands from its own module."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from netpol import __version__
from netpol.errors import NetpolError
from netpol.escape import inert, plain

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Kubernetes NetworkPolicy: enforce with nftables, check and lint offline.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netpol {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Kubernetes NetworkPolicy: enforce with nftables, check and lint offline."""


def fail(message: str, code: int = 2) -> None:
    typer.echo(inert(f"netpol: error: {plain(message)}"), err=True)
    raise typer.Exit(code)


def _name_metavars(cmd) -> None:
    """Help shows `--port PORT`, not the parameter's Python type (`<str>`, `<list[str]>`)."""
    for p in cmd.params:
        if getattr(p, "is_flag", False):
            continue
        if p.metavar is None or str(p.metavar).startswith("<"):
            p.metavar = (p.name or "value").upper().replace("_", "-")
    for sub in getattr(cmd, "commands", {}).values():
        _name_metavars(sub)


def command():
    """The click command `netpol` runs (the entry point's; tests may call `app` directly)."""
    cmd = typer.main.get_command(app)
    _name_metavars(cmd)
    return cmd


def main() -> None:
    try:
        command()(standalone_mode=True)
    except NetpolError as exc:  # errors outside a command body (e.g. during option parsing)
        typer.echo(inert(f"netpol: error: {plain(str(exc))}"), err=True)
        sys.exit(2)


# Each face registers its commands on `app` when imported (they need `app`, so they come last), in
# the order `--help` lists them.
for _face in ("query", "enforce", "lab", "lint", "agent", "review", "tenants"):
    importlib.import_module(f"netpol.cli.{_face}")
