"""The value render hands to apply: one `inet` table as an nft skeleton plus set/map elements."""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
# Characters that would let an element string end its command and start another one.
_UNSAFE = re.compile(r"[{};#\n\r]")


@dataclass(frozen=True)
class Ruleset:
    """The whole of one netpol table. Family is always inet.

    `skeleton` is the table body without elements (sets, maps, chains, rules);
    `elements` maps a set or map name to its elements in nft syntax.
    """

    table: str
    skeleton: str
    elements: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Optional, from render(previous=...): the ruleset this one was diffed against (weakly held,
    # so rulesets do not chain in memory) and per changed set its (removed, added) elements.
    # apply uses them instead of comparing every set when it last applied exactly that base.
    base: weakref.ref[Ruleset] | None = field(default=None, compare=False, repr=False)
    changes: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=dict, compare=False, repr=False)
    # Optional, from render: per set, the plan part its elements were made from (render reuses the
    # set's elements when the next plan holds the very same object).
    sources: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.table):
            raise ValueError(f"bad table name {self.table!r}")
        base = self.base() if self.base is not None else None
        shared = base.elements if base is not None else {}
        frozen: dict[str, frozenset[str]] = {}
        for name, elems in self.elements.items():
            if shared.get(name) is elems:  # checked when base was made
                frozen[name] = elems
                continue
            if not _NAME.fullmatch(name):
                raise ValueError(f"bad set name {name!r}")
            if _UNSAFE.search("\0".join(elems)) or any(not e.strip() for e in elems):  # one scan per set
                bad = [e for e in elems if _UNSAFE.search(e) or not e.strip()]
                raise ValueError(f"set {name}: unsafe element {bad[0]!r}")
            stripped = frozenset(e.strip() for e in elems)
            frozen[name] = elems if stripped == elems and isinstance(elems, frozenset) else stripped
        object.__setattr__(self, "elements", MappingProxyType(frozen))
        if self.base is not None:
            if base is None or base.table != self.table or any(
                    frozen.get(n, frozenset()) != base.elements.get(n, frozenset()) - gone | came
                    for n, (gone, came) in self.changes.items()):
                raise ValueError("changes do not lead from base to these elements")
            object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))

    def diffed_from(self, other: Ruleset) -> bool:
        """Whether `changes` are exactly the element differences from other (same skeleton too)."""
        return self.base is not None and self.base() is other and self.skeleton == other.skeleton

    def element_commands(self, verb: str = "add") -> str:
        """`add element` lines for every non-empty set, sorted so the text is stable."""
        return "".join(
            f"{verb} element inet {self.table} {name} {{ {', '.join(sorted(elems))} }}\n"
            for name, elems in sorted(self.elements.items())
            if elems
        )

    def script(self) -> str:
        """The whole table as one nft script: the table block, then its elements."""
        return f"table inet {self.table} {{\n{self.skeleton}\n}}\n{self.element_commands()}"
