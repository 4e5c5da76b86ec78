"""Workload listings as text: np-guard's lines, JSON, CSV and Markdown, streamed in pieces."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterator
from typing import Protocol

from netpol.escape import inert, md_code, plain
from netpol.evaluate.conns import ConnSet
from netpol.evaluate.connsets import json_row
from netpol.evaluate.workloads import External


class Listing(Protocol):
    """What the renderers read: Connectivity, or a view of it (evaluate/views.py)."""

    @property
    def workloads(self) -> tuple[str, ...]: ...

    @property
    def sources(self) -> tuple[External, ...]: ...

    @property
    def destinations(self) -> tuple[External, ...]: ...

    def lines(self) -> Iterator[tuple[str, str, ConnSet]]: ...


def render(result: Listing, output: str) -> str:
    return "".join(render_stream(result, output))


def render_stream(result: Listing, output: str) -> Iterator[str]:
    """The output in pieces of at most STEP lines: memory stays that of one piece, whatever the size."""
    if output in ("txt", "text"):
        name = functools.lru_cache(maxsize=1 << 16)(plain)  # names repeat on every line
        text = functools.lru_cache(maxsize=1 << 12)(str)  # and so do connection sets
        lines = (inert(f"{name(s)} => {name(d)} : {text(c)}") for s, d, c in result.lines())
        wrote = False
        for piece in _pieces(lines, "\n", "\n"):
            wrote = True
            yield piece
        if not wrote:
            yield "\n"
    elif output == "json":
        head = {"workloads": list(result.workloads),
                "external": {"sources": [e.name for e in result.sources],
                             "destinations": [e.name for e in result.destinations]}}
        yield json.dumps(head, indent=1)[:-2] + ',\n "connections": ['
        quoted = functools.lru_cache(maxsize=1 << 16)(json.dumps)  # names and sets repeat: each written once
        tail = functools.lru_cache(maxsize=1 << 12)(lambda c: json.dumps(json_row("", "", c))[23:])
        rows = (f'\n  {{"src": {quoted(s)}, "dst": {quoted(d)}, {tail(c)}' for s, d, c in result.lines())
        yield from _pieces(rows, ",", "")
        yield "\n ]\n}\n"
    elif output == "csv":
        yield "src,dst,conn\n"
        yield from _pieces((_csv_row(s, d, str(c)) for s, d, c in result.lines()), "", "")
    elif output == "md":
        yield "| src | dst | connections |\n|---|---|---|"
        yield from _pieces((f"\n| {md_code(s)} | {md_code(d)} | {c} |" for s, d, c in result.lines()), "", "")
        yield "\n"
    else:
        raise ValueError(output)


STEP = 4096


def _pieces(items: Iterator[str], sep: str, end: str) -> Iterator[str]:
    """Items joined by `sep` (and `end` after the last), STEP at a time."""
    chunk: list[str] = []
    first = True
    for item in items:
        chunk.append(item)
        if len(chunk) == STEP:
            yield ("" if first else sep) + sep.join(chunk)
            chunk, first = [], False
    if chunk:
        yield ("" if first else sep) + sep.join(chunk)
    if not first or chunk:
        yield end


def _csv_row(*cells: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()
