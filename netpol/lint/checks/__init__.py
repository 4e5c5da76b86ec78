"""The checks, one module per family, and the one table that lists them (no import registers anything)."""

from __future__ import annotations

from netpol.lint.checks import (
    dns,
    ipblock,
    isolation,
    partitions,
    ports,
    rules,
    scope,
    selection,
    services,
    tenants,
    tiers,
)
from netpol.lint.registry import INPUT_ERROR, Check

CHECKS: tuple[Check, ...] = (
    INPUT_ERROR,
    selection.selects_nothing,
    selection.dangling_peer,
    ports.named_port,
    dns.dns_blocked,
    isolation.not_isolated,
    rules.ignored_rules,
    rules.split_peers,
    rules.redundant_rule,
    ipblock.ipblock_covers_pods,
    isolation.allow_all_voids_deny,
    tenants.cross_tenant,
    partitions.off_partition,
    partitions.open_tenant_node,
    partitions.pod_on_other_node,
    partitions.host_network_shared_node,
    scope.not_evaluated,
    services.service_port_not_pod_port,
    services.ipblock_service_address,
    services.external_source_behind_snat,
    services.service_target_port_undeclared,
    services.duplicate_service,
    tiers.priority_tie,
    tiers.domain_names,
    tiers.baseline_unreachable,
    tiers.admin_accept_over_isolation,
    tiers.rule_shadowed,
    tiers.pass_no_effect,
)


def all_checks() -> dict[str, Check]:
    """Every check by code, in code order."""
    by_code = {c.code: c for c in CHECKS}
    assert len(by_code) == len(CHECKS), "two checks share a code"
    return dict(sorted(by_code.items()))
