"""Every class of bad input is refused as the API server would refuse it, with file, line and field.

In each case the line marked `# <-` is where the error must point.
"""

from __future__ import annotations

import textwrap

import pytest
from builders import cluster_yaml

from netpol.errors import InputError
from netpol.k8s.load import parse_text
from netpol.k8s.parse import build_cluster

HEAD = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
  namespace: x
spec:
  podSelector: {}
"""

CASES = {
    "unknown-protocol": (HEAD + """\
  ingress:
  - ports:
    - protocol: ICMP  # <-
      port: 80
""", "spec.ingress[0].ports[0].protocol", "unsupported protocol 'ICMP'"),
    "lowercase-protocol": (HEAD + """\
  egress:
  - ports:
    - {protocol: tcp, port: 80}  # <-
""", "spec.egress[0].ports[0].protocol", "unsupported protocol 'tcp'"),
    "port-zero": (HEAD + """\
  ingress:
  - ports:
    - port: 0  # <-
""", "spec.ingress[0].ports[0].port", "port 0 out of range"),
    "port-too-big": (HEAD + """\
  ingress:
  - ports:
    - protocol: UDP
      port: 65536  # <-
""", "spec.ingress[0].ports[0].port", "port 65536 out of range"),
    "port-bad-name": (HEAD + """\
  ingress:
  - ports:
    - port: Web_Port  # <-
""", "spec.ingress[0].ports[0].port", "invalid port name 'Web_Port'"),
    "port-quoted-number": (HEAD + """\
  ingress:
  - ports:
    - port: "80"  # <-
""", "spec.ingress[0].ports[0].port", "invalid port name '80'"),
    "port-boolean": (HEAD + """\
  ingress:
  - ports:
    - port: true  # <-
""", "spec.ingress[0].ports[0].port", "got a boolean"),
    "endport-without-port": (HEAD + """\
  ingress:
  - ports:
    - protocol: TCP
      endPort: 90  # <-
""", "spec.ingress[0].ports[0].endPort", "endPort requires a numeric port"),
    "endport-with-named-port": (HEAD + """\
  ingress:
  - ports:
    - port: http
      endPort: 90  # <-
""", "spec.ingress[0].ports[0].endPort", "endPort requires a numeric port"),
    "endport-below-port": (HEAD + """\
  ingress:
  - ports:
    - port: 90
      endPort: 80  # <-
""", "spec.ingress[0].ports[0].endPort", "endPort 80 must be between port 90 and 65535"),
    "endport-too-big": (HEAD + """\
  ingress:
  - ports:
    - port: 90
      endPort: 70000  # <-
""", "spec.ingress[0].ports[0].endPort", "endPort 70000"),
    "cidr-garbage": (HEAD + """\
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.300/8  # <-
""", "spec.ingress[0].from[0].ipBlock.cidr", "invalid CIDR '10.0.0.300/8'"),
    "cidr-without-prefix": (HEAD + """\
  egress:
  - to:
    - ipBlock:
        cidr: 198.18.0.1  # <-
""", "spec.egress[0].to[0].ipBlock.cidr", "invalid CIDR '198.18.0.1'"),
    "cidr-missing": (HEAD + """\
  egress:
  - to:
    - ipBlock:  # <-
        except: [198.18.0.0/24]
""", "spec.egress[0].to[0].ipBlock", "cidr is required"),
    "except-bad-cidr": (HEAD + """\
  ingress:
  - from:
    - ipBlock:
        cidr: 198.18.0.0/16
        except:
        - 198.18.1.0/33  # <-
""", "spec.ingress[0].from[0].ipBlock.except[0]", "invalid CIDR"),
    "except-equal-to-cidr": (HEAD + """\
  ingress:
  - from:
    - ipBlock:
        cidr: 198.18.0.0/16
        except:
        - 198.18.1.0/24
        - 198.18.0.0/16  # <-
""", "spec.ingress[0].from[0].ipBlock.except[1]", "must be a strict subset of cidr 198.18.0.0/16"),
    "except-outside-cidr": (HEAD + """\
  ingress:
  - from:
    - ipBlock:
        cidr: 198.18.0.0/16
        except: [198.19.0.0/24]  # <-
""", "spec.ingress[0].from[0].ipBlock.except[0]", "strict subset"),
    "except-other-family": (HEAD + """\
  ingress:
  - from:
    - ipBlock:
        cidr: 198.18.0.0/16
        except: ["2001:db8::/64"]  # <-
""", "spec.ingress[0].from[0].ipBlock.except[0]", "strict subset"),
    "bad-operator": (HEAD.replace("  podSelector: {}\n", "") + """\
  podSelector:
    matchExpressions:
    - key: app
      operator: Equals  # <-
      values: [a]
""", "spec.podSelector.matchExpressions[0].operator", "operator 'Equals' is not one of"),
    "in-without-values": (HEAD + """\
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: app, operator: In}  # <-
""", "spec.ingress[0].from[0].podSelector.matchExpressions[0].values", "operator In needs at least one value"),
    "notin-empty-values": (HEAD + """\
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - key: team
          operator: NotIn
          values: []  # <-
""", "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values", "operator NotIn needs"),
    "exists-with-values": (HEAD + """\
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - key: app
          operator: Exists
          values: [a]  # <-
""", "spec.ingress[0].from[0].podSelector.matchExpressions[0].values", "operator Exists must not have values"),
    "expression-without-key": (HEAD + """\
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - operator: Exists  # <-
""", "spec.ingress[0].from[0].podSelector.matchExpressions[0].key", "key is required"),
    "label-value-not-a-string": (HEAD + """\
  ingress:
  - from:
    - podSelector:
        matchLabels:
          enabled: true  # <-
""", "spec.ingress[0].from[0].podSelector.matchLabels.enabled", 'must be a string (quote it: "true")'),
    "expression-value-not-a-string": (HEAD + """\
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - key: version
          operator: In
          values:
          - "1"
          - 2  # <-
""", "spec.ingress[0].from[0].podSelector.matchExpressions[0].values[1]", 'value 2 must be a string (quote it: "2")'),
    "too-many-policy-types": (HEAD + """\
  policyTypes: [Ingress, Egress, Ingress]  # <-
""", "spec.policyTypes", "may not specify more than two policyTypes"),
    "bad-policy-types": (HEAD + """\
  policyTypes:
  - Ingress
  - egress  # <-
""", "spec.policyTypes[1]", "policyTypes entry 'egress' must be Ingress or Egress"),
    "policy-types-not-a-list": (HEAD + """\
  policyTypes: Ingress  # <-
""", "spec.policyTypes", "expected a list, got a string"),
    "ipblock-with-pod-selector": (HEAD + """\
  ingress:
  - from:
    - podSelector: {}  # <-
      ipBlock: {cidr: 198.18.0.0/16}
""", "spec.ingress[0].from[0]", "ipBlock may not be combined with podSelector or namespaceSelector"),
    "ipblock-with-namespace-selector": (HEAD + """\
  egress:
  - to:
    - ipBlock: {cidr: 198.18.0.0/16}  # <-
      namespaceSelector: {}
""", "spec.egress[0].to[0]", "ipBlock may not be combined"),
    "empty-peer": (HEAD + """\
  ingress:
  - from:
    - {}  # <-
""", "spec.ingress[0].from[0]", "a peer needs podSelector, namespaceSelector or ipBlock"),
    "rules-not-a-list": (HEAD + """\
  ingress:  # <-
    from: []
""", "spec.ingress", "expected a list, got a mapping"),
    "policy-without-name": ("""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:  # <-
  namespace: x
spec: {podSelector: {}}
""", "metadata", "metadata.name is required"),
    "pod-bad-ip": ("""\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
status:
  podIPs:
  - ip: 198.18.0.1
  - ip: 198.18.0.300  # <-
""", "status.podIPs[1].ip", "invalid IP address '198.18.0.300'"),
    "pod-bad-pod-ip": ("""\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
status:
  podIP: not-an-ip  # <-
""", "status.podIP", "invalid IP address 'not-an-ip'"),
    "container-port-out-of-range": ("""\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
  - name: c
    ports:
    - containerPort: 70000  # <-
""", "spec.containers[0].ports[0].containerPort", "containerPort 70000 out of range"),
    "container-port-protocol": ("""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
spec:
  template:
    spec:
      containers:
      - name: c
        ports:
        - containerPort: 80
          protocol: HTTP  # <-
""", "spec.template.spec.containers[0].ports[0].protocol", "unsupported protocol 'HTTP'"),
    "namespace-label-number": ("""\
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels:
    version: 2  # <-
""", "metadata.labels.version", "value 2 must be a string"),
}


def _expected_line(text: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line)


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
