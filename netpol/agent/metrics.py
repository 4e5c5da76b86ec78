"""Prometheus metrics and the agent's small HTTP server (/metrics, /readyz, /healthz).

Each agent has its own registry, so several can live in one process (tests). Per-rule packet
and byte counters are read from the kernel's nft counters when scraped, labelled from the rule
comment that render puts on every rule (a `RuleId`, read back with `RuleId.parse`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from netpol.nft.ruleid import RuleId

_LABELS = ("policy", "namespace", "direction", "rule")


class RuleCounters:
    """A collector reading nft counters at scrape time (cached briefly: scrapes may come in bursts)."""

    def __init__(self, read: Callable[[], dict[str, tuple[int, int]]], ttl: float = 1.0) -> None:
        self._read = read
        self._ttl = ttl
        self._cache: tuple[float, dict[str, tuple[int, int]]] = (0.0, {})
        self._lock = threading.Lock()

    def _values(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            at, values = self._cache
            if time.monotonic() - at > self._ttl:
                try:
                    values = self._read()
                except Exception:  # no table yet, or the netns is gone: no samples
                    values = {}
                self._cache = (time.monotonic(), values)
            return values

    def collect(self) -> Iterator[CounterMetricFamily]:
        packets = CounterMetricFamily("netpol_rule_packets", "Packets matched by a rule (nft counter).",
                                      labels=_LABELS)
        octets = CounterMetricFamily("netpol_rule_bytes", "Bytes matched by a rule (nft counter).", labels=_LABELS)
        sums: dict[tuple[str, ...], list[int]] = {}
        for comment, (p, b) in self._values().items():
            acc = sums.setdefault(RuleId.parse(comment).labels(), [0, 0])
            acc[0] += p
            acc[1] += b
        for labels, (p, b) in sorted(sums.items()):
            packets.add_metric(labels, p)
            octets.add_metric(labels, b)
        yield packets
        yield octets


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sync_seconds = Histogram(
            "netpol_agent_sync_duration_seconds", "Time from a batch's cut to its rules in the kernel.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.batches = Counter("netpol_agent_batches", "Batches of events reconciled, by what apply did.",
                               ["kind"], registry=r)
        self.apply_errors = Counter("netpol_agent_apply_errors", "Batches whose compile or apply failed.",
                                    registry=r)
        self.drift_repairs = Counter("netpol_agent_drift_repairs", "Times the live table differed and was repaired.",
                                     registry=r)
        self.events = Counter("netpol_agent_watch_events", "Watch events received.", ["kind", "type"], registry=r)
        self.watch_restarts = Counter("netpol_agent_watch_restarts", "Watches restarted.", ["kind", "reason"],
                                      registry=r)
        self.pods = Gauge("netpol_agent_pods_enforced", "Local pods the rules police.", registry=r)
        self.isolated = Gauge("netpol_agent_pods_isolated", "Local pods a policy isolates.", registry=r)
        self.policies = Gauge("netpol_agent_policies_enforced", "NetworkPolicies compiled into the rules.",
                              registry=r)
        self.objects = Gauge("netpol_agent_objects", "Objects in the agent's store.", ["kind"], registry=r)
        self.unsupported = Gauge("netpol_agent_unsupported_rules", "ClusterNetworkPolicy rules not enforced "
                                 "(domainNames peers).", registry=r)
        self.ready = Gauge("netpol_agent_ready", "1 once the first full sync is in the kernel.", registry=r)
        self.revoked = Counter("netpol_agent_revoked_connections", "Established connections cut because the "
                               "policies no longer allow them.", registry=r)
        self.revoke_seconds = Histogram("netpol_agent_revoke_duration_seconds",
                                        "One conntrack pass: list, judge, mark.",
                                        buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.bridge_bypass = Gauge("netpol_agent_bridge_bypass", "1 while bridged pod traffic of a family skips "
                                   "netfilter (bridge-nf-call-iptables/ip6tables not 1).", ["family"], registry=r)

    def add_rule_counters(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.registry.register(RuleCounters(read))

    def expose(self) -> bytes:
        return generate_latest(self.registry)


class StatusServer:
    """/metrics, /readyz (ready after the first full sync) and /healthz (the loop is alive)."""

    def __init__(self, addr: str, metrics: Metrics, ready: Callable[[], bool], healthy: Callable[[], bool]) -> None:
        host, _, port = addr.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        handler = _handler(metrics, ready, healthy)
        server = type("Server", (ThreadingHTTPServer,), {"address_family": _family(host), "daemon_threads": True})
        self._server = server((host, int(port)), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _family(host: str) -> int:
    import socket
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _handler(metrics: Metrics, ready: Callable[[], bool], healthy: Callable[[], bool]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                return self._send(200, metrics.expose(), CONTENT_TYPE_LATEST)
            if path == "/readyz":
                ok = ready()
                return self._send(200 if ok else 503, b"ok\n" if ok else b"not synced yet\n")
            if path == "/healthz":
                ok = healthy()
                return self._send(200 if ok else 503, b"ok\n" if ok else b"reconcile loop stopped\n")
            self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
