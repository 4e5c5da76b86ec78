"""The checks, one module per family; importing this package registers them all."""

from netpol.lint.checks import dns, ipblock, isolation, ports, rules, selection, tenants  # noqa: F401
