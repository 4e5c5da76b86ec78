"""render: a Plan as one nftables `inet` table, in nft syntax (a Ruleset) or libnftables JSON.

What the first packet of a connection walks (replies pass on conntrack):

- Two base chains on the postrouting hook, `post_egress` (by source address) then `post_ingress`
  (by destination), just before `srcnat`: every path a pod's packet takes crosses them after every
  destination rewrite (kube-proxy's DNAT at prerouting or output, IPVS re-sending at LOCAL_OUT)
  and before every source rewrite (masquerade), forwarded, locally re-sent or bridged alike. An
  accept ends one base chain only and a drop ends the packet, so "allowed by egress AND by
  ingress" is the kernel's own rule and no verdict has to carry over.
- Dispatch map `egress4`: pod address -> jump the chain of the first policy that selects the pod
  and has egress rules, or its namespace's default-deny chain when none has.
- Policy chain `p_<id>_e4`: that policy's rules for one family (with those of the other policies of
  its namespace with the same podSelector: they select the same pods), cheapest first (compares
  before hash lookups before interval lookups), each `counter accept`; then `ip saddr vmap @p_<id>_e4n`:
  pod -> goto the next policy that selects it; a pod whose walk ends there misses the map and
  the chain's last rule goes to the namespace's default-deny chain (`eg_<id>`). So a packet walks
  only the policies that select its pod, never the rest of its namespace.
- The kernel refuses jump/goto paths deeper than 16 chains, counting every map element, so each
  namespace's policies are walked in chunks of CHUNK: chunk k has its own dispatch map
  (`egress4_<k>`); a walk going on in a later chunk `return`s to the base chain, which looks up
  the next dispatch map.

The shape depends on policies only: every set, map and chain is declared, empty or not, and pods
only fill sets and maps, so pods that come and go change elements, never chains or rules. Each rule
is built once as expressions that know both their nft text and their JSON, so the outputs agree.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netpol.k8s.model import DIRECTIONS, EGRESS, INGRESS, Direction, Tier
from netpol.nft.elements import address_json, address_text, port_json, port_text
from netpol.nft.plan import ALL_PORTS, FAMILIES, Plan, PolicyPlan, PortRange, RulePlan, paused_gc
from netpol.nft.ruleid import DEFAULT_DENY, RuleId, checked, ident, short_id
from netpol.nft.ruleset import Ruleset
from netpol.spans import Span, Spans, network_span, split_runs

ND_TYPES = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit", "nd-router-advert")
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
IP = {4: "ip", 6: "ip6"}
SHORT = {INGRESS: "i", EGRESS: "e"}
BASE = {EGRESS: "post_egress", INGRESS: "post_ingress"}  # the base chains that enforce
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
CHUNK = 12  # policies one walk passes by goto: with the dispatch jump and the final goto, 14 levels
POINTS = 64  # peer address runs up to this long are kept as single addresses in a hash set
DENY_ACTIONS = ("drop", "log", "audit")
LOG_RATE = (10, 20)  # per second, burst: deny logging per namespace and direction
REVOKE_MARK = 0x10000000  # conntrack mark bit of connections the policies stopped allowing (nft/revoke.py)


# ---- expressions ----------------------------------------------------------

@dataclass(frozen=True)
class Expr:
    text: str
    json: Any


def _payload(proto: str, fld: str) -> Expr:
    return Expr(f"{proto} {fld}", {"payload": {"protocol": proto, "field": fld}})


def _addr(version: int, fld: str) -> Expr:
    return _payload(IP[version], fld)


def _concat(*parts: Expr) -> Expr:
    items = [j for p in parts for j in (p.json["concat"] if isinstance(p.json, dict) and "concat" in p.json
                                        else [p.json])]
    return Expr(" . ".join(p.text for p in parts), {"concat": items})


L4PORT = _concat(Expr("meta l4proto", {"meta": {"key": "l4proto"}}), _payload("th", "dport"))
COUNTER = Expr("counter", {"counter": None})


def _in_set(left: Expr, name: str) -> Expr:
    return Expr(f"{left.text} @{name}", {"match": {"op": "==", "left": left.json, "right": f"@{name}"}})


def _verdict(word: str) -> Expr:
    return Expr(word, {word: None})


ACCEPT = _verdict("accept")


def _vmap(left: Expr, name: str) -> Expr:
    return Expr(f"{left.text} vmap @{name}", {"vmap": {"key": left.json, "data": f"@{name}"}})


def _ct_state(*states: str) -> Expr:
    right: Any = list(states) if len(states) > 1 else states[0]
    return Expr(f"ct state {','.join(states)}", {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                                                           "right": right}})


def _port_match(p: PortRange) -> Expr:
    """A compare, no set: most rules fail here for most packets, at the cost of two loads."""
    proto = p.protocol.lower()
    if (p.lo, p.hi) == ALL_PORTS:
        return Expr(f"meta l4proto {proto}", {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                                                        "right": proto}})
    right: Any = p.lo if p.lo == p.hi else {"range": [p.lo, p.hi]}
    return Expr(f"{proto} dport {port_text((p.lo, p.hi))}",
                {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": right}})


def _goto(chain: str) -> Expr:
    return Expr(f"goto {chain}", {"goto": {"target": chain}})


def log_prefix(namespace: str, direction: Direction) -> str:
    """The kernel log prefix of a denied (or, under audit, would-be denied) connection."""
    return checked(f"netpol deny {direction} {ident(namespace)} ")


def _log(prefix: str) -> tuple[Expr, Expr]:
    rate, burst = LOG_RATE
    return (Expr(f"limit rate {rate}/second burst {burst} packets",
                 {"limit": {"rate": rate, "per": "second", "burst": burst}}),
            Expr(f'log prefix "{prefix}"', {"log": {"prefix": prefix}}))


ND = Expr("icmpv6 type { " + ", ".join(ND_TYPES) + " }",
          {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
                     "right": {"set": list(ND_TYPES)}}})


# ---- table model ----------------------------------------------------------

@dataclass(frozen=True)
class NftSet:
    name: str
    types: tuple[str, ...]
    interval: bool = False
    verdicts: bool = False  # a verdict map keyed by types

    def text(self) -> str:
        kind = "map" if self.verdicts else "set"
        typ = " . ".join(self.types) + (" : verdict" if self.verdicts else "")
        flags = "\n\t\tflags interval" if self.interval else ""
        return f"\t{kind} {self.name} {{\n\t\ttype {typ}{flags}\n\t}}"


@dataclass(frozen=True)
class NftRule:
    exprs: tuple[Expr, ...]
    rule_id: RuleId

    @functools.cached_property
    def comment(self) -> str:
        return self.rule_id.text()

    def text(self) -> str:
        return " ".join(e.text for e in self.exprs) + f' comment "{self.comment}"'


PRIORITY = {"filter": 0, "srcnat": 100}  # nft's named priorities for the hooks we use


@dataclass(frozen=True)
class NftChain:
    name: str
    rules: tuple[NftRule, ...]
    hook: str | None = None  # base chains: type filter, policy accept, at priority `base + offset`
    base: str = "filter"
    offset: int = 0

    @property
    def priority(self) -> int:
        return PRIORITY[self.base] + self.offset

    def text(self) -> str:
        sign = "+" if self.offset > 0 else "-"
        prio = f"{self.base} {sign} {abs(self.offset)}" if self.offset else self.base
        head = f"\t\ttype filter hook {self.hook} priority {prio}; policy accept;\n" if self.hook else ""
        body = "".join(f"\t\t{r.text()}\n" for r in self.rules)
        return f"\tchain {self.name} {{\n{head}{body}\t}}"


# An element is one value per field of its set: (lo, hi) for addresses and ports, a protocol name,
# and for a verdict map its verdict ("jump <chain>", "goto <chain>", "return").
Elem = tuple[tuple[Any, ...], str | None]


@dataclass
class TableDraft:
    name: str
    sets: list[NftSet] = field(default_factory=list)
    chains: list[NftChain] = field(default_factory=list)
    elements: dict[str, set[Elem]] = field(default_factory=dict)
    # render(previous=): per set of the previous ruleset, the plan part it was made from and its
    # formatted elements. A set declared with that very source takes them (`formatted`) instead of
    # computing `elements`; `sources` records each set's source for the next render.
    prior: Mapping[str, tuple[Any, frozenset[str]]] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    formatted: dict[str, frozenset[str]] = field(default_factory=dict)

    def declare(self, s: NftSet, elems: Iterable[Elem] | Callable[[], Iterable[Elem]] = (),
                source: Any = None) -> str:
        """elems may be a function, called only when the set is not reused: a set whose source (a
        plan part, such as a RulePlan, the set's elements are a function of) is the very object it
        was made from in the previous render keeps that render's formatted elements."""
        if s.name in self.elements or s.name in self.formatted:  # two keys sharing a short id: never merge
            raise ValueError(f"set name {s.name} used twice")
        self.sets.append(s)
        if source is not None:
            self.sources[s.name] = source
            old = self.prior.get(s.name)
            if old is not None and old[0] is source:
                self.formatted[s.name] = old[1]
                return s.name
        self.elements[s.name] = set(elems() if callable(elems) else elems)
        return s.name

    def by_name(self) -> dict[str, NftSet]:
        return {s.name: s for s in self.sets}


def _field_text(typ: str, value: Any) -> str:
    if typ in ("ipv4_addr", "ipv6_addr"):
        return address_text(4 if typ == "ipv4_addr" else 6, value)
    if typ == "inet_service":
        return port_text(value)
    return str(value)


def _field_json(typ: str, value: Any) -> Any:
    if typ in ("ipv4_addr", "ipv6_addr"):
        return address_json(4 if typ == "ipv4_addr" else 6, value)
    if typ == "inet_service":
        return port_json(value)
    return value


def elem_text(s: NftSet, elem: Elem) -> str:
    key = " . ".join(_field_text(t, v) for t, v in zip(s.types, elem[0], strict=False))
    return f"{key} : {elem[1]}" if s.verdicts else key


def elem_json(s: NftSet, elem: Elem) -> Any:
    fields = [_field_json(t, v) for t, v in zip(s.types, elem[0], strict=False)]
    key = fields[0] if len(fields) == 1 else {"concat": fields}
    if not s.verdicts:
        return key
    verb, _, chain = str(elem[1]).partition(" ")
    return [key, {verb: {"target": chain} if chain else None}]


# ---- names ----------------------------------------------------------------

def chain_name(direction: Direction, namespace: str) -> str:
    return f"{'in' if direction == INGRESS else 'eg'}_{short_id(namespace)}"


# ---- policies -------------------------------------------------------------

def _point(address: Any) -> Span:
    return int(address), int(address)


def policy_chain(pid: str, direction: Direction, version: int) -> str:
    return f"p_{pid}_{SHORT[direction]}{version}"


# Costs that order a policy chain: set lookups dominate (a hash lookup costs ~20 compares, an
# interval lookup two to six times a hash lookup), so compares come first and intervals last.
HASH, INTERVAL = 1, 3


def _peer_sets(t: TableDraft, base: str, r: RulePlan) -> dict[int, list[tuple[str, int]]]:
    """Per family, (set, cost) to test the peer address against: a hash set of single addresses,
    and with ipBlocks of that family an interval set of the longer runs. A family without ipBlocks
    holds pod addresses only, all in the hash set; one with neither kind of peer has no set."""
    out: dict[int, list[tuple[str, int]]] = {}
    if r.peers is None:
        return out
    for v in FAMILIES:
        out[v] = []
        spans = r.peers[v]
        if v not in r.blocks:
            if r.selectors:
                out[v].append((t.declare(NftSet(f"{base}_peer{v}", (ADDR_TYPE[v],)),
                                         functools.partial(_point_elems, spans), r), HASH))
            continue
        runs = functools.cache(functools.partial(split_runs, spans, POINTS))  # only if not reused
        out[v].append((t.declare(NftSet(f"{base}_peer{v}", (ADDR_TYPE[v],)),
                                 functools.partial(_run_points, runs), r), HASH))
        out[v].append((t.declare(NftSet(f"{base}_span{v}", (ADDR_TYPE[v],), interval=True),
                                 functools.partial(_run_spans, runs), r), INTERVAL))
    return out


def _point_elems(spans: Spans) -> Iterator[Elem]:
    return ((((p, p),), None) for lo, hi in spans for p in range(lo, hi + 1))


def _run_points(runs: Callable[[], tuple[tuple[int, ...], Spans]]) -> Iterator[Elem]:
    return ((((p, p),), None) for p in runs()[0])


def _run_spans(runs: Callable[[], tuple[tuple[int, ...], Spans]]) -> Iterator[Elem]:
    return (((s,), None) for s in runs()[1])


def _named_sets(t: TableDraft, base: str, r: RulePlan) -> dict[int, str]:
    out = {}
    if r.named is not None:
        for v in FAMILIES:
            elems = (((_point(n.address), n.protocol.lower(), (n.port, n.port)), None) for n in r.named[v])
            out[v] = t.declare(NftSet(f"{base}_named{v}", (ADDR_TYPE[v], "inet_proto", "inet_service")), elems, r)
    return out


def _named_match(r: RulePlan, v: int, name: str) -> tuple[Expr, ...]:
    """The named-port lookup, after a protocol compare when all its entries share one protocol."""
    lookup = _in_set(_concat(_addr(v, "daddr"), L4PORT), name)
    if len(r.named_protocols) != 1:
        return (lookup,)
    return (_port_match(PortRange(r.named_protocols[0], *ALL_PORTS)), lookup)


def _rule_nft(t: TableDraft, base: str, note: RuleId, r: RulePlan, verdict: Expr = ACCEPT
              ) -> Iterator[tuple[int, int, NftRule]]:
    """(family, cost, rule): the rule as nft rules, one per port matcher and peer set, each ending in
    verdict. Selection is not tested here: only the selected pods are dispatched into its chains."""
    other = "saddr" if r.direction == INGRESS else "daddr"
    peers, named = _peer_sets(t, base, r), _named_sets(t, base, r)
    end = (COUNTER, verdict)
    for v in FAMILIES:
        if r.peers is not None and not peers[v]:
            continue  # no peer of this family: the rule never matches (nor do its named ports)
        # (matches, cost, whether a match already implies the peer match)
        ports: list[tuple[tuple[Expr, ...], int, bool]] = [((), 0, False)] if r.any_port else []
        ports += [((_port_match(p),), 0, False) for p in r.ports or ()]
        if r.named is not None:  # egress: compile keeps only named destinations inside the peers
            ports.append((_named_match(r, v, named[v]), HASH, r.direction == EGRESS))
        for match, cost, implied in ports:
            if r.peers is None or implied:
                yield v, cost, NftRule((*match, *end), note)
                continue
            for name, extra in peers[v]:
                yield v, cost + extra, NftRule((*match, _in_set(_addr(v, other), name), *end), note)


Ranked = dict[tuple[Direction, int], list[tuple[int, NftRule]]]  # (direction, family) -> (cost, rule)


def _policy(t: TableDraft, pol: PolicyPlan) -> Ranked:
    """Declares the policy's sets; its rules with their costs per (direction, family), for each
    direction it isolates and has rules in (a policy without rules only isolates)."""
    pid = short_id(pol.key)
    out = {}
    for d in pol.directions:
        if not pol.rules(d):
            continue
        ranked: dict[int, list[tuple[int, NftRule]]] = {v: [] for v in FAMILIES}
        for r in pol.rules(d):
            note = RuleId(pol.namespace, pol.name, r.direction, str(r.index))
            for v, cost, nr in _rule_nft(t, f"p_{pid}_{SHORT[r.direction]}{r.index}", note, r):
                ranked[v].append((cost, nr))
        for v in FAMILIES:
            out[(d, v)] = ranked[v]
    return out


def _walk_chain(group: list[PolicyPlan], bodies: Mapping[str, Ranked], d: Direction, v: int) -> NftChain:
    """The rules of a group's policies, cheapest first (a stable sort: equal costs keep plan and
    policy order), then the walk's end."""
    ranked = [item for pol in group for item in bodies[pol.key][(d, v)]]
    rules = [nr for _, nr in sorted(ranked, key=lambda item: item[0])]
    return NftChain(policy_chain(short_id(group[0].key), d, v), (*rules, *_walk_end(group[0], d, v)))


# ---- walks: which chains a pod's packets pass -----------------------------

def dispatch_map(direction: Direction, version: int, chunk: int = 0) -> str:
    return f"{direction}{version}" + (f"_{chunk}" if chunk else "")


def walked(plan: Plan, d: Direction) -> list[list[PolicyPlan]]:
    """Policies that isolate in direction d and have rules in it, grouped by namespace and
    podSelector (a group selects the same pods, so its rules share one chain per family and
    the walk takes one step for it), in plan order; a group is named after its first policy."""
    groups: dict[Any, list[PolicyPlan]] = {}
    for pol in plan.policies:
        if d in pol.directions and pol.rules(d):
            key = pol.key if pol.selector is None else (pol.namespace, pol.selector)
            groups.setdefault(key, []).append(pol)
    return list(groups.values())


def _walks(t: TableDraft, plan: Plan, d: Direction) -> int:
    """Declares the dispatch maps of direction d and the policies' next maps, filled with every
    local isolated pod's walk; returns the number of chunks. A walk ends in the static goto of
    its last policy chain: the kernel re-validates the jump graph on every jump or goto element
    added, walking all of them, so the elements are only what differs per pod."""
    policies = [group[0] for group in walked(plan, d)]
    chunk_of: dict[str, int] = {}
    per_ns: dict[str, int] = {}
    for pol in policies:
        seen = per_ns.get(pol.namespace, 0)
        chunk_of[pol.key], per_ns[pol.namespace] = seen // CHUNK, seen + 1
    chunks = max([1] + [-(-n // CHUNK) for n in per_ns.values()])
    for v in FAMILIES:
        chain = {pol.key: policy_chain(short_id(pol.key), d, v) for pol in policies}
        maps: list[set[Elem]] = [set() for _ in range(chunks)]
        nexts: dict[str, set[Elem]] = {pol.key: set() for pol in policies}
        selecting: dict[Any, list[str]] = {}
        for pol in policies:
            for a in pol.selected[v]:
                selecting.setdefault(a, []).append(pol.key)
        denial = {ns: f"jump {chain_name(d, ns)}" for ns in plan.chains[d]}
        for a, ns in plan.isolated[d].items():
            if a.version != v:
                continue
            key, sel = (_point(a),), selecting.get(a, [])
            if not sel:
                maps[0].add((key, denial[ns]))
            for here, there in zip(sel, sel[1:], strict=False):
                if chunk_of[here] == chunk_of[there]:
                    nexts[here].add((key, f"goto {chain[there]}"))
                else:  # back to the base chain, whose next dispatch map goes on
                    nexts[here].add((key, "return"))
                    maps[chunk_of[there]].add((key, f"jump {chain[there]}"))
            if sel:
                maps[chunk_of[sel[0]]].add((key, f"jump {chain[sel[0]]}"))
        for k, elems in enumerate(maps):
            t.declare(NftSet(dispatch_map(d, v, k), (ADDR_TYPE[v],), verdicts=True), elems)
        for pol in policies:
            t.declare(NftSet(chain[pol.key] + "n", (ADDR_TYPE[v],), verdicts=True), nexts[pol.key])
    return chunks


def _walk_end(pol: PolicyPlan, d: Direction, v: int) -> tuple[NftRule, NftRule]:
    """The next policy selecting the pod, if any (or back to the base chain for the next chunk);
    else the namespace's default deny."""
    own = "saddr" if d == EGRESS else "daddr"
    return (NftRule((_vmap(_addr(v, own), policy_chain(short_id(pol.key), d, v) + "n"),),
                    RuleId(pol.namespace, pol.name, d, "next")),
            NftRule((_goto(chain_name(d, pol.namespace)),), RuleId(pol.namespace, pol.name, d, "end")))


# ---- base and default-deny chains -----------------------------------------

REVOKED = Expr(f"ct mark & {REVOKE_MARK:#x} == {REVOKE_MARK:#x}",
               {"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, REVOKE_MARK]}, "right": REVOKE_MARK}})


def _guard(first: bool) -> list[NftRule]:
    """Connections the policies stopped allowing (marked in conntrack by `revoke`) are dropped both
    ways before replies are accepted. The second base chain needs no invalid rule: the first one
    dropped those packets."""
    invalid = [NftRule((_ct_state("invalid"), COUNTER, _verdict("drop")), RuleId(rule="invalid"))] if first else []
    return [NftRule((REVOKED, COUNTER, _verdict("drop")), RuleId(rule="revoked")),
            NftRule((_ct_state("established", "related"), COUNTER, _verdict("accept")), RuleId(rule="replies")),
            *invalid, NftRule((ND, COUNTER, _verdict("accept")), RuleId(rule="ipv6 neighbour discovery"))]


NODE = Expr("fib saddr type local", {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["saddr"]}},
                                               "right": "local"}})


def _always_allowed(d: Direction, ns: str) -> list[NftRule]:
    """What no policy can deny, tested only where a packet would be denied (so allowed packets pay
    nothing for it): a pod's traffic to itself through its Service (hairpin), and, for ingress, the
    node's own traffic (host processes and host-network pods speak from node addresses; SNAT comes
    after us, so a pod's packet never carries one here; egress dispatch never sees node addresses)."""
    node = [NftRule((NODE, COUNTER, _verdict("accept")), RuleId(ns, "", d, "node"))] if d == INGRESS else []
    return node + _hairpin_rules(lambda v: RuleId(ns, "", d, f"hairpin ipv{v}"))


def _hairpin_rules(note: Callable[[int], RuleId]) -> list[NftRule]:
    """Accept a pod's packet to itself (`saddr . daddr` in the self set), per family."""
    return [NftRule((_in_set(_concat(_addr(v, "saddr"), _addr(v, "daddr")), self_set(v)), COUNTER,
                     _verdict("accept")), note(v)) for v in FAMILIES]


def _gate(plan: Plan, d: Direction, deny: str) -> list[NftRule]:
    """New pods are held back until programmed: an address in the node's pod CIDRs that no local pod
    of the plan holds yet (the CNI gave it out before the API told us) is dropped both ways, except
    what the node sends itself. Only with pod CIDRs; the sets fill as pods come (`_gate_sets`)."""
    if not plan.pod_cidrs:
        return []
    own = "saddr" if d == EGRESS else "daddr"
    out = []
    for v in sorted({n.version for n in plan.pod_cidrs}):
        # the node's own addresses may lie in the pod CIDR too (a bridge CNI's gateway)
        match = (_in_set(_addr(v, own), f"podcidr{v}"), _not_in_set(_addr(v, own), f"known{v}"),
                 Expr("fib saddr type != local", {"match": {"op": "!=", "left": NODE.json["match"]["left"],
                                                            "right": "local"}}))
        note = RuleId(rule=f"unknown pod {d} ipv{v}")
        if deny != "drop":
            out.append(NftRule((*match, *_log(checked(f"netpol unknown pod {d} "))), RuleId(rule=f"{note.rule} log")))
        out.append(NftRule((*match, COUNTER, _verdict("accept" if deny == "audit" else "drop")), note))
    return out


def _gate_sets(t: TableDraft, plan: Plan) -> None:
    if not plan.pod_cidrs:
        return
    for v in sorted({n.version for n in plan.pod_cidrs}):
        t.declare(NftSet(f"podcidr{v}", (ADDR_TYPE[v],), interval=True),
                  [((network_span(n),), None) for n in plan.pod_cidrs if n.version == v])
        t.declare(NftSet(f"known{v}", (ADDR_TYPE[v],)), functools.partial(_known, plan, v), plan.pods)


def _known(plan: Plan, v: int) -> Iterator[Elem]:
    return (((_point(a),), None) for a in plan.addresses() if a.version == v)


def _not_in_set(left: Expr, name: str) -> Expr:
    return Expr(f"{left.text} != @{name}", {"match": {"op": "!=", "left": left.json, "right": f"@{name}"}})


def self_set(version: int) -> str:
    return f"self{version}"


def _self_sets(t: TableDraft, plan: Plan) -> None:
    """`pod . pod` for every local isolated pod: its own traffic through a Service reaches the
    base chains with the same source and destination, and a pod's traffic to itself is allowed."""
    addresses = set(plan.isolated[EGRESS]) | set(plan.isolated[INGRESS])
    for v in FAMILIES:
        elems = (((_point(a), _point(a)), None) for a in addresses if a.version == v)
        t.declare(NftSet(self_set(v), (ADDR_TYPE[v], ADDR_TYPE[v])), elems)


NODE_LOCAL = NftRule((COUNTER, _verdict("accept")), RuleId(rule="node-local"))


def _tier_start(plan: Plan) -> list[NftRule]:
    """With tiers, a pod's traffic to itself through its Service passes before any tier can deny it
    (without them the deny chains let it through, where only denied packets pay for the check)."""
    return _hairpin_rules(lambda v: RuleId(rule=f"hairpin ipv{v}")) if plan.tiers else []


def _dispatch(d: Direction, chunks: int) -> list[NftRule]:
    fld = "saddr" if d == EGRESS else "daddr"
    return [NftRule((_vmap(_addr(v, fld), dispatch_map(d, v, k)),),
                    RuleId(rule=f"{d} dispatch ipv{v}" + (f" #{k}" if k else "")))
            for v in FAMILIES for k in range(chunks)]


def _default_deny(d: Direction, ns: str, deny: str) -> tuple[NftRule, ...]:
    """What is always allowed, then drop; log: log (rate-limited) then drop; audit: log and count, then
    accept."""
    def note(suffix: str = "") -> RuleId:
        return RuleId(ns, "", d, DEFAULT_DENY + suffix)
    drop = NftRule((COUNTER, _verdict("drop")), note())
    first = tuple(_always_allowed(d, ns))
    if deny == "drop":
        return (*first, drop)
    log = NftRule(_log(log_prefix(ns, d)), note(" log"))
    audit = NftRule((COUNTER, _verdict("accept")), note(" audit"))
    return (*first, log, drop) if deny == "log" else (*first, log, audit)


def build(plan: Plan, table: str = "netpol", deny: str = "drop",
          prior: Mapping[str, tuple[Any, frozenset[str]]] | None = None) -> TableDraft:
    if not TABLE_NAME.fullmatch(table):
        raise ValueError(f"bad table name {table!r}")
    if deny not in DENY_ACTIONS:
        raise ValueError(f"deny action {deny!r}: one of {', '.join(DENY_ACTIONS)}")
    t = TableDraft(table, prior=prior or {})
    bodies = {pol.key: _policy(t, pol) for pol in plan.policies}
    chunks = {d: _walks(t, plan, d) for d in DIRECTIONS}
    _self_sets(t, plan)
    _gate_sets(t, plan)
    from netpol.nft.render_tiers import build_tiers  # the tiers build on this module's rules
    tiers = build_tiers(t, plan, deny)
    for d in (EGRESS, INGRESS):  # Admin before NetworkPolicy, Baseline after
        rules = (_guard(d == EGRESS) + _gate(plan, d, deny) + _tier_start(plan) + tiers[(Tier.ADMIN, d)]
                 + _dispatch(d, chunks[d]) + tiers[(Tier.BASELINE, d)])
        t.chains.append(NftChain(BASE[d], tuple(rules), hook="postrouting", base="srcnat",
                                 offset=-10 if d == EGRESS else -9))
    t.chains += [  # to the node itself (host-network pods included): always allowed, as the spec says
                 NftChain("input", (NODE_LOCAL,), hook="input"),
                 NftChain("output", (NODE_LOCAL,), hook="output")]
    for d in DIRECTIONS:
        t.chains += [_walk_chain(group, bodies, d, v) for group in walked(plan, d) for v in FAMILIES]
    for d in DIRECTIONS:
        for ns in plan.chains[d]:
            t.chains.append(NftChain(chain_name(d, ns), _default_deny(d, ns, deny)))
    if len({c.name for c in t.chains}) != len(t.chains):
        raise ValueError("two namespaces or policies share a chain name")
    t.sets.sort(key=_declaration_rank)
    return t


def _declaration_rank(s: NftSet) -> int:
    """The kernel finds a set by name walking the table's sets in declaration order, on every
    element change: dispatch maps first, then IPv4 sets (most pods), IPv6 sets, port sets."""
    if s.verdicts and not s.name.startswith("p_"):
        return 0
    if s.types[0] == "ipv4_addr":
        return 1
    return 2 if s.types[0] == "ipv6_addr" else 3


# ---- outputs --------------------------------------------------------------

def render(plan: Plan, table: str = "netpol", previous: Ruleset | None = None, deny: str = "drop") -> Ruleset:
    """The plan as nft text. With previous (the last ruleset, e.g. the one applied), equal
    skeleton and element sets are previous's own objects, so apply's diff skips them by identity,
    and the sets of rules that are the same RulePlan objects as in previous's plan (update_plan
    keeps what it did not change) are taken over without being built or formatted again.
    deny: what each namespace's default deny does: drop, log (rate-limited) and drop, or audit
    (log, count under "<ns> default deny <direction> audit", accept)."""
    with paused_gc():
        if previous is not None and previous.table != table:
            previous = None
        t = build(plan, table, deny, _prior(previous))
        sets = t.by_name()
        skeleton = "\n".join([s.text() for s in t.sets] + [c.text() for c in t.chains])
        elements = {name: frozenset(map(_formatter(sets[name]), elems)) for name, elems in t.elements.items()}
        elements.update(t.formatted)
        if previous is None:
            return Ruleset(table, skeleton, elements, sources=t.sources)
        changes = {}
        for name in elements.keys() | previous.elements.keys():
            old, new = previous.elements.get(name, frozenset()), elements.get(name, frozenset())
            if old is new:
                continue
            if old == new:
                if name in elements:  # a set only previous had, empty, stays gone
                    elements[name] = old
            else:
                changes[name] = (old - new, new - old)
        same = previous.skeleton == skeleton
        return Ruleset(table, previous.skeleton if same else skeleton, elements,
                       weakref.ref(previous) if same else None, changes if same else {}, sources=t.sources)


def _prior(previous: Ruleset | None) -> dict[str, tuple[Any, frozenset[str]]]:
    """previous's reusable sets: their source, and their elements as previous holds them."""
    if previous is None:
        return {}
    return {name: (src, previous.elements.get(name, frozenset())) for name, src in previous.sources.items()}


def _formatter(s: NftSet) -> Callable[[Elem], str]:
    """elem_text for one set, with the common one-address shapes made direct."""
    if s.types in (("ipv4_addr",), ("ipv6_addr",)):
        v = 4 if s.types[0] == "ipv4_addr" else 6
        if s.verdicts:
            return lambda e: f"{address_text(v, e[0][0])} : {e[1]}"
        return lambda e: address_text(v, e[0][0])
    return functools.partial(elem_text, s)


def _elems_json(s: NftSet, elems: set[Elem]) -> list[Any]:
    return [elem_json(s, e) for e in sorted(elems, key=lambda e: elem_text(s, e))]


def to_json(plan: Plan, table: str = "netpol", deny: str = "drop") -> dict[str, Any]:
    """The same table as libnftables JSON, in an order `nft -j -f` loads (chains before the maps
    that jump to them)."""
    t = build(plan, table, deny)
    head = {"family": "inet", "table": table}
    out: list[dict[str, Any]] = [{"metainfo": {"json_schema_version": 1}},
                                 {"table": {"family": "inet", "name": table}}]
    for c in t.chains:
        body: dict[str, Any] = {**head, "name": c.name}
        if c.hook:
            body.update(type="filter", hook=c.hook, prio=c.priority, policy="accept")
        out.append({"chain": body})
    for s in t.sets:
        body = {**head, "name": s.name, "type": s.types[0] if len(s.types) == 1 else list(s.types)}
        if s.verdicts:
            body["map"] = "verdict"
        if s.interval:
            body["flags"] = ["interval"]
        if t.elements[s.name]:
            body["elem"] = _elems_json(s, t.elements[s.name])
        out.append({"map" if s.verdicts else "set": body})
    for c in t.chains:
        for r in c.rules:
            out.append({"rule": {**head, "chain": c.name, "expr": [e.json for e in r.exprs],
                                 "comment": r.comment}})
    return {"nftables": out}

