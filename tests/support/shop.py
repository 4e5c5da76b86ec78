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


def frontend_backend(namespace: str) -> str:
    """Two Deployments and their policies, as np-guard's README shows them: the frontend takes 8080
    from anywhere and may call the backend on 9090 and DNS; the backend takes 9090 from the frontend."""
    return FRONTEND_BACKEND.replace("NAMESPACE", namespace)


FRONTEND_BACKEND = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: NAMESPACE}
spec: {template: {metadata: {labels: {app: frontend}}, spec: {containers: [{name: web, ports: [{containerPort: 8080}]}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: NAMESPACE}
spec: {template: {metadata: {labels: {app: backend}}, spec: {containers: [{name: api, ports: [{containerPort: 9090}]}]}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend, namespace: NAMESPACE}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{port: 8080}]}]
  egress:
  - {to: [{podSelector: {matchLabels: {app: backend}}}], ports: [{port: 9090}]}
  - {to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 53, protocol: UDP}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend, namespace: NAMESPACE}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}], ports: [{port: 9090}]}]
"""
