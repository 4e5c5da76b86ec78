"""`netpol lab up|probe|verify|down` from the command line: contracts, exit codes, cleanup after crashes.

Every lab here gets a fresh prefix `nprc<random>` and is taken down even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import POLICIES, ROOT
from typer.testing import CliRunner

from netpol.cli import app
from netpol.lab import topology
from netpol.lab import verify as lab_verify
from netpol.lab.verify import flush_conntrack
from netpol.netns import NETNS_RUN_DIR

_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def kernel(fn):
    return pytest.mark.kernel(_root(fn))


PODS = ["tenant1/web-0", "tenant2/app-0", "tenant3/db-0", "tenant3/frontend-0", "tenant3/worker-0"]
PROBE_KEYS = {"src", "dst", "port", "protocol", "allowed"}
ARGS = ["-p", "5432", "-p", "8080", "--protocol", "TCP", "--protocol", "UDP"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"nprc{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        if os.geteuid() == 0:
            topology.down(name)


def leftovers(prefix: str) -> list[str]:
    """Everything a lab could leave behind: netns, links in the root netns, server processes, files."""
    out = [f"netns {n}" for n in topology.lab_netns(prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    out += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f" {prefix}" in line]
    out += [f"server {pid}" for pid in topology._server_pids(prefix)]
    out += [f"file {p}" for p in topology.STATE_DIR.glob(f"lab-{prefix}*")]
    return out


def contract(text: str) -> dict:
    doc = json.loads(text)
    assert set(doc) >= {"pods", "probes"} and isinstance(doc["pods"], list)
    for p in doc["probes"]:
        assert set(p) == PROBE_KEYS, p
        assert type(p["src"]) is str and type(p["dst"]) is str and type(p["port"]) is int
        assert p["protocol"] in ("TCP", "UDP") and type(p["allowed"]) is bool
    return doc


def _rows(doc: dict) -> list[tuple]:
    """The probes between pods the lab runs (the example's Deployment has no address to probe)."""
    return sorted((p["src"], p["dst"], p["port"], p["protocol"], p["allowed"]) for p in doc["probes"]
                  if p["src"] in PODS and p["dst"] in PODS)


# ---- up, probe, down --------------------------------------------------------------------------------

@kernel
def test_up_probe_enforce_probe_down(prefix):
    r = run("lab", "up", "-f", str(POLICIES), "-p", "5432", "-p", "8080", "--prefix", prefix)
    assert r.exit_code == 0, r.output
    assert f"lab {prefix}: 5 pods up" in r.output
    r = run("lab", "up", "-f", str(POLICIES), "--prefix", prefix)
    assert r.exit_code == 2 and "already exists" in r.output and "Traceback" not in r.output

    r = run("lab", "probe", *ARGS, "-o", "json", "--prefix", prefix, "--timeout", "0.5")
    assert r.exit_code == 0, r.output
    doc = contract(r.stdout)
    assert set(doc) == {"pods", "probes"} and doc["pods"] == PODS
    assert len(doc["probes"]) == 5 * 5 * 4 and all(p["allowed"] for p in doc["probes"])  # nothing enforced yet

    # the rules `netpol enforce` applies in the lab's node netns make the kernel answer as `netpol matrix`
    state = topology.load_state(prefix)
    r = run("enforce", "-f", str(POLICIES), "--netns", state.node_netns)
    assert r.exit_code == 0, r.output
    flush_conntrack(state.node_netns)  # the probes above must not pass as replies of earlier flows
    r = run("lab", "probe", *ARGS, "-o", "json", "--prefix", prefix, "--timeout", "0.5")
    lab = contract(r.stdout)
    expected = contract(run("matrix", "-f", str(POLICIES), *ARGS, "-o", "json").stdout)
    assert _rows(lab) == _rows(expected)
    assert any(p["allowed"] for p in lab["probes"]) and not all(p["allowed"] for p in lab["probes"])

    r = run("lab", "probe", "-p", "8080", "-o", "text", "--prefix", prefix, "--timeout", "0.5")
    assert r.exit_code == 0 and "tenant3/db-0 -> tenant3/db-0 TCP/8080: allowed" in r.output
    assert len(r.output.splitlines()) == 25

    r = run("lab", "down", "--prefix", prefix)
    assert r.exit_code == 0 and f"lab {prefix}: down" in r.output
    assert leftovers(prefix) == []
    r = run("lab", "probe", "--prefix", prefix)
    assert r.exit_code == 2 and "no lab" in r.output and "netpol lab up" in r.output
    assert run("lab", "down", "--prefix", prefix).exit_code == 0  # idempotent


# ---- verify -----------------------------------------------------------------------------------------

@kernel
def test_verify_agrees_and_leaves_nothing(prefix):
    r = run("lab", "verify", "-f", str(POLICIES), *ARGS, "-o", "json", "--prefix", prefix, "--timeout", "0.5")
    assert r.exit_code == 0, r.output
    doc = contract(r.stdout)
    assert set(doc) == {"pods", "probes", "disagreements"} and doc["disagreements"] == []
    assert sorted(doc["pods"]) == PODS and len(doc["probes"]) == 100
    assert _rows(doc) == _rows(contract(run("matrix", "-f", str(POLICIES), *ARGS, "-o", "json").stdout))
    assert leftovers(prefix) == []

    r = run("lab", "verify", "-f", str(POLICIES), "-p", "postgres", "-p", "http", "--prefix", prefix,
            "--timeout", "0.5", "--keep")
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("0 disagreement(s)") and "over 5 pods" in r.output
    assert topology.lab_netns(prefix) and topology.load_state(prefix) is not None  # --keep
    assert run("lab", "down", "--prefix", prefix).exit_code == 0 and leftovers(prefix) == []


@kernel
@pytest.mark.parametrize("output", ["text", "json"])
def test_verify_reports_a_kernel_that_disagrees(prefix, monkeypatch, output):
    """A doctored enforcement (the cluster without its policies) lets through what the evaluator denies."""
    real = lab_verify.enforce_into

    def doctored(state, cluster, opts, *args, **kw):
        return real(state, cluster.model_copy(update={"policies": ()}), opts, *args, **kw)

    monkeypatch.setattr(lab_verify, "enforce_into", doctored)
    r = run("lab", "verify", "-f", str(POLICIES), "-p", "5432", "-o", output, "--prefix", prefix, "--timeout", "0.3")
    assert r.exit_code == 1, r.output
    if output == "json":
        bad = contract(r.stdout)["disagreements"]
        assert bad and all(d["kernel"] and not d["evaluator"] and d["allowed"] for d in bad)
        assert {"src": "tenant3/frontend-0", "dst": "tenant3/db-0", "port": 5432, "protocol": "TCP", "allowed": True,
                "kernel": True, "evaluator": False} not in bad  # frontend may reach the db
        assert any(d["dst"] == "tenant3/db-0" and d["src"] == "tenant3/worker-0" for d in bad)
    else:
        assert "DISAGREE tenant3/worker-0 -> tenant3/db-0 TCP/5432: kernel allowed, evaluator denied" in r.output
        assert "0 disagreement(s)" not in r.output
    assert leftovers(prefix) == []


# ---- crashes and half-built labs --------------------------------------------------------------------

@kernel
def test_down_after_the_cli_is_killed_mid_up(prefix):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from netpol.cli import main; main()", "lab", "up",
                             "-f", str(POLICIES), "--prefix", prefix],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    node = Path(NETNS_RUN_DIR) / f"{prefix}-node"
    deadline = time.monotonic() + 20
    while not node.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)  # whatever it had built by now stays behind
    proc.wait()
    assert leftovers(prefix), "the kill came too late to leave anything behind"
    r = run("lab", "down", "--prefix", prefix)
    assert r.exit_code == 0, r.output
    assert leftovers(prefix) == []


@kernel
def test_down_removes_a_half_built_lab_with_garbage_state(prefix):
    for name in (f"{prefix}-node", f"{prefix}-p0", f"{prefix}-p7"):
        subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", f"{prefix}-node", "link", "add", f"{prefix}v0", "type", "veth", "peer", "name",
                    "eth0", "netns", f"{prefix}-p0"], check=True)
    topology.STATE_DIR.mkdir(parents=True, exist_ok=True)
    topology.state_path(prefix).write_text("{not json")
    r = run("lab", "probe", "--prefix", prefix)
    assert r.exit_code == 2 and "unreadable lab state" in r.output and "netpol lab down" in r.output
    assert "Traceback" not in r.output
    r = run("lab", "up", "-f", str(POLICIES), "--prefix", prefix)
    assert r.exit_code == 2 and "already exists" in r.output
    r = run("lab", "down", "--prefix", prefix)
    assert r.exit_code == 0, r.output
    assert leftovers(prefix) == []


# ---- errors any user can hit --------------------------------------------------------------------------

def test_not_root_is_a_message_not_a_traceback(monkeypatch, prefix):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["up", "-f", str(POLICIES)], ["down"], ["verify", "-f", str(POLICIES)]):
        r = run("lab", *args, "--prefix", prefix)
        assert r.exit_code == 2, (args, r.output)
        assert "needs root" in r.output and "sudo" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("args", "message"), [
    (["up", "-f", str(POLICIES), "--prefix", "Bad-Prefix"], "invalid lab prefix"),
    (["down", "--prefix", "x" * 11], "invalid lab prefix"),
    (["verify", "-f", str(POLICIES), "--protocol", "SCTP"], "SCTP"),
    (["verify", "-f", str(POLICIES), "--protocol", "ICMP"], "ICMP"),
    (["verify", "-f", str(POLICIES), "--ipblock-pods", "maybe"], "--ipblock-pods"),
    (["up", "-f", "/nonexistent/npr.yaml"], "npr.yaml"),
])
def test_bad_arguments_exit_2(args, message):
    r = run("lab", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_bad_input_is_located(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
                   "spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]\n")
    r = run("lab", "verify", "-f", str(bad))
    assert r.exit_code == 2 and "bad.yaml:7" in r.output and "Traceback" not in r.output
