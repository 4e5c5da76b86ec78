"""Findings as text (compiler style), JSON, SARIF 2.1.0 or GitHub workflow commands."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from netpol import __version__ as VERSION
from netpol.escape import inert, plain, uri_path
from netpol.lint.checks import all_checks
from netpol.lint.engine import Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _where(f: Finding) -> str:
    out = f.file
    if f.line:
        out += f":{f.line}"
        if f.column:
            out += f":{f.column}"
    return out


def text(findings: list[Finding]) -> str:
    lines = [f"{plain(_where(f))}: {f.code} [{f.severity}] {plain(f.message)}" for f in findings]
    counts = Counter(f.severity for f in findings)
    if not findings:
        lines.append("no findings")
    else:
        parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 and s != 'info' else ''}"
                 for s in ("error", "warning", "info") if counts[s]]
        lines.append(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: {', '.join(parts)}")
    return inert("\n".join(lines))


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f.as_dict() for f in findings], indent=2)


def _uri(file: str) -> str:
    """Paths below the working folder stay relative (what code scanning expects); others become file URIs."""
    if file.startswith("<"):
        return uri_path(file)
    path = Path(os.path.abspath(file))
    try:
        return uri_path(path.relative_to(Path.cwd()).as_posix())
    except ValueError:
        return path.as_uri()


def sarif(findings: list[Finding]) -> str:
    checks = all_checks()
    order = list(checks)
    rules = [{"id": c.code, "name": c.name, "shortDescription": {"text": c.summary},
              "fullDescription": {"text": c.doc.split("\n\n")[0].replace("\n", " ")},
              "help": {"text": c.doc}, "defaultConfiguration": {"level": SARIF_LEVEL[c.severity]}}
             for c in checks.values()]
    results = []
    for f in findings:
        loc: dict = {"artifactLocation": {"uri": _uri(f.file)}}
        if f.line:
            loc["region"] = {"startLine": f.line, **({"startColumn": f.column} if f.column else {})}
        results.append({"ruleId": f.code, "ruleIndex": order.index(f.code), "level": SARIF_LEVEL[f.severity],
                        "message": {"text": f.message}, "locations": [{"physicalLocation": loc}]})
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "netpol", "version": VERSION, "semanticVersion": VERSION,
                                         "rules": rules}},
                     "columnKind": "unicodeCodePoints", "results": results}]}
    return json.dumps(doc, indent=2)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github(findings: list[Finding]) -> str:
    """GitHub Actions workflow commands: each finding becomes an annotation on the file and line."""
    out = []
    for f in findings:
        props = [f"file={_escape_prop(f.file)}"]
        if f.line:
            props.append(f"line={f.line}")
            if f.column:
                props.append(f"col={f.column}")
        props.append(f"title={_escape_prop(f.code)}")
        out.append(f"::{GITHUB_LEVEL[f.severity]} {','.join(props)}::{_escape_data(f.message)}")
    return "\n".join(out)


FORMATS = {"text": text, "json": as_json, "sarif": sarif, "github": github}


def explain(code: str) -> str:
    chk = all_checks()[code]
    return f"{chk.code} {chk.name} [{chk.severity}{'' if chk.default else ', opt-in'}]\n{chk.summary}\n\n{chk.doc}"
