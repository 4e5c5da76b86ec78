"""Interval arithmetic, the one place for it: addresses and ports as inclusive integer spans.

Sets of spans are kept merged: sorted, disjoint and not even adjacent (nft refuses overlapping
elements in an interval set, and equal sets then compare equal).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

Span = tuple[int, int]
Spans = tuple[Span, ...]


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


def covers(cover: Spans, span: Span) -> bool:
    """Whether span lies within one span of a merged cover."""
    i = bisect.bisect_right(cover, (span[0], float("inf"))) - 1
    return i >= 0 and cover[i][0] <= span[0] and span[1] <= cover[i][1]


def with_points(spans: Spans, adds: Iterable[int], drops: Iterable[int]) -> Spans:
    """Merged spans with points added and removed, still merged."""
    out = list(spans)
    for x in drops:
        i = bisect.bisect_right(out, (x, float("inf"))) - 1
        if i >= 0 and out[i][1] >= x:
            lo, hi = out[i]
            out[i:i + 1] = [s for s in ((lo, x - 1), (x + 1, hi)) if s[0] <= s[1]]
    for x in adds:
        i = bisect.bisect_right(out, (x, float("inf")))  # out[i - 1] starts at or before x
        if i and out[i - 1][1] >= x:
            continue
        left, right = i > 0 and out[i - 1][1] == x - 1, i < len(out) and out[i][0] == x + 1
        if left and right:
            out[i - 1:i + 1] = [(out[i - 1][0], out[i][1])]
        elif left:
            out[i - 1] = (out[i - 1][0], x)
        elif right:
            out[i] = (x, out[i][1])
        else:
            out.insert(i, (x, x))
    return tuple(out)
