"""Hostile input: names that once injected nft rules, and a policy template with every identifier field."""

from __future__ import annotations

INJECT = 'db-access" ; counter accept comment "x'


ESCAPE = 'a";};chain in_4e23c59655{};};flush table ip filter;table inet netpol{chain zz{comment "b'


POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {name}
  namespace: {namespace}
  annotations: {{{annotation}: x}}
spec:
  podSelector:
    matchLabels: {{{key}: {value}}}
    matchExpressions: [{{key: {expr_key}, operator: In, values: [{expr_value}]}}]
  ingress:
  - ports: [{{port: {port}}}]
"""


GOOD = {"name": "db-access", "namespace": "tenant3", "annotation": "example.com/owner", "key": "app.kubernetes.io/name",
        "value": "db", "expr_key": "tier", "expr_value": "back_end.1", "port": "postgres"}
