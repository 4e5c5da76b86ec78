"""render: a Plan as one nftables `inet` table, in nft syntax (a Ruleset) or libnftables JSON.

The shape depends on policies only: every set is declared, empty or not, and pods only fill sets
and maps, so pods that come and go change elements, never chains or rules. Each rule is built once
as expressions that know both their nft text and their JSON, so the two outputs cannot disagree.
"""

from __future__ import annotations

import functools
import hashlib
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .compile import DIRECTIONS, EGRESS, FAMILIES, INGRESS, Plan, PolicyPlan, RulePlan, paused_gc
from .nftsets import Span, address_json, address_text, port_json, port_text
from .ruleset import Ruleset

ND_TYPES = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit", "nd-router-advert")
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
IP = {4: "ip", 6: "ip6"}
COMMENT_MAX = 120  # the kernel keeps at most 128 bytes of comment
SHORT = {INGRESS: "i", EGRESS: "e"}
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


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


def _vmap(left: Expr, name: str) -> Expr:
    return Expr(f"{left.text} vmap @{name}", {"vmap": {"key": left.json, "data": f"@{name}"}})


def _ct_state(*states: str) -> Expr:
    right: Any = list(states) if len(states) > 1 else states[0]
    return Expr(f"ct state {','.join(states)}", {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                                                           "right": right}})


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
    comment: str

    def text(self) -> str:
        return " ".join(e.text for e in self.exprs) + f' comment "{self.comment}"'


@dataclass(frozen=True)
class NftChain:
    name: str
    rules: tuple[NftRule, ...]
    hook: str | None = None  # base chains: type filter, priority filter, policy accept

    def text(self) -> str:
        head = f"\t\ttype filter hook {self.hook} priority filter; policy accept;\n" if self.hook else ""
        body = "".join(f"\t\t{r.text()}\n" for r in self.rules)
        return f"\tchain {self.name} {{\n{head}{body}\t}}"


# An element is one value per field of its set: (lo, hi) for addresses and ports, a protocol name,
# and for a verdict map the chain to jump to.
Elem = tuple[tuple[Any, ...], str | None]


@dataclass
class Table:
    name: str
    sets: list[NftSet] = field(default_factory=list)
    chains: list[NftChain] = field(default_factory=list)
    elements: dict[str, set[Elem]] = field(default_factory=dict)

    def declare(self, s: NftSet, elems: Iterable[Elem] = ()) -> str:
        if s.name in self.elements:  # two keys sharing a short id: never silently merge their sets
            raise ValueError(f"set name {s.name} used twice")
        self.sets.append(s)
        self.elements[s.name] = set(elems)
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
    key = " . ".join(_field_text(t, v) for t, v in zip(s.types, elem[0]))
    return f"{key} : jump {elem[1]}" if s.verdicts else key


def elem_json(s: NftSet, elem: Elem) -> Any:
    fields = [_field_json(t, v) for t, v in zip(s.types, elem[0])]
    key = fields[0] if len(fields) == 1 else {"concat": fields}
    return [key, {"jump": {"target": elem[1]}}] if s.verdicts else key


# ---- names ----------------------------------------------------------------

def short_id(text: str) -> str:
    """A stable short id: set and chain names must stay well within nft's limits."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def chain_name(direction: str, namespace: str) -> str:
    return f"{'in' if direction == INGRESS else 'eg'}_{short_id(namespace)}"


def comment(namespace: str, name: str, suffix: str) -> str:
    text = f"{namespace}/{name} {suffix}"
    if len(text) <= COMMENT_MAX:
        return text
    keep = COMMENT_MAX - len(namespace) - len(suffix) - 14
    return f"{namespace}/{name[:max(keep, 1)]}~{short_id(name)[:8]} {suffix}"[:COMMENT_MAX]


# ---- policies -------------------------------------------------------------

def _point(address: Any) -> Span:
    return int(address), int(address)


def _port_sets(t: Table, base: str, r: RulePlan) -> list[tuple[str, Expr | None]]:
    """One (kind, port match) per port-matcher kind of the rule; (kind, None) when it has no ports."""
    if r.any_port:
        return [("any", None)]
    out: list[tuple[str, Expr | None]] = []
    if r.ports is not None:
        name = t.declare(NftSet(f"{base}_ports", ("inet_proto", "inet_service"), interval=True),
                         (((p.protocol.lower(), (p.lo, p.hi)), None) for p in r.ports))
        out.append(("ports", _in_set(L4PORT, name)))
    if r.named is not None:
        for v in FAMILIES:
            elems = (((_point(n.address), n.protocol.lower(), (n.port, n.port)), None) for n in r.named[v])
            name = t.declare(NftSet(f"{base}_named{v}", (ADDR_TYPE[v], "inet_proto", "inet_service")), elems)
            out.append((f"named{v}", _in_set(_concat(_addr(v, "daddr"), L4PORT), name)))
    return out


def _rule_nft(t: Table, pol: PolicyPlan, pid: str, r: RulePlan) -> list[NftRule]:
    base = f"p_{pid}_{SHORT[r.direction]}{r.index}"
    own, other = ("daddr", "saddr") if r.direction == INGRESS else ("saddr", "daddr")
    verdict = _verdict("accept" if r.direction == INGRESS else "return")
    note = comment(pol.namespace, pol.name, f"{r.direction}[{r.index}]")
    peer_sets = {}
    if r.peers is not None:
        for v in FAMILIES:
            peer_sets[v] = t.declare(NftSet(f"{base}_peer{v}", (ADDR_TYPE[v],), interval=True),
                                     (((s,), None) for s in r.peers[v]))
    out = []
    for kind, port_match in _port_sets(t, base, r):
        for v in FAMILIES:
            if kind.startswith("named") and kind != f"named{v}":
                continue
            exprs = [_in_set(_addr(v, own), f"p_{pid}_sel{v}")]
            if r.peers is not None:
                exprs.append(_in_set(_addr(v, other), peer_sets[v]))
            if port_match is not None:
                exprs.append(port_match)
            out.append(NftRule((*exprs, COUNTER, verdict), note))
    return out


def _policy(t: Table, pol: PolicyPlan) -> dict[str, list[NftRule]]:
    """Declares the policy's sets; returns its nft rules per direction it isolates."""
    pid = short_id(pol.key)
    for v in FAMILIES:
        t.declare(NftSet(f"p_{pid}_sel{v}", (ADDR_TYPE[v],)), (((_point(a),), None) for a in pol.selected[v]))
    return {d: [nr for r in pol.rules(d) for nr in _rule_nft(t, pol, pid, r)] for d in pol.directions}


# ---- base chains ----------------------------------------------------------

def _guard() -> list[NftRule]:
    return [NftRule((_ct_state("established", "related"), COUNTER, _verdict("accept")), "replies"),
            NftRule((_ct_state("invalid"), COUNTER, _verdict("drop")), "invalid"),
            NftRule((ND, COUNTER, _verdict("accept")), "ipv6 neighbour discovery")]


def _dispatch(directions: Iterable[str]) -> list[NftRule]:
    out = []
    for d in directions:
        fld = "saddr" if d == EGRESS else "daddr"
        for v in FAMILIES:
            out.append(NftRule((_vmap(_addr(v, fld), f"{d}{v}"),), f"{d} dispatch ipv{v}"))
    return out


def build(plan: Plan, table: str = "netpol") -> Table:
    if not TABLE_NAME.fullmatch(table):
        raise ValueError(f"bad table name {table!r}")
    t = Table(table)
    for d in DIRECTIONS:
        for v in FAMILIES:
            elems = {((_point(a),), chain_name(d, ns)) for a, ns in plan.isolated[d].items() if a.version == v}
            t.declare(NftSet(f"{d}{v}", (ADDR_TYPE[v],), verdicts=True), elems)
    per_policy = [(pol, _policy(t, pol)) for pol in plan.policies]
    # egress first: an ingress accept ends the packet's walk through the hook
    t.chains += [NftChain("forward", tuple(_guard() + _dispatch([EGRESS, INGRESS])), hook="forward"),
                 # to the node itself (host-network pods included): always allowed, as the spec says
                 NftChain("input", (NftRule((COUNTER, _verdict("accept")), "node-local"),), hook="input"),
                 NftChain("output", (NftRule((COUNTER, _verdict("accept")), "node-local"),), hook="output")]
    for d in DIRECTIONS:
        for ns in plan.chains[d]:
            rules = [nr for pol, by_dir in per_policy if pol.namespace == ns for nr in by_dir.get(d, ())]
            rules.append(NftRule((COUNTER, _verdict("drop")), f"{ns} default deny {d}"))
            t.chains.append(NftChain(chain_name(d, ns), tuple(rules)))
    if len({c.name for c in t.chains}) != len(t.chains):
        raise ValueError("two namespaces share a chain name")
    t.sets.sort(key=_declaration_rank)
    return t


def _declaration_rank(s: NftSet) -> int:
    """The kernel finds a set by name walking the table's sets in declaration order, on every
    element change: dispatch maps first, then IPv4 sets (most pods), IPv6 sets, port sets."""
    if s.verdicts:
        return 0
    if s.types[0] == "ipv4_addr":
        return 1
    return 2 if s.types[0] == "ipv6_addr" else 3


# ---- outputs --------------------------------------------------------------

def render(plan: Plan, table: str = "netpol", previous: Ruleset | None = None) -> Ruleset:
    """The plan as nft text. With previous (the last ruleset, e.g. the one applied), equal
    skeleton and element sets are previous's own objects, so apply's diff skips them by identity."""
    with paused_gc():
        t = build(plan, table)
        sets = t.by_name()
        skeleton = "\n".join([s.text() for s in t.sets] + [c.text() for c in t.chains])
        elements = {name: frozenset(map(_formatter(sets[name]), elems)) for name, elems in t.elements.items()}
        if previous is None or previous.table != table:
            return Ruleset(table, skeleton, elements)
        changes = {}
        for name in elements.keys() | previous.elements.keys():
            old, new = previous.elements.get(name, frozenset()), elements.get(name, frozenset())
            if old == new:
                elements[name] = old
            else:
                changes[name] = (old - new, new - old)
        same = previous.skeleton == skeleton
        return Ruleset(table, previous.skeleton if same else skeleton, elements,
                       weakref.ref(previous) if same else None, changes if same else {})


def _formatter(s: NftSet) -> Callable[[Elem], str]:
    """elem_text for one set, with the common one-address shapes made direct."""
    if s.types in (("ipv4_addr",), ("ipv6_addr",)):
        v = 4 if s.types[0] == "ipv4_addr" else 6
        if s.verdicts:
            return lambda e: f"{address_text(v, e[0][0])} : jump {e[1]}"
        return lambda e: address_text(v, e[0][0])
    return functools.partial(elem_text, s)


def _elems_json(s: NftSet, elems: set[Elem]) -> list[Any]:
    return [elem_json(s, e) for e in sorted(elems, key=lambda e: elem_text(s, e))]


def to_json(plan: Plan, table: str = "netpol") -> dict[str, Any]:
    """The same table as libnftables JSON, in an order `nft -j -f` loads (chains before the maps
    that jump to them)."""
    t = build(plan, table)
    head = {"family": "inet", "table": table}
    out: list[dict[str, Any]] = [{"metainfo": {"json_schema_version": 1}},
                                 {"table": {"family": "inet", "name": table}}]
    for c in t.chains:
        body: dict[str, Any] = {**head, "name": c.name}
        if c.hook:
            body.update(type="filter", hook=c.hook, prio=0, policy="accept")
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

