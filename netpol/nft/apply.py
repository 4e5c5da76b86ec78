"""Apply a Ruleset to the kernel through libnftables: one transaction, verified by reading back.

The wanted structure of a skeleton is learnt from the kernel itself: the skeleton is loaded
into a private, empty network namespace (no traffic passes there) and listed as JSON. The
live table is then compared with it; when only elements differ the change is element
commands, otherwise the table is replaced whole, atomically, in one buffer.

Fast path: reading a table of 10k pods back takes seconds, so the Enforcer remembers the
table it last verified whole (`_Known`: the ruleset, the live elements, the kernel's ruleset
generation right after). While the generation has not moved, nothing was committed in the
netns since, so the live table is still exactly that: a new ruleset with the same skeleton is
diffed in memory and sent as one nfnetlink batch that the kernel refuses if the generation
moved meanwhile; only the touched elements are read back. Any doubt (another commit, an
element kind the fast path does not write, a refusal, a failed read-back) falls back to the
full comparison, which also re-establishes what is known. `drift()` always reads the table.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import nftables

from netpol.errors import ApplyError, Unsupported
from netpol.netns import run_in
from netpol.nft import listing as nftjson
from netpol.nft import netlink as nfnetlink
from netpol.nft.ruleset import Ruleset

Kind = Literal["none", "elements", "full"]
CLONE_NEWNET = 0x40000000
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_libc = ctypes.CDLL(None, use_errno=True)
_DECLARATION = re.compile(r"\b(?:set|map)\s+([A-Za-z_][A-Za-z0-9_.\-]*)\s*\{([^}]*)")
FAST_LIMIT = 20000  # element changes the fast path sends at most; more go through libnftables


@dataclass(frozen=True)
class SetChange:
    name: str
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True)
class Transaction:
    """What apply would do to the live table."""

    table: str
    kind: Kind
    reason: str = ""
    changes: tuple[SetChange, ...] = ()
    commands: str = ""

    @property
    def added(self) -> int:
        return sum(len(c.add) for c in self.changes)

    @property
    def removed(self) -> int:
        return sum(len(c.remove) for c in self.changes)

    def __str__(self) -> str:
        if self.kind == "none":
            return f"inet {self.table}: in step"
        if self.kind == "full":
            return f"inet {self.table}: full: {self.reason}"
        lines = [f"inet {self.table}: elements +{self.added} -{self.removed}"]
        for c in self.changes:
            shown = [f"+{e}" for e in c.add[:5]] + [f"-{e}" for e in c.remove[:5]]
            more = len(c.add) + len(c.remove) - len(shown)
            lines.append(f"  {c.name}: " + " ".join(shown) + (f" (+{more} more)" if more else ""))
        return "\n".join(lines)


@dataclass(frozen=True)
class ApplyResult:
    table: str
    kind: Kind
    changed: bool
    added: int = 0
    removed: int = 0
    commands: str = ""
    fast: bool = False  # decided without listing the table: the generation proved it unchanged


@dataclass
class _Known:
    """A table as last verified: wanted ruleset, live elements per set, generation after."""

    ruleset: Ruleset
    sets: dict[str, nftjson.LiveSet]
    exact: set[str]  # sets whose live elements are exactly the ruleset's, piece for piece
    genid: int


@dataclass(frozen=True)
class _Delta:
    name: str
    shape: nftjson.SetShape
    gone: dict[nftjson.Elem, str]  # live element -> nft text
    came: dict[nftjson.Elem, str]  # wanted element -> nft text


def _context() -> nftables.Nftables:
    nft = nftables.Nftables()
    nft.set_json_output(True)  # text input still parses; listings come back as JSON
    return nft


def _scratch_context() -> nftables.Nftables:
    """A context bound to a new, empty network namespace that lives as long as its socket."""

    def body() -> nftables.Nftables:
        home = os.stat("/proc/thread-self/ns/net").st_ino
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise ApplyError("cannot create a scratch network namespace", os.strerror(ctypes.get_errno()))
        if os.stat("/proc/thread-self/ns/net").st_ino == home:  # never load into a real netns
            raise ApplyError("scratch network namespace was not created")
        return _context()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(body).result()


def _check_name(table: str) -> str:
    if not _TABLE.fullmatch(table):
        raise ApplyError(f"bad table name {table!r}")
    return table


def _replace(table: str, body: str) -> str:
    """Create-if-absent, delete and define again: one buffer, so one atomic transaction."""
    return f"add table inet {table}\ndelete table inet {table}\n{body}"


@dataclass(frozen=True)
class _Fast:
    """What the fast path did: `done` (applied and verified), `sent` (applied, but the read-back
    had doubts: the full comparison decides), or neither (not tried, or refused with nothing changed)."""

    done: ApplyResult | None = None
    sent: ApplyResult | None = None


NOT_TRIED = _Fast()


class Enforcer:
    """Owns one netpol table in one network namespace (None: the caller's own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._nft = run_in(netns, _context)
        self._scratch: nftables.Nftables | None = None
        self._refs: dict[tuple[str, str], dict[str, Any] | str] = {}
        self._lock = threading.RLock()
        self._known: dict[str, _Known] = {}
        self._channel: nfnetlink.Channel | None = None
        self._channel_tried = False  # opened once; None after that: not available here

    # ---- kernel I/O -------------------------------------------------------

    def _cmd(self, nft: nftables.Nftables, text: str, what: str) -> str:
        rc, out, err = nft.cmd(text)
        if rc != 0:
            raise ApplyError(what, err.strip())
        return str(out)

    def _list(self, table: str) -> nftjson.LiveTable | None:
        rc, out, err = self._nft.cmd(f"list table inet {_check_name(table)}")
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise ApplyError(f"cannot list table inet {table}", err.strip())
        return nftjson.parse_table(json.loads(out))

    def _reference(self, rs: Ruleset) -> dict[str, Any] | str:
        """The kernel's own JSON of the skeleton, or why it could not be had (cached either way)."""
        key = (rs.table, rs.skeleton)
        if key not in self._refs:
            if len(self._refs) > 8:
                self._refs.clear()
            try:
                if self._scratch is None:
                    self._scratch = _scratch_context()
                body = f"table inet {rs.table} {{\n{rs.skeleton}\n}}\n"
                self._cmd(self._scratch, _replace(rs.table, body), "skeleton")
                out = self._cmd(self._scratch, f"list table inet {rs.table}", "skeleton")
                self._refs[key] = nftjson.parse_table(json.loads(out)).structure
            except ApplyError as e:
                self._refs[key] = (e.nft_error or e.message).splitlines()[0]
        return self._refs[key]

    # ---- comparing --------------------------------------------------------

    def _element_changes(self, rs: Ruleset, live: nftjson.LiveTable) -> tuple[SetChange, ...]:
        changes = []
        for name in sorted(live.sets.keys() | rs.elements.keys()):
            add, remove = nftjson.diff_elements(live.sets[name], rs.elements.get(name, ()))
            if add or remove:
                changes.append(SetChange(name, tuple(add), tuple(remove)))
        return tuple(changes)

    def _structure_drift(self, rs: Ruleset, live: nftjson.LiveTable | None) -> list[str]:
        if live is None:
            return [f"table inet {rs.table}: missing"]
        ref = self._reference(rs)
        if isinstance(ref, str):
            return [f"skeleton not verified: {ref}"]
        undeclared = sorted(rs.elements.keys() - live.sets.keys())
        return nftjson.structure_drift(live.structure, ref) + [f"set {n}: not declared" for n in undeclared]

    def _drift(self, rs: Ruleset, live: nftjson.LiveTable | None) -> list[str]:
        out = self._structure_drift(rs, live)
        if out or live is None:
            return out
        return [f"set {c.name}: {len(c.add)} missing {_preview(c.add)}, "
                f"{len(c.remove)} unexpected {_preview(c.remove)}" for c in self._element_changes(rs, live)]

    def _refuse_lookups(self, rs: Ruleset, live: nftjson.LiveTable | None) -> None:
        ref = self._reference(rs)
        ref = {} if isinstance(ref, str) else ref
        shapes = {s.name: s for s in (nftjson.shape_of(k.split()[0], b) for k, b in ref.items()
                                      if k.split()[0] in ("set", "map"))}
        if live and not shapes:
            shapes = {n: s.shape for n, s in live.sets.items()}
        for name, elems in rs.elements.items():
            bad = sorted(e for e in elems if name in shapes and nftjson.unresolved(shapes[name], e))
            if bad:
                raise ApplyError(f"set {name}: {bad[0]!r} is not a literal address or range "
                                 "(nft would resolve it as a host name)")

    def _plan(self, rs: Ruleset, live: nftjson.LiveTable | None) -> Transaction:
        structural = self._structure_drift(rs, live)
        self._refuse_lookups(rs, live)
        if structural or live is None:
            more = f" (+{len(structural) - 1} more)" if len(structural) > 1 else ""
            return Transaction(rs.table, "full", structural[0] + more, commands=_replace(rs.table, rs.script()))
        changes = self._element_changes(rs, live)
        if not changes:
            return Transaction(rs.table, "none")
        t = rs.table
        text = "".join(f"delete element inet {t} {c.name} {{ {', '.join(c.remove)} }}\n"
                       for c in changes if c.remove)
        text += "".join(f"add element inet {t} {c.name} {{ {', '.join(c.add)} }}\n" for c in changes if c.add)
        return Transaction(t, "elements", "elements differ", changes, text)

    # ---- fast path --------------------------------------------------------

    def _nl(self) -> nfnetlink.Channel | None:
        """The netlink channel, opened on first use; None where this kernel or netns has none."""
        if not self._channel_tried:
            self._channel_tried = True
            try:
                self._channel = nfnetlink.Channel(self.netns)
            except OSError:
                self._channel = None
        return self._channel

    def _genid(self) -> int | None:
        nl = self._nl()
        try:
            return nl.genid() if nl else None
        except OSError:
            return None

    def _remember(self, rs: Ruleset, live: nftjson.LiveTable, genid: int | None) -> None:
        """Keep a table just verified whole, if no other commit can have slipped in since genid."""
        if genid is None or self._genid() != genid:
            self._known.pop(rs.table, None)
            return
        exact = {name for name, ls in live.sets.items()
                 if ls.elems.keys() == {nftjson.elem_from_text(ls.shape, t) for t in rs.elements.get(name, ())}}
        # nft merges auto-merge sets its own way and trips over pieces written otherwise; its JSON
        # listing does not show the flag, so the skeleton says which sets to leave to nft
        merging = {name for name, body in _DECLARATION.findall(rs.skeleton) if "auto-merge" in body}
        sets = {name: ls for name, ls in live.sets.items() if name not in merging}
        self._known[rs.table] = _Known(rs, sets, exact, genid)

    def _deltas(self, known: _Known, rs: Ruleset) -> list[_Delta] | None:
        """Element changes from the known table to rs, or None when the fast path cannot send them."""
        out, total = [], 0
        for name, gone_t, came_t in _changed_sets(known.ruleset, rs):
            live = known.sets.get(name)
            if live is None:
                return None
            try:
                nfnetlink.check_shape(live.shape)
            except Unsupported:
                return None
            norm = functools.partial(nftjson.elem_from_text, live.shape)
            _refuse_unresolved(name, live.shape, came_t)
            if name in known.exact:  # live is exactly old: the text difference is the change
                was = {norm(t) for t in gone_t}
                came_all = {norm(t): t for t in came_t}
                same = was & came_all.keys()  # written differently, the same element
                gone = {e: live.elems[e] for e in was - same if e in live.elems}
                came = {e: t for e, t in came_all.items() if e not in same and e not in live.elems}
            else:  # replace the pieces that differ, whatever the kernel holds
                wanted = {norm(t): t for t in rs.elements.get(name, ())}
                gone = {e: t for e, t in live.elems.items() if e not in wanted}
                came = {e: t for e, t in wanted.items() if e not in live.elems}
            total += len(gone) + len(came)
            if total > FAST_LIMIT:
                return None
            out.append(_Delta(name, live.shape, gone, came))
        return sorted(out, key=lambda d: d.name)

    def _fast_apply(self, rs: Ruleset) -> _Fast:
        """The element fast path over netlink; the full comparison follows unless it is `done`."""
        known = self._known.get(rs.table)
        if known is None or known.ruleset.skeleton != rs.skeleton:
            return NOT_TRIED
        nl = self._nl()
        if nl is None or self._genid() != known.genid:
            return NOT_TRIED
        deltas = self._deltas(known, rs)
        if deltas is None:
            return NOT_TRIED
        if not deltas:
            known.ruleset = rs
            return _Fast(done=ApplyResult(rs.table, "none", changed=False, fast=True))
        t = rs.table
        text = "".join(f"delete element inet {t} {d.name} {{ {', '.join(sorted(d.gone.values()))} }}\n"
                       for d in deltas if d.gone)
        text += "".join(f"add element inet {t} {d.name} {{ {', '.join(sorted(d.came.values()))} }}\n"
                        for d in deltas if d.came)
        result = ApplyResult(t, "elements", True, sum(len(d.came) for d in deltas),
                             sum(len(d.gone) for d in deltas), text, fast=True)
        try:
            changes = [_wire_change(d, known.sets[d.name]) for d in deltas]
            nl.commit(t, changes, known.genid)
        except (OSError, Unsupported):
            return NOT_TRIED  # refused, nothing changed: the full comparison decides and repairs
        try:
            after = nl.genid()
            problems = _verify(nl, t, deltas, changes)
        except OSError:
            problems = ["read-back failed"]
        if problems:
            return _Fast(sent=result)
        for d in deltas:  # the live elements we hold are private to _Known: update in place
            elems = known.sets[d.name].elems
            for e in d.gone:
                del elems[e]
            elems.update(d.came)
            known.exact.add(d.name)
        known.ruleset = rs
        if after != known.genid + 1:  # someone else committed right after us: no longer vouched for
            self._known.pop(rs.table, None)
        else:
            known.genid = after
        return _Fast(done=result)

    # ---- public -----------------------------------------------------------

    def plan(self, rs: Ruleset) -> Transaction:
        """Dry run: what apply(rs) would do now."""
        with self._lock:
            return self._plan(rs, self._list(rs.table))

    def drift(self, rs: Ruleset) -> list[str]:
        """Differences between the live table and rs; empty when in step. Always reads the table."""
        with self._lock:
            before = self._genid()
            live = self._list(rs.table)
            problems = self._drift(rs, live)
            if not problems and live is not None:
                self._remember(rs, live, before)
            return problems

    def apply(self, rs: Ruleset) -> ApplyResult:
        """Bring the live table to rs in one transaction, then verify it by reading back (all of
        it, or only the touched elements when the generation shows nothing else changed)."""
        with self._lock:
            fast = self._fast_apply(rs)
            if fast.done is not None:
                return fast.done
            result = self._full_apply(rs)
            if fast.sent is not None and not result.changed:  # sent fast, read back in full: in step
                return dataclasses.replace(fast.sent, fast=False)
            return result

    def _full_apply(self, rs: Ruleset) -> ApplyResult:
        self._known.pop(rs.table, None)
        before = self._genid()
        live = self._list(rs.table)
        plan = self._plan(rs, live)
        if plan.kind == "none":
            if live is not None:
                self._remember(rs, live, before)
            return ApplyResult(rs.table, "none", changed=False)
        self._cmd(self._nft, plan.commands, f"nft refused the {plan.kind} update of inet {rs.table}")
        after = self._genid()
        live = self._list(rs.table)
        if live is not None and isinstance(self._reference(rs), str):
            # The skeleton needs this netns (e.g. its interfaces): trust what the kernel took.
            self._refs[(rs.table, rs.skeleton)] = live.structure
        problems = self._drift(rs, live)
        if problems:
            raise ApplyError(f"inet {rs.table} differs after apply: " + "; ".join(problems[:3]))
        if live is not None:
            self._remember(rs, live, after)
        return ApplyResult(rs.table, plan.kind, True, plan.added, plan.removed, plan.commands)

    def forget(self, table: str | None = None) -> None:
        """Drop what is known of a table (None: of all), so the next apply compares in full."""
        with self._lock:
            if table is None:
                self._known.clear()
            else:
                self._known.pop(table, None)

    def delete(self, table: str) -> bool:
        """Remove our table; False when it was not there."""
        with self._lock:
            self._known.pop(table, None)
            if self._list(table) is None:
                return False
            self._cmd(self._nft, f"delete table inet {table}", f"cannot delete inet {table}")
            return True

    def counters(self, table: str) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per rule comment, summed over rules sharing a comment."""
        with self._lock:
            live = self._list(table)
            return dict(live.counters) if live else {}

    def handles(self, table: str) -> tuple[int, ...]:
        """Rule handles in listing order: unchanged handles mean the rules were not rebuilt."""
        with self._lock:
            live = self._list(table)
            return live.handles if live else ()


def _changed_sets(old_rs: Ruleset, rs: Ruleset) -> Iterator[tuple[str, frozenset[str], frozenset[str]]]:
    """(name, removed, added) element texts per set that differs; render(previous=) has them ready."""
    if rs.diffed_from(old_rs):
        for name, (gone, came) in rs.changes.items():
            yield name, gone, came
        return
    old_sets = old_rs.elements
    for name in rs.elements.keys() | old_sets.keys():
        old, new = old_sets.get(name, frozenset()), rs.elements.get(name, frozenset())
        if old is not new and old != new:
            yield name, old - new, new - old


def _refuse_unresolved(name: str, shape: nftjson.SetShape, texts: frozenset[str]) -> None:
    bad = sorted(t for t in texts if nftjson.unresolved(shape, t))
    if bad:
        raise ApplyError(f"set {name}: {bad[0]!r} is not a literal address or range "
                         "(nft would resolve it as a host name)")


def _wire_change(d: _Delta, live: nftjson.LiveSet) -> nfnetlink.Change:
    gone = tuple(w for e in sorted(d.gone, key=repr) for w in nfnetlink.wires(d.shape, e))
    came = tuple(w for e in sorted(d.came, key=repr) for w in nfnetlink.wires(d.shape, e))
    if d.shape.interval and came and not live.elems:
        came = (nfnetlink.zero_end(d.shape),) + came  # as nft does when an interval set fills up
    return nfnetlink.Change(d.name, gone, came)


def _verify(nl: nfnetlink.Channel, table: str, deltas: list[_Delta], changes: list[nfnetlink.Change]) -> list[str]:
    """Read every added element back by key: it must be there, with its verdict. (Deletions need
    no read: the kernel acknowledged each, and refuses to delete what is not there.)"""
    asks = [(d.name, w) for d, c in zip(deltas, changes, strict=False) for w in c.add
            if not (d.shape.interval and w == nfnetlink.zero_end(d.shape))]  # nft's placeholder: never answered
    got = nl.get(table, asks)
    return [f"set {name}: {w.key.hex()} read back as {g}" for (name, w), g in zip(asks, got, strict=False)
            if g is None or (g.key, g.flags, g.verdict) != (w.key, w.flags, w.verdict)]


def _preview(items: tuple[str, ...], n: int = 3) -> str:
    shown = ", ".join(items[:n]) + (", ..." if len(items) > n else "")
    return f"({shown})" if items else ""
