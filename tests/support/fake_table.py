"""A fake of the rendered table: walks its libnftables JSON the way the kernel walks the ruleset,
so tests can ask "what would the kernel do with this packet" without a kernel (like knftables' Fake)."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any


def _atom(value: Any) -> tuple[int, int]:
    if isinstance(value, dict) and "prefix" in value:
        net = ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")
        return int(net.network_address), int(net.broadcast_address)
    if isinstance(value, dict) and "range" in value:
        return _atom(value["range"][0])[0], _atom(value["range"][1])[1]
    if isinstance(value, int):
        return value, value
    if value in PROTO_NUM:
        return PROTO_NUM[value], PROTO_NUM[value]
    n = int(ipaddress.ip_address(value))
    return n, n


class Walk:
    """The postrouting hook of one rendered table, for the first packet of a connection: its base
    chains in priority order, each of which must not drop the packet (an accept ends one base
    chain only). Chains are entered by vmap elements and jump/goto rules; a goto replaces the
    calling chain, so the target's return is the caller's return."""

    def __init__(self, doc: dict) -> None:
        self.sets: dict[str, list[tuple[list[tuple[int, int]], Any]]] = {}
        self.chains: dict[str, list[list[dict]]] = {}
        self.hooks: list[tuple[int, str]] = []  # (priority, base chain) on the postrouting hook
        self.visited: list[str] = []  # chains the last packet entered
        for obj in doc["nftables"]:
            (kind, body), = obj.items()
            if kind in ("set", "map"):
                self.sets[body["name"]] = [self._elem(e) for e in body.get("elem", [])]
            elif kind == "chain":
                self.chains[body["name"]] = []
                if body.get("hook") == "postrouting":
                    self.hooks.append((body["prio"], body["name"]))
            elif kind == "rule":
                self.chains[body["chain"]].append(body["expr"])

    @staticmethod
    def _elem(e: Any) -> tuple[list[tuple[int, int]], Any]:
        data = None
        if isinstance(e, list):
            e, data = e
        fields = e["concat"] if isinstance(e, dict) and "concat" in e else [e]
        return [_atom(f) for f in fields], data

    def _value(self, expr: dict, pkt: dict) -> Any:
        if "concat" in expr:
            parts = [self._value(x, pkt) for x in expr["concat"]]
            return None if None in parts else parts
        if "meta" in expr:
            return pkt["proto"]
        p = expr["payload"]
        if p["protocol"] == "th":
            return pkt["port"]
        if p["protocol"] in PROTO_NUM:  # tcp dport: only a TCP packet has one
            return pkt["port"] if PROTO_NUM[p["protocol"]] == pkt["proto"] else None
        if p["protocol"] != {4: "ip", 6: "ip6"}[pkt["version"]]:
            return None  # an ip6 match never matches an IPv4 packet, and vice versa
        return pkt["src" if p["field"] == "saddr" else "dst"]

    def _lookup(self, name: str, value: Any) -> Any:
        value = value if isinstance(value, list) else [value]
        for fields, data in self.sets[name]:
            if all(lo <= v <= hi for v, (lo, hi) in zip(value, fields, strict=False)):
                return data if data is not None else True
        return None

    def _match(self, m: dict, pkt: dict) -> bool:
        left, right = m["left"], m["right"]
        if "ct" in left or "&" in left:
            return False  # a new, valid connection (no conntrack mark)
        if "fib" in left:
            local = bool(pkt.get("local"))  # sent by the node itself
            return local if m["op"] == "==" else not local
        if left.get("payload", {}).get("protocol") == "icmpv6":
            return False
        value = self._value(left, pkt)
        if value is None:
            return False
        if isinstance(right, str) and right.startswith("@"):
            hit = self._lookup(right[1:], value) is not None
        else:
            lo, hi = _atom(right)
            hit = lo <= value <= hi
        return hit if m["op"] in ("==", "in") else not hit

    def _enter(self, verb: str, target: str, pkt: dict, depth: int) -> str | None:
        """What the calling rule yields: "next" (go on after it), a verdict, or None (return)."""
        got = self.run(target, pkt, depth + 1)
        if verb == "goto":
            return got
        return "next" if got is None else got

    def _rule(self, exprs: list[dict], pkt: dict, depth: int) -> str | None:
        for e in exprs:
            if "match" in e:
                if not self._match(e["match"], pkt):
                    return "next"
            elif "vmap" in e:
                value = self._value(e["vmap"]["key"], pkt)
                target = None if value is None else self._lookup(e["vmap"]["data"][1:], value)
                if target is None:
                    return "next"
                (verb, arg), = target.items()
                if verb in ("jump", "goto"):
                    return self._enter(verb, arg["target"], pkt, depth)
                return None if verb == "return" else verb
            elif any(k in e for k in ("counter", "log", "limit")):
                continue  # the limit lets these few packets through
            elif "jump" in e or "goto" in e:
                (verb, arg), = e.items()
                return self._enter(verb, arg["target"], pkt, depth)
            else:
                (word, _), = e.items()
                return None if word == "return" else word
        return "next"

    def run(self, chain: str, pkt: dict, depth: int = 0) -> str | None:
        """accept, drop, or None when the chain returns (or ends)."""
        assert depth < 16, "the kernel allows at most 16 nested chains"
        self.visited.append(chain)
        for exprs in self.chains[chain]:
            verdict = self._rule(exprs, pkt, depth)
            if verdict != "next":
                return verdict
        return None

    def allows(self, pkt: dict) -> bool:
        self.visited = []
        return all(self.run(name, pkt) != "drop" for _, name in sorted(self.hooks))


def max_depth(doc: dict) -> int:
    """The deepest chain any jump/goto path reaches, counting every map element as the kernel does
    when it validates the table (the base chains are level 0; it refuses level 16)."""
    edges: dict[str, set[str]] = {}
    maps: dict[str, set[str]] = {}
    bases = []
    for obj in doc["nftables"]:
        (kind, body), = obj.items()
        if kind == "map":
            maps[body["name"]] = {arg["target"] for e in body.get("elem", []) for arg in e[1].values() if arg}
        elif kind == "chain":
            edges[body["name"]] = set()
            if "hook" in body:
                bases.append(body["name"])
    for obj in doc["nftables"]:
        if "rule" in obj:
            for e in obj["rule"]["expr"]:
                if "vmap" in e:
                    edges[obj["rule"]["chain"]] |= maps[e["vmap"]["data"][1:]]
                elif "jump" in e or "goto" in e:
                    edges[obj["rule"]["chain"]].add(next(iter(e.values()))["target"])

    @functools.cache
    def height(chain: str) -> int:
        return max((1 + height(c) for c in edges[chain]), default=0)

    return max(height(b) for b in bases)


PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132, "TCP": 6, "UDP": 17, "SCTP": 132}
