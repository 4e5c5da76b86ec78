"""How typed set elements are written for nft: addresses and ports as text or libnftables JSON."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from netpol.spans import Span

_ADDRESS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}


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
