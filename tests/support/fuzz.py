"""Mutated manifests for fuzzing: the bundled example, changed the ways a pull request might change it
(and an attacker would), run through every command's input path in this process.

The contract: every input either works or ends in a NetpolError (a located message, exit 2); no
other exception, no hang, no unbounded memory. `tests/test_fuzz.py` runs a bounded number of
cases; `scripts/fuzz.py` runs many and reports counts.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable

from netpol.errors import NetpolError
from netpol.evaluate.conns import connections
from netpol.evaluate.diff import RENDERERS as DIFF_RENDERERS
from netpol.evaluate.diff import diff
from netpol.evaluate.listing import render as render_workloads
from netpol.evaluate.matrix import PortQuery, compute
from netpol.evaluate.resolve import Endpoint
from netpol.evaluate.workloads import connectivity
from netpol.k8s.load import parse_text
from netpol.k8s.model import Cluster
from netpol.k8s.parse import build_cluster
from netpol.lint import Settings, run_checks
from netpol.lint.inputs import Input
from netpol.lint.inputs import build as lint_build
from netpol.lint.output import FORMATS
from netpol.nft.plan import compile_plan
from netpol.nft.render import render
from support.paths import POLICIES

SEED_TEXT = "\n---\n".join(p.read_text() for p in sorted(POLICIES.glob("*.yaml")))
SNIPPETS = [
    "!!int abc", "!!float x", "!!bool maybe", "!!timestamp 2020-99-99", "2020-02-30", "9" * 5000, "&a [*a]",
    "[" * 300 + "]" * 300, "'\\ud800'", '"a\\u0000b"', "{}", "[]", "null", "~", "yes", "0x1F", "1e400", "-1",
    "65536", '"::error::x"', '"a|b\\n<details>"', "<<: {}", "{matchLabel: {a: b}}", "*undefined",
    '"db-access\\" ; counter accept comment \\"x"', "!!binary aGk=", "!!set {a}", "? [a, b]\n: c",
]


def mutate(text: str, rng: random.Random) -> str:
    """One to three edits: replace a value, delete or duplicate lines, swap a line, insert a
    snippet or bytes, truncate."""
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(7)
        if op == 0 and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            lines[i] = f"{key}: {rng.choice(SNIPPETS)}"
        elif op == 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 3:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 4:
            lines.insert(i, " " * rng.randrange(8) + rng.choice(SNIPPETS))
        elif op == 5:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(["\t", "\x00", "'", '"', "{", "[", ": ", "- ", "#", "\\"]) \
                + lines[i][pos:]
        else:
            lines = lines[:i + 1]
        if not lines:
            lines = [""]
    return "\n".join(lines)


def _pods(c: Cluster) -> list[Endpoint]:
    return [Endpoint(pod=p) for p in c.pods][:6]


def exercise(text: str) -> str:
    """Every command's path over one input: 'ok', 'refused' (a NetpolError), or raises."""
    try:
        raws = parse_text(text, "fuzz.yaml")
        cluster = build_cluster(raws)
    except NetpolError:
        _lint(text)
        return "refused"
    eps = _pods(cluster)
    for src in eps:
        for dst in eps:
            connections(cluster, src, dst)
    compute(cluster, [PortQuery(5432, "TCP"), PortQuery("postgres", "TCP")]).probes()
    result = connectivity(cluster)
    for fmt in ("txt", "json", "md"):
        render_workloads(result, fmt)
    changes = diff(build_cluster(parse_text(SEED_TEXT, "seed.yaml")), cluster)
    for out in DIFF_RENDERERS.values():
        out(changes)
    render(compile_plan(cluster, None)).script()
    _lint(text)
    return "ok"


def _lint(text: str) -> None:
    try:
        raws = parse_text(text, "fuzz.yaml")
    except NetpolError:
        return
    cluster, good, errors, duplicates = lint_build(raws)
    findings = run_checks(Input(cluster, good, errors, duplicates), Settings())
    for fmt in FORMATS.values():
        fmt(findings)


def run_one(seed: int, on_crash: Callable[[int, str, str], None] | None = None) -> str:
    """'ok', 'refused', or 'crash' (reported to on_crash with the input and the traceback)."""
    text = mutate(SEED_TEXT, random.Random(seed))
    try:
        return exercise(text)
    except Exception:  # noqa: BLE001  (a crash is what we look for)
        if on_crash is not None:
            on_crash(seed, text, traceback.format_exc())
        return "crash"
