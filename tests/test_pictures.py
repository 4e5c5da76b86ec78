"""Pictures: DOT read back by Graphviz itself, SVG laid out by it, and the HTML page loaded in a real
headless Chromium (the Debian packages `graphviz` and `chromium`, which scripts/setup installs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.paths import POLICIES
from support.shop import BASE, HEAD, checkout
from typer.testing import CliRunner

from netpol.cli import app
from netpol.evaluate.workloads import connectivity
from netpol.k8s.load import load_paths
from netpol.k8s.parse import build_cluster
from netpol.pictures import graph as graph_module
from netpol.pictures.dot import quote, to_dot
from netpol.pictures.graph import Edge, Graph, from_listing

DOT, CHROMIUM = shutil.which("dot"), shutil.which("chromium")


def load_cluster(paths: list[str]):
    return build_cluster(load_paths(paths))
needs_dot = pytest.mark.skipif(DOT is None, reason="graphviz is not installed (scripts/setup installs it)")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup installs it)")
runner = CliRunner()


def laid_out(dot_text: str) -> dict:
    """Graphviz's own reading of the DOT text: nodes (by label), edges (by labels) and clusters."""
    out = json.loads(subprocess.run([DOT, "-Tjson"], input=dot_text, capture_output=True, text=True,
                                    check=True).stdout)
    objects = out.get("objects", [])
    nodes = {o["_gvid"]: o for o in objects if "nodes" not in o and "subgraphs" not in o and o.get("name", "").startswith("n")}
    clusters = {o["label"]: {objects[i]["tooltip"] for i in o.get("nodes", [])} for o in objects if "nodes" in o}
    edges = {(nodes[e["tail"]]["tooltip"], nodes[e["head"]]["tooltip"], e["label"], e.get("color"))
             for e in out.get("edges", [])}
    return {"clusters": clusters, "edges": edges}


@needs_dot
def test_the_workload_graph_is_what_matrix_lists():
    cluster = load_cluster([str(POLICIES)])
    result = connectivity(cluster)
    g = laid_out(to_dot(from_listing(result, "t")))
    assert {(s, d, lbl) for s, d, lbl, _ in g["edges"]} == {(s, d, str(c)) for s, d, c in result.lines()}
    assert g["clusters"]["tenant3"] == {"tenant3/db-0[Pod]", "tenant3/frontend-0[Pod]", "tenant3/worker-0[Pod]"}
    assert all(n.endswith("[External]") for n in g["clusters"]["(outside)"])


@needs_dot
def test_hostile_text_stays_a_label():
    text = 'a"b\\c\n} digraph x { evil'
    g = laid_out(to_dot(Graph("t", ("ns/x", "ns/y"), (Edge("ns/x", "ns/y", text),))))
    # the raw label as Graphviz read it: quotes and the backslash escaped, the newline dropped
    assert g["edges"] == {("ns/x", "ns/y", 'a"b\\\\c } digraph x { evil', "#4a5568")}
    assert quote("plain") == '"plain"'


@needs_dot
def test_diff_edges_are_coloured_by_what_changed(tmp_path):
    base, head = checkout(tmp_path, "base", BASE), checkout(tmp_path, "head", HEAD)
    out = runner.invoke(app, ["diff", base, head, "-o", "dot"])
    assert out.exit_code == 0, out.output
    g = laid_out(out.output)
    assert ("shop/web[Deployment]", "shop/api[Deployment]", "TCP 8080 → TCP 8080,9090", "#b7791f") in g["edges"]
    assert ("shop/api[Deployment]", "shop/db[Deployment]", "TCP 5432", "#c53030") in g["edges"]
    assert ("shop/db[Deployment]", "10.0.0.0-10.255.255.255[External]", "UDP 53", "#2f855a") in g["edges"]
    svg = runner.invoke(app, ["diff", base, head, "-o", "svg"]).output
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "shop/db[Deployment]" in svg


def test_too_big_to_draw_and_no_graphviz_are_clear_errors(monkeypatch):
    monkeypatch.setattr(graph_module, "MAX_NODES", 3)
    out = runner.invoke(app, ["matrix", "--workloads", "-f", str(POLICIES), "-o", "dot"])
    assert out.exit_code == 2 and "--by namespace" in out.output and "Traceback" not in out.output
    monkeypatch.setattr(graph_module, "MAX_NODES", 300)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = runner.invoke(app, ["matrix", "--workloads", "-f", str(POLICIES), "-o", "svg"])
    assert out.exit_code == 2 and "apt-get install graphviz" in out.output


def browse(page: Path, fragment: str = "") -> tuple[str, str]:
    """The page's DOM after its script ran, and the browser's log (script errors show there)."""
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=3000", "--dump-dom", page.as_uri() + fragment],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.stdout, done.stderr


@needs_dot
@needs_chromium
def test_the_html_page_renders_in_a_real_browser(tmp_path):
    out = runner.invoke(app, ["matrix", "--workloads", "-f", str(POLICIES), "-o", "html"])
    assert out.exit_code == 0, out.output
    assert "http://" not in out.output.replace("http://www.w3.org", "") and "https://" not in out.output  # no network
    page = tmp_path / "page.html"
    page.write_text(out.output)
    dom, log = browse(page)
    assert 'data-ready="1"' in dom, log[-2000:]  # the script ran to its end
    assert "Uncaught" not in log
    result = connectivity(load_cluster([str(POLICIES)]))
    rows = re.findall(r'<tr class="allowed"[^>]*><td>allowed</td><td>([^<]*)</td><td>([^<]*)</td>', dom)
    assert sorted(rows) == sorted((s, d) for s, d, _ in result.lines())
    drawn = set(result.workloads) | {n for s, d, _ in result.lines() for n in (s, d)}  # tenant1's web-0 alone too
    assert dom.count('class="node"') == len(drawn)
    assert dom.count('class="edge"') == len(rows)
    assert "egress: policy tenant1/default-deny" not in dom  # tenant1 reaches nothing: no such edge
    assert "ingress: policy tenant3/db-access selects tenant3/db-0" in dom or "db-access" in dom
    filtered, _ = browse(page, "#filter=db-0%20tenant2")  # the filter, as a user types it
    rows = re.findall(r'<tr class="allowed" data-text="([^"]*)"( hidden(?:="")?)?>', filtered)
    visible = [text for text, hidden in rows if not hidden]
    assert visible == [text for text, _ in rows if "db-0" in text and "tenant2" in text]
    assert 0 < len(visible) < len(rows)


@needs_dot
@needs_chromium
def test_the_namespace_page_and_the_diff_page_render(tmp_path):
    for name, args in (("ns", ["matrix", "--workloads", "--by", "namespace", "-f", str(POLICIES), "-o", "html"]),
                       ("diff", ["diff", checkout(tmp_path, "base", BASE), checkout(tmp_path, "head", HEAD),
                                 "-o", "html"])):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        page = tmp_path / f"{name}.html"
        page.write_text(out.output)
        dom, log = browse(page)
        assert 'data-ready="1"' in dom and "Uncaught" not in log, (name, log[-2000:])
        assert '<table id="summary">' in dom
    assert 'class="added"' in dom and 'class="removed"' in dom and 'class="changed"' in dom
