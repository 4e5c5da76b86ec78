#!/usr/bin/env python3
"""Write netpol/k8s/fields.json: the fields of every API type reachable from the kinds netpol models,
taken from the official Kubernetes client's models (its OpenAPI schema). Strict field validation reads
this file instead of importing the client (which costs 0.3 s on every run). Run it after raising the
client version; tests/test_fields.py checks the file against the installed client.

    .venv/bin/python scripts/gen_fields.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from netpol.k8s.fields import _CONTAINER, MODELS, SCHEMA_FILE  # noqa: E402


def schema() -> dict[str, dict[str, str]]:
    """model -> {JSON field name: type}, for every model reachable from MODELS."""
    from kubernetes import client
    out: dict[str, dict[str, str]] = {}
    todo = list(MODELS.values())
    while todo:
        name = todo.pop()
        cls = getattr(client, name, None)
        if name in out or cls is None or not hasattr(cls, "attribute_map"):
            continue
        out[name] = {cls.attribute_map[attr]: typ for attr, typ in cls.openapi_types.items()}
        for typ in out[name].values():
            inner = _CONTAINER.fullmatch(typ)
            todo.append(inner.group(2) if inner else typ)
    return dict(sorted(out.items()))


if __name__ == "__main__":
    SCHEMA_FILE.write_text(json.dumps(schema(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {SCHEMA_FILE.relative_to(ROOT)}")
