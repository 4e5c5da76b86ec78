"""List then watch Namespaces, Pods, NetworkPolicies, Nodes and the tier kinds through the official client.

One thread per kind. A list becomes one SYNC event (the store swaps the whole kind at once);
then the watch resumes from the newest resourceVersion seen (events and bookmarks). A stream
that ends or drops resumes from there; 410 Gone (history compacted) means relist. Failures back
off exponentially with jitter, so a fleet of agents does not hammer a recovering API server.
Objects stay plain JSON: the store keeps only what the model needs.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from netpol.agent.store import Event, Kind
from netpol.errors import Gone, WatchError

log = logging.getLogger("netpol.agent")

RESOURCES: dict[Kind, tuple[str, str]] = {
    "Namespace": ("CoreV1Api", "list_namespace"),
    "Pod": ("CoreV1Api", "list_pod_for_all_namespaces"),
    "NetworkPolicy": ("NetworkingV1Api", "list_network_policy_for_all_namespaces"),
    "Node": ("CoreV1Api", "list_node"),
    "ClusterNetworkPolicy": ("CustomObjectsApi", "list_cluster_custom_object"),
    "AdminNetworkPolicy": ("CustomObjectsApi", "list_cluster_custom_object"),
    "BaselineAdminNetworkPolicy": ("CustomObjectsApi", "list_cluster_custom_object"),
}
_GROUP = "policy.networking.k8s.io"
CUSTOM = {  # CRDs: a 404 means not installed (none exist), looked for again every ABSENT_RETRY
    "ClusterNetworkPolicy": {"group": _GROUP, "version": "v1alpha2", "plural": "clusternetworkpolicies"},
    "AdminNetworkPolicy": {"group": _GROUP, "version": "v1alpha1", "plural": "adminnetworkpolicies"},
    "BaselineAdminNetworkPolicy": {"group": _GROUP, "version": "v1alpha1", "plural": "baselineadminnetworkpolicies"},
}
ABSENT_RETRY = 30.0  # seconds between looks for a CRD that is not installed
LIST_CHUNK = 500


@dataclass(frozen=True)
class Backoff:
    base: float = 0.2
    cap: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Half fixed, half random: spread out, but never immediate."""
        step = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return step / 2 + rng.uniform(0, step / 2)


class Watcher:
    """Keeps one kind flowing into `emit` until `stop` is set."""

    def __init__(self, kind: Kind, make_client: Callable[[], object], emit: Callable[[Event], None],
                 stop: threading.Event, *, watch_timeout: int = 300, backoff: Backoff = Backoff(),
                 on_restart: Callable[[Kind, str], None] = lambda kind, why: None) -> None:
        self.kind = kind
        self._make_client = make_client
        self._emit = emit
        self._stop = stop
        self._timeout = watch_timeout
        self._backoff = backoff
        self._on_restart = on_restart
        self._rng = random.Random()
        self._resp = None
        self._rv: str | None = None  # newest resourceVersion seen (events and bookmarks); None: list
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def interrupt(self) -> None:
        """Unblock a thread waiting on a quiet stream (called after `stop` is set)."""
        resp = self._resp
        if resp is not None:
            for how in ("shutdown", "close"):
                try:
                    getattr(resp, how)()
                except Exception:  # already closed, or an old urllib3 without shutdown()
                    pass

    # ---- the loop --------------------------------------------------------

    def _run(self) -> None:
        failures, absent = 0, False
        call = None
        while not self._stop.is_set():
            try:
                if call is None:
                    call = self._api_call()
                if self._rv is None:
                    self._rv = self._list(call)
                self._watch(call)
                failures = 0
            except Gone:
                log.info("watch history expired, relisting", extra={"fields": {"kind": self.kind}})
                self._on_restart(self.kind, "gone")
                self._rv = None
            except Absent:
                if not absent:
                    log.info("the API serves no such kind (its CRD is not installed): none, looking again later",
                             extra={"fields": {"kind": self.kind, "every_s": ABSENT_RETRY}})
                absent = True
                self._rv = None
                self._stop.wait(ABSENT_RETRY)
            except Exception as exc:  # network, TLS, auth, server errors: all retried from self._rv
                if self._stop.is_set():
                    break
                failures += 1
                delay = self._backoff.delay(failures, self._rng)
                log.warning("watch failed, retrying", extra={"fields": {
                    "kind": self.kind, "error": short_error(exc), "retry_in_s": round(delay, 2)}})
                self._on_restart(self.kind, "error")
                if failures > 3:
                    call = None  # a fresh client (and config) after repeated failures
                self._stop.wait(delay)

    def _api_call(self) -> Callable:
        from kubernetes import client
        group, method = RESOURCES[self.kind]
        call = getattr(getattr(client, group)(self._make_client()), method)
        return functools.partial(call, **CUSTOM[self.kind]) if self.kind in CUSTOM else call

    def _list(self, call: Callable) -> str:
        from kubernetes.client.exceptions import ApiException
        items: list[dict] = []
        token = None
        while True:
            try:
                resp = call(limit=LIST_CHUNK, _continue=token, _preload_content=False,
                            _request_timeout=(10, 120))
            except ApiException as exc:
                if exc.status == 410:  # a continue token expired: start the list again
                    raise Gone() from None
                if exc.status == 404 and self.kind in CUSTOM:  # the CRD is not installed: none exist
                    self._emit(Event(self.kind, "SYNC", items=()))
                    raise Absent() from None
                raise
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
            items.extend(body.get("items") or ())
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self._emit(Event(self.kind, "SYNC", items=tuple(items)))
        return str(meta.get("resourceVersion") or "")

    def _watch(self, call: Callable) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines
        timeout = int(self._timeout * self._rng.uniform(1.0, 2.0))  # spread reconnects, like client-go
        try:
            resp = call(watch=True, resource_version=self._rv, allow_watch_bookmarks=True,
                        timeout_seconds=timeout, _preload_content=False, _request_timeout=(10, timeout + 30))
        except ApiException as exc:
            if exc.status == 410:
                raise Gone() from None
            raise
        self._resp = resp
        try:
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                if line:
                    self._event(json.loads(line))
        finally:
            self._resp = None
            resp.release_conn()

    def _event(self, ev: dict) -> None:
        typ, obj = ev.get("type"), ev.get("object") or {}
        if typ == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise WatchError(f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        if typ in ("ADDED", "MODIFIED", "DELETED"):
            self._emit(Event(self.kind, typ, obj))
        # BOOKMARK: only the version moves
        self._rv = str((obj.get("metadata") or {}).get("resourceVersion") or self._rv)


class Absent(Exception):
    """The API does not serve the kind (a CRD not installed)."""


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
