"""One self-contained HTML page (no network access needed): the namespace summary as a grid, the
graph (inline SVG laid out by Graphviz) and a filterable table of every edge with its explanation.
Every text from the input is escaped; the SVG is Graphviz's own, which escapes what it draws."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from netpol.pictures.graph import Graph

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a202c; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { border: 1px solid #cbd5e0; padding: 3px 8px; text-align: left; }
th { background: #edf2f7; } td.none { color: #a0aec0; } td.some { background: #f0fff4; }
tr.added td { background: #f0fff4; } tr.removed td { background: #fff5f5; } tr.changed td { background: #fffff0; }
#graph svg { max-width: 100%; height: auto; } input { padding: 4px; width: 24em; margin-bottom: 6px; }
"""

SCRIPT = """
(function () {
  var input = document.getElementById('filter');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#edges tbody tr'));
  function apply() {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (tr) {
      var text = tr.getAttribute('data-text');
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
      tr.hidden = !ok; if (ok) { shown++; }
    });
    document.getElementById('shown').textContent = shown + ' of ' + rows.length;
  }
  input.addEventListener('input', apply);
  var m = /[#&]filter=([^&]*)/.exec(location.hash);
  if (m) { input.value = decodeURIComponent(m[1]); }
  apply();
  document.body.setAttribute('data-ready', '1');
})();
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _grid(names: Sequence[str], cells: dict[tuple[str, str], str]) -> str:
    head = "".join(f"<th>{_esc(n)}</th>" for n in names)
    rows = []
    for s in names:
        tds = "".join(f'<td class="{"some" if (s, d) in cells else "none"}">{_esc(cells.get((s, d), "—"))}</td>'
                      for d in names)
        rows.append(f"<tr><th>{_esc(s)}</th>{tds}</tr>")
    return (f'<table id="summary"><thead><tr><th>from \\ to</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def page(g: Graph, svg: str, summary: Sequence[tuple[str, str, str]], intro: str = "") -> str:
    """`summary`: (source namespace, destination namespace, text) cells of the grid."""
    names = sorted({n for s, d, _ in summary for n in (s, d)})
    cells = {(s, d): t for s, d, t in summary if t}
    svg = svg[svg.find("<svg"):] if "<svg" in svg else ""
    rows = "".join(
        f'<tr class="{e.kind}" data-text="{_esc(" ".join((e.src, e.dst, e.label, e.kind, e.note)).lower())}">'
        f"<td>{_esc(e.kind)}</td><td>{_esc(e.src)}</td><td>{_esc(e.dst)}</td><td>{_esc(e.label)}</td>"
        f"<td>{_esc(e.note)}</td></tr>" for e in g.edges)
    data = json.dumps({"nodes": len(g.nodes), "edges": len(g.edges)})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(g.title)}</title><style>{STYLE}</style></head>
<body data-graph='{_esc(data)}'>
<h1>{_esc(g.title)}</h1>
<p>{_esc(intro)}</p>
<h2>Namespaces</h2>
{_grid(names, cells) if names else "<p>No connections.</p>"}
<h2>Graph</h2>
<div id="graph">{svg}</div>
<h2>Connections</h2>
<input id="filter" type="search" placeholder="filter: words that must all appear" aria-label="filter">
<span id="shown"></span>
<table id="edges"><thead><tr><th>change</th><th>source</th><th>destination</th><th>connections</th>
<th>why</th></tr></thead><tbody>{rows}</tbody></table>
<script>{SCRIPT}</script>
</body></html>
"""
