"""The node agent's parts without a kernel: store, watch source against the API stand-in, deny modes,
metrics labels, configuration and the command line."""

from __future__ import annotations

import random
import threading
import time

import pytest
from support.kubestub import KubeStub
from typer.testing import CliRunner

from netpol.agent import AgentConfig, Event, Store
from netpol.agent.failmode import bootstrap_ruleset
from netpol.agent.metrics import Metrics, RuleCounters
from netpol.agent.pipeline import deny_mode
from netpol.agent.source import Backoff, Watcher
from netpol.cli import app
from netpol.errors import NetpolError
from netpol.k8s.kube import api_client
from netpol.nft.ruleid import RuleId


def ns(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}}


def pod(namespace: str, name: str, ip: str | None, terminating: bool = False, **labels: str) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": labels}
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1"}, "status": {"podIP": ip} if ip else {}}


def policy(namespace: str, name: str, spec: dict) -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ips(store: Store) -> dict[str, tuple[str, ...]]:
    return {p.key: p.ips for p in store.snapshot().cluster.pods}


# ---- store ------------------------------------------------------------------

def test_store_folds_events_and_counts_only_changes():
    s = Store()
    assert s.apply(Event("Namespace", "SYNC", items=(ns("a", team="x"),)))
    assert s.apply(Event("Pod", "ADDED", pod("a", "p", "198.18.0.1", app="web")))
    v = s.version
    assert not s.apply(Event("Pod", "MODIFIED", pod("a", "p", "198.18.0.1", app="web")))  # status noise
    assert s.version == v
    assert s.apply(Event("Pod", "MODIFIED", pod("a", "p", "198.18.0.1", app="db")))
    snap = s.snapshot()
    assert [p.labels for p in snap.cluster.pods] == [{"app": "db"}]
    assert snap.cluster.namespaces["a"].labels == {"team": "x", "kubernetes.io/metadata.name": "a"}
    assert s.apply(Event("Pod", "DELETED", pod("a", "p", "198.18.0.1")))
    assert s.snapshot().cluster.pods == ()


def test_sync_replaces_a_whole_kind_at_once():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    s.apply(Event("Pod", "SYNC", items=(pod("a", "p1", "198.18.0.1"), pod("a", "p2", "198.18.0.2"))))
    s.apply(Event("Pod", "SYNC", items=(pod("a", "p2", "198.18.0.2"), pod("a", "p3", "198.18.0.3"))))
    assert sorted(ips(s)) == ["a/p2", "a/p3"]


def test_tier_kinds_share_a_table_without_sharing_names_and_nodes_keep_their_last_good_version():
    """A ClusterNetworkPolicy and an AdminNetworkPolicy may both be called `x`: both apply. A Node the
    model cannot read (a newer API) keeps its last good version: dropping it would unmatch `nodes` peers."""
    s = Store()
    spec = {"priority": 1, "subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}
    s.apply(Event("ClusterNetworkPolicy", "ADDED", {"metadata": {"name": "x"}, "spec": {"tier": "Admin", **spec}}))
    s.apply(Event("AdminNetworkPolicy", "ADDED", {"metadata": {"name": "x"}, "spec": spec}))
    assert sorted(p.key for p in s.snapshot().cluster.cluster_policies) == ["anp/x", "cnp/x"]
    s.apply(Event("AdminNetworkPolicy", "SYNC", items=()))
    assert [p.key for p in s.snapshot().cluster.cluster_policies] == ["cnp/x"]
    node = {"metadata": {"name": "n1", "labels": {"role": "infra"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.9.1"}]}}
    s.apply(Event("Node", "ADDED", node))
    s.apply(Event("Node", "MODIFIED", {**node, "status": {"addresses": [{"type": "InternalIP", "address": "x"}]}}))
    (kept,) = s.snapshot().cluster.nodes
    assert kept.labels == {"role": "infra"} and kept.addresses == (("InternalIP", "198.18.9.1"),)
    assert any(k.startswith("Node n1") for k in s.invalid)


def test_replicas_share_their_labels_and_ports_in_the_store():
    """The store keeps one copy of equal parts (scripts/bench_footprint.py measures what a pod costs)."""
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    s.apply(Event("Pod", "SYNC", items=(pod("a", "p1", "198.18.0.1", app="web"), pod("a", "p2", "198.18.0.2", app="web"))))
    one, two = s.pods["a/p1"].pod, s.pods["a/p2"].pod
    assert one.labels is two.labels and one.ports is two.ports and one.namespace is two.namespace
    assert one.labels == {"app": "web"} and one.source is None
    assert s.pods["a/p1"].bare.ips == () and one.ips == ("198.18.0.1",)  # copies still work


def test_finished_pods_are_dropped():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    done = pod("a", "job", "198.18.0.1")
    done["status"]["phase"] = "Succeeded"
    s.apply(Event("Pod", "ADDED", pod("a", "job", "198.18.0.1")))
    assert s.apply(Event("Pod", "MODIFIED", done))
    assert ips(s) == {}


def test_reused_address_goes_to_the_newer_pod_never_the_terminating_one():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"), ns("b"))))
    s.apply(Event("Pod", "ADDED", pod("a", "old", "198.18.0.9", app="db")))
    # the old pod is terminating but still shows the address the CNI has given to a new pod
    s.apply(Event("Pod", "MODIFIED", pod("a", "old", "198.18.0.9", terminating=True, app="db")))
    s.apply(Event("Pod", "ADDED", pod("b", "new", "198.18.0.9")))
    snap = s.snapshot()
    assert {p.key: p.ips for p in snap.cluster.pods} == {"a/old": (), "b/new": ("198.18.0.9",)}
    assert snap.reused == ("a/old",)
    # even when the old pod is not (yet) marked terminating, the newest claim wins
    s2 = Store()
    s2.apply(Event("Namespace", "SYNC", items=(ns("a"), ns("b"))))
    s2.apply(Event("Pod", "ADDED", pod("a", "old", "198.18.0.9")))
    s2.apply(Event("Pod", "ADDED", pod("b", "new", "198.18.0.9")))
    s2.apply(Event("Pod", "MODIFIED", pod("a", "old", "198.18.0.9", app="relabelled")))  # no new claim
    assert ips(s2) == {"a/old": (), "b/new": ("198.18.0.9",)}


def test_host_network_pods_share_the_node_address():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    for name in ("h1", "h2"):
        p = pod("a", name, "198.18.9.1")
        p["spec"]["hostNetwork"] = True
        s.apply(Event("Pod", "ADDED", p))
    assert ips(s) == {"a/h1": ("198.18.9.1",), "a/h2": ("198.18.9.1",)}


def test_pods_of_an_unknown_namespace_are_held_out():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    s.apply(Event("Pod", "ADDED", pod("late", "p", "198.18.0.1")))
    s.apply(Event("NetworkPolicy", "ADDED", policy("late", "np", {"podSelector": {}})))
    snap = s.snapshot()
    assert snap.held == ("late/p",) and snap.cluster.pods == () and snap.cluster.policies == ()
    s.apply(Event("Namespace", "ADDED", ns("late", env="prod")))
    snap = s.snapshot()
    assert snap.held == () and [p.key for p in snap.cluster.pods] == ["late/p"]
    assert [p.key for p in snap.cluster.policies] == ["late/np"]


def test_a_policy_we_cannot_read_isolates_and_allows_nothing():
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=(ns("a"),)))
    bad = policy("a", "bad", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]})
    assert s.apply(Event("NetworkPolicy", "ADDED", bad))
    (pol,) = s.snapshot().cluster.policies
    assert pol.policy_types == {"Ingress", "Egress"} and pol.ingress == () and pol.egress == ()
    assert pol.pod_selector.match_labels == (("app", "web"),)
    assert "NetworkPolicy a/bad" in s.invalid
    s.apply(Event("NetworkPolicy", "DELETED", bad))
    assert s.invalid == {} and s.snapshot().cluster.policies == ()


# ---- rewrites and labels ----------------------------------------------------

@pytest.mark.parametrize("flags, mode", [({}, "drop"), ({"log_denied": True}, "log"),
                                         ({"audit": True}, "audit"), ({"audit": True, "log_denied": True}, "audit")])
def test_deny_mode_follows_the_flags(flags, mode):
    assert deny_mode(AgentConfig(**flags)) == mode


def test_counters_list_only_rules_that_count():
    from netpol.nft.listing import parse_table
    def rule(chain, comment, *expr):
        return {"rule": {"family": "inet", "table": "t", "chain": chain, "handle": 1, "comment": comment,
                         "expr": list(expr)}}
    doc = {"nftables": [
        rule("p", "a/web ingress[0]", {"counter": {"packets": 3, "bytes": 300}}, {"accept": None}),
        rule("p", "a/web ingress[0]", {"counter": {"packets": 1, "bytes": 100}}, {"accept": None}),
        rule("p", "a/web ingress next", {"vmap": {"key": {"meta": {"key": "l4proto"}}, "data": "@m"}}),
        rule("p", "a/web ingress end", {"goto": {"target": "in_x"}}),
        rule("in_x", "a default deny ingress log", {"log": {"prefix": "x "}}),
        rule("in_x", "a default deny ingress audit", {"counter": {"packets": 0, "bytes": 0}}, {"accept": None})]}
    assert parse_table(doc).counters == {"a/web ingress[0]": (4, 400), "a default deny ingress audit": (0, 0)}


def rule_labels(comment: str) -> tuple[str, str, str, str]:
    return RuleId.parse(comment).labels()


def test_rule_labels():
    assert rule_labels("a/web ingress[0]") == ("web", "a", "ingress", "0")
    assert rule_labels("team-b/allow-dns egress[3]") == ("allow-dns", "team-b", "egress", "3")
    assert rule_labels("a default deny ingress") == ("", "a", "ingress", "default deny")
    assert rule_labels("a default deny egress audit") == ("", "a", "egress", "default deny audit")
    assert rule_labels("replies") == ("", "", "", "replies")


def test_rule_ids_survive_their_comment():
    for rid in (RuleId("a", "web", "ingress", "0"), RuleId("a", "web", "egress", "next"),
                RuleId("a", "", "ingress", "default deny log"), RuleId(rule="ipv6 neighbour discovery")):
        assert RuleId.parse(rid.text()) == rid
    long = RuleId("a", "p" * 200, "ingress", "3")
    assert len(long.text()) <= 120 and RuleId.parse(long.text()).labels()[1:] == ("a", "ingress", "3")
    assert RuleId("a", 'x" accept', "ingress", "0").text().startswith("a/~")


def test_rule_counters_sum_per_label_set():
    m = Metrics()
    m.add_rule_counters(lambda: {"a/web ingress[0]": (3, 300), "a default deny ingress": (1, 60)})
    text = m.expose().decode()
    assert 'netpol_rule_packets_total{direction="ingress",namespace="a",policy="web",rule="0"} 3.0' in text
    assert 'netpol_rule_bytes_total{direction="ingress",namespace="a",policy="",rule="default deny"} 60.0' in text
    broken = RuleCounters(lambda: 1 / 0)
    assert [f.samples for f in broken.collect()] == [[], []]


def test_bootstrap_ruleset():
    everything = bootstrap_ruleset("t")
    assert "ct state new counter drop" in everything.skeleton and "@pods" not in everything.skeleton
    cidrs = bootstrap_ruleset("t", ["198.18.0.0/16", "2001:db8::/48"])
    assert cidrs.skeleton.count("ct state new counter drop") == 4
    assert dict(cidrs.elements) == {"pods4": {"198.18.0.0/16"}, "pods6": {"2001:db8::/48"}}
    with pytest.raises(NetpolError, match="--pod-cidr"):
        bootstrap_ruleset("t", ["nonsense"])


def test_backoff_grows_with_jitter_and_is_capped():
    b, rng = Backoff(base=0.2, cap=5.0), random.Random(1)
    delays = [b.delay(n, rng) for n in range(1, 12)]
    assert 0.1 <= delays[0] <= 0.2 and all(2.5 <= d <= 5.0 for d in delays[-3:])
    assert len({round(d, 6) for d in delays[-3:]}) == 3  # jittered


@pytest.mark.parametrize("change, message", [
    ({"debounce": -1}, "--debounce"), ({"resync_period": 0}, "--resync-period"),
    ({"fail_mode": "maybe"}, "--fail-mode"), ({"metrics_addr": "9108"}, "--metrics-addr"),
    ({"table": "1bad"}, "--table"), ({"pod_cidrs": ("x",)}, "--pod-cidr"), ({"log_format": "xml"}, "--log-format")])
def test_config_is_checked(change, message):
    with pytest.raises(NetpolError, match=message):
        AgentConfig(**change).check()


def test_cli_errors_are_one_line_exit_2(tmp_path):
    runner = CliRunner()
    for args, text in [(["enforce", "--audit"], "need --watch"),
                       (["enforce", "--watch", "-f", str(tmp_path)], "not with -f"),
                       (["enforce", "--watch", "--fail-mode", "ajar"], "--fail-mode 'ajar'"),
                       (["agent", "--kubeconfig", str(tmp_path / "missing")], "no input")]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.output and "Traceback" not in res.output


# ---- the watch source against the API stand-in ------------------------------

@pytest.fixture
def stub(tmp_path):
    s = KubeStub(bookmark_interval=0.2).start()
    s.kubeconfig_path = s.kubeconfig(tmp_path)
    try:
        yield s
    finally:
        s.stop()


class Collector:
    def __init__(self) -> None:
        self.store = Store()
        self.events: list[Event] = []
        self.restarts: list[tuple[str, str]] = []
        self.cond = threading.Condition()

    def emit(self, ev: Event) -> None:
        with self.cond:
            self.events.append(ev)
            self.store.apply(ev)
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.store), timeout), self.store.counts()


@pytest.fixture
def watching(stub):
    col, stop = Collector(), threading.Event()
    watchers = [Watcher(kind, lambda: api_client(str(stub.kubeconfig_path), None), col.emit, stop,
                        watch_timeout=5, backoff=Backoff(0.05, 0.2),
                        on_restart=lambda k, why: col.restarts.append((k, why)))
                for kind in ("Namespace", "Pod", "NetworkPolicy")]
    for w in watchers:
        w.start()
    try:
        yield col
    finally:
        stop.set()
        for w in watchers:
            w.interrupt()
        for w in watchers:
            w.join(5)
        assert not any(w._thread.is_alive() for w in watchers)


def _pods(n: int, start: int = 0) -> list[dict]:
    return [{"kind": "Pod", **pod("a", f"p{i}", f"198.18.{i // 250}.{i % 250 + 1}")} for i in range(start, start + n)]


def test_list_in_chunks_then_watch(stub, watching):
    stub.apply({"kind": "Namespace", **ns("a")})
    for p in _pods(1200):  # more than one list chunk
        stub.apply(p)
    watching.wait(lambda s: len(s.pods) == 1200 and len(s.namespaces) == 1)
    stub.set_down(True)  # force a relist, now that there is more than one chunk to list
    stub.apply(_pods(1, 1200)[0])
    stub.compact()
    stub.set_down(False)
    watching.wait(lambda s: len(s.pods) == 1201)
    assert any("limit=500" in r and "continue=" in r for r in stub.requests)
    stub.apply({"kind": "NetworkPolicy", **policy("a", "np", {"podSelector": {}})})
    stub.delete("Pod", "p7", "a")
    watching.wait(lambda s: len(s.pods) == 1200 and len(s.policies) == 1)
    assert [e.type for e in watching.events if e.kind == "Pod"][:1] == ["SYNC"]


def test_dropped_streams_resume_and_gone_relists(stub, watching):
    stub.apply({"kind": "Namespace", **ns("a")})
    watching.wait(lambda s: len(s.namespaces) == 1)
    stub.wait_watching(3)
    stub.drop_watches()
    stub.apply({"kind": "Pod", **pod("a", "after-drop", "198.18.0.1")})
    watching.wait(lambda s: "a/after-drop" in s.pods)
    syncs = sum(e.type == "SYNC" for e in watching.events)
    stub.set_down(True)  # cut the streams; changes happen while the agent cannot see them
    stub.apply({"kind": "Pod", **pod("a", "lost", "198.18.0.2")})
    stub.delete("Pod", "after-drop", "a")
    stub.compact()  # and their history is gone: only a relist shows the state
    stub.set_down(False)
    watching.wait(lambda s: set(s.pods) == {"a/lost"})
    assert sum(e.type == "SYNC" for e in watching.events) > syncs
    assert ("Pod", "gone") in watching.restarts and any(why == "error" for _, why in watching.restarts)


def test_bookmarks_move_the_resource_version(stub, watching):
    stub.apply({"kind": "Namespace", **ns("a")})
    watching.wait(lambda s: len(s.namespaces) == 1)
    for p in _pods(3):  # pods move the version past the namespace watch's last event
        stub.apply(p)
    time.sleep(0.6)  # bookmarks carry the namespace watch to the newest version
    stub.compact()
    stub.drop_watches()
    stub.apply({"kind": "Namespace", **ns("b")})
    watching.wait(lambda s: len(s.namespaces) == 2)
    assert ("Namespace", "gone") not in watching.restarts


def test_api_down_is_retried(stub, watching):
    stub.set_down(True)
    time.sleep(0.5)
    stub.apply({"kind": "Namespace", **ns("a")})
    stub.set_down(False)
    watching.wait(lambda s: len(s.namespaces) == 1)
    assert any(why == "error" for _, why in watching.restarts)
