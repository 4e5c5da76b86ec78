"""Enforcement with real packets: lab pods in network namespaces routed through one node netns,
the rendered table applied there, every pair probed, and the kernel's answer compared with decide.

Everything made here is named with the prefix `npe` and removed even when a test fails.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from conftest import POLICIES
from test_render import EXT, SCENARIOS, scenario
from typer.testing import CliRunner

import netpol.cli.enforce  # noqa: F401  (registers render and enforce)
from netpol.cli import app
from netpol.evaluate.decide import decide
from netpol.evaluate.matrix import PortQuery
from netpol.evaluate.resolve import Endpoint
from netpol.k8s import load_cluster
from netpol.k8s.model import Cluster, Options
from netpol.lab import LabHost, Probe, probe, topology
from netpol.lab.verify import compare, hosts_for, lab_pods
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import render

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]
PORTS = (79, 80, 81, 82)
TIMEOUT = 0.5


@pytest.fixture
def lab() -> Iterator:
    made: list[str] = []

    def up(c: Cluster, ports=PORTS):
        prefix = f"npe{uuid.uuid4().hex[:6]}"
        made.append(prefix)
        hosts = hosts_for(lab_pods(c)) + [LabHost("ext/ext", EXT)]
        return topology.up(hosts, prefix, [(p, proto) for p in ports for proto in ("TCP", "UDP")])

    try:
        yield up
    finally:
        for prefix in made:
            topology.down(prefix)


def _endpoint(c: Cluster, key: str, addr: str | None) -> Endpoint:
    if key == "ext/ext":
        return Endpoint(ip=ipaddress.ip_address(addr))
    if addr is None:
        return Endpoint(pod=c.by_key[key])
    ip = ipaddress.ip_address(addr)
    return Endpoint(pod=c.by_address.get(ip), ip=ip)


def _ip_of(ips: tuple[str, ...], version: int) -> str | None:
    return next((i for i in ips if ipaddress.ip_address(i).version == version), None)


def probe_all(state, c: Cluster, opts: Options, protocols=("TCP", "UDP"), ports=PORTS) -> tuple[int, list[str]]:
    """Probe every ordered pair, by primary address and by IPv6; kernel verdicts must equal decide's.
    Pod-to-pod by primary address is exactly the question `netpol matrix` answers."""
    keys = sorted(state.hosts)
    probes = [Probe(s, d, port, proto) for s, d in itertools.permutations(keys, 2)
              for port in ports for proto in protocols]
    bad, count = [], 0
    for family in (None, "ipv6"):
        seen = probe(state, probes, timeout=TIMEOUT, family=family)
        count += len(seen)
        for p, got in seen.items():
            version = 6 if family else ipaddress.ip_address(state.ips[p.dst][0]).version
            by_addr = family is not None or "ext/ext" in (p.src, p.dst)
            s_ip, d_ip = _ip_of(state.ips[p.src], version), _ip_of(state.ips[p.dst], version)
            src = _endpoint(c, p.src, s_ip if by_addr else None)
            dst = _endpoint(c, p.dst, d_ip if by_addr else None)
            want = decide(c, src, dst, p.port, p.protocol, opts).allowed
            if got != want:
                bad.append(f"{p.src}({s_ip}) -> {p.dst}({d_ip}) {p.protocol}/{p.port}: kernel "
                           f"{'allows' if got else 'denies'}, decide {'allows' if want else 'denies'}")
    return count, bad


def enforce(state, c: Cluster, opts: Options):
    return Enforcer(state.node_netns).apply(render(compile_plan(c, None, opts)))


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
