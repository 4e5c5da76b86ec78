"""A small stand-in for the Kubernetes API server, on 127.0.0.1, for the agent's tests.

It serves what the agent reads, the way the real server does: lists of namespaces, pods and
networkpolicies with a resourceVersion (and limit/continue chunks), watch streams
(`?watch=1&resourceVersion=N`) of ADDED/MODIFIED/DELETED events as chunked JSON lines, BOOKMARK
events when asked for, and 410 Gone for a resourceVersion older than its compacted history.
Tests drive it: create/update/delete objects, compact history, drop every open watch, or go down
(refuse requests with 503) to play an unreachable API server. The official client talks to it
through a kubeconfig written by `kubeconfig()`.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

PATHS = {
    "/api/v1/namespaces": "Namespace",
    "/api/v1/pods": "Pod",
    "/apis/networking.k8s.io/v1/networkpolicies": "NetworkPolicy",
    "/api/v1/nodes": "Node",
    "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies": "ClusterNetworkPolicy",
    "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies": "AdminNetworkPolicy",
    "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies": "BaselineAdminNetworkPolicy",
}
API_VERSION = {"Namespace": "v1", "Pod": "v1", "NetworkPolicy": "networking.k8s.io/v1", "Node": "v1",
               "ClusterNetworkPolicy": "policy.networking.k8s.io/v1alpha2",
               "AdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
               "BaselineAdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1"}
NODE_PATH = "/api/v1/nodes/"  # GET one Node (the agent reads its own)


def ident(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class KubeStub:
    def __init__(self, bookmark_interval: float = 0.5) -> None:
        self.bookmark_interval = bookmark_interval
        self.cond = threading.Condition()
        self.rv = 1000
        self.objects: dict[str, dict[str, dict]] = {k: {} for k in PATHS.values()}
        self.history: dict[str, list[tuple[int, str, dict]]] = {k: [] for k in PATHS.values()}
        self.compacted: dict[str, int] = {k: 0 for k in PATHS.values()}
        self.generation = 0  # bumped to drop every open watch
        self.down = False
        self.absent: set[str] = set()  # kinds the API does not serve (a CRD not installed): 404
        self.watching = 0  # watch streams open now
        self.requests: list[str] = []
        self._snapshots: dict[str, list[dict]] = {}
        self._tokens = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubestub", daemon=True)

    # ---- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubeStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, directory: Path) -> Path:
        path = Path(directory) / "kubeconfig.json"  # JSON is YAML: the client reads it
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "stub-token"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
        }))
        return path

    # ---- driving it ------------------------------------------------------

    def apply(self, obj: dict) -> dict:
        """Create or update (by kind, namespace, name); returns the stored object."""
        kind = obj["kind"]
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", API_VERSION[kind])
        meta = obj.setdefault("metadata", {})
        if kind not in ("Namespace", "Node", "ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
            meta.setdefault("namespace", "default")
        with self.cond:
            old = self.objects[kind].get(ident(obj))
            meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[kind][ident(obj)] = obj
            self.history[kind].append((self.rv, "MODIFIED" if old else "ADDED", obj))
            self.cond.notify_all()
        return obj

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        key = f"{namespace}/{name}" if namespace else name
        with self.cond:
            obj = copy.deepcopy(self.objects[kind].pop(key))
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history[kind].append((self.rv, "DELETED", obj))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget history: watches from an older resourceVersion now get 410 Gone."""
        with self.cond:
            for kind in self.history:
                self.history[kind].clear()
                self.compacted[kind] = self.rv
            self.cond.notify_all()

    def wait_watching(self, n: int, timeout: float = 10.0) -> None:
        """Wait until n watch streams are open."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.watching >= n, timeout), f"{self.watching} watches open"

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream, without a proper end."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def set_down(self, down: bool) -> None:
        with self.cond:
            self.down = down
            if down:
                self.generation += 1
            self.cond.notify_all()

    # ---- serving ---------------------------------------------------------

    def list_body(self, kind: str, query: dict) -> dict:
        limit = int(query.get("limit", ["0"])[0] or 0)
        token = query.get("continue", [""])[0]
        with self.cond:
            if token:
                if token not in self._snapshots:
                    return {"kind": "Status", "code": 410, "reason": "Expired", "message": "continue expired"}
                items, rv = self._snapshots.pop(token), token.split(":")[0]
            else:
                items = [copy.deepcopy(o) for o in self.objects[kind].values()]
                rv = str(self.rv)
        more = ""
        if limit and len(items) > limit:
            more = f"{rv}:{next(self._tokens)}"
            self._snapshots[more] = items[limit:]
            items = items[:limit]
        meta = {"resourceVersion": rv, **({"continue": more} if more else {})}
        return {"kind": f"{kind}List", "apiVersion": API_VERSION[kind], "metadata": meta, "items": items}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up mid-stream are expected here


def _handler(stub: KubeStub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            query = parse_qs(url.query)
            stub.requests.append(self.path)
            kind = PATHS.get(url.path)
            if stub.down:
                return self._json(503, {"kind": "Status", "code": 503, "message": "stub is down"})
            if kind is None and url.path.startswith(NODE_PATH):
                found = stub.objects["Node"].get(ident({"kind": "Node", "metadata": {
                    "name": url.path[len(NODE_PATH):]}}))
                if found is not None:
                    return self._json(200, found)
            if kind is None or kind in stub.absent:
                return self._json(404, {"kind": "Status", "code": 404, "message": f"no {url.path}"})
            if query.get("watch", ["false"])[0] in ("1", "true"):
                return self._watch(kind, query)
            body = stub.list_body(kind, query)
            self._json(body.get("code", 200) if body.get("kind") == "Status" else 200, body)

        def _json(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, event: dict) -> None:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _watch(self, kind: str, query: dict) -> None:
            since = int(query.get("resourceVersion", ["0"])[0] or 0)
            bookmarks = query.get("allowWatchBookmarks", ["false"])[0] in ("1", "true")
            deadline = time.monotonic() + float(query.get("timeoutSeconds", ["30"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with stub.cond:
                generation = stub.generation
                if since < stub.compacted[kind]:
                    gone = {"kind": "Status", "code": 410, "reason": "Expired",
                            "message": f"too old resource version: {since} ({stub.compacted[kind]})"}
                    self._chunk({"type": "ERROR", "object": gone})
                    return self._end()
            next_bookmark = time.monotonic() + stub.bookmark_interval
            cursor = since
            with stub.cond:
                stub.watching += 1
                stub.cond.notify_all()
            try:
                while time.monotonic() < deadline:
                    with stub.cond:
                        pending = [h for h in stub.history[kind] if h[0] > cursor]
                        if not pending and stub.generation == generation:
                            stub.cond.wait(max(0.0, min(deadline, next_bookmark) - time.monotonic()))
                            pending = [h for h in stub.history[kind] if h[0] > cursor]
                        if stub.generation != generation:
                            return self._cut()
                        latest = stub.rv
                    for rv, typ, obj in pending:
                        self._chunk({"type": typ, "object": obj})
                        cursor = rv
                    if bookmarks and time.monotonic() >= next_bookmark:
                        meta = {"resourceVersion": str(max(cursor, latest))}  # all of ours <= latest sent
                        self._chunk({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": API_VERSION[kind], "metadata": meta}})
                        cursor = int(meta["resourceVersion"])
                        next_bookmark = time.monotonic() + stub.bookmark_interval
                self._end()
            except OSError:
                pass  # the client went away
            finally:
                with stub.cond:
                    stub.watching -= 1

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _cut(self) -> None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

    return Handler
