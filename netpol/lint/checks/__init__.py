"""The checks, one module per family; importing this package registers them all."""

from . import dns, ipblock, isolation, ports, rules, selection, tenants  # noqa: F401
