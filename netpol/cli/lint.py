"""`netpol lint`: find mistakes in NetworkPolicies before they reach a cluster."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from netpol.cli import app
from netpol.cli.common import as_yaml, options, paint, user_errors
from netpol.errors import NetpolError
from netpol.lint import lint as run_lint
from netpol.lint import load_settings
from netpol.lint.checks import all_checks
from netpol.lint.engine import Report
from netpol.lint.output import FORMATS, explain


@app.command()
def lint(paths: Annotated[list[str] | None, typer.Argument(
             help="Files or folders (recursive) of Kubernetes objects, or - for stdin.", show_default=False)] = None,
         filename: Annotated[list[str] | None, typer.Option(
             "-f", "--filename", help="More input, as PATH; repeatable.")] = None,
         output: Annotated[str, typer.Option("-o", "--output", help="text, json, yaml, sarif or github")] = "text",
         fail_on: Annotated[str | None, typer.Option(
             "--fail-on", metavar="error|warning|info", help="Exit 1 on findings this severe or worse [error].",
             show_default=False)] = None,
         select: Annotated[str | None, typer.Option(
             "--select", metavar="CODES", help="Only these checks: codes or prefixes, comma-separated; ALL.")] = None,
         ignore: Annotated[str | None, typer.Option(
             "--ignore", metavar="CODES", help="Skip these checks (added to the configured ignores).")] = None,
         tenant_label: Annotated[str | None, typer.Option(
             "--tenant-label", metavar="KEY", help="Namespace label naming tenants; turns NP011 on.")] = None,
         ipblock_pods: Annotated[str | None, typer.Option(
             "--ipblock-pods", metavar="true|false", help="Whether ipBlock peers match pod addresses [true].",
             show_default=False)] = None,
         config: Annotated[str | None, typer.Option(
             "--config", metavar="PYPROJECT", help="Settings file (default: nearest pyproject.toml with "
             "[tool.netpol.lint]).")] = None,
         explain_code: Annotated[str | None, typer.Option(
             "--explain", metavar="CODE", help="Explain a check and exit.")] = None,
         context: Annotated[list[str] | None, typer.Option(
             "--context", metavar="PATH", help="Also read these files or folders (repeatable) for the pods, "
             "namespaces and policies the checks compare with, but report only on PATH... (a pre-commit "
             "hook's changed files).")] = None) -> None:
    """Lint NetworkPolicies (with the pods and namespaces given). Exit 0 clean, 1 findings, 2 input error."""
    with user_errors():
        if explain_code is not None:
            code = explain_code.strip().upper()
            if code not in all_checks():
                raise NetpolError(f"--explain {explain_code!r}: no such check (see `netpol lint --explain NP001`..)")
            typer.echo(explain(code))
            raise typer.Exit(0)
        if output not in FORMATS and output != "yaml":
            raise NetpolError(f"-o {output!r}: expected {', '.join(FORMATS)} or yaml")
        inputs = list(paths or []) + list(filename or [])
        if not inputs:
            raise NetpolError("no input: give PATH... (files, folders or -)")
        settings = load_settings(config).with_cli(
            select, ignore, fail_on, tenant_label, None if ipblock_pods is None else options(ipblock_pods).ipblock_pods)
        if context:
            report = run_lint(list(dict.fromkeys([*context, *inputs])), settings)
            report = Report([f for f in report.findings if _within(f.file, inputs)], report.timings)
        else:
            report = run_lint(inputs, settings)
    text = as_yaml(FORMATS["json"](report.findings)) if output == "yaml" else FORMATS[output](report.findings)
    typer.echo(paint(text) if output == "text" else text)
    raise typer.Exit(report.exit_code(settings.fail_on))


def _within(file: str, paths: list[str]) -> bool:
    """Whether a finding's file is one of the paths, or inside one of them."""
    here = os.path.normpath(file)
    for p in paths:
        p = os.path.normpath(p)
        if here == p or here.startswith(p.rstrip(os.sep) + os.sep):
            return True
    return False
