"""The node agent end to end: the API stand-in (tests/kubestub.py) → the agent → nftables in a lab
node netns → real connections between lab pods. Netns and interfaces use the prefix `nps`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from support.kubestub import KubeStub

from netpol.agent import Agent, AgentConfig, BatchReport
from netpol.agent.source import Backoff
from netpol.lab import LabHost, LabState, Probe, down, probe, up
from netpol.nft.apply import Enforcer

pytestmark = pytest.mark.kernel
PREFIX = f"nps{os.getpid() % 100000}"
TABLE = "npst"
HOSTS = 6


def ip(i: int) -> str:
    return f"198.18.0.{10 + i}"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    down(PREFIX)
    try:
        yield up([LabHost(f"h{i}", (ip(i),), ((80, "TCP"),)) for i in range(HOSTS)], prefix=PREFIX)
    finally:
        down(PREFIX)


# ---- the API side -------------------------------------------------------------

class Cluster:
    """The stub with a small scenario: namespaces a and b; a/web (h0), a/client (h1), b/other (h2)."""

    def __init__(self, stub: KubeStub) -> None:
        self.stub = stub

    def namespace(self, name: str, **labels: str) -> dict:
        return self.stub.apply({"kind": "Namespace", "metadata": {"name": name, "labels": labels}})

    def pod(self, ns: str, name: str, host: int, terminating: bool = False, **labels: str) -> dict:
        meta = {"name": name, "namespace": ns, "labels": labels}
        if terminating:
            meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        return self.stub.apply({"kind": "Pod", "metadata": meta, "spec": {"nodeName": "node1", "containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": ip(host), "podIPs": [{"ip": ip(host)}]}})

    def policy(self, ns: str, name: str, spec: dict) -> dict:
        return self.stub.apply({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})

    def web_only_from(self, *peers: dict) -> dict:
        return self.policy("a", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                        "ingress": [{"from": list(peers), "ports": [{"port": "http"}]}]})


CLIENTS = {"podSelector": {"matchLabels": {"app": "client"}}}
FRIENDS = {"namespaceSelector": {"matchLabels": {"team": "friends"}}}


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    stub = KubeStub(bookmark_interval=1.0).start()
    stub.kubeconfig_path = stub.kubeconfig(tmp_path)
    c = Cluster(stub)
    c.namespace("a")
    c.namespace("b")
    c.pod("a", "web", 0, app="web")
    c.pod("a", "client", 1, app="client")
    c.pod("b", "other", 2, app="other")
    try:
        yield c
    finally:
        stub.stop()


# ---- the agent ----------------------------------------------------------------

class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.reports: list[BatchReport] = []
        self.cond = threading.Condition()

    def on_batch(self, report: BatchReport) -> None:
        with self.cond:
            self.reports.append(report)
            self.cond.notify_all()

    def _applied_rv(self) -> int:
        return max((int(ev.obj["metadata"]["resourceVersion"]) for r in self.reports if r.result is not None
                    for _, ev in r.events if ev.obj is not None), default=0)

    def applied(self, obj: dict, timeout: float = 10.0) -> None:
        """Wait until the batch holding this change reached the kernel."""
        rv = int(obj["metadata"]["resourceVersion"])
        with self.cond:
            assert self.cond.wait_for(lambda: self._applied_rv() >= rv, timeout), "change never applied"

    def metrics(self) -> str:
        return self.agent.metrics.expose().decode()


@pytest.fixture
def start(lab, cluster) -> Iterator:
    started: list[Agent] = []

    def make(wait: bool = True, **overrides) -> Running:
        cfg = dict(kubeconfig=str(cluster.stub.kubeconfig_path), netns=lab.node_netns, table=TABLE,
                   cleanup_on_exit=True, debounce=0.05, resync_period=30.0)
        cfg.update(overrides)
        holder: list[Running] = []
        agent = Agent(AgentConfig(**cfg), on_batch=lambda r: holder[0].on_batch(r))
        holder.append(Running(agent))
        started.append(agent.start())
        if wait:
            assert agent.wait_ready(15), "no first sync"
        return holder[0]

    try:
        yield make
    finally:
        for agent in started:
            agent.stop()
        Enforcer(lab.node_netns).delete(TABLE)


def pairs(lab: LabState, expected: dict[tuple[int, int], bool], timeout: float = 0.4) -> dict:
    got = probe(lab, [Probe(f"h{s}", f"h{d}", 80) for s, d in expected], timeout=timeout)
    return {(int(p.src[1:]), int(p.dst[1:])): ok for p, ok in got.items()}


def expect(lab: LabState, expected: dict[tuple[int, int], bool], within: float = 8.0) -> None:
    """Probe until the kernel does what is expected (the agent converges asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        got = pairs(lab, expected)
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return
        time.sleep(0.05)


# ---- tests --------------------------------------------------------------------

def test_follows_policies_pods_and_namespaces(lab, cluster, start):
    run = start()
    expect(lab, {(1, 0): True, (2, 0): True})
    cluster.web_only_from(CLIENTS, FRIENDS)
    expect(lab, {(1, 0): True, (2, 0): False, (0, 1): True})
    cluster.pod("a", "client", 1, app="nope")  # relabel: no longer a client
    expect(lab, {(1, 0): False})
    cluster.namespace("b", team="friends")  # namespace relabel lets b in
    expect(lab, {(2, 0): True})
    cluster.web_only_from(CLIENTS)  # policy update
    expect(lab, {(2, 0): False})
    cluster.stub.delete("Pod", "client", "a")  # churn: the client moves to another address
    cluster.pod("a", "client2", 3, app="client")
    expect(lab, {(3, 0): True, (1, 0): False})
    cluster.stub.delete("NetworkPolicy", "web", "a")
    expect(lab, {(1, 0): True, (2, 0): True, (3, 0): True})
    text = run.metrics()
    assert "netpol_agent_ready 1.0" in text and "netpol_agent_apply_errors_total 0.0" in text
    assert 'netpol_agent_batches_total{kind="elements"}' in text  # pods moving change elements only


def test_reused_address_never_inherits_access(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    run = start()
    expect(lab, {(1, 0): True, (2, 0): False})
    # the client goes and a pod of another namespace gets its address, in one batch
    cluster.stub.delete("Pod", "client", "a")
    run.applied(cluster.pod("b", "thief", 1))
    assert pairs(lab, {(1, 0): False}) == {(1, 0): False}  # at once, no convergence wait
    # a terminating pod still shows the address the new pod already has
    cluster.pod("a", "client2", 3, app="client")
    expect(lab, {(3, 0): True})
    cluster.pod("a", "client2", 3, terminating=True, app="client")
    run.applied(cluster.pod("b", "thief2", 3))
    assert pairs(lab, {(3, 0): False}) == {(3, 0): False}
    cluster.stub.delete("Pod", "client2", "a")
    assert pairs(lab, {(3, 0): False}) == {(3, 0): False}
    first = next(i for i, r in enumerate(run.reports)
                 if any(ev.obj and ev.obj["metadata"]["name"] == "thief" for _, ev in r.events))
    for r in run.reports[first:]:  # from the thief's first batch on, the address was never the client's
        assert [p.key for p in r.snapshot.cluster.pods if ip(1) in p.ips] == ["b/thief"]


def test_drift_is_repaired(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    run = start(resync_period=0.3)
    expect(lab, {(2, 0): False, (1, 0): True})
    node = ["ip", "netns", "exec", lab.node_netns, "nft"]
    subprocess.run(node + ["delete", "table", "inet", TABLE], check=True)
    expect(lab, {(2, 0): False, (1, 0): True})
    subprocess.run(node + ["flush", "chain", "inet", TABLE, "post_egress"], check=True)  # an edit
    expect(lab, {(2, 0): False, (1, 0): True})
    subprocess.run(node + ["add", "rule", "inet", TABLE, "post_egress", "accept"], check=True)
    expect(lab, {(2, 0): False})
    assert "netpol_agent_drift_repairs_total 3.0" in run.metrics()


def test_watch_disruptions_converge(lab, cluster, start):
    run = start(watch_backoff=Backoff(0.05, 0.3))
    cluster.stub.drop_watches()
    cluster.web_only_from(CLIENTS)
    expect(lab, {(2, 0): False, (1, 0): True})
    cluster.stub.set_down(True)  # the API goes away; the rules stay
    cluster.namespace("b", team="friends")
    cluster.web_only_from(CLIENTS, FRIENDS)
    cluster.stub.compact()  # and the history of what changed meanwhile is gone: relist
    assert pairs(lab, {(2, 0): False}) == {(2, 0): False}
    cluster.stub.set_down(False)
    expect(lab, {(2, 0): True, (1, 0): True})
    assert 'netpol_agent_watch_restarts_total{kind="NetworkPolicy",reason="gone"}' in run.metrics()


def test_fail_closed_until_the_first_sync(lab, cluster, start):
    cluster.stub.set_down(True)
    run = start(wait=False, metrics_addr="127.0.0.1:0")
    url = f"http://127.0.0.1:{run.agent.server.port}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/readyz", timeout=5)
    assert err.value.code == 503
    assert pairs(lab, {(1, 0): False, (2, 0): False}) == {(1, 0): False, (2, 0): False}  # no policy, yet closed
    cluster.stub.set_down(False)
    assert run.agent.wait_ready(15)
    assert urllib.request.urlopen(url + "/readyz", timeout=5).status == 200
    expect(lab, {(1, 0): True, (2, 0): True})
    assert urllib.request.urlopen(url + "/healthz", timeout=5).status == 200


def test_fail_open_until_the_first_sync(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    cluster.stub.set_down(True)
    start(wait=False, fail_mode="open")
    assert pairs(lab, {(2, 0): True}) == {(2, 0): True}
    cluster.stub.set_down(False)
    expect(lab, {(2, 0): False})


def test_audit_counts_and_lets_denied_pass(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    run = start(audit=True)
    expect(lab, {(2, 0): True, (1, 0): True})
    text = run.metrics()
    assert 'netpol_rule_packets_total{direction="ingress",namespace="a",policy="",rule="default deny audit"} 1.0' \
        in text
    assert 'netpol_rule_packets_total{direction="ingress",namespace="a",policy="web",rule="0"} 1.0' in text
    assert 'rule="next"' not in text and 'rule="end"' not in text  # walk steps count nothing


def test_log_denied_logs_and_still_drops(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    start(log_denied=True)
    expect(lab, {(2, 0): False, (1, 0): True})
    listing = subprocess.run(["ip", "netns", "exec", lab.node_netns, "nft", "list", "table", "inet", TABLE],
                             capture_output=True, text=True, check=True).stdout
    assert 'log prefix "netpol deny ingress a "' in listing and "limit rate 10/second" in listing


def _agent_process(cluster: Cluster, lab: LabState, port: int, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-c", "from netpol.cli import main; main()", "enforce", "--watch",
            "--kubeconfig", str(cluster.stub.kubeconfig_path), "--netns", lab.node_netns, "--table", TABLE,
            "--metrics-addr", f"127.0.0.1:{port}", "--log-format", "json", "--debounce", "0.05", *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("agent process never became ready")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_restart_never_allows_what_policies_deny(lab, cluster):
    cluster.web_only_from(CLIENTS)
    seen: list[dict] = []
    stop = threading.Event()
    procs: list[subprocess.Popen] = []

    def prober() -> None:
        while not stop.is_set():
            seen.append(pairs(lab, {(2, 0): False, (1, 0): True}, timeout=0.3))

    thread = threading.Thread(target=prober, daemon=True)
    try:
        port = _free_port()
        first = _agent_process(cluster, lab, port)
        procs.append(first)
        _wait_ready(first, port)
        thread.start()
        time.sleep(0.5)
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        assert "the table stays in place" in first.stderr.read()
        time.sleep(0.5)  # no agent at all: the table it left still enforces
        second = _agent_process(cluster, lab, port, "--cleanup-on-exit")
        procs.append(second)
        _wait_ready(second, port)
        time.sleep(0.5)
        stop.set()
        thread.join(10)
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
        assert "cleanup on exit" in second.stderr.read()
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        Enforcer(lab.node_netns).delete(TABLE)
    assert len(seen) >= 5
    assert not any(s[(2, 0)] for s in seen), "a denied connection got through during the restart"
    assert seen[-1][(1, 0)]
    gone = subprocess.run(["ip", "netns", "exec", lab.node_netns, "nft", "list", "table", "inet", TABLE],
                          capture_output=True, text=True)
    assert gone.returncode != 0  # --cleanup-on-exit removed it


def test_pod_churn_is_sent_as_elements_and_survives_edits_between_batches(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    run = start(resync_period=300.0)  # no resync: the next batch itself must notice the edit
    expect(lab, {(1, 0): True, (3, 0): False})
    run.applied(cluster.pod("a", "client2", 3, app="client"))
    expect(lab, {(1, 0): True, (3, 0): True})
    churn = [r for r in run.reports if r.result is not None][1:]
    assert churn and all(r.result.fast and r.result.kind == "elements" for r in churn)
    # someone empties every set (the skeleton stays): the generation moved, so the next batch
    # compares the whole table and puts back what it lost along with its own change
    listing = subprocess.run(["ip", "netns", "exec", lab.node_netns, "nft", "-j", "list", "sets", "inet"],
                             capture_output=True, text=True, check=True).stdout
    for name in {s["set"]["name"] for s in json.loads(listing)["nftables"]
                 if "set" in s and s["set"]["table"] == TABLE and s["set"]["name"].endswith("_peer4")}:
        subprocess.run(["ip", "netns", "exec", lab.node_netns, "nft", "flush", "set", "inet", TABLE, name],
                       check=True)
    assert pairs(lab, {(1, 0): False}) == {(1, 0): False}
    cluster.stub.delete("Pod", "client2", "a")
    expect(lab, {(1, 0): True, (3, 0): False})
    last = [r for r in run.reports if r.result is not None][-1]
    assert last.result.kind == "elements" and not last.result.fast


def test_a_watch_event_that_tightens_a_policy_cuts_the_open_connection(lab, cluster, start):
    """The change arrives as a watch event; within a second of it the open connection carries
    nothing either way, the metric counts it, and a connection the new policy allows keeps going."""
    from support.flows import Conn, Echo
    port = 7000  # not served by the lab: the echo of the test
    echo = Echo(lab.hosts["h0"], ip(0), port, port + 1)
    try:
        cluster.pod("b", "friend", 3, app="client")
        cluster.namespace("b", team="friends")
        cluster.policy("a", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"from": [CLIENTS, FRIENDS], "ports": [{"port": port}]}]})
        run = start()
        mine = Conn(lab, "h1", ip(1), ip(0), port)
        theirs = Conn(lab, "h3", ip(3), ip(0), port)
        assert mine.echoes() and theirs.echoes()
        change = cluster.policy("a", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                             "ingress": [{"from": [FRIENDS], "ports": [{"port": port}]}]})
        run.applied(change)
        time.sleep(1.0)
        assert not mine.echoes(0.5) and theirs.echoes()
        counted = [line for line in run.metrics().splitlines()
                   if line.startswith("netpol_agent_revoked_connections_total ")]
        assert counted and float(counted[0].split()[-1]) >= 1  # earlier tests' flows may be cut too
    finally:
        echo.close()


def test_a_pod_the_api_has_not_shown_yet_is_held_back_until_programmed(lab, cluster, start):
    """h3's address is in the node's pod CIDR, but no pod of the API holds it yet: it can neither send
    nor be reached. Once the pod appears, exactly what the policies allow passes."""
    cluster.web_only_from(CLIENTS)
    start(pod_cidrs=("198.18.0.0/24",))
    expect(lab, {(3, 2): False, (2, 3): False, (3, 0): False, (1, 0): True, (2, 0): False})
    cluster.pod("b", "late", 3, app="client")  # b's client pods are no peer of a/web
    expect(lab, {(3, 2): True, (2, 3): True, (3, 0): False, (1, 0): True})


def test_the_agent_reads_its_nodes_pod_cidrs(lab, cluster, start):
    cluster.web_only_from(CLIENTS)
    cluster.stub.apply({"kind": "Node", "metadata": {"name": "node1"}, "spec": {"podCIDRs": ["198.18.0.0/24"]}})
    run = start(node="node1")
    assert run.agent.cfg.pod_cidrs == ("198.18.0.0/24",)
    expect(lab, {(4, 1): False, (1, 4): False, (1, 0): True})


@pytest.mark.parametrize("kind,extra", [("ClusterNetworkPolicy", {"tier": "Admin"}), ("AdminNetworkPolicy", {})])
def test_tier_policies_are_watched_and_enforced(lab, cluster, start, kind, extra):
    """An Admin Deny arriving as a watch event closes what NetworkPolicy would allow; deleting it opens
    it again. The tier is enforced by the agent's own table; users still on v1alpha1 are served too."""
    deny = {"kind": kind, "metadata": {"name": "no-b"},
            "spec": {**extra, "priority": 1, "subject": {"namespaces": {}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {
                         "kubernetes.io/metadata.name": "b"}}}]}]}}
    start()
    expect(lab, {(2, 0): True, (1, 0): True})
    cluster.stub.apply(deny)
    expect(lab, {(2, 0): False, (1, 0): True})
    cluster.stub.delete(kind, "no-b")
    expect(lab, {(2, 0): True, (1, 0): True})


def test_domain_names_rules_are_counted_and_logged_as_not_enforced(lab, cluster, start, caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="netpol.agent")
    run = start()
    applied = cluster.stub.apply({"kind": "ClusterNetworkPolicy", "metadata": {"name": "names"},
                                  "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                                           "egress": [{"action": "Deny", "to": [{"domainNames": ["a.example.com"]}]}]}})
    run.applied(applied)
    assert "netpol_agent_unsupported_rules 1.0" in run.metrics()
    assert any("domainNames rule is not enforced" in r.getMessage() for r in caplog.records)
    expect(lab, {(1, 0): True})  # it matches nothing


def test_nodes_peers_follow_the_watched_nodes(lab, cluster, start):
    """A `nodes` peer matches the addresses of the Nodes it selects, as the watch reports them: a Deny
    towards nodes labelled infra closes h2 once a Node holding h2's address gets the label, and opens
    it again when the label goes."""
    cluster.stub.apply({"kind": "ClusterNetworkPolicy", "metadata": {"name": "no-infra"},
                        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                                 "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]}})
    node = {"kind": "Node", "metadata": {"name": "infra-1", "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip(2)}]}}
    cluster.stub.apply(node)
    start()
    expect(lab, {(1, 2): True, (1, 0): True})
    node["metadata"]["labels"] = {"role": "infra"}
    cluster.stub.apply(node)
    expect(lab, {(1, 2): False, (0, 2): False, (1, 0): True})
    node["metadata"]["labels"] = {}
    cluster.stub.apply(node)
    expect(lab, {(1, 2): True, (1, 0): True})


def test_without_the_cluster_network_policy_crd_the_agent_still_syncs(lab, cluster, start):
    cluster.stub.absent |= {"ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"}
    cluster.web_only_from(CLIENTS)
    start()  # ready: waits for the first full sync
    expect(lab, {(2, 0): False, (1, 0): True})


def test_a_node_name_no_pod_runs_on_is_warned_about(lab, cluster, start, caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="netpol.agent")
    start(node="no-such-node")
    assert any("no pod on this node" in r.getMessage() for r in caplog.records)
