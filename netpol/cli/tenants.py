"""`netpol tenants`: the tenant isolation report (network and node partitions), a CI gate."""

from __future__ import annotations

import html
import json
from typing import Annotated

import typer

from netpol.cli import app
from netpol.cli.common import Context, Filenames, IpblockPods, Kubeconfig, as_yaml, load_input, options, user_errors
from netpol.cli.pictures import explainer
from netpol.errors import QueryError
from netpol.escape import md_code, plain
from netpol.evaluate.tenants import COLOCATED, ISOLATED, NETWORK, NOT_MODELLED, Report, report

OUTPUTS = ("text", "json", "yaml", "md", "html")


@app.command()
def tenants(tenant_label: Annotated[str, typer.Option("--tenant-label", metavar="KEY",
                                                      help="Namespace label whose value names the tenant.")],
            node_tenant_label: Annotated[str | None, typer.Option(
                "--node-tenant-label", metavar="KEY", help="Node label naming the tenant a node belongs to "
                                                           "(default: --tenant-label).")] = None,
            output: Annotated[str, typer.Option("-o", "--output", help="text, json, yaml, md or html")] = "text",
            filename: Filenames = None, kubeconfig: Kubeconfig = None, context: Context = None,
            ipblock_pods: IpblockPods = "true") -> None:
    """Per pair of tenants: what the network lets through and where their workloads may share nodes.
    Exit 1 when any pair is not isolated."""
    with user_errors():
        if output not in OUTPUTS:
            raise QueryError(f"-o {output!r}: expected {', '.join(OUTPUTS)}")
        cluster = load_input(filename, kubeconfig, context)
        opts = options(ipblock_pods)
        result = report(cluster, tenant_label, node_tenant_label, opts, explainer(cluster, opts))
        if not result.tenants:
            raise QueryError(f"no namespace carries the label {tenant_label!r}: no tenants to report on")
    if output in ("json", "yaml"):
        text = json.dumps(result.to_json(), indent=1)
        typer.echo(as_yaml(text) if output == "yaml" else text)
    else:
        typer.echo({"text": render_text, "md": render_md, "html": render_html}[output](result), nl=output != "html")
    raise typer.Exit(0 if result.isolated else 1)


def render_text(r: Report) -> str:
    lines = [f"Tenants: {', '.join(map(plain, r.tenants))} (namespace label {plain(r.tenant_label)}; nodes by "
             f"label {plain(r.node_label)})"]
    quiet = []
    for p in r.pairs.values():
        if p.status == ISOLATED:
            quiet.append(f"{p.src} → {p.dst}")
            continue
        lines.append(f"{plain(p.src)} → {plain(p.dst)}: {p.status.upper()}")
        if p.network is not None:
            lines.append(f"  network: {p.network}, e.g. {plain(p.example)}" + (f" ({plain(p.why)})" if p.why else ""))
        lines += [f"  {f.code}: {plain(f.text)}" for f in p.findings]
    lines.append(f"Isolated: {', '.join(map(plain, quiet))}" if quiet else "Isolated: no pair")
    lines += [f"Node: {plain(f.text)}" for f in r.others]
    lines.append(f"Not modelled: {NOT_MODELLED}.")
    return "\n".join(lines)


def render_md(r: Report) -> str:
    rows = ["### Tenant isolation", "", f"**{'isolated' if r.isolated else 'not isolated'}**: "
            f"{sum(p.status != ISOLATED for p in r.pairs.values())} of {len(r.pairs)} tenant pairs are open.", "",
            "| from | to | status | network | placement |", "|---|---|---|---|---|"]
    for p in r.pairs.values():
        net = f"{p.network} (e.g. {md_code(p.example)})" if p.network is not None else ""
        rows.append(f"| {md_code(p.src)} | {md_code(p.dst)} | {p.status} | {net} | "
                    f"{'<br>'.join(md_code(f.text) for f in p.findings)} |")
    rows += [f"- {md_code(f.text)}" for f in r.others]
    return "\n".join(rows)


_COLOUR = {ISOLATED: "#f0fff4", NETWORK: "#fffaf0", COLOCATED: "#fff5f5"}  # the worse way open wins


def render_html(r: Report) -> str:
    def esc(text: str) -> str:
        return html.escape(text, quote=True)
    head = "".join(f"<th>{esc(t)}</th>" for t in r.tenants)
    body = []
    for a in r.tenants:
        cells = []
        for b in r.tenants:
            p = r.pairs.get((a, b))
            if p is None:
                cells.append("<td>—</td>")
                continue
            tip = "; ".join(([f"network: {p.network}"] if p.network is not None else []) + [f.text for f in p.findings])
            worst = p.open[-1] if p.open else ISOLATED
            cells.append(f'<td class="{worst}" style="background:{_COLOUR[worst]}" title="{esc(tip)}">'
                         f"{esc(p.status)}</td>")
        body.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
    details = "".join(f"<li><b>{esc(p.src)} → {esc(p.dst)}</b>: {esc(p.status)}<ul>"
                      + (f"<li>network: {esc(str(p.network))}, e.g. {esc(p.example)} {esc(p.why)}</li>"
                         if p.network is not None else "")
                      + "".join(f"<li>{esc(f.code)}: {esc(f.text)}</li>" for f in p.findings) + "</ul></li>"
                      for p in r.pairs.values() if p.status != ISOLATED)
    nodes = "".join(f"<li>{esc(f.text)}</li>" for f in r.others)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tenant isolation</title>
<style>body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; }} td, th {{ border: 1px solid #cbd5e0;
padding: 4px 10px; }} table {{ border-collapse: collapse; }}</style></head>
<body data-isolated="{str(r.isolated).lower()}">
<h1>Tenant isolation</h1>
<p>Rows: from; columns: to. isolated, network-open (a connection is allowed), co-located (workloads may
share nodes, or a host-network pod shares a node with another tenant's workloads).</p>
<table id="tenants"><thead><tr><th>from \\ to</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Open pairs</h2><ul id="open">{details or "<li>none</li>"}</ul>
<h2>Nodes</h2><ul id="nodes">{nodes or "<li>nothing to report</li>"}</ul>
<p>Not modelled: {esc(NOT_MODELLED)}.</p>
</body></html>
"""
