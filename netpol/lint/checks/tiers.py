"""ClusterNetworkPolicy tiers: orders that the spec leaves undefined, and rules no offline check can decide."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netpol.evaluate.resolve import Endpoint, selects
from netpol.evaluate.tiers import peer_matches, ports_match, subject_of
from netpol.k8s.model import DIRECTIONS, INGRESS, Action, ClusterNetworkPolicy, CnpRule, Pod, Tier
from netpol.lint.context import Context
from netpol.lint.registry import Hit, Location, check


def at_cnp(ctx: Context, cnp: ClusterNetworkPolicy, *path: str | int) -> Location:
    return ctx.at_object(cnp.kind, "", cnp.name, cnp.source, *path)


@check("NP018", "cnp-priority-tie", "warning",
       "Two ClusterNetworkPolicies of one tier share a priority, and which goes first changes a verdict.")
def priority_tie(ctx: Context) -> Iterator[Hit]:
    """
    Within a tier, a lower `priority` goes first; for equal priorities the spec leaves the order to the
    implementation ("no way for the user to reliably determine which one it will choose").
    kube-network-policies, Calico and netpol order them by name, but other implementations may not.
    Reported when, for some pod both subjects select, a connection (peers and ports of the input) is
    decided differently by the two policies' first matching rules, so the order is the verdict (or
    when the input has no pods to tell): give such policies distinct priorities.
    """
    pods = [p for p in ctx.cluster.pods if not p.host_network]
    tiers = ctx.cluster.cluster_policies
    for i, a in enumerate(tiers):
        for b in tiers[i + 1:]:
            if (a.tier, a.priority) != (b.tier, b.priority):
                continue
            shared = [p for p in pods if subject_of(ctx.cluster, a, p) and subject_of(ctx.cluster, b, p)]
            if pods and not shared:
                continue
            why = _order_matters(ctx, a, b, shared) if pods else "no pods in the input to tell"
            if why:
                yield at_cnp(ctx, b, "spec", "priority"), \
                    f"{b.tier} ClusterNetworkPolicy {b.name} has priority {b.priority} like {a.name}, and their " \
                    f"order decides ({why}); netpol applies {a.name} first (by name), other implementations may not"


_VERB = {Action.ACCEPT: "accepts", Action.DENY: "denies", Action.PASS: "passes"}
SAMPLE = 20  # subject pods and peer kinds tried per tie: lint stays fast on big inputs


def _order_matters(ctx: Context, a: ClusterNetworkPolicy, b: ClusterNetworkPolicy, shared: list[Pod]) -> str | None:
    """A connection the two policies' first matching rules decide differently, described."""
    kinds: dict[tuple, Pod] = {}
    for p in ctx.cluster.pods:  # peers that differ in what selectors and ports can see
        kinds.setdefault((p.namespace, p.labels, p.ports, p.host_network, p.ips[:1]), p)
    peers = list(kinds.values())
    for own in shared[:SAMPLE]:
        for peer in peers:
            if peer.key == own.key:
                continue  # a pod reaching itself is not subject to the tiers
            for direction in DIRECTIONS:
                src, dst = (peer, own) if direction == INGRESS else (own, peer)
                for port, proto in _ports_of(a, b, direction, dst):
                    ra, rb = (_first(ctx, x, direction, own, peer, dst, port, proto) for x in (a, b))
                    if ra is not None and rb is not None and ra.action != rb.action:
                        return (f"{src.key} → {dst.key} {proto}/{port}: {a.name} {_VERB[ra.action]}, "
                                f"{b.name} {_VERB[rb.action]}")
    return None


def _ports_of(a: ClusterNetworkPolicy, b: ClusterNetworkPolicy, direction: str, dst: Pod) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for rule in a.rules(direction) + b.rules(direction):
        for p in rule.ports or ():
            out += [(cp.port, cp.protocol) for cp in dst.named_port(p.name)] if p.name else [(p.lo, str(p.protocol))]
    out += [(cp.port, cp.protocol) for cp in dst.ports] + [(80, "TCP")]
    return list(dict.fromkeys(out))


def _first(ctx: Context, cnp: ClusterNetworkPolicy, direction: str, own: Pod, peer: Pod, dst: Pod, port: int,
           proto: str) -> CnpRule | None:
    """The policy's first rule matching the connection for its subject `own`."""
    for rule in cnp.rules(direction):
        if ports_match(rule, Endpoint(pod=dst), port, proto) and any(
                peer_matches(ctx.cluster, p, Endpoint(pod=peer), None) for p in rule.peers):
            return rule
    return None


@check("NP019", "cnp-domain-names", "info", "A domainNames peer: what the names resolve to is not known offline.")
def domain_names(ctx: Context) -> Iterator[Hit]:
    """
    `domainNames` peers match the addresses DNS answers for the names at the time of the connection.
    Offline, netpol cannot know them: `check` and `matrix` take such peers as matching nothing and say
    so in their explanation ("unverified").
    """
    for cnp in ctx.cluster.cluster_policies:
        for i, rule in enumerate(cnp.egress):
            for j, peer in enumerate(rule.peers):
                if peer.domain_names:
                    yield at_cnp(ctx, cnp, "spec", "egress", i, "to", j, "domainNames"), \
                        f"egress rule {i} of {cnp.name} matches {', '.join(peer.domain_names)}: not verifiable " \
                        "offline (answers take it as matching nothing)"


def _subject_pods(ctx: Context, cnp: ClusterNetworkPolicy) -> list:
    return [p for p in ctx.cluster.pods if not p.host_network and subject_of(ctx.cluster, cnp, p)]


def _isolated_by_np(ctx: Context, pod, direction: str) -> bool:
    return any(pol.affects(direction) and selects(pol, pod) for pol in ctx.cluster.policies_in(pod.namespace))


@check("NP020", "baseline-unreachable", "warning",
       "A Baseline policy's rules for a direction are never consulted: NetworkPolicy isolates every pod it selects.")
def baseline_unreachable(ctx: Context) -> Iterator[Hit]:
    """
    NetworkPolicy decides for the pods it isolates in a direction (allowing what its rules allow and
    denying the rest), and the Baseline tier is then never asked. A Baseline policy whose every subject
    pod (in the input) is isolated that way does nothing for that direction.
    """
    for cnp in ctx.cluster.cluster_policies:
        if cnp.tier != Tier.BASELINE:
            continue
        pods = _subject_pods(ctx, cnp)
        for direction in DIRECTIONS:
            if pods and cnp.rules(direction) and all(_isolated_by_np(ctx, p, direction) for p in pods):
                yield at_cnp(ctx, cnp, "spec", str(direction)), \
                    f"the {direction} rules of Baseline {cnp.key} are never consulted: NetworkPolicy isolates " \
                    f"all {len(pods)} pod{'s' if len(pods) != 1 else ''} it selects for {direction}"


@check("NP021", "admin-accept-over-isolation", "info",
       "An Admin Accept rule admits traffic that a NetworkPolicy of the pod's namespace would deny.")
def admin_accept_over_isolation(ctx: Context) -> Iterator[Hit]:
    """
    The Admin tier comes before NetworkPolicy: an Accept there is final for that side, so it opens what
    a namespace's own (default-deny) policy closes. Often meant (a platform's monitoring, DNS), but a
    namespace owner reading only their NetworkPolicies will not see it.
    """
    for cnp in ctx.cluster.cluster_policies:
        if cnp.tier != Tier.ADMIN:
            continue
        pods = _subject_pods(ctx, cnp)
        for direction in DIRECTIONS:
            isolated = [p for p in pods if _isolated_by_np(ctx, p, direction)]
            for i, rule in enumerate(cnp.rules(direction)):
                if rule.action == Action.ACCEPT and isolated:
                    field = "from" if direction == INGRESS else "to"
                    yield at_cnp(ctx, cnp, "spec", str(direction), i, field), \
                        f"{direction} rule {i} of {cnp.key} accepts before NetworkPolicy for {len(isolated)} pod" \
                        f"{'s' if len(isolated) != 1 else ''} a NetworkPolicy isolates ({isolated[0].key}" \
                        f"{', …' if len(isolated) > 1 else ''}): their own policies cannot deny what it accepts"


@dataclass(frozen=True)
class _Earlier:
    """A rule that comes before another in the tier walk of the pods both apply to."""

    policy: ClusterNetworkPolicy
    index: int
    rule: CnpRule

    def describe(self, same: ClusterNetworkPolicy) -> str:
        where = f"rule {self.index}" if self.policy is same else \
            f"rule {self.index} of {self.policy.key} (priority {self.policy.priority})"
        return f"{where} ({self.rule.action}, every protocol)"


def _before(ctx: Context, cnp: ClusterNetworkPolicy, direction: str, j: int, pods: list[Pod]) -> Iterator[_Earlier]:
    """Rules walked before rule j of `cnp` for every pod its subject selects: its own earlier rules,
    then the rules of earlier policies of the tier whose subject holds all of those pods."""
    for i, rule in enumerate(cnp.rules(direction)[:j]):
        yield _Earlier(cnp, i, rule)
    mine = {p.key for p in pods if subject_of(ctx.cluster, cnp, p)}
    if not mine:
        return
    for other in ctx.cluster.cluster_policies:
        if other is cnp:
            return
        if other.tier == cnp.tier and mine <= {p.key for p in pods if subject_of(ctx.cluster, other, p)}:
            for i, rule in enumerate(other.rules(direction)):
                yield _Earlier(other, i, rule)


@check("NP022", "cnp-rule-shadowed", "warning",
       "A ClusterNetworkPolicy rule that an earlier rule, of its policy or of one before it, always matches first.")
def rule_shadowed(ctx: Context) -> Iterator[Hit]:
    """
    Rules apply in written order, policies of a tier in priority order, and the first match decides
    (Accept, Deny and Pass alike end the walk of the tier). A rule whose peers (pods and namespaces)
    all match an earlier rule with no `protocols` (all traffic), of the same policy or of an earlier
    one of the tier that selects every pod this one selects, never matches anything: reorder, or
    narrow the earlier rule. Checked on the pods of the input.
    """
    pods = [p for p in ctx.cluster.pods if not p.host_network]
    for cnp in ctx.cluster.cluster_policies:
        for direction in DIRECTIONS:
            for j, later in enumerate(cnp.rules(direction)):
                if any(p.networks or p.nodes or p.domain_names for p in later.peers):
                    continue
                hit = set(_matched(ctx, later, pods))
                if not hit:
                    continue
                earlier = next((e for e in _before(ctx, cnp, direction, j, pods)
                                if e.rule.ports is None and hit <= set(_matched(ctx, e.rule, pods))), None)
                if earlier is not None:
                    field = "from" if direction == INGRESS else "to"
                    yield at_cnp(ctx, cnp, "spec", str(direction), j, field), \
                        f"{direction} rule {j} of {cnp.key} never matches: {earlier.describe(cnp)} matches all " \
                        f"{len(hit)} pod{'s' if len(hit) != 1 else ''} it names first"


@check("NP023", "cnp-pass-no-effect", "info",
       "A Pass rule with nothing after it in the tier that could decide the traffic it passes.")
def pass_no_effect(ctx: Context) -> Iterator[Hit]:
    """
    `Pass` skips the rest of the tier. When no later rule of the tier (of the same policy, or of a
    later policy that selects some of the same pods) could match any of the peers the Pass rule names,
    the walk would have left the tier anyway: the rule changes nothing. Often a leftover, or a sign
    that the rule it was meant to jump over is elsewhere. Checked on the pods of the input; rules with
    `networks`, `nodes` or `domainNames` peers are left alone.
    """
    pods = [p for p in ctx.cluster.pods if not p.host_network]
    tiers = ctx.cluster.cluster_policies
    for n, cnp in enumerate(tiers):
        mine = {p.key for p in pods if subject_of(ctx.cluster, cnp, p)}
        for direction in DIRECTIONS:
            rules = cnp.rules(direction)
            for i, rule in enumerate(rules):
                if rule.action != Action.PASS or any(p.networks or p.nodes or p.domain_names for p in rule.peers):
                    continue
                passed = set(_matched(ctx, rule, pods))
                if not mine or not passed:
                    continue
                later = list(rules[i + 1:]) + [r for other in tiers[n + 1:] if other.tier == cnp.tier
                                                and mine & {p.key for p in pods if subject_of(ctx.cluster, other, p)}
                                                for r in other.rules(direction)]
                if any(_addresses(r) or passed & set(_matched(ctx, r, pods)) for r in later):
                    continue
                field = "from" if direction == INGRESS else "to"
                yield at_cnp(ctx, cnp, "spec", str(direction), i, field), \
                    f"{direction} rule {i} of {cnp.key} passes, but no later rule of the {cnp.tier} tier could " \
                    "match that traffic: it leaves the tier either way"


def _addresses(rule: CnpRule) -> bool:
    """Peers by address: they may match what a pod peer names (not judged here)."""
    return any(p.networks or p.nodes or p.domain_names for p in rule.peers)


def _matched(ctx: Context, rule, pods) -> Iterator[str]:
    for p in pods:
        if any(peer_matches(ctx.cluster, peer, Endpoint(pod=p), None) for peer in rule.peers):
            yield p.key
