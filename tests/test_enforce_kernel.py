"""Enforcement with real packets: lab pods in network namespaces routed through one node netns,
the rendered table applied there, every pair probed, and the kernel's answer compared with decide.

Everything made here is named with the prefix `npe` and removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from support.kernel import TIMEOUT, enforce, probe_all
from support.paths import POLICIES
from support.worlds import SCENARIOS, scenario
from typer.testing import CliRunner

from netpol.cli import app
from netpol.evaluate.matrix import PortQuery
from netpol.k8s import load_cluster
from netpol.k8s.model import Options
from netpol.lab import Probe, probe
from netpol.lab.verify import compare, lab_pods
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_kernel_agrees_with_decide(lab, name):
    c, opts = scenario(name)
    state = lab(c)
    enforce(state, c, opts)
    count, bad = probe_all(state, c, opts)
    assert count > 1000 and bad[:8] == []


def test_kernel_agrees_with_decide_ipv6_primary(lab):
    c, opts = scenario("named-ports", ipv6_primary=True)
    state = lab(c)
    enforce(state, c, opts)
    assert probe_all(state, c, opts)[1][:8] == []


def test_bundled_example_matches_matrix(lab):
    c = load_cluster([str(POLICIES)])
    state = lab(c, ports=(80, 5432, 8080))
    enforce(state, c, Options())
    queries = [PortQuery(p, "TCP") for p in (5432, 8080, "postgres", "http")] + [PortQuery(8080, "UDP")]
    result = compare(c, state, lab_pods(c), queries, Options(), timeout=TIMEOUT)
    assert len(result.probes) > 50 and result.disagreements == []
    assert any(p["allowed"] for p in result.probes) and not all(p["allowed"] for p in result.probes)
    assert probe_all(state, c, Options(), ports=(5432, 8080))[1][:8] == []
    counters = Enforcer(state.node_netns).counters("netpol")
    assert counters["tenant3/db-access ingress[0]"][0] > 0  # frontend -> db on postgres
    assert counters["tenant1 default deny ingress"][0] > 0
    assert counters["tenant1 default deny egress"][0] > 0


def test_pods_changing_labels_change_elements_only_and_packets_follow(lab):
    c, opts = scenario("ingress-from-ns-y-tcp80")
    state = lab(c, ports=(80,))
    enforcer = Enforcer(state.node_netns)
    assert enforcer.apply(render(compile_plan(c, None, opts))).kind == "full"
    y_a = Probe("y/a", "x/a", 80, "TCP")
    z_a = Probe("z/a", "x/a", 80, "TCP")
    assert probe(state, [y_a, z_a], timeout=TIMEOUT) == {y_a: True, z_a: False}
    # namespace z takes the label ns=y and y gives it up: only set elements change
    nss = {n: ns.model_copy(update={"labels": {**ns.labels, "ns": {"z": "y", "y": "q"}.get(n, ns.labels.get("ns"))}})
           for n, ns in c.namespaces.items()}
    moved = c.model_copy(update={"namespaces": nss})
    before = enforcer.handles("netpol")
    result = enforcer.apply(render(compile_plan(moved, None, opts)))
    assert result.kind == "elements" and enforcer.handles("netpol") == before
    assert probe(state, [y_a, z_a], timeout=TIMEOUT) == {y_a: False, z_a: True}
    assert probe_all(state, moved, opts, protocols=("TCP",), ports=(80,))[1] == []
    assert enforcer.apply(render(compile_plan(moved, None, opts))).kind == "none"


# ---- the command line ----------------------------------------------------------------------------

@pytest.fixture
def netns() -> Iterator[str]:
    name = f"npe-c{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _table(ns: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "netpol"],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_enforce_dry_run_apply_and_delete(netns):
    f = str(POLICIES)
    r = run("enforce", "-f", f, "--netns", netns, "--dry-run")
    assert r.exit_code == 0 and "missing" in r.output and _table(netns) is None
    r = run("enforce", "-f", f, "--netns", netns, "--node", "node-a")
    assert r.exit_code == 0, r.output
    assert "3 pods (2 isolated), 2 policies" in r.output and "table replaced" in r.output
    assert "tenant3/db-access ingress[0]" in _table(netns)
    r = run("enforce", "-f", f, "--netns", netns, "--node", "node-a")
    assert r.exit_code == 0 and "no change" in r.output
    r = run("enforce", "-f", f, "--netns", netns, "--node", "node-b", "--dry-run")
    assert r.exit_code == 0 and "elements" in r.output
    r = run("enforce", "--netns", netns, "--delete")
    assert r.exit_code == 0 and "deleted" in r.output and _table(netns) is None


def test_cli_bad_input_applies_nothing(netns, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
                   "spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n")
    r = run("enforce", "-f", str(bad), "--netns", netns)
    assert r.exit_code == 2 and "bad.yaml:7" in r.output and "Traceback" not in r.output
    assert _table(netns) is None
    r = run("enforce", "-f", str(POLICIES), "--netns", "npe-no-such-netns")
    assert r.exit_code == 2 and "not found" in r.output
    r = run("enforce", "-f", str(POLICIES), "--netns", netns, "--table", "bad name")
    assert r.exit_code == 2 and _table(netns) is None


def test_cli_render_outputs_load(netns):
    r = run("render", "-f", str(POLICIES), "--node", "node-a")
    assert r.exit_code == 0 and r.output.startswith("table inet netpol {")
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=r.output, text=True, check=True)
    r = run("render", "-f", str(POLICIES), "-o", "json", "--table", "other", "--ipblock-pods", "false")
    assert r.exit_code == 0
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "-f", "-"], input=r.output, text=True, check=True)
    assert json.loads(r.output)["nftables"][1] == {"table": {"family": "inet", "name": "other"}}
    assert run("render", "-f", str(POLICIES), "-o", "yaml").exit_code == 2
    assert run("render", "-f", str(POLICIES), "--ipblock-pods", "maybe").exit_code == 2
