"""`netpol diff`: what a change does to workload connectivity, for review in CI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from netpol.cli import app, pictures, streams
from netpol.cli.common import IpblockPods, as_yaml, in_namespaces, load_input, options, user_errors
from netpol.errors import QueryError
from netpol.evaluate import views
from netpol.evaluate.diff import RENDERERS, diff
from netpol.evaluate.listing import Listing, render_stream
from netpol.evaluate.workloads import connectivity


@app.command("diff")
def diff_command(
        old: Annotated[str, typer.Argument(help="The manifests before the change: a file or folder.")],
        new: Annotated[str, typer.Argument(help="The manifests after the change: a file or folder.")],
        output: Annotated[str, typer.Option("-o", "--output", help="text, json, yaml, md, dot, svg or html")] = "text",
        fail_on_added: Annotated[bool, typer.Option(
            "--fail-on-added", help="Exit 1 when the change allows anything that was denied.")] = False,
        ipblock_pods: IpblockPods = "true") -> None:
    """Connections between workloads (and external ranges) that the change adds, removes and changes."""
    with user_errors():
        if output not in RENDERERS and output not in ("yaml", *pictures.FORMATS):
            raise QueryError(f"-o {output!r}: expected text, json, yaml, md, dot, svg or html")
        opts = options(ipblock_pods)
        before, after = load_input([old], allow_empty=True), load_input([new], allow_empty=True)
        if not (before.pods or before.policies or after.pods or after.policies):
            raise QueryError(f"nothing to compare: neither {old} nor {new} holds pods, workloads or policies")
        result = diff(before, after, opts)
        if output in pictures.FORMATS:
            text = pictures.diff_picture(result, output)
        else:
            text = as_yaml(RENDERERS["json"](result)) if output == "yaml" else RENDERERS[output](result)
    typer.echo(text, nl=output not in pictures.FORMATS)
    raise typer.Exit(1 if fail_on_added and result.opens else 0)


@dataclass(frozen=True)
class WorkloadView:
    workloads: bool
    by: str | None = None
    focus: str | None = None
    direction: str | None = None

    def check(self) -> None:
        if not self.workloads:
            raise QueryError("--by, --focus and --focus-direction go with --workloads")
        if self.by not in (None, "namespace"):
            raise QueryError(f"--by {self.by!r}: expected namespace")
        if self.direction is not None and self.focus is None:
            raise QueryError("--focus-direction needs --focus WORKLOAD")
        if self.by and self.focus:
            raise QueryError("--by namespace and --focus: choose one view")


def workload_matrix(ports_given: bool, namespaces: list[str] | None, output: str, filename, kubeconfig,
                    context, ipblock_pods: str, view: WorkloadView = WorkloadView(True)) -> None:
    """`netpol matrix --workloads`: np-guard's `src => dst : connections` lines, or a view of them."""
    with user_errors():
        view.check()
        if output not in WORKLOAD_OUTPUTS:
            raise QueryError(f"-o {output!r}: expected {', '.join(WORKLOAD_OUTPUTS)} with --workloads")
        if ports_given:
            raise QueryError("--port/--protocol do not apply to --workloads: it lists every port and protocol")
        cluster = load_input(filename, kubeconfig, context)
        in_namespaces(cluster, namespaces, "pods or workloads")
        opts = options(ipblock_pods)
        full = connectivity(cluster, opts, namespaces=namespaces or None)
        result: Listing = full
        title = "Workload connectivity"
        if view.by:
            result, title = views.by_namespace(full), "Namespace connectivity"
        elif view.focus:
            result = views.focused(full, view.focus, view.direction)
            title = f"Connectivity of {result.focus if isinstance(result, views.View) else view.focus}"
        if output in pictures.FORMATS:
            text = pictures.workload_picture(cluster, opts, full, result, title, output, bool(view.by))
    if output in pictures.FORMATS:
        typer.echo(text, nl=False)
        return
    streams.write(render_stream(result, output))


WORKLOAD_OUTPUTS = ("text", "txt", "json", "csv", "md", "dot", "svg", "html")
