"""Egress isolation that leaves pods without DNS."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.evaluate.resolve import Endpoint, peer_matches, rule_ports_match
from netpol.k8s.model import EGRESS, ContainerPort, LabelSelector, NetworkPolicy, Pod, Rule
from netpol.lint.context import Context
from netpol.lint.index import members
from netpol.lint.registry import Hit, check

DNS_LABEL = ("k8s-app", "kube-dns")  # kube-dns and CoreDNS both carry it
DNS_SELECTOR = LabelSelector(match_labels=(DNS_LABEL,))
# Stands for the cluster DNS when the input has none: CoreDNS's usual namespace, labels and port names.
STAND_IN = Pod(namespace="kube-system", name="coredns", labels=dict([DNS_LABEL]),
               ports=(ContainerPort(name="dns", port=53, protocol="UDP"),
                      ContainerPort(name="dns-tcp", port=53, protocol="TCP")))
NEEDED = ("UDP", "TCP")


def _dns_pods(ctx: Context) -> int:
    bits = 0
    for ns in ctx.cluster.namespaces:
        bits |= ctx.index.pods_in(DNS_SELECTOR, ns)
    return bits


def _rule_dns(ctx: Context, pol: NetworkPolicy, rule: Rule, dns: int) -> set[str]:
    """The protocols on which this egress rule lets port 53 reach the cluster DNS."""
    if dns:
        targets = [Endpoint(pod=ctx.index.pods[i]) for i in members(ctx.index.rule_peers(pol, rule) & dns)]
    else:
        ep = Endpoint(pod=STAND_IN)
        anywhere = not rule.peers or any(
            peer_matches(ctx.cluster, pol, p, ep, None, ctx.opts)
            or (p.ip_block is not None and p.ip_block.network.prefixlen == 0) for p in rule.peers)
        targets = [ep] if anywhere else []
    return {proto for proto in NEEDED for ep in targets if rule_ports_match(rule, ep, 53, proto)}


def _allowed(ctx: Context, pols, dns: int, cache: dict) -> set[str]:
    out: set[str] = set()
    for pol in pols:
        for i, rule in enumerate(pol.egress):
            key = (id(pol), i)
            if key not in cache:
                cache[key] = _rule_dns(ctx, pol, rule, dns)
            out |= cache[key]
    return out


def _missing_text(missing: frozenset[str]) -> str:
    if missing == {"TCP"}:
        return "allows UDP 53 but not TCP 53 to DNS (large answers fall back to TCP)"
    return "allows no DNS (UDP and TCP 53)"


@check("NP004", "dns-blocked", "warning", "Egress isolation blocks DNS for the pods a policy selects.")
def dns_blocked(ctx: Context) -> Iterator[Hit]:
    """
    Once a pod is isolated for egress, it can resolve names only if some egress rule of the policies
    selecting it allows UDP and TCP port 53 to the cluster DNS: pods labelled `k8s-app: kube-dns`
    (kube-dns, CoreDNS) in the input, or, when the input has none, a stand-in CoreDNS pod in
    `kube-system`; a rule to anywhere (no `to`, or ipBlock 0.0.0.0/0 or ::/0) counts too.

    Pods are judged with all the policies of their namespace that select them. When the input has no pods
    in a policy's namespace, its pods are taken to be selected by that policy and by the policies with an
    empty or identical podSelector.

        spec:
          podSelector: {}
          policyTypes: [Egress]
          egress:
          - to: [{podSelector: {matchLabels: {app: db}}}]   # and nothing for DNS
    """
    dns = _dns_pods(ctx)
    cache: dict = {}
    lacking: dict[int, dict[frozenset[str], int]] = {}
    for group in ctx.groups(EGRESS):
        subjects = group.bits & ~dns
        if not group.policies or not subjects:
            continue
        missing = frozenset(NEEDED) - _allowed(ctx, group.policies, dns, cache)
        if missing:
            for pol in group.policies:
                per = lacking.setdefault(id(pol), {})
                per[missing] = per.get(missing, 0) | subjects
    for pol in ctx.cluster.policies:
        if not pol.affects(EGRESS):
            continue
        where = ("spec", "egress") if pol.egress else ("spec", "policyTypes")
        for missing, bits in sorted(lacking.get(id(pol), {}).items(), key=lambda kv: sorted(kv[0])):
            n = bits.bit_count()
            yield ctx.at_policy(pol, where), \
                f"egress of {n} pod{'s' if n != 1 else ''} it selects ({ctx.index.keys(bits)}) " \
                f"{_missing_text(missing)}"
        if not ctx.index.in_ns.get(pol.namespace):
            company = [q for q in ctx.cluster.policies_in(pol.namespace) if q.affects(EGRESS)
                       and (q.pod_selector.empty or q.pod_selector == pol.pod_selector)]
            missing = frozenset(NEEDED) - _allowed(ctx, company, dns, cache)
            if missing:
                yield ctx.at_policy(pol, where), f"egress of the pods it selects {_missing_text(missing)}"
