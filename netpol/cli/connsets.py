"""`netpol matrix` without --port: every ordered pair's allowed connection set, as `check` without
--port gives it for one pair (`TCP 5432`, `All Connections`, `No Connections`)."""

from __future__ import annotations

from collections.abc import Iterator

import typer

from netpol.cli import streams
from netpol.escape import inert, md_code, plain
from netpol.evaluate.workloads import pair_connections
from netpol.k8s.model import Cluster, Options, Pod


def _rows(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[tuple[str, str, str]]:
    for s, d, conns in pair_connections(cluster, pods, opts):
        yield s.key, d.key, str(conns)


def _records(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[dict]:
    return ({"src": s, "dst": d, "conn": conn} for s, d, conn in _rows(cluster, pods, opts))


def _json(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    return streams.as_json([p.key for p in pods], "connections", _records(cluster, pods, opts))


def _yaml(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    return streams.as_yaml([p.key for p in pods], "connections", _records(cluster, pods, opts))


def _csv(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    return streams.as_csv(["src", "dst", "connections"], lambda r: [r["src"], r["dst"], r["conn"]],
                          _records(cluster, pods, opts))


def _text(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    width = max([len(p.key) for p in pods] + [3])
    for s, d, conn in _rows(cluster, pods, opts):
        yield inert(f"{plain(s).ljust(width)} => {plain(d).ljust(width)} : {conn}") + "\n"


def _md(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    yield "| src | dst | connections |\n|---|---|---|\n"
    for s, d, conn in _rows(cluster, pods, opts):
        yield f"| {md_code(s)} | {md_code(d)} | {conn} |\n"


FORMATS = {"text": _text, "md": _md, "json": _json, "csv": _csv, "yaml": _yaml}


def print_connection_sets(cluster: Cluster, pods: list[Pod], opts: Options, output: str) -> None:
    streams.write(FORMATS[output](cluster, pods, opts))
    raise typer.Exit(0)
