"""Interval arithmetic for nftables interval sets, and how their elements are written.

Addresses and ports are inclusive integer spans. nft refuses overlapping elements in an interval
set, so every set is kept merged: sorted, disjoint and not even adjacent.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

Span = tuple[int, int]
Spans = tuple[Span, ...]
_ADDRESS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}


def merge(spans: Iterable[Span]) -> Spans:
    out: list[Span] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def subtract(spans: Spans, holes: Spans) -> Spans:
    """Merged spans minus merged holes."""
    out: list[Span] = []
    for lo, hi in spans:
        i = bisect.bisect_left(holes, (lo, lo)) - 1  # a hole starting before lo may still cover it
        for h_lo, h_hi in holes[max(i, 0):]:
            if h_lo > hi:
                break
            if h_hi < lo:
                continue
            if h_lo > lo:
                out.append((lo, h_lo - 1))
            lo = h_hi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def intersect(a: Spans, b: Spans) -> Spans:
    """Two merged span lists' common part, in one pass over both."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def contains(spans: Spans, value: int) -> bool:
    i = bisect.bisect_right(spans, (value, float("inf"))) - 1
    return i >= 0 and spans[i][0] <= value <= spans[i][1]


def split_runs(spans: Spans, limit: int) -> tuple[tuple[int, ...], Spans]:
    """Merged spans as (single values, longer spans): a span of at most limit values becomes
    its values, so a hash set can hold them; longer ones stay spans for an interval set."""
    points: list[int] = []
    ranges: list[Span] = []
    for lo, hi in spans:
        if hi - lo < limit:
            points.extend(range(lo, hi + 1))
        else:
            ranges.append((lo, hi))
    return tuple(points), tuple(ranges)


def network_span(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Span:
    return int(net.network_address), int(net.broadcast_address)


def _prefix_len(version: int, span: Span) -> int | None:
    """The prefix length when the span is exactly one CIDR block."""
    lo, hi = span
    size = hi - lo + 1
    if size & (size - 1) or lo % size:
        return None
    return (32 if version == 4 else 128) - (size.bit_length() - 1)


@functools.lru_cache(maxsize=1 << 17)  # the same pod addresses fill many sets
def address_text(version: int, span: Span) -> str:
    lo, hi = span
    first = str(_ADDRESS[version](lo))
    if lo == hi:
        return first
    length = _prefix_len(version, span)
    return f"{first}/{length}" if length is not None else f"{first}-{_ADDRESS[version](hi)}"


def address_json(version: int, span: Span) -> Any:
    lo, hi = span
    first = str(_ADDRESS[version](lo))
    if lo == hi:
        return first
    length = _prefix_len(version, span)
    if length is not None:
        return {"prefix": {"addr": first, "len": length}}
    return {"range": [first, str(_ADDRESS[version](hi))]}


def port_text(span: Span) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


def port_json(span: Span) -> Any:
    return span[0] if span[0] == span[1] else {"range": [span[0], span[1]]}
