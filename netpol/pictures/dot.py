"""A Graph as Graphviz DOT: one box (cluster) per namespace, the outside in its own box, edges
labelled with connection sets and coloured by what a diff did to them."""

from __future__ import annotations

from netpol.pictures.graph import Graph, group, short

STYLE = {"allowed": 'color="#4a5568"', "added": 'color="#2f855a", fontcolor="#2f855a", penwidth=2',
         "removed": 'color="#c53030", fontcolor="#c53030", style=dashed',
         "changed": 'color="#b7791f", fontcolor="#b7791f"'}


def quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, control characters dropped (names may carry anything)."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: Graph) -> str:
    ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
    lines = [f"digraph {quote(g.title)} {{", "  rankdir=LR; compound=true; newrank=true;",
             '  graph [fontname="Helvetica", fontsize=11, labelloc=t, label=' + quote(g.title) + "];",
             '  node [shape=box, style="rounded,filled", fillcolor="#edf2f7", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    clusters: dict[str, list[str]] = {}
    for n in g.nodes:
        clusters.setdefault(group(n), []).append(n)
    for k, (ns, members) in enumerate(sorted(clusters.items())):
        lines.append(f"  subgraph cluster_{k} {{ label={quote(ns)}; style=rounded; color=\"#a0aec0\";")
        lines += [f"    {ids[n]} [label={quote(short(n))}, tooltip={quote(n)}];" for n in members]
        lines.append("  }")
    for e in g.edges:
        lines.append(f"  {ids[e.src]} -> {ids[e.dst]} [label={quote(e.label)}, tooltip={quote(e.src + ' → ' + e.dst)}, "
                     f"{STYLE[e.kind]}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
