"""Element deltas between two Rulesets of the same skeleton, sent without reading the table back.

`Enforcer.apply` lists and parses the whole live table on every call, which at 10k pods costs
seconds. Between two batches the agent knows exactly what it applied last, so when the skeleton
is unchanged the change is the difference of the two element sets, computed in memory and sent
as one transaction. Deleting an element that is not there aborts the whole transaction, so a
table someone edited is never half-updated: the delta is retried with every changed interval
set flushed and refilled (the kernel may hold our intervals in other pieces), and if that fails
too the caller falls back to `Enforcer.apply`. Drift outside the changed sets is found by the
periodic resync, which reads the table.

Stopgap: this belongs in `netpol.apply` (`Enforcer.apply(rs, previous=...)`); it is here until
that exists.
"""

from __future__ import annotations

import re

import nftables

from ..apply import ApplyResult
from ..netns import run_in
from ..ruleset import Ruleset

_INTERVAL = re.compile(r"\b(set|map) (\S+) \{[^}]*\bflags [^}\n]*\binterval\b")


class DeltaError(RuntimeError):
    """The kernel refused the delta (e.g. the live table is not what we last applied)."""


def interval_sets(skeleton: str) -> dict[str, str]:
    """Interval sets and maps of a skeleton: name -> "set" or "map"."""
    return {name: kind for kind, name in _INTERVAL.findall(skeleton)}


def _key(elem: str) -> str:
    """A map element is deleted by its key alone (`key : verdict`; IPv6 colons have no spaces)."""
    return elem.split(" : ", 1)[0]


class Delta:
    def __init__(self, netns: str | None) -> None:
        self._nft = run_in(netns, nftables.Nftables)
        self._intervals: tuple[str, dict[str, str]] = ("", {})

    def apply(self, old: Ruleset, new: Ruleset) -> ApplyResult:
        if old.table != new.table or old.skeleton != new.skeleton:
            raise DeltaError("skeleton changed: needs a full apply")
        changes = [(name, old.elements.get(name, frozenset()), new.elements.get(name, frozenset()))
                   for name in sorted(old.elements.keys() | new.elements.keys())]
        changes = [(name, o - n, n - o, n) for name, o, n in changes if o != n]
        if not changes:
            return ApplyResult(new.table, "none", changed=False)
        t = new.table
        exact = self._commands(t, changes, {})
        try:
            self._send(exact)
            text = exact
        except DeltaError:
            text = self._commands(t, changes, self._interval_sets(new.skeleton))
            self._send(text)
        added = sum(len(c[2]) for c in changes)
        removed = sum(len(c[1]) for c in changes)
        return ApplyResult(t, "elements", True, added, removed, text)

    def _interval_sets(self, skeleton: str) -> dict[str, str]:
        if self._intervals[0] != skeleton:
            self._intervals = (skeleton, interval_sets(skeleton))
        return self._intervals[1]

    @staticmethod
    def _commands(table: str, changes: list, refill: dict[str, str]) -> str:
        deletes, adds = [], []
        for name, gone, came, whole in changes:
            if name in refill:  # the whole set, as we mean it
                deletes.append(f"flush {refill[name]} inet {table} {name}")
                came = whole
            elif gone:
                deletes.append(f"delete element inet {table} {name} {{ {', '.join(sorted(map(_key, gone)))} }}")
            if came:
                adds.append(f"add element inet {table} {name} {{ {', '.join(sorted(came))} }}")
        return "\n".join(deletes + adds) + "\n"

    def _send(self, text: str) -> None:
        rc, _, err = self._nft.cmd(text)
        if rc != 0:
            raise DeltaError(str(err).strip().splitlines()[0] if err else f"nft returned {rc}")
