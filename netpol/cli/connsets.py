"""`netpol matrix` without --port: every ordered pair's allowed connection set, as `check` without
--port gives it for one pair (`TCP 5432`, `All Connections`, `No Connections`)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator

import typer

from netpol.escape import inert, md_code, plain
from netpol.evaluate.workloads import pair_connections
from netpol.k8s.model import Cluster, Options, Pod


def _rows(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[tuple[str, str, str]]:
    for s, d, conns in pair_connections(cluster, pods, opts):
        yield s.key, d.key, str(conns)


def _json(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    yield '{\n "pods": ' + json.dumps([p.key for p in pods]) + ',\n "connections": ['
    sep = "\n  "
    for s, d, conn in _rows(cluster, pods, opts):
        yield sep + json.dumps({"src": s, "dst": d, "conn": conn})
        sep = ",\n  "
    yield "\n ]\n}\n"


def _csv(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["src", "dst", "connections"])
    for i, row in enumerate(_rows(cluster, pods, opts), 1):
        w.writerow(row)
        if i % 4096 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _text(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    width = max([len(p.key) for p in pods] + [3])
    for s, d, conn in _rows(cluster, pods, opts):
        yield inert(f"{plain(s).ljust(width)} => {plain(d).ljust(width)} : {conn}") + "\n"


def _md(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    yield "| src | dst | connections |\n|---|---|---|\n"
    for s, d, conn in _rows(cluster, pods, opts):
        yield f"| {md_code(s)} | {md_code(d)} | {conn} |\n"


def _yaml(cluster: Cluster, pods: list[Pod], opts: Options) -> Iterator[str]:
    yield "pods:\n" + "".join(f"- {json.dumps(p.key)}\n" for p in pods) + "connections:\n"
    for s, d, conn in _rows(cluster, pods, opts):
        yield f"- {json.dumps({'src': s, 'dst': d, 'conn': conn})}\n"


FORMATS = {"text": _text, "md": _md, "json": _json, "csv": _csv, "yaml": _yaml}


def print_connection_sets(cluster: Cluster, pods: list[Pod], opts: Options, output: str) -> None:
    for part in FORMATS[output](cluster, pods, opts):
        sys.stdout.write(part)
    sys.stdout.flush()
    raise typer.Exit(0)
