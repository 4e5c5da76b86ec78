"""Documents of many rows written as they are made: memory does not grow with the rows.

One shape for every streamed output: `{"pods": [...], "<key>": [row, ...]}` as JSON or YAML (one flow
mapping a row: JSON is YAML, so names and values stay exact), or CSV with a header.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator

CHUNK = 4096  # rows per write

Row = dict


def _chunks(lines: Iterator[str]) -> Iterator[str]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == CHUNK:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk)


def as_json(pods: list[str], key: str, rows: Iterable[Row]) -> Iterator[str]:
    yield '{\n "pods": ' + json.dumps(pods) + f',\n "{key}": ['
    yield from _chunks((",\n  " if i else "\n  ") + json.dumps(r) for i, r in enumerate(rows))
    yield "\n ]\n}\n"


def as_yaml(pods: list[str], key: str, rows: Iterable[Row]) -> Iterator[str]:
    yield "pods:\n" + "".join(f"- {json.dumps(p)}\n" for p in pods) + f"{key}:\n"
    yield from _chunks(f"- {json.dumps(r)}\n" for r in rows)


def as_csv(header: list[str], cells: Callable[[Row], list], rows: Iterable[Row]) -> Iterator[str]:
    def lines() -> Iterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow(cells(r))
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield ",".join(header) + "\n"
    yield from _chunks(lines())


def write(parts: Iterable[str]) -> None:
    for part in parts:
        sys.stdout.write(part)
    sys.stdout.flush()
