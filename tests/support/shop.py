"""A small shop (web, api, db Deployments) and two versions of its policies: a pull request's base
and head, for `netpol diff` tests and the README's diff example."""

from __future__ import annotations

APPS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec: {template: {metadata: {labels: {app: api}}, spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec: {template: {metadata: {labels: {app: db}}, spec: {containers: [{name: c}]}}}
"""


def policy(name: str, selector: str, spec: str) -> str:
    return (f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\n"
            f"spec:\n  podSelector: {{matchLabels: {{app: {selector}}}}}\n{spec}")


BASE = [policy("api-in", "api", "  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n"),
        policy("db-in", "db", "  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]\n"),
        policy("db-out", "db", "  policyTypes: [Egress]\n")]
HEAD = [policy("api-in", "api", "  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], "
                                "ports: [{port: http}, {port: 9090}]}]\n"),
        policy("db-in", "db", "  ingress: []\n"),
        policy("db-out", "db", "  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], "
                               "ports: [{protocol: UDP, port: 53}]}]\n")]


def checkout(tmp_path, name: str, policies: list[str]):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "apps.yaml").write_text(APPS)
    (folder / "policies.yaml").write_text("".join(policies))
    return str(folder)
