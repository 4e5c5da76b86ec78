"""Helpers for the lint tests: a small world as YAML, and findings located by markers in the text."""

from __future__ import annotations

import textwrap
from pathlib import Path

from netpol.lint import Settings, lint

# shop: web (http 8080) and db (postgres 5432); ops: client. Addresses in 198.18.0.0/24.
WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 198.18.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: x, ports: [{name: postgres, containerPort: 5432}]}]}
status: {podIP: 198.18.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ops, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
status: {podIP: 198.18.0.20}
"""

DNS_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  containers:
  - name: coredns
    image: coredns
    ports: [{name: dns, containerPort: 53, protocol: UDP}, {name: dns-tcp, containerPort: 53, protocol: TCP}]
status: {podIP: 198.18.0.53}
"""


def policy(name: str, spec: str, ns: str = "shop", annotations: str = "") -> str:
    """A NetworkPolicy document; `spec` is YAML indented by two spaces under `spec:`."""
    meta = f"  annotations: {annotations}\n" if annotations else ""
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: {ns}\n{meta}spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n")


def docs(*parts: str) -> str:
    return "---\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def findings(tmp_path: Path, text: str, code: str | None = None, settings: Settings | None = None,
             name: str = "in.yaml"):
    path = write(tmp_path, text, name)
    settings = settings or Settings(select=("ALL",))
    found = lint([str(path)], settings).findings
    return [f for f in found if code is None or f.code == code]


def line_of(text: str, marker: str) -> int:
    """1-based line of the (only) line containing the marker."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def col_of(text: str, marker: str, token: str) -> int:
    line = text.splitlines()[line_of(text, marker) - 1]
    return line.index(token) + 1
