"""Crafted names against the kernel: whatever a name holds, the table loaded is exactly the one netpol
means, a foreign table beside it stays as it was, and real packets agree with the evaluator. Every
table here lives in a network namespace the test made (prefix `nps`), removed even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.builders import pod as pod_dict
from support.hostile import ESCAPE, GOOD, INJECT, POLICY
from support.kernel import TIMEOUT, netns_maker, probe_all
from support.paths import POLICIES
from typer.testing import CliRunner

from netpol.agent.store import Event, Store
from netpol.cli import app
from netpol.errors import InputError
from netpol.k8s import load_cluster
from netpol.k8s.load import parse_text
from netpol.k8s.model import NS_NAME_LABEL, Cluster, Namespace, Options
from netpol.k8s.parse import build_cluster
from netpol.lab import Probe, probe
from netpol.nft.apply import Enforcer
from netpol.nft.plan import compile_plan
from netpol.nft.render import build, render

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and nftables")]

FOREIGN = """\
table ip filter {
  chain forward { type filter hook forward priority 0; policy accept; ip saddr 198.18.7.7 counter drop; }
}
table inet filter {
  set s { type ipv4_addr; elements = { 198.18.7.8 }; }
  chain input { type filter hook input priority 10; ip saddr @s counter accept; }
}
"""
HOSTILE = [INJECT, ESCAPE, 'x" } ; flush ruleset ; table inet netpol { chain y { comment "', "a\nflush ruleset\n",
           "é" * 200, "\\\"; delete table ip filter; #"]


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    yield from netns_maker("nps")


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def with_foreign(ns: str) -> dict[str, str]:
    nft(ns, "-f", "-", stdin=FOREIGN)
    return foreign(ns)


def foreign(ns: str) -> dict[str, str]:
    return {t: nft(ns, "list", "table", *t.split()) for t in ("ip filter", "inet filter")}


def assert_exactly_ours(ns: str, plan, table: str = "netpol", deny: str = "drop") -> None:
    """The kernel holds our table and the foreign ones, nothing else; ours has exactly the chains
    we built, each with exactly our rules (by their ids, in order)."""
    listing = json.loads(nft(ns, "-j", "list", "ruleset"))["nftables"]
    tables = {(o["table"]["family"], o["table"]["name"]) for o in listing if "table" in o}
    assert tables == {("ip", "filter"), ("inet", "filter"), ("inet", table)}
    ours = [o for o in listing for v in o.values() if isinstance(v, dict) and v.get("table") == table
            and v.get("family") == "inet"]
    built = build(plan, table, deny)
    chains = {o["chain"]["name"] for o in ours if "chain" in o}
    assert chains == {c.name for c in built.chains}
    rules: dict[str, list[str]] = {}
    for o in ours:
        if "rule" in o:
            rules.setdefault(o["rule"]["chain"], []).append(o["rule"].get("comment", ""))
    assert rules == {c.name: [r.comment for r in c.rules] for c in built.chains if c.rules}
    assert {o["set" if "set" in o else "map"]["name"] for o in ours if "set" in o or "map" in o} == \
        {s.name for s in built.sets}


def renamed(c: Cluster, names: list[str], namespace: str | None = None) -> Cluster:
    """The cluster with its policies named by hostile strings (and tenant3 renamed too), as a model
    built past the parser would be: what the renderer alone must keep out of the kernel."""
    def ns_of(name: str) -> str:
        return namespace if namespace is not None and name == "tenant3" else name
    policies = tuple(p.model_copy(update={"name": names[i % len(names)], "namespace": ns_of(p.namespace)})
                     for i, p in enumerate(c.policies))
    pods = tuple(p.model_copy(update={"namespace": ns_of(p.namespace)}) for p in c.pods)
    namespaces = {ns_of(n): Namespace(name=ns_of(n), labels={**ns.labels, NS_NAME_LABEL: ns_of(n)})
                  for n, ns in c.namespaces.items()}
    return Cluster(namespaces=namespaces, pods=pods, policies=policies, services=c.services)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("name", [INJECT, ESCAPE])
def test_enforce_refuses_injected_names_and_applies_nothing(netns, tmp_path, name):
    ns = netns()
    before = with_foreign(ns)
    shutil.copytree(POLICIES, tmp_path / "p")
    f = tmp_path / "p" / "tenant3-db.yaml"
    f.write_text(f.read_text().replace("name: db-access", f"name: {json.dumps(name)}"))
    r = run("enforce", "-f", str(tmp_path / "p"), "--netns", ns)
    assert r.exit_code == 2 and "tenant3-db.yaml:6: metadata.name: invalid name" in r.output, r.output
    assert "Traceback" not in r.output
    assert foreign(ns) == before and "netpol" not in nft(ns, "list", "tables")


@pytest.mark.parametrize(("namespace", "deny"), [(None, "drop"), ('tenant3" accept comment "', "drop"),
                                                 ('tenant3 " ; flush ruleset', "log"), ("tenant3\n", "audit")])
def test_hostile_names_past_the_parser_load_exactly_our_rules(netns, namespace, deny):
    """Names in rule comments, and namespaces in deny log prefixes too."""
    ns = netns()
    before = with_foreign(ns)
    plan = compile_plan(renamed(load_cluster([str(POLICIES)]), HOSTILE, namespace), None, Options())
    Enforcer(ns).apply(render(plan, deny=deny))
    assert_exactly_ours(ns, plan, deny=deny)
    assert foreign(ns) == before
    listing = nft(ns, "list", "table", "inet", "netpol")
    assert listing.isascii() and "flush" not in listing and "~" in listing  # hostile names went in as hashes


def test_hostile_policy_names_change_no_verdict(lab):  # noqa: F811
    """The reproducer with real packets: the bundled example with its policies named to inject an
    accept; the kernel gives every probe the verdict decide gives."""
    c = renamed(load_cluster([str(POLICIES)]), [INJECT, ESCAPE])
    state = lab(c, ports=(5432, 8080))
    Enforcer(state.node_netns).apply(render(compile_plan(c, None, Options())))
    count, bad = probe_all(state, c, Options(), ports=(5432, 8080))
    assert count > 100 and bad == []
    db = Probe("tenant3/worker-0", "tenant3/db-0", 5432, "TCP")
    assert probe(state, [db], timeout=TIMEOUT) == {db: False}  # the accept the name once injected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["name", "namespace"]),
       st.one_of(st.text(min_size=1, max_size=80), st.from_regex(r"[a-z0-9][-a-z0-9.]{0,61}[a-z0-9]", fullmatch=True)))
def test_any_name_is_refused_or_loaded_as_exactly_our_rules(netns, fld, value):
    text = POLICY.format(**{**GOOD, fld: json.dumps(value)})
    try:
        c = build_cluster(parse_text(text, "in.yaml"))
    except InputError as exc:
        assert exc.file == "in.yaml" and exc.line
        return
    ns = netns()
    before = with_foreign(ns)
    plan = compile_plan(c, None, Options())
    Enforcer(ns).apply(render(plan))
    assert_exactly_ours(ns, plan)
    assert foreign(ns) == before


# ---- an address two pods claim, in the agent -----------------------------------------------------

def _ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {}}}


FRIENDS_ONLY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "friends-only", "namespace": "a"},
                "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                         "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "friend"}}}],
                                      "ports": [{"port": 80}]}]}}


def _pod(ns: str, name: str, ip: str, terminating: bool = False, **labels: str) -> dict:
    d = pod_dict(ns, name, labels, (ip,), [{"containerPort": 80, "protocol": "TCP"}])
    if terminating:
        d["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return d


def test_agent_gives_a_reused_address_to_one_pod_and_the_kernel_agrees(lab):  # noqa: F811
    """The store's rule: the newest claim owns an address, a terminating pod loses it. Each snapshot
    is enforced in the lab and every probe matches decide on that snapshot."""
    store = Store()
    store.apply(Event("Namespace", "SYNC", items=(_ns("a"), _ns("b"))))
    store.apply(Event("NetworkPolicy", "ADDED", FRIENDS_ONLY))
    store.apply(Event("Pod", "ADDED", _pod("a", "server", "198.18.0.10", app="server")))
    store.apply(Event("Pod", "ADDED", _pod("b", "old", "198.18.0.20", role="friend")))
    steps = [Event("Pod", "ADDED", _pod("b", "new", "198.18.0.20", role="stranger")),  # newest claim wins
             Event("Pod", "MODIFIED", _pod("b", "old", "198.18.0.20", terminating=True, role="friend")),
             Event("Pod", "MODIFIED", _pod("b", "new", "198.18.0.20", role="friend")),
             Event("Pod", "DELETED", _pod("b", "old", "198.18.0.20"))]
    verdicts = []
    for step in [None, *steps]:
        if step is not None:
            store.apply(step)
        c = store.snapshot().cluster
        owners = [p.key for p in c.pods if "198.18.0.20" in p.ips]
        assert len(owners) == 1
        state = lab(c, ports=(80,))
        Enforcer(state.node_netns).apply(render(compile_plan(c, None, Options())))
        count, bad = probe_all(state, c, Options(), protocols=("TCP",), ports=(80,))
        assert count and bad == []
        hit = Probe(owners[0], "a/server", 80, "TCP")
        verdicts.append((owners[0], probe(state, [hit], timeout=TIMEOUT)[hit]))
    assert verdicts == [("b/old", True), ("b/new", False), ("b/new", False), ("b/new", True), ("b/new", True)]
