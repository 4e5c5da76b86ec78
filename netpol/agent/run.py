"""The node agent's lifecycle: start the parts in a safe order, stop them on a signal.

Start: status server (not ready) → protect the node per --fail-mode unless a previous agent's
table is there → reconcile loop → watches. Stop: watches, loop, then the table is kept (the
rules stay enforced while no agent runs) unless --cleanup-on-exit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netpol.agent.bridge import SYSCTLS, bypassing
from netpol.agent.failmode import FailMode, bootstrap_ruleset, parse_cidrs
from netpol.agent.logs import LogFormat, configure, unconfigure
from netpol.agent.metrics import Metrics, StatusServer
from netpol.agent.reconcile import BatchReport, Build, Reconciler
from netpol.agent.revoking import Revoker
from netpol.agent.source import Backoff, Watcher, short_error
from netpol.agent.store import KINDS
from netpol.errors import NetpolError
from netpol.k8s.model import Options
from netpol.nft.apply import Enforcer
from netpol.nft.revoke import ESTABLISHED

log = logging.getLogger("netpol.agent")
DEFAULT_TABLE = "netpol"
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class AgentConfig:
    node: str | None = None  # None: every pod (a lab, or a one-node cluster)
    kubeconfig: str | None = None
    context: str | None = None
    netns: str | None = None
    table: str = DEFAULT_TABLE
    debounce: float = 0.1
    resync_period: float = 60.0
    fail_mode: FailMode = "closed"
    pod_cidrs: tuple[str, ...] = ()
    cleanup_on_exit: bool = False
    metrics_addr: str | None = None  # "host:port"; None: no HTTP server
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    log_denied: bool = False
    audit: bool = False
    established: str = "revoke"  # or keep: see netpol.nft.revoke
    options: Options = field(default_factory=Options)
    watch_timeout: int = 300  # seconds a watch lasts before it is renewed (randomised x1-2)
    watch_backoff: Backoff = Backoff()

    def check(self) -> AgentConfig:
        if not _TABLE.fullmatch(self.table):
            raise NetpolError(f"--table {self.table!r}: expected letters, digits and '_' (at most 64), "
                              "not starting with a digit")
        if self.debounce < 0 or self.debounce > 60:
            raise NetpolError(f"--debounce {self.debounce}: expected 0 to 60 seconds")
        if self.resync_period <= 0:
            raise NetpolError(f"--resync-period {self.resync_period}: expected a positive number of seconds")
        if self.established not in ESTABLISHED:
            raise NetpolError(f"--established {self.established!r}: expected revoke or keep")
        if self.fail_mode not in ("closed", "open"):
            raise NetpolError(f"--fail-mode {self.fail_mode!r}: expected closed or open")
        if self.log_format not in ("json", "text"):
            raise NetpolError(f"--log-format {self.log_format!r}: expected json or text")
        if self.metrics_addr is not None:
            _, sep, port = self.metrics_addr.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise NetpolError(f"--metrics-addr {self.metrics_addr!r}: expected HOST:PORT, e.g. 0.0.0.0:9108")
        parse_cidrs(self.pod_cidrs)
        return self


BRIDGE_CHECK_S = 10.0  # readiness re-reads the bridge sysctls at most this often

class Agent:
    """Python API: `Agent(cfg).start()`, `.wait_ready()`, `.stop()`; `run(cfg)` for a process."""

    def __init__(self, cfg: AgentConfig, *, build: Build | None = None, make_client: Callable[[], object] | None = None,
                 on_batch: Callable[[BatchReport], None] | None = None, enforcer: Enforcer | None = None) -> None:
        self.cfg = cfg.check()
        self.metrics = Metrics()
        self._stop = threading.Event()
        self._build = build
        self._make_client = make_client
        self._on_batch = on_batch
        self.enforcer = enforcer
        self.reconciler: Reconciler | None = None
        self._loop: threading.Thread | None = None
        self._watchers: list[Watcher] = []
        self.server: StatusServer | None = None
        self._bridge_checked: tuple[float, list[str]] | None = None

    # ---- start -----------------------------------------------------------

    def start(self) -> Agent:
        cfg = self.cfg
        from netpol.agent.pipeline import Pipeline
        make_client = self._make_client or _client_factory(cfg)
        api = make_client()  # bad kubeconfig: a typed error now, not a retry loop later
        if not cfg.pod_cidrs and cfg.node:
            cfg = self.cfg = dataclasses.replace(cfg, pod_cidrs=node_pod_cidrs(api, cfg.node))
        build = self._build or Pipeline(cfg)
        enforcer = self.enforcer = self.enforcer or Enforcer(cfg.netns)
        # --audit promises nothing dropped: established connections are left alone too
        revoke = Revoker(cfg, self.metrics) if cfg.established == "revoke" and not cfg.audit else None
        reconciler = self.reconciler = Reconciler(enforcer, build, self.metrics, debounce=cfg.debounce,
                                                  resync_period=cfg.resync_period, on_batch=self._on_batch,
                                                  revoke=revoke)
        self.metrics.add_rule_counters(lambda: enforcer.counters(cfg.table))
        if cfg.metrics_addr is not None:
            self.server = StatusServer(cfg.metrics_addr, self.metrics, ready=self.ready,
                                       healthy=lambda: reconciler.alive).start()
        self._protect(enforcer)
        self._loop = threading.Thread(target=reconciler.run, args=(self._stop,), name="reconcile", daemon=True)
        self._loop.start()
        for kind in KINDS:
            w = Watcher(kind, make_client, reconciler.submit, self._stop, watch_timeout=cfg.watch_timeout,
                        backoff=cfg.watch_backoff,
                        on_restart=lambda k, why: self.metrics.watch_restarts.labels(k, why).inc())
            w.start()
            self._watchers.append(w)
        log.info("agent started", extra={"fields": {
            "node": cfg.node or "*", "table": cfg.table, "netns": cfg.netns or "host", "fail_mode": cfg.fail_mode,
            "audit": cfg.audit, "log_denied": cfg.log_denied}})
        return self

    def _protect(self, enforcer: Enforcer) -> None:
        """Before the first sync: keep a previous agent's table, else apply the fail mode."""
        cfg = self.cfg
        if enforcer.handles(cfg.table):
            log.info("keeping the previous table until the first sync replaces it", extra={"fields": {
                "table": cfg.table}})
            return
        if cfg.fail_mode == "open":
            log.warning("fail-mode open: pod traffic is not policed until the first sync")
            return
        enforcer.apply(bootstrap_ruleset(cfg.table, cfg.pod_cidrs))
        log.info("fail-mode closed: new pod connections dropped until the first sync", extra={"fields": {
            "pod_cidrs": ",".join(cfg.pod_cidrs) or "all but the node's own"}})

    # ---- state -----------------------------------------------------------

    def ready(self) -> bool:
        """After the first full sync, and only while bridged pod traffic cannot bypass the table."""
        return self.reconciler is not None and self.reconciler.ready.is_set() and not self.bridge_bypass()

    def bridge_bypass(self) -> list[str]:
        """Families whose bridged pod traffic skips netfilter (checked at most every BRIDGE_CHECK_S)."""
        now = time.monotonic()
        if self._bridge_checked is None or now - self._bridge_checked[0] > BRIDGE_CHECK_S:
            found = bypassing(self.cfg.netns)
            for family in SYSCTLS:
                self.metrics.bridge_bypass.labels(family).set(family in found)
            if found and (self._bridge_checked is None or not self._bridge_checked[1]):
                log.error("bridged pod traffic bypasses the table: not ready", extra={"fields": {
                    "families": ",".join(found), "fix": "modprobe br_netfilter; sysctl "
                    "net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1"}})
            self._bridge_checked = (now, found)
        return self._bridge_checked[1]

    def wait_ready(self, timeout: float) -> bool:
        return self.reconciler is not None and self.reconciler.ready.wait(timeout)

    def running(self) -> bool:
        return self._loop is not None and self._loop.is_alive()

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    # ---- stop ------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        for w in self._watchers:
            w.interrupt()
        if self.reconciler is not None:
            self.reconciler.wake()
        if self._loop is not None:
            self._loop.join(10)
        for w in self._watchers:
            w.join(2)
        if self.cfg.cleanup_on_exit and self.enforcer is not None:
            removed = self.enforcer.delete(self.cfg.table)
            log.info("cleanup on exit", extra={"fields": {"table": self.cfg.table, "removed": removed}})
        elif self.enforcer is not None:
            log.info("stopped; the table stays in place", extra={"fields": {"table": self.cfg.table}})
        if self.server is not None:
            self.server.stop()


def _client_factory(cfg: AgentConfig) -> Callable[[], object]:
    from netpol.k8s.kube import api_client
    return lambda: api_client(cfg.kubeconfig, cfg.context)


def node_pod_cidrs(api: object, node: str) -> tuple[str, ...]:
    """The node's spec.podCIDRs, read once: without them new pods are not held back until programmed."""
    from kubernetes import client
    try:
        spec = client.CoreV1Api(api).read_node(node).spec
        found = tuple((spec.pod_cidrs or ([spec.pod_cidr] if spec.pod_cidr else [])) if spec else ())
    except Exception as exc:  # noqa: BLE001  (403 without the RBAC rule, 404, unreachable: all mean "unknown")
        found, why = (), short_error(exc)
    else:
        why = "the Node has no spec.podCIDRs"
    if found:
        log.info("new pods are held back until programmed", extra={"fields": {"pod_cidrs": ",".join(found)}})
    else:
        log.warning("new pods are not held back until programmed: give --pod-cidr", extra={"fields": {
            "node": node, "reason": why}})
    return found


def node_from_env(node: str | None) -> str | None:
    return node or os.environ.get("NODE_NAME") or None


def run(cfg: AgentConfig) -> int:
    """Run until SIGTERM/SIGINT; for the command line (signals need the main thread)."""
    handler = configure(cfg.log_format, cfg.log_level)
    agent = Agent(cfg)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: agent.stopping.set())
    try:
        agent.start()
        while not agent.stopping.wait(1.0):
            if not agent.running():
                log.error("reconcile loop died; exiting so the agent is restarted")
                return 1
        log.info("signal received, stopping")
    except NetpolError:
        raise
    except Exception as exc:
        log.error("agent failed", extra={"fields": {"error": short_error(exc)}}, exc_info=True)
        return 1
    finally:
        agent.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        unconfigure(handler)
    return 0
