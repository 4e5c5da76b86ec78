"""`netpol check` and `netpol matrix` through the command line: exit codes, JSON shapes, error messages."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import textwrap

import pytest
from support.paths import POLICIES, ROOT
from support.validation_cases import CASES, _expected_line
from typer.testing import CliRunner

from netpol.cli import app

POL = str(POLICIES)


def run(*args: str, stdin: str | None = None, env: dict | None = None):
    return CliRunner(env=env).invoke(app, list(args), input=stdin)


def check(*args: str, **kw):
    return run("check", *args, **kw)


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("netpol: error: ") or "Usage:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# --- check: verdicts and exit codes ---------------------------------------------------------------------

def test_check_allowed_exits_0_with_text():
    r = check("tenant2/app-0", "tenant3/db-0", "--port", "5432", "-f", POL)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == "ALLOWED: tenant2/app-0 -> tenant3/db-0 TCP/5432"
    assert "policy tenant3/db-access ingress rule 0 allows TCP/5432 (postgres)" in r.stdout


def test_check_denied_exits_1_and_reads_well():
    r = check("tenant1/web-0", "tenant3/db-0", "--port", "5432", "-f", POL)
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [
        "DENIED: tenant1/web-0 -> tenant3/db-0 TCP/5432",
        "  egress:  policy tenant1/default-deny selects tenant1/web-0 for egress and allows nothing",
        "  ingress: policy tenant3/db-access selects tenant3/db-0 for ingress:",  # one line per rule that missed
        "             rule 0 allows TCP/5432 (postgres) from pods role=frontend in tenant3 or namespace tenant2, "
        "but source tenant1/web-0 matches neither"]


def test_check_json_shape():
    r = check("tenant1/web-0", "tenant3/db-0", "-p", "5432", "-f", POL, "-o", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert list(doc) == ["allowed", "src", "dst", "port", "protocol", "egress", "ingress"]
    assert (doc["allowed"], doc["src"], doc["dst"], doc["port"], doc["protocol"]) == (
        False, "tenant1/web-0", "tenant3/db-0", 5432, "TCP")
    for side in ("egress", "ingress"):
        assert {"isolated", "allowed_by", "reason"} <= set(doc[side])
        assert doc[side]["isolated"] is True and doc[side]["allowed_by"] == []
        assert isinstance(doc[side]["reason"], str)
    assert doc["ingress"]["isolated_by"] == ["tenant3/db-access"]
    ok = json.loads(check("tenant2/app-0", "tenant3/db-0", "-p", "5432", "-f", POL, "-o", "json").stdout)
    assert ok["allowed"] is True
    assert ok["ingress"]["allowed_by"] == [{"policy": "tenant3/db-access", "rule": 0}]
    assert ok["egress"] == {"isolated": False, "isolated_by": [], "allowed_by": [],
                            "reason": "no policy selects tenant2/app-0 for egress",
                            "tier": "default", "decided_by": None}  # the example has a ClusterNetworkPolicy


def test_check_port_by_name_resolves_on_the_destination():
    r = check("tenant2/app-0", "tenant3/db-0", "--port", "postgres", "-f", POL, "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["port"] == 5432


def test_check_protocol():
    r = check("tenant2/app-0", "tenant3/db-0", "-p", "5432", "--protocol", "udp", "-f", POL, "-o", "json")
    assert r.exit_code == 1 and json.loads(r.stdout)["protocol"] == "UDP"
    assert "UDP/5432 is not among its ports" in json.loads(r.stdout)["ingress"]["reason"]
    assert check("tenant2/app-0", "tenant3/db-0", "-p", "5432", "--protocol", "SCTP", "-f", POL).exit_code == 1
    assert check("tenant3/db-0", "tenant2/app-0", "-p", "53", "--protocol", "SCTP", "-f", POL).exit_code == 0


def test_check_by_ip_address():
    r = check("198.18.2.10", "198.18.3.10", "-p", "5432", "-f", POL, "-o", "json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert (doc["src"], doc["dst"]) == ("tenant2/app-0", "tenant3/db-0")
    external = check("198.18.200.1", "tenant3/db-0", "-p", "5432", "-f", POL, "-o", "json")
    assert external.exit_code == 1
    assert "198.18.200.1 is an external address; not policed" == json.loads(external.stdout)["egress"]["reason"]
    assert check("2001:db8:3::20", "2001:db8:3::10", "-p", "5432", "-f", POL).exit_code == 0


def test_check_without_port_reports_the_connection_set():
    r = check("tenant2/app-0", "tenant3/db-0", "-f", POL, "-o", "json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["port"] is None and doc["connections"] == "TCP 5432" and doc["allowed"] is True
    denied = check("tenant1/web-0", "tenant3/db-0", "-f", POL)
    assert denied.exit_code == 1
    assert denied.stdout.splitlines()[:2] == ["DENIED: tenant1/web-0 -> tenant3/db-0: No Connections",
                                              "  at TCP/5432 (nothing is allowed; the first port a rule of these "
                                              "pods names):"]  # says why this port
    assert "(the first allowed port)" in check("tenant2/app-0", "tenant3/db-0", "-f", POL).stdout
    assert "source tenant1/web-0 matches neither" in denied.stdout
    assert check("tenant2/app-0", "tenant3/db-0", "--protocol", "UDP", "-f", POL).exit_code == 1
    everything = check("tenant3/db-0", "tenant2/app-0", "-f", POL)
    assert everything.exit_code == 0 and "All Connections" in everything.stdout


def test_check_reads_stdin():
    text = (POLICIES / "cluster.yaml").read_text() + "\n---\n" + (POLICIES / "tenant3-db.yaml").read_text()
    r = check("tenant3/worker-0", "tenant3/db-0", "-p", "5432", "-f", "-", stdin=text)
    assert r.exit_code == 1 and "source tenant3/worker-0 matches neither" in r.stdout


def test_check_workloads(tmp_path):
    (tmp_path / "w.yaml").write_text(textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api, namespace: tenant3}
        spec:
          template:
            metadata: {labels: {role: frontend}}
            spec: {containers: [{name: api, image: api}]}
        """))
    r = check("tenant3/deployment/api", "tenant3/db-0", "-p", "postgres", "-f", POL, "-f", str(tmp_path))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ALLOWED: tenant3/deployment/api -> tenant3/db-0 TCP/5432")


# --- check: errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragments", [
    (["tenant9/ghost", "tenant3/db-0", "-p", "80"], ["'tenant9/ghost': no such pod or workload in the input"]),
    (["tenant3/db-0", "a/b/c/d", "-p", "80"], ["expected ns/pod, ns/kind/name or an IP address"]),
    (["tenant3/db-0", "not-a-pod", "-p", "80"], ["expected ns/pod"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "http"], ["tenant3/db-0 declares no TCP port named 'http'"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "postgres", "--protocol", "UDP"], ["declares no UDP port"]),
    (["tenant2/app-0", "198.18.9.9", "-p", "postgres"], ["198.18.9.9 is an address, not a pod"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "70000"], ["--port 70000: out of range 1-65535"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "0"], ["out of range"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "80", "--protocol", "ICMP"], ["--protocol 'ICMP'"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "80", "-o", "xml"], ["-o 'xml': expected text, json or yaml"]),
    (["tenant2/app-0", "tenant3/db-0", "-p", "80", "--ipblock-pods", "maybe"], ["--ipblock-pods 'maybe'"]),
])
def test_check_bad_queries_exit_2(args, fragments):
    assert_user_error(check(*args, "-f", POL), *fragments)


def test_check_missing_file_exits_2(tmp_path):
    assert_user_error(check("a/b", "c/d", "-f", str(tmp_path / "missing.yaml")), "missing.yaml: no such file")


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_bad_input_class_exits_2_with_file_line_and_field(name, tmp_path):
    text, field, _ = CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    r = check("x/a", "x/b", "-p", "80", "-f", str(path))
    assert_user_error(r, f"{path}:{_expected_line(text)}: {field}: ")


def test_bad_yaml_exits_2_with_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Pod\nmetadata:\n  name: a\n labels: {}\n")
    assert_user_error(check("x/a", "x/b", "-f", str(path)), f"{path}:4: invalid YAML")


def test_duplicate_objects_exit_2(tmp_path):
    assert_user_error(check("a/b", "c/d", "-f", POL, "-f", str(POLICIES / "tenant3-db.yaml")),
                      "tenant3-db.yaml:", "metadata.name: duplicate NetworkPolicy tenant3/db-access")


def test_no_input_and_no_kubeconfig_exit_2(tmp_path):
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"), "KUBERNETES_SERVICE_HOST": None}
    assert_user_error(check("a/b", "c/d", env=env), "no input: give -f/--filename")
    env["KUBECONFIG"] = None
    assert_user_error(check("a/b", "c/d", env=env), "no input: give -f/--filename")
    broken = tmp_path / "broken-kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    env["KUBECONFIG"] = str(broken)
    assert_user_error(check("a/b", "c/d", env=env), "no input: give -f/--filename")
    assert_user_error(check("a/b", "c/d", "--kubeconfig", str(broken), env=env), "no input")


def test_check_text_puts_each_isolating_policy_on_its_own_line(tmp_path):
    (tmp_path / "more.yaml").write_text(textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: monitoring, namespace: tenant3}
        spec:
          podSelector: {}
          ingress:
          - from: [{namespaceSelector: {matchLabels: {team: monitoring}}}]
            ports: [{port: 9090}]
        """))
    r = check("tenant3/worker-0", "tenant3/db-0", "-p", "5432", "-f", POL, "-f", str(tmp_path))
    assert r.exit_code == 1
    assert r.stdout.splitlines()[2:] == [
        "  ingress: policy tenant3/db-access selects tenant3/db-0 for ingress:",
        "             rule 0 allows TCP/5432 (postgres) from pods role=frontend in tenant3 or namespace tenant2, "
        "but source tenant3/worker-0 matches neither",
        "           policy tenant3/monitoring selects tenant3/db-0 for ingress:",
        "             rule 0 allows TCP/9090 from namespaces team=monitoring, but source tenant3/worker-0 does not "
        "match and TCP/5432 is not among its ports"]


def test_installed_command_has_no_traceback(tmp_path):
    """The real entry point, as a user runs it: bad input is one line on stderr and exit 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(CASES["except-equal-to-cidr"][0])
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("KUBECONFIG", None)
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "netpol"), "check", "x/a", "x/b", "-p", "80", "-f", str(bad)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip() == (f"netpol: error: {bad}:{_expected_line(CASES['except-equal-to-cidr'][0])}: "
                                "spec.ingress[0].from[0].ipBlock.except[1]: 198.18.0.0/16 must be a strict "
                                "subset of cidr 198.18.0.0/16")


# --- matrix ---------------------------------------------------------------------------------------------

PODS = ["tenant3/db-0", "tenant3/frontend-0", "tenant3/worker-0", "tenant2/app-0", "tenant1/web-0",
        "tenant2/deployment/batch"]  # a workload (its template) is listed too


def test_matrix_json_shape():
    r = run("matrix", "-f", POL, "-p", "5432", "-p", "8080", "-o", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == ["pods", "probes"]
    assert sorted(doc["pods"]) == sorted(PODS)
    assert len(doc["probes"]) == 2 * len(PODS) ** 2
    for probe in doc["probes"]:
        assert list(probe) == ["src", "dst", "port", "protocol", "allowed"]
        assert isinstance(probe["allowed"], bool) and probe["protocol"] == "TCP"
    table = {(p["src"], p["dst"], p["port"]): p["allowed"] for p in doc["probes"]}
    assert table[("tenant3/frontend-0", "tenant3/db-0", 5432)] is True
    assert table[("tenant2/app-0", "tenant3/db-0", 5432)] is True
    assert table[("tenant3/worker-0", "tenant3/db-0", 5432)] is False
    assert table[("tenant2/app-0", "tenant3/db-0", 8080)] is False
    assert table[("tenant1/web-0", "tenant2/app-0", 8080)] is False
    assert table[("tenant2/app-0", "tenant1/web-0", 8080)] is False
    assert table[("tenant2/app-0", "tenant3/worker-0", 8080)] is True
    assert table[("tenant1/web-0", "tenant1/web-0", 8080)] is True


def test_matrix_csv_md_text_and_namespace_filter():
    r = run("matrix", "-f", POL, "-p", "5432", "-o", "csv", "--namespace", "tenant3")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["src", "dst", "port", "protocol", "allowed"]
    assert len(rows) == 1 + 9
    assert {row[0] for row in rows[1:]} == {"tenant3/db-0", "tenant3/frontend-0", "tenant3/worker-0"}
    assert ["tenant3/frontend-0", "tenant3/db-0", "5432", "TCP", "true"] in rows
    assert ["tenant3/worker-0", "tenant3/db-0", "5432", "TCP", "false"] in rows
    md = run("matrix", "-f", POL, "-p", "5432", "-o", "md", "-n", "tenant2", "-n", "tenant3")
    assert md.exit_code == 0
    header = next(line for line in md.stdout.splitlines() if line.startswith("| src"))
    assert header.count("|") == 5 + 2 and "tenant1/web-0" not in md.stdout  # 3 + 2 pods and workloads
    text = run("matrix", "-f", POL, "-p", "5432", "--protocol", "UDP")
    assert text.exit_code == 0 and "UDP/5432" in text.stdout


def test_matrix_named_port_and_errors():
    r = run("matrix", "-f", POL, "-p", "postgres", "-o", "json", "-n", "tenant3")
    probes = {(p["src"], p["dst"]): p["allowed"] for p in json.loads(r.stdout)["probes"]}
    assert probes[("tenant3/frontend-0", "tenant3/db-0")] is True
    assert_user_error(run("matrix", "-f", POL, "-o", "xml"), "-o 'xml'")
    assert_user_error(run("matrix", "-f", POL, "--protocol", "GRE"), "--protocol 'GRE'")


def test_big_matrices_stream_as_json_and_csv_and_text_says_why_it_will_not(tmp_path):
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": f"n{i % 7}",
                                                             "labels": {"app": f"a{i % 5}"}},
             "status": {"podIP": f"198.18.{i // 250}.{i % 250 + 1}"}} for i in range(520)]
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "d", "namespace": "n0"},
            "spec": {"podSelector": {"matchLabels": {"app": "a0"}}}}
    path = tmp_path / "big.yaml"
    path.write_text("\n---\n".join(json.dumps(o) for o in [*pods, deny]))
    doc = json.loads(run("matrix", "-f", str(path), "-o", "json", "-p", "80").output)
    assert len(doc["pods"]) == 520 and len(doc["probes"]) == 520 * 520
    assert set(doc["probes"][0]) == {"src", "dst", "port", "protocol", "allowed"}
    denied = {(p["src"], p["dst"]) for p in doc["probes"] if not p["allowed"]}
    assert denied and all(d.startswith("n0/") for _, d in denied)
    rows = list(csv.DictReader(io.StringIO(run("matrix", "-f", str(path), "-o", "csv", "-p", "80").output)))
    assert len(rows) == 520 * 520 and {(r["src"], r["dst"]) for r in rows if r["allowed"] == "false"} == denied
    text = run("matrix", "-f", str(path), "-p", "80")
    assert text.exit_code == 2 and "unreadable" in text.output and "--namespace" in text.output
    assert run("matrix", "-f", str(path), "-n", "n1", "-p", "80").exit_code == 0


def test_matrix_without_a_port_shows_each_pairs_connection_set():
    from netpol.evaluate.conns import connections
    from netpol.evaluate.resolve import endpoint
    from netpol.k8s import load_cluster
    doc = json.loads(run("matrix", "-f", POL, "-o", "json").output)
    cluster = load_cluster([POL])
    assert set(doc) == {"pods", "connections"} and len(doc["connections"]) == len(doc["pods"]) ** 2
    for row in doc["connections"]:
        if row["src"] == row["dst"]:
            assert row["conn"] == "All Connections"  # a pod's own cell
        else:
            assert row["conn"] == str(connections(cluster, endpoint(cluster, row["src"]), endpoint(cluster, row["dst"])))
    assert {r["conn"] for r in doc["connections"]} >= {"TCP 5432", "No Connections", "All Connections"}
    text = run("matrix", "-f", POL).output
    assert re.search(r"tenant3/frontend-0 +=> tenant3/db-0 +: TCP 5432", text)
    rows = list(csv.DictReader(io.StringIO(run("matrix", "-f", POL, "-o", "csv").output)))
    assert [(r["src"], r["dst"], r["connections"]) for r in rows] == [(r["src"], r["dst"], r["conn"])
                                                                       for r in doc["connections"]]


def test_yaml_output_is_the_json_contract():
    from ruamel.yaml import YAML
    for args in (["check", "tenant2/app-0", "tenant3/db-0", "-p", "5432", "-f", POL],
                 ["check", "tenant2/app-0", "tenant3/service/db", "-f", POL], ["lint", POL],
                 ["matrix", "-f", POL, "-p", "5432", "-p", "web"], ["matrix", "-f", POL]):
        as_json = json.loads(run(*args, "-o", "json").stdout)
        as_yaml = YAML(typ="safe").load(run(*args, "-o", "yaml").stdout)
        assert as_yaml == as_json, args
    text = run("check", "tenant2/app-0", "tenant3/db-0", "-p", "5432", "-f", POL, "-o", "yaml").stdout
    assert text.startswith("allowed: true\nsrc: tenant2/app-0\n")  # the contract's order


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    import io as io_module

    from netpol.cli.common import colour_wanted, paint
    assert paint("DENIED: a -> b", wanted=True) == "\033[31mDENIED\033[0m: a -> b"
    assert paint("x [warning] y", wanted=False) == "x [warning] y"

    class Tty(io_module.StringIO):
        def isatty(self) -> bool:
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert colour_wanted(Tty()) and not colour_wanted(io_module.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Tty())
    assert "\033[" not in run("check", "tenant1/web-0", "tenant3/db-0", "-p", "5432", "-f", POL).stdout  # piped


def test_shell_completion_is_offered():
    out = run("--show-completion", "bash")
    assert out.exit_code == 0 and "_completion()" in out.stdout and "complete -o default" in out.stdout, \
        (out.output, out.exception)


def test_help_names_its_values_and_keeps_every_word():
    import sys

    def help_of(*args: str) -> str:  # the real entry point, as `netpol ... --help` runs it
        return subprocess.run([sys.executable, "-c", "from netpol.cli import main; main()", *args, "--help"],
                              capture_output=True, text=True, cwd=ROOT).stdout
    for command in ("check", "lint", "enforce", "matrix"):
        options = help_of(command).split("Options:", 1)[1]
        assert "<bool>" not in options and "<list[str]>" not in options and "<str>" not in options, command
    lint_help = help_of("lint")
    assert "[error]" in lint_help and "[tool.netpol.lint]" in lint_help  # no markup eats bracketed words
