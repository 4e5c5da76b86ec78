"""`netpol lint`: checks over policies and the pods they apply to, reported like a compiler would.

    report = lint(["deploy/"], load_settings())      # Report(findings, timings)
    print(output.text(report.findings)); report.exit_code("error")
"""

from netpol.lint.checks import CHECKS, all_checks
from netpol.lint.config import Settings, load_settings
from netpol.lint.engine import Finding, Report, lint, run_checks
from netpol.lint.registry import Check

__all__ = ["CHECKS", "Check", "Finding", "Report", "Settings", "all_checks", "lint", "load_settings", "run_checks"]
