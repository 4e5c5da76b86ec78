"""Crafted input: refused where the API server would refuse it, harmless where it reaches an output,
and never able to stall a CI job. The kernel side (what an injected name would load) is in
test_security_kernel.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import cluster_yaml
from support.hostile import ESCAPE, GOOD, INJECT, POLICY
from support.paths import POLICIES
from typer.testing import CliRunner

from netpol.cli import app
from netpol.errors import InputError, LabError
from netpol.escape import inert, md_code, md_text, plain, uri_path
from netpol.evaluate.conns import connections
from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint
from netpol.k8s.load import load_paths, parse_text
from netpol.k8s.parse import build_cluster
from netpol.lab import topology


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def refusal(text: str) -> InputError:
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(textwrap.dedent(text), "in.yaml"))
    return err.value


# ---- identifiers, as the API server checks them ------------------------------------------------

BAD = [  # field, value, where the error must point
    ("name", json.dumps(INJECT), "metadata.name"),
    ("name", json.dumps(ESCAPE), "metadata.name"),
    ("name", "Db", "metadata.name"),
    ("name", "café", "metadata.name"),  # non-ASCII: once an nft "comment too long" with no location
    ("name", "a" * 254, "metadata.name"),
    ("namespace", "tenant.3", "metadata.namespace"),
    ("namespace", "a" * 64, "metadata.namespace"),
    ("namespace", json.dumps('t" accept'), "metadata.namespace"),
    ("annotation", json.dumps("a b"), "metadata.annotations['a b']"),
    ("key", json.dumps('x"y'), "spec.podSelector.matchLabels['x\"y']"),
    ("key", "-a", "spec.podSelector.matchLabels.-a"),
    ("key", "/a", "spec.podSelector.matchLabels./a"),
    ("key", "Example.com/a", "spec.podSelector.matchLabels.Example.com/a"),
    ("value", json.dumps("a\nb"), "spec.podSelector.matchLabels.app.kubernetes.io/name"),
    ("value", "x" * 64, "spec.podSelector.matchLabels.app.kubernetes.io/name"),
    ("expr_key", json.dumps("a;b"), "spec.podSelector.matchExpressions[0].key"),
    ("expr_value", "-x", "spec.podSelector.matchExpressions[0].values[0]"),
    ("port", "web--port", "spec.ingress[0].ports[0].port"),
    ("port", "a-very-long-port-name", "spec.ingress[0].ports[0].port"),
]


def test_good_identifiers_are_read():
    pol = build_cluster(parse_text(POLICY.format(**GOOD), "in.yaml")).policies[0]
    assert pol.key == "tenant3/db-access" and pol.annotations == (("example.com/owner", "x"),)


@pytest.mark.parametrize(("fld", "value", "path"), BAD, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD)])
def test_bad_identifiers_are_refused_located(fld, value, path):
    err = refusal(POLICY.format(**{**GOOD, fld: value}))
    line = next(i for i, text in enumerate(POLICY.splitlines(), 1) if "{" + fld + "}" in text)
    assert (err.file, err.line, err.field) == ("in.yaml", line, path), err
    assert "invalid" in err.message


@pytest.mark.parametrize(("doc", "path"), [
    ("kind: Namespace\nmetadata: {name: a.b}", "metadata.name"),
    ("kind: Namespace\nmetadata: {name: a, labels: {'k': 'v v'}}", "metadata.labels.k"),
    ("kind: Service\nmetadata: {name: 1svc, namespace: a}", "metadata.name"),
    ("kind: Service\nmetadata: {name: s, namespace: a}\nspec: {selector: {'a b': x}}", "spec.selector['a b']"),
    ("kind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{name: Web, port: 80}]}", "spec.ports[0].name"),
    ("kind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: 80, targetPort: 'a b'}]}",
     "spec.ports[0].targetPort"),
    ("kind: Pod\nmetadata: {name: p_1, namespace: a}", "metadata.name"),
    ("kind: Pod\nmetadata: {name: p, namespace: a}\nspec: {nodeName: 'node 1'}", "spec.nodeName"),
    ("kind: Pod\nmetadata: {name: p, namespace: a}\nspec: {containers: [{ports: [{name: 'h\"x', containerPort: 80}]}]}",
     "spec.containers[0].ports[0].name"),
    ("kind: Deployment\nmetadata: {name: 'web|x', namespace: a}", "metadata.name"),
    ("kind: CronJob\nmetadata: {name: " + "c" * 53 + ", namespace: a}", "metadata.name"),
])
def test_every_kind_checks_its_identifiers(doc, path):
    err = refusal("apiVersion: v1\n" + doc + "\n")
    assert err.file == "in.yaml" and err.line and err.field == path, err


def test_annotations_are_bounded():
    big = "x" * (256 * 1024)
    err = refusal(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: a, annotations: {{k: {big}}}}}\n")
    assert err.field == "metadata.annotations" and "bytes" in err.message


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(GOOD)), st.text(max_size=70))
def test_arbitrary_identifiers_are_valid_or_refused_located(fld, value):
    """Any string in any identifier field: read as written, or refused at that field's line."""
    text = POLICY.format(**{**GOOD, fld: json.dumps(value)})
    try:
        raws = parse_text(text, "in.yaml")
    except InputError as exc:  # a string YAML cannot hold in a plain scalar (a lone surrogate)
        assert exc.file == "in.yaml" and exc.line
        return
    try:
        pol = build_cluster(raws).policies[0]
    except InputError as exc:
        assert exc.file == "in.yaml" and exc.line and exc.field and "\n" not in str(exc).strip()
        return
    read = {"name": pol.name, "namespace": pol.namespace, "annotation": pol.annotations[0][0],
            "key": pol.pod_selector.match_labels[0][0], "value": pol.pod_selector.match_labels[0][1],
            "expr_key": pol.pod_selector.match_expressions[0].key,
            "expr_value": min(pol.pod_selector.match_expressions[0].values),
            "port": pol.ingress[0].ports[0].port}
    assert read[fld] == ("default" if (fld, value) == ("namespace", "") else value)
    assert re.fullmatch(r"[A-Za-z0-9_./-]*", str(read[fld]))  # what got through is plain text


def test_error_text_cannot_forge_lines():
    err = refusal('apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a, labels: {"a\\n::error::x": v}}\n')
    assert "\n" not in str(err) and "'a\\n::error::x'" in err.field


def test_lint_reports_an_injected_name_as_np000(tmp_path):
    shutil.copytree(POLICIES, tmp_path / "p")
    f = tmp_path / "p" / "tenant3-db.yaml"
    f.write_text(f.read_text().replace("name: db-access", f"name: {json.dumps(INJECT)}"))
    r = run("lint", str(tmp_path / "p"), "-o", "json")
    found = [x for x in json.loads(r.stdout) if x["code"] == "NP000"]
    assert r.exit_code == 2 and len(found) == 1 and found[0]["line"] == 6 and "metadata.name" in found[0]["message"]


# ---- two pods, one address ---------------------------------------------------------------------

def _pods(*extra: str) -> str:
    base = ["apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: a}\nstatus: {podIP: 198.18.1.10}"]
    return "\n---\n".join(base + list(extra)) + "\n"


def test_two_running_pods_with_one_address_are_refused_naming_both():
    err = refusal(_pods("apiVersion: v1\nkind: Pod\nmetadata: {name: clone-0, namespace: b}\n"
                        "status: {podIPs: [{ip: 198.18.1.10}]}"))
    assert (err.file, err.line, err.field) == ("in.yaml", 8, "metadata.name")
    assert "198.18.1.10" in err.message and "a/web-0" in err.message and "in.yaml:1" in err.message


def test_ipv6_spellings_of_one_address_are_one_address():
    text = _pods("apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: a}\nstatus: {podIP: '2001:DB8::1'}",
                 "apiVersion: v1\nkind: Pod\nmetadata: {name: y, namespace: a}\nstatus: {podIP: '2001:db8:0::1'}")
    assert "2001:db8::1" in refusal(text).message


def test_a_terminating_pod_loses_its_address_to_the_running_one():
    c = cluster_yaml(_pods("apiVersion: v1\nkind: Pod\nmetadata: {name: old-0, namespace: b, "
                           "deletionTimestamp: '2026-01-01T00:00:00Z'}\nstatus: {podIP: 198.18.1.10}"))
    assert c.by_key["b/old-0"].ips == () and c.by_key["a/web-0"].ips == ("198.18.1.10",)
    assert [p.key for p in c.by_address.values()] == ["a/web-0"]


def test_host_network_pods_share_their_node_address():
    c = cluster_yaml(_pods(*[f"apiVersion: v1\nkind: Pod\nmetadata: {{name: h{i}, namespace: kube-system}}\n"
                             "spec: {hostNetwork: true}\nstatus: {podIP: 198.18.9.1}" for i in range(2)]))
    assert len(c.pods) == 3


def test_check_refuses_the_reproducer(tmp_path):
    shutil.copytree(POLICIES, tmp_path / "p")
    with open(tmp_path / "p" / "cluster.yaml", "a") as fh:
        fh.write("---\napiVersion: v1\nkind: Pod\nmetadata: {name: clone-0, namespace: tenant2}\n"
                 "status: {podIP: 198.18.1.10}\n")
    r = run("check", "tenant3/frontend-0", "tenant1/web-0", "-p", "8080", "-f", str(tmp_path / "p"))
    assert r.exit_code == 2 and "198.18.1.10" in r.output and "tenant1/web-0" in r.output
    assert "Traceback" not in r.output


# ---- outputs -------------------------------------------------------------------------------------

HOSTILE_OWNER = "x|y\n| a | b | All Connections |\n<details><summary>::error::pwned</summary>"


def _owned_pods(tmp_path, owner: str):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "pods.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: a-0
          namespace: a
          labels: {{app: a}}
          ownerReferences: [{{kind: ReplicaSet, name: {json.dumps(owner)}, controller: true}}]
        status: {{podIP: 198.18.0.1}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: b-0, namespace: a, labels: {{app: b}}}}
        status: {{podIP: 198.18.0.2}}
        """))
    return d


def _deny(tmp_path) -> str:
    d = tmp_path / "n"
    shutil.copytree(tmp_path / "m", d, dirs_exist_ok=True)
    (d / "deny.yaml").write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                                 "metadata: {name: deny, namespace: a}\nspec: {podSelector: {}}\n")
    return str(d)


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_markdown_outputs_keep_one_row_per_pair(tmp_path):
    old = str(_owned_pods(tmp_path, HOSTILE_OWNER))
    r = run("diff", old, _deny(tmp_path), "-o", "md")
    assert r.exit_code == 0, r.output
    rows = _table_rows(r.stdout)
    changes = json.loads(run("diff", old, _deny(tmp_path), "-o", "json").stdout)["changes"]
    groups = r.stdout.count("<summary>")  # one table (header of two rows) per namespace pair
    assert len(rows) == 2 * groups + len(changes) and all(len(re.findall(r"(?<!\\)\|", row)) == 7 for row in rows)
    opened = len(re.findall(r"(?<!\\)<details", r.stdout))
    assert opened == len(re.findall(r"(?<!\\)</details>", r.stdout)) == groups  # only ours: names are escaped
    assert "\\<details\\>" in r.stdout
    r = run("matrix", "--workloads", "-f", old, "-o", "md")
    assert len(_table_rows(r.stdout)) == 2 + len(json.loads(run("matrix", "--workloads", "-f", old, "-o", "json")
                                                              .stdout)["connections"])
    assert "<details>" not in r.stdout


BAD_POLICY = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: P, namespace: a}\n"


def test_text_outputs_carry_no_workflow_command(tmp_path, monkeypatch):
    old = str(_owned_pods(tmp_path, "w\n::stop-commands::tok\n##[set-output name=a;]b"))
    for args in (["diff", old, _deny(tmp_path)], ["matrix", "--workloads", "-f", old]):
        r = run(*args)
        assert r.exit_code == 0 and "stop-commands" in r.stdout
        assert not any(re.match(r"\s*(::|##)", line) for line in r.stdout.splitlines()), r.stdout
    evil = tmp_path / "::error file=x::pwned"
    evil.mkdir()
    (evil / "p.yaml").write_text(BAD_POLICY)
    monkeypatch.chdir(tmp_path)
    r = run("lint", "::error file=x::pwned")
    assert "::error file=x::pwned" in r.stdout.replace("\\::", "::")
    assert not any(re.match(r"\s*(::|##)", line) for line in r.stdout.splitlines()), r.stdout
    r = run("check", "a/x", "a/y", "-f", "::error file=x::pwned")  # an error names the file
    assert r.exit_code == 2 and not any(re.match(r"\s*(::|##)", line) for line in r.output.splitlines())


def test_github_and_sarif_outputs_encode_file_names(tmp_path, monkeypatch):
    d = tmp_path / "a b#c%d?"
    d.mkdir()
    (d / "p.yaml").write_text(BAD_POLICY)
    monkeypatch.chdir(tmp_path)
    sarif = json.loads(run("lint", "a b#c%d?", "-o", "sarif").stdout)
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"] for res in sarif["runs"][0]["results"]
            for loc in res["locations"]}
    assert uris == {"a%20b%23c%25d%3F/p.yaml"}
    gh = run("lint", "a b#c%d?", "-o", "github").stdout
    assert all(line.startswith("::") and "file=a b#c%25d?/p.yaml," in line for line in gh.splitlines())


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_escapes_hold_for_any_text(text):
    assert not any(re.match(r"\s*(::|##)", line) for line in inert(text).splitlines())
    one = plain(text)
    assert len(one.splitlines()) <= 1 and "\x1b" not in one
    cell = md_text(text)
    assert "\n" not in cell and "\r" not in cell and not re.search(r"(?<!\\)[|<>`]", cell.replace("\\\\", ""))
    assert md_code(text).startswith("`") or md_code(text) == cell
    assert re.fullmatch(r"[A-Za-z0-9_.~/%-]*", uri_path(text))


# ---- small files cannot stall CI -----------------------------------------------------------------

def _ranges(n: int) -> str:
    return "\n".join(f"    - {{protocol: TCP, port: {2 + 3 * i}, endPort: {3 + 3 * i}}}" for i in range(n))


RANGES = """\
apiVersion: v1
kind: Pod
metadata: {{name: a-0, namespace: x, labels: {{app: a}}}}
status: {{podIP: 198.18.0.1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: b-0, namespace: x, labels: {{app: b}}}}
status: {{podIP: 198.18.0.2}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: many, namespace: x}}
spec:
  podSelector: {{matchLabels: {{app: a}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: b}}}}}}]
    ports:
{ranges}
"""


def test_connection_sets_need_no_decision_per_port(monkeypatch):
    """20,000 ranges in one rule: the connection set is built from the ranges, merged once; `decide`
    (a walk of every range) is not called per port segment. Verdicts at the edges agree with it."""
    c = cluster_yaml(RANGES.format(ranges=_ranges(20_000)))
    src, dst = Endpoint(pod=c.by_key["x/b-0"]), Endpoint(pod=c.by_key["x/a-0"])
    samples = [(p, decide(c, src, dst, p, "TCP").allowed) for p in (1, 2, 3, 4, 59_999, 60_000, 60_001, 65_535)]
    monkeypatch.setattr("netpol.evaluate.decide.decide", lambda *a, **k: pytest.fail("decide called"))
    conns = connections(c, src, dst)
    assert len(conns.ranges_of("TCP")) == 20_000 and conns.ranges_of("UDP") == ()
    assert [(p, conns.allows("TCP", p)) for p, _ in samples] == samples


def test_diff_of_many_ranges_completes(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "c.yaml").write_text(RANGES.split("---\napiVersion: networking")[0].format())
    (tmp_path / "new" / "c.yaml").write_text(RANGES.format(ranges=_ranges(5_000)))
    r = run("diff", str(tmp_path / "old"), str(tmp_path / "new"), "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["summary"]["changed"] == 1


BOMB = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(("text", "message"), [
    (BOMB, "excessive aliasing"),
    ("a: " + "[" * 300 + "]" * 300 + "\n", "nested deeper than 200"),
    ("- " * 5000 + "x\n", "nesting depth"),
    ("---\n".join([BOMB.replace("g: &g", "zz: &g").split("  h:")[0]] * 30), "excessive aliasing"),  # budget is per file
])
def test_yaml_that_expands_or_nests_without_bound_is_refused(text, message):
    with pytest.raises(InputError, match=message) as err:
        parse_text(text, "bomb.yaml")
    assert err.value.file == "bomb.yaml" and err.value.line


def test_aliases_within_reason_still_read():
    raws = parse_text("kind: ConfigMap\nmetadata: {name: a}\ndata:\n  a: &a [1, 2]\n  b: [*a, *a]\n", "ok.yaml")
    assert raws[0].data["data"]["b"] == [[1, 2], [1, 2]]


def test_only_regular_files_of_bounded_size_are_read(tmp_path, monkeypatch):
    for path in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(InputError, match="not a regular file"):
            load_paths([path])
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "ok.yaml").write_text("kind: Namespace\nmetadata: {name: a}\n")
    with pytest.raises(InputError, match="not a regular file"):
        load_paths([str(fifo)])
    assert [r.data["metadata"]["name"] for r in load_paths([str(tmp_path)])] == ["a"]  # the FIFO is skipped
    monkeypatch.setenv("NETPOL_MAX_FILE_BYTES", "20")
    with pytest.raises(InputError, match="larger than 20 bytes") as err:
        load_paths([str(tmp_path / "ok.yaml")])
    assert err.value.file.endswith("ok.yaml")
    r = run("matrix", "-f", "/dev/zero")
    assert r.exit_code == 2 and "not a regular file" in r.output


# ---- small ones ----------------------------------------------------------------------------------

def test_yaml_merge_keys_read_as_kubectl_reads_them():
    raws = parse_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          namespace: a
          labels:
            <<: [&base {app: web, tier: front}, {zone: z1, app: other}]
            tier: back
        status: {podIP: 198.18.0.1}
        """), "m.yaml")
    c = build_cluster(raws)
    assert c.pods[0].labels == {"app": "web", "tier": "back", "zone": "z1"}
    assert raws[0].line_of(("metadata", "labels", "app")) == 7 and raws[0].line_of(("metadata", "labels", "tier")) == 8
    with pytest.raises(InputError, match="merge key"):
        parse_text("a:\n  <<: [1]\n", "m.yaml")


@pytest.mark.parametrize("prefix", ["npq\n", "npq\nnetns add x", "np q", "Npq", ""])
def test_lab_prefixes_are_matched_whole(prefix):
    with pytest.raises(LabError, match="invalid lab prefix"):
        topology.check_prefix(prefix)
    r = run("lab", "down", "--prefix", prefix)
    assert r.exit_code == 2 and "invalid lab prefix" in r.output
