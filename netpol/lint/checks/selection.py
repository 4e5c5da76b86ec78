"""Selectors that match nothing in the input: a policy that selects no pod, a peer that matches none."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.evaluate.explain import describe_peer
from netpol.evaluate.resolve import Endpoint, peer_matches
from netpol.k8s.model import DIRECTIONS
from netpol.lint.checks.dns import STAND_IN, _dns_pods
from netpol.lint.context import PEERS_FIELD, Context
from netpol.lint.registry import Hit, check


@check("NP001", "policy-selects-nothing", "warning", "A policy selects no pod or workload in the input.")
def selects_nothing(ctx: Context) -> Iterator[Hit]:
    """
    The policy's `spec.podSelector` matches no pod or workload of its namespace in the input, so it
    isolates and allows nothing. Often a typo in a label, a label the pods do not carry, or a policy in
    the wrong namespace. Host-network pods do not count: policies never select them.

    Quiet when the input holds no pods or workloads at all (linting policies alone).

        metadata: {name: web, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: web}}   # but the Deployment's pods carry app: frontend
    """
    if not ctx.has_pods:
        return
    for pol in ctx.cluster.policies:
        if ctx.index.selected(pol):
            continue
        where = "its namespace has no pods or workloads in the input" if not ctx.index.in_ns.get(pol.namespace) \
            else f"no pod in {pol.namespace} matches {pol.pod_selector.describe() or '{}'}"
        yield ctx.at_policy(pol, ("spec", "podSelector")), \
            f"policy {pol.key} selects no pod or workload in the input ({where})"


@check("NP002", "peer-matches-nothing", "warning", "A peer selector matches no pod in the input (dangling).")
def dangling_peer(ctx: Context) -> Iterator[Hit]:
    """
    A `from`/`to` peer with podSelector and/or namespaceSelector that matches no pod or workload in the
    input: the rule allows nothing through it. Often a misspelt label, a namespace label that is not set
    (only `kubernetes.io/metadata.name` is set automatically), or a podSelector meant for another namespace
    (a podSelector alone picks pods of the policy's own namespace). ipBlock peers are not checked here, nor
    is a peer for the cluster DNS (one that matches a CoreDNS pod in kube-system) when the input has none.

    Quiet when the input holds no pods or workloads at all.

        ingress:
        - from:
          - namespaceSelector: {matchLabels: {name: monitoring}}   # the namespace has no label `name`
    """
    if not ctx.has_pods:
        return
    stand_in = Endpoint(pod=STAND_IN) if not _dns_pods(ctx) else None
    for pol in ctx.cluster.policies:
        for direction in DIRECTIONS:
            for i, rule in enumerate(pol.rules(direction)):
                for j, peer in enumerate(rule.peers):
                    if peer.ip_block is not None or ctx.index.peer(pol, peer):
                        continue
                    if stand_in and peer_matches(ctx.cluster, pol, peer, stand_in, None, ctx.opts):
                        continue  # the cluster DNS, which app manifests rarely include
                    what = f"{direction} rule {i} peer {j} ({describe_peer(pol, peer)})"
                    if peer.namespace_selector is not None and not ctx.index.namespaces(peer.namespace_selector):
                        why = f"namespaceSelector {peer.namespace_selector.describe()} matches no namespace"
                    else:
                        why = "no pod or workload matches it"
                    yield ctx.at_rule(pol, direction, i, PEERS_FIELD[direction], j), \
                        f"{what} matches nothing in the input: {why}"
