"""Connection sets as np-guard writes them: parse its strings, the canonical form, arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from netpol.evaluate.conns import MAX_PORT, ConnSet
from netpol.k8s.model import PROTOCOLS
from netpol.spans import subtract


def conn_set(by_proto: Mapping[str, Iterable[tuple[int, int]]]) -> ConnSet:
    """Canonical ConnSet: every protocol present, ranges sorted and merged."""
    out = []
    for proto in sorted(PROTOCOLS):
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(by_proto.get(proto, ())):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        out.append((proto, tuple(merged)))
    return ConnSet(tuple(out))


NO_CONNS = conn_set({})
ALL_CONNS = conn_set({p: [(1, MAX_PORT)] for p in PROTOCOLS})


def parse_conns(text: str) -> ConnSet:
    """`All Connections`, `No Connections` or `TCP 80,8080-8090,UDP 53` (np-guard's form)."""
    text = text.strip()
    if text == "All Connections":
        return ALL_CONNS
    if text == "No Connections":
        return NO_CONNS
    found: dict[str, list[tuple[int, int]]] = {}
    proto = None
    for token in text.split(","):
        head, _, rest = token.strip().partition(" ")
        if head in PROTOCOLS and rest:
            proto, token = head, rest
        if proto is None:
            raise ValueError(f"connection set {text!r}: expected a protocol before {token!r}")
        lo, _, hi = token.strip().partition("-")
        found.setdefault(proto, []).append((int(lo), int(hi or lo)))
    return conn_set(found)


def conn_minus(a: ConnSet, b: ConnSet) -> ConnSet:
    """What `a` allows and `b` does not."""
    bd = dict(b.ranges)
    return conn_set({p: list(subtract(tuple(r), tuple(bd.get(p, ())))) for p, r in a.ranges})


def canonical(c: ConnSet) -> ConnSet:
    return conn_set(dict(c.ranges))


def json_row(src: str, dst: str, c: ConnSet) -> dict:
    """One line of `matrix --workloads -o json`."""
    return {"src": src, "dst": dst, "conn": str(c), "ports": {p: [list(r) for r in rs] for p, rs in c.ranges if rs}}
