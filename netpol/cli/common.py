"""Options every command shares, and the way errors leave the program."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from netpol.errors import NetpolError, QueryError
from netpol.escape import inert, plain
from netpol.evaluate.decide import SideVerdict
from netpol.k8s import ignored, load_cluster
from netpol.k8s.model import Cluster, Options, Pod

Filenames = Annotated[list[str] | None, typer.Option(
    "-f", "--filename", help="File, folder (recursive) or - for stdin; repeatable.")]
Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Read the live cluster with this kubeconfig.")]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")]
IpblockPods = Annotated[str, typer.Option(
    "--ipblock-pods", metavar="true|false", help="Whether ipBlock peers match pod addresses too.")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn netpol's typed errors into a one-line message and exit code 2."""
    try:
        yield
    except NetpolError as exc:
        typer.echo(inert(f"netpol: error: {plain(str(exc))}"), err=True)
        raise typer.Exit(2) from None


def options(ipblock_pods: str) -> Options:
    value = ipblock_pods.strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0"):
        raise NetpolError(f"--ipblock-pods {ipblock_pods!r}: expected true or false")
    return Options(ipblock_pods=value in ("true", "yes", "1"))


def load_input(filenames: list[str] | None, kubeconfig: str | None = None, context: str | None = None,
               allow_empty: bool = False) -> Cluster:
    """The cluster a command answers for; on stderr, what the answer leaves out."""
    cluster = load_cluster(filenames, kubeconfig, context, allow_empty)
    note = ignored.warning(cluster.ignored)
    if note:
        typer.echo(inert(f"netpol: warning: {plain(note)}"), err=True)
    return cluster


def in_namespaces(cluster: Cluster, namespaces: list[str] | None, what: str = "pods") -> list[Pod]:
    """The pods (and workloads) of the namespaces asked for (None: all); a namespace the input does not
    have, or nothing to show, is an error, not an empty answer."""
    for ns in namespaces or ():
        if ns not in cluster.namespaces:
            close = difflib.get_close_matches(ns, list(cluster.namespaces), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (it has {', '.join(cluster.namespaces)})"
            raise QueryError(f"no namespace {ns!r} in the input{hint}")
    pods = [p for p in cluster.pods if not namespaces or p.namespace in namespaces]
    if not pods:
        where = f" in namespace {', '.join(namespaces)}" if namespaces else ""
        raise QueryError(f"nothing to show: the input has no {what}{where}")
    return pods


_COLOURS = {"ALLOWED": "32", "DENIED": "31", "PARTIAL": "33", "NO ENDPOINTS": "33",
            "[error]": "31", "[warning]": "33", "[info]": "34"}
_WORDS = re.compile("|".join(re.escape(w) for w in sorted(_COLOURS, key=len, reverse=True)))


def colour_wanted(stream=None) -> bool:
    """On a terminal only, and never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    stream = stream or sys.stdout
    return (not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
            and hasattr(stream, "isatty") and stream.isatty())


def paint(text: str, wanted: bool | None = None) -> str:
    """Verdicts and severities in colour where `colour_wanted` (text made safe before: codes added here)."""
    if not (colour_wanted() if wanted is None else wanted):
        return text
    return _WORDS.sub(lambda m: f"\033[{_COLOURS[m.group(0)]}m{m.group(0)}\033[0m", text)


def as_yaml(json_text: str) -> str:
    """`-o yaml`: the JSON document (the same contract, in its key order) as block-style YAML."""
    import json

    import yaml
    return yaml.safe_dump(json.loads(json_text), sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=1 << 16).rstrip("\n")


def side_lines(d: SideVerdict) -> list[str]:
    """One line per isolating policy; under a denying NetworkPolicy, one line per rule that missed."""
    if d.details and len(d.details) == len(d.reasons):
        out = []
        for head, rules in d.details:
            out.append(plain(head) + (":" if rules else ""))
            out += ["  " + plain(r) for r in rules]
        return out
    return [plain(r) for r in d.reasons]
