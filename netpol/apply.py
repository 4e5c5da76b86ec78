"""Apply a Ruleset to the kernel through libnftables: one transaction, verified by reading back.

The wanted structure of a skeleton is learnt from the kernel itself: the skeleton is loaded
into a private, empty network namespace (no traffic passes there) and listed as JSON. The
live table is then compared with it; when only elements differ the change is element
commands, otherwise the table is replaced whole, atomically, in one buffer.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import nftables

from netpol import nftjson
from netpol.errors import NetpolError
from netpol.netns import run_in
from netpol.ruleset import Ruleset

Kind = Literal["none", "elements", "full"]
CLONE_NEWNET = 0x40000000
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_libc = ctypes.CDLL(None, use_errno=True)


class ApplyError(NetpolError):
    """A change was refused by nftables, or the table read back is not what we meant."""

    def __init__(self, message: str, nft_error: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.nft_error = nft_error

    def __str__(self) -> str:
        return f"{self.message}\n{self.nft_error}" if self.nft_error else self.message


@dataclass(frozen=True)
class SetChange:
    name: str
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
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


class Enforcer:
    """Owns one netpol table in one network namespace (None: the caller's own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._nft = run_in(netns, _context)
        self._scratch: nftables.Nftables | None = None
        self._refs: dict[tuple[str, str], dict[str, Any] | str] = {}
        self._lock = threading.RLock()

    # ---- kernel I/O -------------------------------------------------------

    def _cmd(self, nft: nftables.Nftables, text: str, what: str) -> str:
        rc, out, err = nft.cmd(text)
        if rc != 0:
            raise ApplyError(what, err.strip())
        return str(out)

    def _list(self, table: str) -> nftjson.Table | None:
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

    def _element_changes(self, rs: Ruleset, live: nftjson.Table) -> tuple[SetChange, ...]:
        changes = []
        for name in sorted(live.sets.keys() | rs.elements.keys()):
            add, remove = nftjson.diff_elements(live.sets[name], rs.elements.get(name, ()))
            if add or remove:
                changes.append(SetChange(name, tuple(add), tuple(remove)))
        return tuple(changes)

    def _structure_drift(self, rs: Ruleset, live: nftjson.Table | None) -> list[str]:
        if live is None:
            return [f"table inet {rs.table}: missing"]
        ref = self._reference(rs)
        if isinstance(ref, str):
            return [f"skeleton not verified: {ref}"]
        undeclared = sorted(rs.elements.keys() - live.sets.keys())
        return nftjson.structure_drift(live.structure, ref) + [f"set {n}: not declared" for n in undeclared]

    def _drift(self, rs: Ruleset, live: nftjson.Table | None) -> list[str]:
        out = self._structure_drift(rs, live)
        if out or live is None:
            return out
        return [f"set {c.name}: {len(c.add)} missing {_preview(c.add)}, "
                f"{len(c.remove)} unexpected {_preview(c.remove)}" for c in self._element_changes(rs, live)]

    def _refuse_lookups(self, rs: Ruleset, live: nftjson.Table | None) -> None:
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

    def _plan(self, rs: Ruleset, live: nftjson.Table | None) -> Plan:
        structural = self._structure_drift(rs, live)
        self._refuse_lookups(rs, live)
        if structural or live is None:
            more = f" (+{len(structural) - 1} more)" if len(structural) > 1 else ""
            return Plan(rs.table, "full", structural[0] + more, commands=_replace(rs.table, rs.script()))
        changes = self._element_changes(rs, live)
        if not changes:
            return Plan(rs.table, "none")
        t = rs.table
        text = "".join(f"delete element inet {t} {c.name} {{ {', '.join(c.remove)} }}\n"
                       for c in changes if c.remove)
        text += "".join(f"add element inet {t} {c.name} {{ {', '.join(c.add)} }}\n" for c in changes if c.add)
        return Plan(t, "elements", "elements differ", changes, text)

    # ---- public -----------------------------------------------------------

    def plan(self, rs: Ruleset) -> Plan:
        """Dry run: what apply(rs) would do now."""
        with self._lock:
            return self._plan(rs, self._list(rs.table))

    def drift(self, rs: Ruleset) -> list[str]:
        """Differences between the live table and rs; empty when in step."""
        with self._lock:
            return self._drift(rs, self._list(rs.table))

    def apply(self, rs: Ruleset) -> ApplyResult:
        """Bring the live table to rs in one transaction, then verify it by reading back."""
        with self._lock:
            plan = self._plan(rs, self._list(rs.table))
            if plan.kind == "none":
                return ApplyResult(rs.table, "none", changed=False)
            self._cmd(self._nft, plan.commands, f"nft refused the {plan.kind} update of inet {rs.table}")
            live = self._list(rs.table)
            if live is not None and isinstance(self._reference(rs), str):
                # The skeleton needs this netns (e.g. its interfaces): trust what the kernel took.
                self._refs[(rs.table, rs.skeleton)] = live.structure
            problems = self._drift(rs, live)
            if problems:
                raise ApplyError(f"inet {rs.table} differs after apply: " + "; ".join(problems[:3]))
            return ApplyResult(rs.table, plan.kind, True, plan.added, plan.removed, plan.commands)

    def delete(self, table: str) -> bool:
        """Remove our table; False when it was not there."""
        with self._lock:
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


def _preview(items: tuple[str, ...], n: int = 3) -> str:
    shown = ", ".join(items[:n]) + (", ..." if len(items) > n else "")
    return f"({shown})" if items else ""
