"""Connectivity you can look at: graphs of workloads (or namespaces) as DOT, SVG (laid out by
Graphviz) and one self-contained HTML page."""
