"""The reconcile loop: events → store → (debounce) → snapshot → build → one apply per batch.

Runs on one thread, the only one that touches the store. A batch starts with the first event
after a quiet period and closes `debounce` seconds later, taking everything queued by then, so
a steady stream of events cannot starve it and every batch is one libnftables transaction (a
pod's deletion and the reuse of its address land together). Nothing is compiled before every
kind has been listed once: a partial view (pods but no policies yet) would open everything.
A failed batch keeps the previous rules and is retried with backoff; every `resync_period` the
live table is compared with the last one applied, and drift is repaired and counted.
"""

from __future__ import annotations

import gc
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from netpol.agent.metrics import Metrics
from netpol.agent.source import Backoff, short_error
from netpol.agent.store import KINDS, Event, Snapshot, Store
from netpol.nft.apply import ApplyResult, Enforcer
from netpol.nft.ruleset import Ruleset

log = logging.getLogger("netpol.agent")
REVOKE_GAP = 0.5  # seconds between two conntrack passes


@dataclass(frozen=True)
class Built:
    """What one compile produced: the table, and what it enforces (for metrics and logs)."""

    ruleset: Ruleset
    pods: int  # local policed pods
    isolated: int  # of them, those a policy isolates
    policies: int
    compiled: str = "full"  # or "update": the last plan updated for the pods that changed
    compile_ms: float = 0.0
    render_ms: float = 0.0


# The snapshot to build, and the ruleset last applied (render reuses what did not change).
Build = Callable[[Snapshot, Ruleset | None], Built]


@dataclass(frozen=True)
class BatchReport:
    """Handed to `on_batch` after each batch reached the kernel (benchmarks, tests)."""

    events: tuple[tuple[float, Event], ...]  # (monotonic arrival, event)
    result: ApplyResult | None  # None when the batch failed
    done: float  # monotonic time the rules were in the kernel
    snapshot: Snapshot
    built: Built | None = None
    stages: Mapping[str, float] = field(default_factory=dict)  # ms: snapshot, compile, render, apply


def _settle_memory() -> None:
    """After a full build, move what is alive now (the store, the plan, the table: nearly all of
    the process at 10k pods) out of the cyclic collector's sight. A full collection otherwise walks
    all of it, and lands, ~100 ms at 10k pods, in the middle of some later batch. Refcounting still
    frees these objects; only cycles among them would stay, and they hold none."""
    gc.freeze()


class Reconciler:
    def __init__(self, enforcer: Enforcer, build: Build, metrics: Metrics, *, debounce: float = 0.1,
                 resync_period: float = 60.0, on_batch: Callable[[BatchReport], None] | None = None,
                 revoke: Callable[[Snapshot], None] | None = None) -> None:
        self.store = Store()
        self.ready = threading.Event()
        self.last: Ruleset | None = None
        self._enforcer = enforcer
        self._build = build
        self._metrics = metrics
        self._debounce = debounce
        self._resync_period = resync_period
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[tuple[float, Event] | None] = queue.SimpleQueue()
        self._listed: set[str] = set()
        self._unsupported: set[str] = set()  # domainNames rules seen (logged once each)
        self._applied_version = -1
        self._failures = 0
        self._retry_at: float | None = None
        self._next_resync = time.monotonic() + resync_period
        self._backoff = Backoff(base=0.5, cap=30.0)
        self._rng = random.Random()
        self._revoke = revoke  # cuts established flows the applied rules no longer allow
        self._revoke_at: float | None = None  # when the next cut is due (None: not due)
        self._revoked_last = -REVOKE_GAP
        self._snapshot: Snapshot | None = None  # the one last applied
        self.alive = False

    def submit(self, ev: Event) -> None:
        """Thread-safe: watchers call this."""
        self._queue.put((time.monotonic(), ev))

    def wake(self) -> None:
        self._queue.put(None)

    # ---- the loop --------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.alive = True
        try:
            while not stop.is_set():
                batch = self._collect(self._next_deadline() - time.monotonic())
                if stop.is_set():
                    break
                self._fold(batch)
                now = time.monotonic()
                due = self._retry_at is not None and now >= self._retry_at
                if self._listed.issuperset(KINDS) and (self.store.version != self._applied_version or due):
                    self._sync(batch)
                if now >= self._next_resync:
                    self._resync()
                self._maybe_revoke()
        finally:
            self.alive = False

    def _next_deadline(self) -> float:
        return min(t for t in (self._next_resync, self._retry_at, self._revoke_at) if t is not None)

    def _maybe_revoke(self) -> None:
        """Cut what the rules in force deny, at most every REVOKE_GAP seconds (a burst of batches
        costs one conntrack pass at its end, within a second of the change)."""
        now = time.monotonic()
        if self._revoke is None or self._snapshot is None or self._revoke_at is None or now < self._revoke_at:
            return
        self._revoke_at, self._revoked_last = None, now
        try:
            self._revoke(self._snapshot)
        except Exception as exc:  # noqa: BLE001  (conntrack unreadable: the rules still hold new flows)
            log.error("cannot cut established connections", extra={"fields": {"error": short_error(exc)}})

    def _collect(self, wait: float) -> list[tuple[float, Event]]:
        try:
            first = self._queue.get(timeout=max(0.0, wait))
        except queue.Empty:
            return []
        batch = [first] if first is not None else []
        cut = time.monotonic() + self._debounce
        while (left := cut - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                return batch  # woken to stop
            batch.append(item)
        while True:  # everything queued by the cut joins this batch
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch
            if item is not None:
                batch.append(item)

    def _fold(self, batch: list[tuple[float, Event]]) -> None:
        for _, ev in batch:
            self.store.apply(ev)
            self._metrics.events.labels(ev.kind, ev.type).inc()
            if ev.type == "SYNC":
                self._listed.add(ev.kind)
        for kind, n in self.store.counts().items():
            self._metrics.objects.labels(kind).set(n)
        self._note_unsupported()

    def _note_unsupported(self) -> None:
        """Tier rules with domainNames peers are not enforced (what a name resolves to is not known to
        the rules): counted in a gauge, and each logged once when it appears."""
        found = {f"{cnp.key} egress[{i}]" for cnp in self.store.cluster_policies.values()
                 for i, rule in enumerate(cnp.egress) if any(p.domain_names for p in rule.peers)}
        for rule in sorted(found - self._unsupported):
            log.warning("a domainNames rule is not enforced: it matches nothing in the kernel",
                        extra={"fields": {"rule": rule}})
        self._unsupported = found
        self._metrics.unsupported.set(len(found))

    # ---- syncing ---------------------------------------------------------

    def _sync(self, batch: list[tuple[float, Event]]) -> None:
        start = time.monotonic()
        snap = self.store.snapshot()
        stages = {"snapshot": (time.monotonic() - start) * 1000}
        result = built = None
        try:
            built = self._build(snap, self.last)
            stages.update(compile=built.compile_ms, render=built.render_ms)
            applying = time.monotonic()
            result = self._apply(built.ruleset)
        except Exception as exc:  # compile or kernel: keep the rules we have, try again later
            self._failed(exc)
        else:
            done = time.monotonic()
            stages["apply"] = (done - applying) * 1000
            self._succeeded(snap, built, result, done - start, stages)
            self._snapshot = snap
            if result.kind != "none" or self._revoked_last < 0:
                self._revoke_at = max(done, self._revoked_last + REVOKE_GAP)
            if built.compiled == "full":
                _settle_memory()
        if self._on_batch is not None:
            self._on_batch(BatchReport(tuple(batch), result, time.monotonic(), snap, built, stages))

    def _apply(self, rs: Ruleset) -> ApplyResult:
        """One transaction: the changed elements alone while the kernel's generation shows the table
        is still the one applied last (deletions and additions together, so an address that moved to
        another pod never has a moment with both or neither), else a full comparison and repair."""
        last = self.last
        same_skeleton = last is not None and last.table == rs.table and last.skeleton == rs.skeleton
        result = self._enforcer.apply(rs)
        if result.kind == "full" and same_skeleton:  # we did not change the structure: someone else did
            self._metrics.drift_repairs.inc()
            log.warning("live table structure had drifted; replaced it", extra={"fields": {"table": rs.table}})
        self.last = rs
        return result

    def _succeeded(self, snap: Snapshot, built: Built, result: ApplyResult, took: float,
                   stages: Mapping[str, float]) -> None:
        self._applied_version = snap.version
        self._failures, self._retry_at = 0, None
        self._metrics.sync_seconds.observe(took)
        self._metrics.batches.labels(result.kind).inc()
        self._metrics.pods.set(built.pods)
        self._metrics.isolated.set(built.isolated)
        self._metrics.policies.set(built.policies)
        fields = {"kind": result.kind, "added": result.added, "removed": result.removed,
                  "pods": built.pods, "isolated": built.isolated, "policies": built.policies,
                  "ms": round(took * 1000, 1), "compiled": built.compiled, "fast": result.fast,
                  **{f"{k}_ms": round(v, 1) for k, v in stages.items()}}
        if snap.held:
            fields["held_pods"] = len(snap.held)
        if snap.reused:
            fields["address_reused_by_newer_pod"] = ",".join(snap.reused[:5])
        first = not self.ready.is_set()
        if first or result.kind != "none":
            log.info("first full sync applied" if first else "synced", extra={"fields": fields})
        if first and built.pods == 0 and any(p.kind == "Pod" and p.ips for p in snap.cluster.pods):
            log.warning("the first sync found no pod on this node among the cluster's: is --node (NODE_NAME) "
                        "the node's name as the API knows it?", extra={"fields": {
                            "cluster_pods": len(snap.cluster.pods)}})
        if first:
            self.ready.set()
            self._metrics.ready.set(1)

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures, self._rng)
        self._retry_at = time.monotonic() + delay
        self._metrics.apply_errors.inc()
        self._metrics.batches.labels("error").inc()
        log.error("sync failed; keeping the rules in place", extra={"fields": {
            "error": short_error(exc), "retry_in_s": round(delay, 2), "failures": self._failures}})

    def _resync(self) -> None:
        self._next_resync = time.monotonic() + self._resync_period
        self._revoke_at = self._revoke_at or time.monotonic()  # labels may change what no event showed
        if self.last is None or self._retry_at is not None:
            return
        try:
            problems = self._enforcer.drift(self.last)
            if not problems:
                return
            log.warning("drift in the live table; repairing", extra={"fields": {
                "table": self.last.table, "problems": "; ".join(problems[:5]), "count": len(problems)}})
            self._enforcer.apply(self.last)
            self._metrics.drift_repairs.inc()
        except Exception as exc:
            self._failed(exc)
