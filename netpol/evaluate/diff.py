"""What a change to manifests or policies does to workload connectivity: added, removed, changed.

Both sides are computed on the same external ranges (the boundaries of both), so every address
is compared with itself; neighbouring ranges that changed the same way are merged for reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from netpol.escape import inert, md_code, plain
from netpol.evaluate.causes import Causes
from netpol.evaluate.conns import ConnSet
from netpol.evaluate.connsets import conn_minus
from netpol.evaluate.pairs import differences
from netpol.evaluate.service_access import Access, service_access
from netpol.evaluate.workloads import Connectivity, External, connectivity, external_ranges
from netpol.k8s.model import Cluster, Options

KINDS = ("added", "changed", "removed")


@dataclass(frozen=True)
class Change:
    kind: str  # added | changed | removed
    src: str
    dst: str
    old: ConnSet
    new: ConnSet
    note: str = ""  # "workload added" / "workload removed"
    causes: tuple[str, ...] = ()  # the policy changes and end changes that moved it (causes.py)

    @property
    def opened(self) -> ConnSet:
        return conn_minus(self.new, self.old)

    @property
    def closed(self) -> ConnSet:
        return conn_minus(self.old, self.new)

    def to_json(self) -> dict:
        out = {"type": self.kind, "src": self.src, "dst": self.dst, "old": str(self.old), "new": str(self.new),
               "opened": str(self.opened), "closed": str(self.closed)}
        return out | ({"note": self.note} if self.note else {}) | {"causes": list(self.causes)}


@dataclass(frozen=True)
class ServiceChange:
    """A client workload's access to a Service port, before and after."""

    client: str
    service: str  # ns/name:port
    old: Access | None  # None: the Service port (or client) did not exist
    new: Access | None

    @property
    def verb(self) -> str:
        before, after = (a.reached if a else 0 for a in (self.old, self.new))
        return "opens" if after > before else "closes" if after < before else "changes"

    def text(self) -> str:
        return f"{self.verb} {self.service} for {self.client}"

    def to_json(self) -> dict:
        return {"client": self.client, "service": self.service, "old": _word(self.old), "new": _word(self.new),
                "change": self.verb}


def _word(a: Access | None) -> str:
    return a.word if a is not None else "absent"


@dataclass(frozen=True)
class Diff:
    changes: tuple[Change, ...]
    services: tuple[ServiceChange, ...] = ()

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)

    @property
    def opens(self) -> bool:
        """Does the change allow anything that was denied before?"""
        return any(not c.opened.empty for c in self.changes)

    def summary(self) -> str:
        return ", ".join(f"{self.count(k)} {k}" for k in KINDS)


def compare(old: Connectivity, new: Connectivity) -> Diff:
    """Two results computed on the same external ranges, pair by pair."""
    externals = {e.name: e for e in old.sources + old.destinations + new.sources + new.destinations}
    gone, born = set(old.workloads) - set(new.workloads), set(new.workloads) - set(old.workloads)
    changes = []
    for key, before, after in sorted(differences(old.conns, new.conns), key=lambda x: x[0]):
        kind = "added" if before.empty else "removed" if after.empty else "changed"
        note = "workload added" if born & set(key) else "workload removed" if gone & set(key) else ""
        changes.append(Change(kind, key[0], key[1], before, after, note))
    changes = _merge_ranges(changes, externals)
    order = {k: i for i, k in enumerate(KINDS)}
    return Diff(tuple(sorted(changes, key=lambda c: (order[c.kind], c.src, c.dst))))


def _merge_ranges(changes: list[Change], externals: dict[str, External]) -> list[Change]:
    """Neighbouring external ranges with the same change, on the same workload, become one range."""
    out: list[Change] = []
    runs: dict[tuple, tuple[External, Change]] = {}  # (workload, side, old, new) -> open run
    def ext_side(c: Change):
        return (c.src, 0) if c.src in externals else (c.dst, 1) if c.dst in externals else (None, None)
    for c in sorted(changes, key=lambda c: _order(c, externals)):
        name, side = ext_side(c)
        if name is None:
            out.append(c)
            continue
        ext = externals[name]
        key = (c.dst if side == 0 else c.src, side, c.old, c.new, c.kind, c.note)
        run = runs.get(key)
        if run and run[0].version == ext.version and run[0].last + 1 == ext.first:
            merged = External(ext.version, run[0].first, ext.last)
            runs[key] = (merged, _with_end(run[1], side, merged.name))
        else:
            if run:
                out.append(run[1])
            runs[key] = (ext, c)
    return out + [c for _, c in runs.values()]


def _order(c: Change, externals: dict[str, External]) -> tuple:
    ext = externals.get(c.src) or externals.get(c.dst)
    return (c.dst if c.src in externals else c.src, c.src in externals, ext or External(0, 0, 0))


def _with_end(c: Change, side: int, name: str) -> Change:
    return replace(c, src=name if side == 0 else c.src, dst=name if side == 1 else c.dst)


def diff(old: Cluster, new: Cluster, opts: Options = Options()) -> Diff:
    old_src, old_dst = external_ranges(old)
    new_src, new_dst = external_ranges(new)
    before = connectivity(old, opts, src_cuts=new_src, dst_cuts=new_dst)
    after = connectivity(new, opts, src_cuts=old_src, dst_cuts=old_dst)
    why = Causes(old, new, opts)
    changes = tuple(replace(c, causes=why.of(c.src, c.dst)) for c in compare(before, after).changes)
    return Diff(changes, _service_changes(service_access(old, before), service_access(new, after)))


def _service_changes(old: dict[tuple[str, str], Access], new: dict[tuple[str, str], Access]
                     ) -> tuple[ServiceChange, ...]:
    """Client and Service port pairs whose access changed (an added Service is a change too)."""
    return tuple(ServiceChange(c, s, old.get((c, s)), new.get((c, s))) for c, s in sorted(old.keys() | new.keys())
                 if _word(old.get((c, s))) != _word(new.get((c, s))))


# ---- rendering ----

def _delta(c: Change) -> str:
    parts = []
    if not c.opened.empty and c.kind == "changed":
        parts.append(f"opens {c.opened}")
    if not c.closed.empty and c.kind == "changed":
        parts.append(f"closes {c.closed}")
    if c.note:
        parts.append(c.note)
    return f"  ({'; '.join(parts)})" if parts else ""


def render_text(d: Diff) -> str:
    if not d.changes and not d.services:
        return "No connectivity changes."
    lines = [f"Connectivity changes: {d.summary()}" + ("; opens new connections" if d.opens else "")]
    for c in d.changes:
        conn = f"{c.old} -> {c.new}" if c.kind == "changed" else str(c.new if c.kind == "added" else c.old)
        lines.append(f"{c.kind:<8} {plain(c.src)} => {plain(c.dst)} : {conn}{_delta(c)}")
        lines += [f"           by {plain(why)}" for why in c.causes]
    for sc in d.services:
        lines.append(f"service  {plain(sc.client)} => {plain(sc.service)} : {_word(sc.old)} -> {_word(sc.new)}"
                     f"  ({plain(sc.text())})")
    return inert("\n".join(lines))


def render_json(d: Diff) -> str:
    summary = {k: d.count(k) for k in KINDS} | {"opens": d.opens}
    return json.dumps({"summary": summary, "changes": [c.to_json() for c in d.changes],
                       "services": [sc.to_json() for sc in d.services]}, indent=1)


_MD_MARK = {"added": "➕ added", "changed": "✏️ changed", "removed": "➖ removed"}


MD_LIMIT = 60_000  # characters: GitHub refuses comments over 65,536; leave room for what a workflow adds
_HEAD = ["| | source | destination | before | after | caused by |", "|---|---|---|---|---|---|"]


def _md_row(c: Change) -> str:
    after = f"{c.new} {_delta(c).strip()}".strip()
    why = "<br>".join(md_code(w) for w in c.causes)
    return f"| {_MD_MARK[c.kind]} | {md_code(c.src)} | {md_code(c.dst)} | {c.old} | {after} | {why} |"


def _namespace(end: str) -> str:
    return end.split("/", 1)[0] if end.count("/") else "(outside)"


def render_md(d: Diff, limit: int = MD_LIMIT) -> str:
    """A pull-request comment: the summary, then the changes grouped by namespace pair in <details>
    blocks (opening groups first), cut to stay under `limit` characters with counts of what was left
    out (the JSON output has everything)."""
    head = "### NetworkPolicy connectivity changes\n\n"
    if not d.changes and not d.services:
        return head + "No connectivity changes."
    warn = " This change **opens new connections**." if d.opens else ""
    out = [head + f"**{d.summary()}**.{warn}\n"]
    groups: dict[tuple[str, str], list[Change]] = {}
    for c in d.changes:
        groups.setdefault((_namespace(c.src), _namespace(c.dst)), []).append(c)
    order = sorted(groups, key=lambda k: (not any(not c.opened.empty for c in groups[k]), k))
    size, left, hidden = len(out[0]), 0, 0
    for n, key in enumerate(order):
        changes = groups[key]
        opens = sum(not c.opened.empty for c in changes)
        summary = f"{md_code(key[0])} → {md_code(key[1])}: {len(changes)} change{'s' if len(changes) != 1 else ''}" \
                  + (f", {opens} opening" if opens else "")
        rows = [_md_row(c) for c in changes]
        block = "\n".join([f"<details{' open' if opens else ''}><summary>{summary}</summary>\n", *_HEAD, *rows,
                           "\n</details>\n"])
        while len(block) + size > limit - 300 and rows:  # keep the group, drop its last rows
            rows.pop()
            block = "\n".join([f"<details><summary>{summary}</summary>\n", *_HEAD, *rows,
                               f"\n… and {len(changes) - len(rows)} more (netpol diff -o json lists them all)",
                               "\n</details>\n"])
        if not rows:
            left = len(order) - n
            hidden = sum(len(groups[k]) for k in order[n:])
            break
        out.append(block)
        size += len(block) + 1
    if left:
        out.append(f"… and {left} more namespace pair{'s' if left != 1 else ''} with {hidden} changes "
                   "(netpol diff -o json lists them all).")
    if d.services:
        svc = ["Through Services (after DNAT, per backend):", "", "| | client | Service port | before | after |",
               "|---|---|---|---|---|"]
        svc += [f"| {sc.verb} | {md_code(sc.client)} | {md_code(sc.service)} | {_word(sc.old)} | {_word(sc.new)} |"
                for sc in d.services]
        text = "\n".join(svc)
        if size + len(text) > limit:
            text = f"{len(d.services)} changes through Services (netpol diff -o json lists them)."
        out.append(text)
    return "\n".join(out)


RENDERERS = {"text": render_text, "json": render_json, "md": render_md}
