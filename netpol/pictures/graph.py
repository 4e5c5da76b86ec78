"""The graph a picture shows: workloads (or namespaces) as nodes grouped by namespace, allowed
connections (or a diff's changes) as labelled edges. Pure: built from listings and diffs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netpol.errors import QueryError
from netpol.evaluate.conns import ConnSet
from netpol.evaluate.diff import Diff
from netpol.evaluate.listing import Listing

MAX_NODES = 300  # beyond this a layout is a hairball and takes minutes: views narrow it
MAX_EDGES = 3000
OUTSIDE = "(outside)"


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str
    kind: str = "allowed"  # allowed | added | removed | changed
    note: str = ""  # why (which policies and rules), for the HTML page


@dataclass(frozen=True)
class Graph:
    title: str
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]


def group(name: str) -> str:
    """The cluster a node is drawn in: its namespace, or the outside for external ranges."""
    if name.endswith("[External]") or name == OUTSIDE:
        return OUTSIDE
    return name.split("/", 1)[0]


def short(name: str) -> str:
    """The node's own label inside its namespace's box."""
    return name if group(name) == OUTSIDE or "/" not in name else name.split("/", 1)[1]


def _checked(title: str, nodes: set[str], edges: list[Edge]) -> Graph:
    if len(nodes) > MAX_NODES or len(edges) > MAX_EDGES:
        raise QueryError(f"{len(nodes)} nodes and {len(edges)} edges are too many to draw (at most {MAX_NODES} and "
                         f"{MAX_EDGES}): narrow it with --by namespace, --focus WORKLOAD or --namespace")
    return Graph(title, tuple(sorted(nodes)), tuple(edges))


def from_listing(listing: Listing, title: str,
                 explain: Callable[[str, str, ConnSet], str] = lambda s, d, c: "") -> Graph:
    edges, nodes = [], set(listing.workloads)
    for s, d, c in listing.lines():
        nodes |= {s, d}
        edges.append(Edge(s, d, str(c), note=explain(s, d, c)))
        if len(edges) > MAX_EDGES:
            break
    return _checked(title, nodes, edges)


def from_diff(d: Diff, title: str) -> Graph:
    edges = []
    for c in d.changes:
        label = f"{c.old} → {c.new}" if c.kind == "changed" else str(c.new if c.kind == "added" else c.old)
        edges.append(Edge(c.src, c.dst, label, c.kind, "; ".join(c.causes)))
    return _checked(title, {n for e in edges for n in (e.src, e.dst)}, edges)
