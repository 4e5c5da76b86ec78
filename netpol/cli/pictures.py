"""`-o dot`, `-o svg` and `-o html` for `matrix --workloads` (and its views) and `diff`."""

from __future__ import annotations

from collections import Counter

from netpol.evaluate.conns import ConnSet
from netpol.evaluate.decide import decide
from netpol.evaluate.diff import Diff
from netpol.evaluate.listing import Listing
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.views import by_namespace
from netpol.evaluate.workloads import Connectivity, External, workloads
from netpol.k8s.model import Cluster, Options
from netpol.pictures import graphviz
from netpol.pictures.dot import to_dot
from netpol.pictures.graph import Graph, from_diff, from_listing, group
from netpol.pictures.html import page

FORMATS = ("dot", "svg", "html")
PREFERRED = ("TCP", "UDP", "SCTP")  # the port an edge is explained on: its first TCP one, if any


def _draw(g: Graph, output: str, summary: list[tuple[str, str, str]], intro: str) -> str:
    text = to_dot(g)
    if output == "dot":
        return text
    svg = graphviz.render(text)
    return svg if output == "svg" else page(g, svg, summary, intro)


def workload_picture(cluster: Cluster, opts: Options, full: Connectivity, shown: Listing, title: str,
                     output: str, namespaces: bool) -> str:
    """`shown` is `full` or a view of it; the page explains workload edges (not namespace ones)."""
    explain = explainer(cluster, opts) if output == "html" and not namespaces else (lambda s, d, c: "")
    g = from_listing(shown, title, explain)
    summary = [(s, d, str(c)) for s, d, c in by_namespace(full).lines()] if output == "html" else []
    summary += [(ns, ns, "") for ns in sorted({group(w) for w in full.workloads})]  # every namespace in the grid
    return _draw(g, output, summary, "Every allowed connection between workloads, over every port and protocol.")


def explainer(cluster: Cluster, opts: Options):
    reps = {w.name: w.rep for w in workloads(cluster, opts)}

    def end(name: str) -> Endpoint:
        return Endpoint(pod=reps[name]) if name in reps else Endpoint(ip=External.parse(name).address)

    def explain(s: str, d: str, c: ConnSet) -> str:
        proto, ranges = next(((p, r) for p, r in sorted(c.ranges, key=lambda x: PREFERRED.index(x[0])) if r),
                             ("TCP", ()))
        if not ranges:
            return ""
        v = decide(cluster, end(s), end(d), ranges[0][0], proto, opts)
        return f"{proto}/{ranges[0][0]}: egress: {v.egress.reason}; ingress: {v.ingress.reason}"
    return explain


def diff_picture(result: Diff, output: str) -> str:
    g = from_diff(result, "NetworkPolicy connectivity changes")
    counts: dict[tuple[str, str], Counter] = {}
    for c in result.changes:
        counts.setdefault((group(c.src), group(c.dst)), Counter())[c.kind] += 1
    summary = [(s, d, ", ".join(f"{n} {k}" for k, n in sorted(cnt.items()))) for (s, d), cnt in sorted(counts.items())]
    return _draw(g, output, summary, f"{result.summary()}" + ("; opens new connections" if result.opens else ""))
