"""Normalised views of an nftables table, so live and wanted state compare by meaning.

Structure (table, sets, chains, rules) is the libnftables JSON minus handles, counter
values and elements. Elements become tuples of (start, end) integer intervals, one per
concatenated field, plus the map's data, so "198.18.0.0/24" and
"198.18.0.0-198.18.0.255" are the same element however the kernel chose to print it.
Values of types we do not know stay opaque strings (compared as written).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netpol import spans

Interval = tuple[int, int]
Atom = Interval | str
Elem = tuple[tuple[Atom, ...], str | None]  # key fields, map data (None in a set)

_ADDR_VERSION = {"ipv4_addr": 4, "ipv6_addr": 6}
_FAMILY = {"ipv4_addr": socket.AF_INET, "ipv6_addr": socket.AF_INET6}
_INT_TYPES = {"inet_service", "mark", "integer", "ct_mark", "meta_mark", "ifindex"}
_PROTOS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
           "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136, "dccp": 33}
_VOLATILE = {"handle", "packets", "bytes", "used", "used_unit", "elem"}
_CONCAT = re.compile(r"\s+\.\s+")
_MAPSEP = re.compile(r"\s+:\s+")


@dataclass(frozen=True)
class SetShape:
    name: str
    types: tuple[str, ...]
    interval: bool
    data: str | None = None  # a map's data type

    @property
    def mergeable(self) -> bool:
        """One-field interval sets: the kernel may merge or split what we wrote."""
        return self.interval and self.data is None and len(self.types) == 1


@dataclass(frozen=True)
class LiveSet:
    shape: SetShape
    elems: dict[Elem, str]  # normalised element -> nft text that deletes it


@dataclass(frozen=True)
class LiveTable:
    structure: dict[str, Any]
    sets: dict[str, LiveSet] = field(default_factory=dict)
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)  # per comment, rules with a counter
    handles: tuple[int, ...] = ()


# ---- values ---------------------------------------------------------------

def _point(typ: str, value: Any) -> Atom:
    text = str(value).strip().strip('"')
    try:
        if typ in _ADDR_VERSION:
            n = int.from_bytes(socket.inet_pton(_FAMILY[typ], text), "big")
            return (n, n)
        elif typ == "inet_proto":
            n = int(text) if text.isdigit() else _PROTOS.get(text) or socket.getprotobyname(text)
            return (n, n)
        elif typ == "inet_service" and not text.isdigit():
            n = socket.getservbyname(text)
            return (n, n)
        elif typ in _INT_TYPES:
            n = int(text, 0)
            return (n, n)
        elif typ == "ether_addr":
            n = int(text.replace(":", ""), 16)
            return (n, n)
    except (ValueError, OSError):
        pass
    return text


def _prefix(typ: str, addr: Any, length: Any) -> Atom:
    try:
        net = ipaddress.ip_network(f"{addr}/{length}", strict=False)
    except ValueError:
        return f"{addr}/{length}"
    if net.version != _ADDR_VERSION.get(typ):
        return f"{addr}/{length}"
    return (int(net.network_address), int(net.broadcast_address))


def _span(lo: Atom, hi: Atom, raw: str) -> Atom:
    if isinstance(lo, tuple) and isinstance(hi, tuple) and lo[0] <= hi[1]:
        return (lo[0], hi[1])
    return raw


def _json_atom(typ: str, value: Any) -> Atom:
    if isinstance(value, dict):
        if "prefix" in value:
            return _prefix(typ, value["prefix"]["addr"], value["prefix"]["len"])
        if "range" in value:
            lo, hi = value["range"]
            return _span(_point(typ, lo), _point(typ, hi), json.dumps(value))
        return json.dumps(value, sort_keys=True)
    return _point(typ, value)


def _text_atom(typ: str, text: str) -> Atom:
    text = text.strip()
    atom = _point(typ, text)
    if isinstance(atom, tuple):
        return atom
    if "/" in text and typ in _ADDR_VERSION:
        return _prefix(typ, *text.split("/", 1))
    if "-" in text:
        lo, hi = text.split("-", 1)
        return _span(_point(typ, lo), _point(typ, hi), text)
    return atom


def _verdict_json(value: Any) -> str:
    if isinstance(value, dict):
        (verb, arg), = value.items()
        return f"{verb} {arg['target']}" if isinstance(arg, dict) and "target" in arg else verb
    return str(value)


def _data_json(dtype: str, value: Any) -> str:
    return _verdict_json(value) if dtype == "verdict" else str(_json_atom(dtype, value))


def _data_text(dtype: str, text: str) -> str:
    return " ".join(text.split()) if dtype == "verdict" else str(_text_atom(dtype, text))


# ---- elements -------------------------------------------------------------

def _unwrap(value: Any) -> Any:
    """Elements with options (comment, counter, timeout) come wrapped in {"elem": {"val": ...}}."""
    return value["elem"]["val"] if isinstance(value, dict) and "elem" in value else value


def elem_from_json(shape: SetShape, value: Any) -> Elem:
    data = None
    value = _unwrap(value)
    if shape.data is not None and isinstance(value, list):
        value, raw_data = _unwrap(value[0]), value[1]
        data = _data_json(shape.data, raw_data)
    fields = value["concat"] if len(shape.types) > 1 and isinstance(value, dict) else [value]
    if len(fields) != len(shape.types):
        return ((json.dumps(value, sort_keys=True),), data)
    return (tuple(_json_atom(t, v) for t, v in zip(shape.types, fields, strict=False)), data)


@functools.lru_cache(maxsize=1 << 18)  # the same pod addresses come back on every apply
def elem_from_text(shape: SetShape, text: str) -> Elem:
    key, data = text, None
    if shape.data is not None:
        parts = _MAPSEP.split(text, maxsplit=1)
        if len(parts) != 2:
            return ((f"?{text}",), None)
        key, data = parts[0], _data_text(shape.data, parts[1])
    fields = _CONCAT.split(key.strip()) if len(shape.types) > 1 else [key]
    if len(fields) != len(shape.types):
        return ((f"?{text}",), data)
    return (tuple(_text_atom(t, v) for t, v in zip(shape.types, fields, strict=False)), data)


def json_text(value: Any) -> str:
    """nft syntax for a JSON element's key (enough to delete it)."""
    value = _unwrap(value)
    if isinstance(value, list):
        return json_text(value[0])
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return "-".join(json_text(v) for v in value["range"])
        if "concat" in value:
            return " . ".join(json_text(v) for v in value["concat"])
    return str(value)


def interval_text(typ: str, span: Interval) -> str:
    lo, hi = span
    if typ not in _ADDR_VERSION:
        return str(lo) if lo == hi else f"{lo}-{hi}"
    # by the set's type, not the number: an IPv6 span may start below 2**32 (::/0 minus excepts)
    addr = ipaddress.IPv4Address if _ADDR_VERSION[typ] == 4 else ipaddress.IPv6Address
    first, last = addr(lo), addr(hi)
    if lo == hi:
        return str(first)
    nets = list(ipaddress.summarize_address_range(first, last))
    return str(nets[0]) if len(nets) == 1 else f"{first}-{last}"


# ---- tables ---------------------------------------------------------------

def scrub(value: Any) -> Any:
    """Drop what changes without anyone editing the table: handles, counter values, elements."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def shape_of(kind: str, body: dict[str, Any]) -> SetShape:
    typ = body.get("type", "")
    types = tuple(typ) if isinstance(typ, list) else (str(typ),)
    data = body.get("map") if kind == "map" else None
    return SetShape(body["name"], types, "interval" in body.get("flags", []),
                    " . ".join(data) if isinstance(data, list) else data)


def _rule_counter(exprs: list[Any]) -> tuple[int, int] | None:
    """The rule's counter values; None for a rule without a counter (walk steps, log rules)."""
    found, packets, nbytes = False, 0, 0
    for e in exprs:
        c = e.get("counter") if isinstance(e, dict) else None
        if isinstance(c, dict):
            found, packets, nbytes = True, packets + c.get("packets", 0), nbytes + c.get("bytes", 0)
    return (packets, nbytes) if found else None


def parse_table(doc: dict[str, Any]) -> LiveTable:
    """One `nft -j list table` document, normalised."""
    structure: dict[str, Any] = {}
    sets: dict[str, LiveSet] = {}
    counters: dict[str, tuple[int, int]] = {}
    handles: list[int] = []
    for obj in doc.get("nftables", []):
        (kind, body), = obj.items()
        if kind == "metainfo":
            continue
        if kind == "table":
            structure["table"] = scrub(body)
        elif kind in ("set", "map"):
            shape = shape_of(kind, body)
            sets[shape.name] = LiveSet(shape, {elem_from_json(shape, e): json_text(e) for e in body.get("elem", [])})
            structure[f"{kind} {shape.name}"] = scrub(body)
        elif kind == "chain":
            structure[f"chain {body['name']}"] = scrub(body)
            structure.setdefault(f"rules {body['name']}", [])
        elif kind == "rule":
            structure.setdefault(f"rules {body['chain']}", []).append(scrub(body))
            handles.append(body.get("handle", -1))
            new = _rule_counter(body["expr"]) if "comment" in body else None
            if new is not None:  # only rules that count: a walk's "next"/"end" steps have nothing to say
                old = counters.get(body["comment"], (0, 0))
                counters[body["comment"]] = (old[0] + new[0], old[1] + new[1])
        else:
            structure[f"{kind} {body.get('name')}"] = scrub(body)
    return LiveTable(structure, sets, counters, tuple(handles))


def structure_drift(live: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(live.keys() | want.keys()):
        if key not in live:
            out.append(f"{key}: missing")
        elif key not in want:
            out.append(f"{key}: unexpected")
        elif key.startswith("rules ") and len(live[key]) != len(want[key]):
            out.append(f"{key}: {len(live[key])} live, want {len(want[key])}")
        elif key.startswith("rules ") and live[key] != want[key]:
            i = next(i for i, (a, b) in enumerate(zip(live[key], want[key], strict=False)) if a != b)
            out.append(f"{key}: rule {i} differs")
        elif live[key] != want[key]:
            out.append(f"{key}: declaration differs")
    return out


def diff_elements(live: LiveSet, want: Iterable[str]) -> tuple[list[str], list[str]]:
    """(to add, to remove), in nft syntax, that turn the live set into the wanted one."""
    wanted: dict[Elem, str] = {}
    for text in sorted(want):
        wanted.setdefault(elem_from_text(live.shape, text), text)
    spans = [k[0] for k, _ in (*wanted, *live.elems)]
    if live.shape.mergeable and all(isinstance(s, tuple) for s in spans):
        return _diff_spans(live, wanted)
    add = [text for e, text in wanted.items() if e not in live.elems]
    remove = [text for e, text in live.elems.items() if e not in wanted]
    return add, remove


def _diff_spans(live: LiveSet, wanted: dict[Elem, str]) -> tuple[list[str], list[str]]:
    """Interval sets compare as merged ranges. Live pieces inside the goal stay; others go;
    the uncovered rest of the goal is added, so no add overlaps a piece that stays (nft
    would refuse that)."""
    goal = spans.merge(k[0] for k, _ in wanted)  # type: ignore[misc]
    kept: list[Interval] = []
    remove: list[str] = []
    for (key, _), text in live.elems.items():
        span = key[0]
        assert isinstance(span, tuple)
        if spans.covers(goal, span):
            kept.append(span)
        else:
            remove.append(text)
    typ = live.shape.types[0]
    return [interval_text(typ, s) for s in spans.subtract(goal, spans.merge(kept))], remove


def unresolved(shape: SetShape, text: str) -> bool:
    """Whether an address field of the element is not a literal address: nft would look
    it up as a host name, a DNS query from the enforcer, which we never want."""
    if not any(t in _ADDR_VERSION for t in shape.types):
        return False
    key, _ = elem_from_text(shape, text)
    if len(key) != len(shape.types):
        return True
    return any(isinstance(a, str) for t, a in zip(shape.types, key, strict=False) if t in _ADDR_VERSION)
