"""Every class of bad input is refused as the API server would refuse it, with file, line and field.

In each case the line marked `# <-` is where the error must point.
"""

from __future__ import annotations

import textwrap

import pytest
from support.builders import cluster_yaml
from support.validation_cases import CASES, HEAD, _expected_line

from netpol.errors import InputError
from netpol.k8s.load import parse_text
from netpol.k8s.parse import build_cluster


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_points_at_file_line_and_field(name):
    text, field, message = CASES[name]
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(text, f"{name}.yaml"))
    e = err.value
    assert (e.file, e.line, e.field) == (f"{name}.yaml", _expected_line(text), field), str(e)
    assert message in e.message
    assert str(e) == f"{name}.yaml:{_expected_line(text)}: {field}: {e.message}"


def test_errors_point_into_the_right_document_of_a_multi_document_file():
    text = "---\n" + HEAD + "---\n" + HEAD.replace("name: p", "name: q") + """\
  ingress:
  - ports:
    - port: 99999  # <-
"""
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(text, "multi.yaml"))
    assert err.value.line == _expected_line(text) == 19


def test_errors_point_into_list_items():
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: networking.k8s.io/v1
          kind: NetworkPolicy
          metadata: {name: p, namespace: x}
          spec:
            podSelector: {}
            policyTypes: [Sideways]  # <-
        """)
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(text, "list.yaml"))
    assert (err.value.line, err.value.field) == (9, "spec.policyTypes[0]")


def test_errors_in_json_files_carry_lines():
    text = '{\n  "kind": "NetworkPolicy",\n  "apiVersion": "networking.k8s.io/v1",\n' \
           '  "metadata": {"name": "p", "namespace": "x"},\n  "spec": {\n    "podSelector": {},\n' \
           '    "ingress": [{"ports": [{"port": 80, "endPort": 79}]}]\n  }\n}\n'
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(text, "p.json"))
    assert (err.value.file, err.value.line, err.value.field) == ("p.json", 7, "spec.ingress[0].ports[0].endPort")


@pytest.mark.parametrize("text,line,fragment", [
    ("kind: Pod\nmetadata:\n  name: a\n labels: {}\n", 4, "invalid YAML"),
    ("kind: Pod\nmetadata: {name: [a, b}\n", 2, "invalid YAML"),
    ("kind: Pod\nmetadata:\n  name: a\n  name: b\n", 4, "duplicate key"),
    ("kind: Pod\nmetadata:\n\tname: a\n", 3, "invalid YAML"),
    ("---\nkind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\nspec: [\n", 7, "invalid YAML"),
])
def test_bad_yaml_gives_the_line_of_the_syntax_error(text, line, fragment):
    with pytest.raises(InputError) as err:
        parse_text(text, "bad.yaml")
    assert (err.value.file, err.value.line) == ("bad.yaml", line)
    assert fragment in err.value.message


@pytest.mark.parametrize("text", ["just a string\n", "- a\n- b\n", "42\n"])
def test_a_document_must_be_a_mapping(text):
    with pytest.raises(InputError, match="must be a mapping"):
        parse_text(text, "odd.yaml")


def test_duplicate_objects_name_both_places():
    text = HEAD + "---\n" + HEAD.replace("  podSelector: {}\n", "  podSelector: {matchLabels: {a: b}}\n")
    with pytest.raises(InputError) as err:
        build_cluster(parse_text(text, "dup.yaml"))
    e = err.value
    assert (e.file, e.line, e.field) == ("dup.yaml", 12, "metadata.name")
    assert "duplicate NetworkPolicy x/p (first defined at dup.yaml:1)" in e.message


def test_duplicates_across_files_and_defaulted_namespaces():
    first = parse_text("kind: Pod\napiVersion: v1\nmetadata: {name: a}\n", "one.yaml")
    second = parse_text("kind: Pod\napiVersion: v1\nmetadata: {name: a, namespace: default}\n", "two.yaml")
    with pytest.raises(InputError, match=r"duplicate Pod default/a \(first defined at one.yaml:1\)") as err:
        build_cluster(first + second)
    assert err.value.file == "two.yaml"


def test_same_name_in_other_kind_or_namespace_is_not_a_duplicate():
    c = cluster_yaml("""\
        kind: Pod
        metadata: {name: a, namespace: x}
        ---
        kind: Pod
        metadata: {name: a, namespace: y}
        ---
        kind: Deployment
        metadata: {name: a, namespace: x}
        ---
        kind: NetworkPolicy
        apiVersion: networking.k8s.io/v1
        metadata: {name: a, namespace: x}
        """)
    assert sorted(c.by_key) == ["x/a", "x/deployment/a", "y/a"]


def test_accepted_edge_cases():
    """What the API server accepts is accepted: host bits in CIDRs, absent podSelector, null lists."""
    c = cluster_yaml("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p, namespace: x}
        spec:
          policyTypes: [Ingress, Egress]
          ingress:
          - from:
            - ipBlock: {cidr: 198.18.1.2/16, except: [198.18.1.0/24]}
            ports:
            - {port: 1, endPort: 65535}
            - {port: serve-80-tcp, protocol: SCTP}
          - ~
          egress:
          - to: ~
            ports: ~
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: q, namespace: x}
        spec:
          podSelector:
        """)
    p, q = c.policies
    assert p.pod_selector.empty and q.pod_selector.empty
    assert str(p.ingress[0].peers[0].ip_block.network) == "198.18.0.0/16"
    assert len(p.ingress) == 2 and not p.ingress[1].peers and not p.ingress[1].ports
    assert q.policy_types == frozenset({"Ingress"})
