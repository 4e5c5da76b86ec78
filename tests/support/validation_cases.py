"""Bad inputs with the line and field each error must point at."""

from __future__ import annotations

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
