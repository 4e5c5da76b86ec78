"""Run the selected checks over the input and turn their hits into findings."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from netpol.k8s.model import Options
from netpol.lint.checks import all_checks
from netpol.lint.config import Settings, enabled_codes, suppressed
from netpol.lint.context import Context
from netpol.lint.inputs import Input, load
from netpol.lint.registry import INPUT_ERROR, Location, rank


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    file: str
    line: int
    column: int
    name: str

    def as_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "severity": self.severity, "message": self.message,
                "file": self.file, "line": self.line, "column": self.column}


@dataclass
class Report:
    findings: list[Finding]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per check, plus "load" and "index"

    @property
    def input_errors(self) -> bool:
        return any(f.code == INPUT_ERROR.code for f in self.findings)

    def exit_code(self, fail_on: str) -> int:
        if self.input_errors:
            return 2
        return 1 if any(rank(f.severity) >= rank(fail_on) for f in self.findings) else 0


def _finding(code: str, where: Location, message: str, settings: Settings) -> Finding:
    chk = all_checks()[code]
    return Finding(code, settings.severity.get(code, chk.severity), message, where.file, where.line, where.column,
                   chk.name)


def run_checks(inp: Input, settings: Settings, timings: dict[str, float] | None = None) -> list[Finding]:
    """Findings of the enabled checks on loaded input, input errors first, suppressions applied."""
    timings = {} if timings is None else timings
    out = [_finding(INPUT_ERROR.code, where, msg, settings) for where, msg in inp.errors]
    t0 = time.perf_counter()
    ctx = Context(inp, Options(ipblock_pods=settings.ipblock_pods), settings.tenant_label)
    timings["index"] = time.perf_counter() - t0
    checks = all_checks()
    for code in enabled_codes(settings):
        t0 = time.perf_counter()
        fn = checks[code].fn
        assert fn is not None, code  # only NP000 has no function, and it is never enabled
        for where, message in fn(ctx):
            ns_raw = inp.raw_of("Namespace", "", where.namespace) if where.namespace else None
            if not suppressed(code, where, settings, ns_raw):
                out.append(_finding(code, where, message, settings))
        timings[code] = time.perf_counter() - t0
    return sorted(out, key=lambda f: (f.file, f.line, f.column, f.code, f.message))


def lint(paths: Iterable[str], settings: Settings = Settings()) -> Report:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inp = load(paths, settings.exclude, settings.root)
    timings["load"] = time.perf_counter() - t0
    return Report(run_checks(inp, settings, timings), timings)
