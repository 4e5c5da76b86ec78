"""The agent's per-batch work is proportional to what changed; these check it is still exactly the
from-scratch answer: the store's incremental snapshots (address settling, changes since the last
snapshot) and the pipeline's updated plans and rulesets, under random event streams."""

from __future__ import annotations

import random

import pytest

from netpol.agent import AgentConfig, Event, Store
from netpol.agent.pipeline import Pipeline, deny_mode
from netpol.k8s.model import Pod
from netpol.nft.plan import compile_plan
from netpol.nft.render import render

NAMESPACES = ("a", "b", "c")


def _pod(rng: random.Random, name: str, ns: str | None = None) -> dict:
    meta = {"name": name, "namespace": ns or rng.choice(NAMESPACES),
            "labels": {"app": rng.choice("xyz")} | ({"tier": "web"} if rng.random() < 0.5 else {})}
    if rng.random() < 0.15:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec = {"nodeName": rng.choice(("n1", "n2")), "containers": [{"name": "c", "ports": [
        {"name": "http", "containerPort": rng.choice((80, 8080))}]}]}
    if rng.random() < 0.1:
        spec["hostNetwork"] = True
    ip = f"198.18.0.{rng.randrange(1, 16)}"  # few addresses: reuse is common
    status = {"phase": rng.choice(("Running",) * 9 + ("Succeeded",)), "podIP": ip, "podIPs": [{"ip": ip}]}
    if rng.random() < 0.2:
        six = f"2001:db8::{rng.randrange(1, 8):x}"
        status["podIPs"].append({"ip": six})
    return {"metadata": meta, "spec": spec, "status": status}


def _policy(rng: random.Random, name: str) -> dict:
    peer = rng.choice([{"podSelector": {"matchLabels": {"app": rng.choice("xyz")}}},
                       {"namespaceSelector": {"matchLabels": {"team": "t"}}}, {"namespaceSelector": {}},
                       {"ipBlock": {"cidr": "198.18.0.0/28"}}])
    return {"metadata": {"name": name, "namespace": rng.choice(NAMESPACES)},
            "spec": {"podSelector": rng.choice([{}, {"matchLabels": {"tier": "web"}}]),
                     "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [peer], "ports": [{"port": "http"}]}],
                     "egress": [{"to": [peer]}, {"ports": [{"port": "http"}]}]}}


def _events(rng: random.Random, n: int) -> list[Event]:
    """Mostly pod churn; now and then a namespace or policy change, or a relist."""
    out = []
    for _ in range(n):
        r = rng.random()
        name = f"p{rng.randrange(12)}"
        if r < 0.45:
            out.append(Event("Pod", rng.choice(("ADDED", "MODIFIED")), _pod(rng, name)))
        elif r < 0.75:
            out.append(Event("Pod", "DELETED", {"metadata": {"name": name, "namespace": rng.choice(NAMESPACES)}}))
        elif r < 0.85:
            ns = rng.choice(NAMESPACES)
            if rng.random() < 0.3:
                out.append(Event("Namespace", "DELETED", {"metadata": {"name": ns}}))
            else:
                out.append(Event("Namespace", "MODIFIED", {"metadata": {"name": ns, "labels": {
                    "team": rng.choice("tu")}}}))
        elif r < 0.95:
            out.append(Event("NetworkPolicy", "MODIFIED", _policy(rng, f"np{rng.randrange(3)}")))
        else:
            out.append(Event("Pod", "SYNC", items=tuple(_pod(rng, f"p{i}") for i in rng.sample(range(12), 5))))
    return out


def _start(rng: random.Random) -> Store:
    s = Store()
    s.apply(Event("Namespace", "SYNC", items=tuple({"metadata": {"name": n, "labels": {"team": "t"}}}
                                                    for n in NAMESPACES)))
    s.apply(Event("Pod", "SYNC", items=tuple(_pod(rng, f"p{i}") for i in range(8))))
    s.apply(Event("NetworkPolicy", "SYNC", items=tuple(_policy(rng, f"np{i}") for i in range(3))))
    return s


def _settled_from_scratch(s: Store) -> tuple[dict[str, Pod], set[str], set[str]]:
    """The rule, stated plainly: each contested address goes to its newest claim, non-terminating
    pods first; a pod that lost any of its addresses shows none."""
    known = {k: e for k, e in s.pods.items() if e.pod.namespace in s.namespaces}
    owner: dict[str, str] = {}
    for k, e in known.items():
        for ip in () if e.pod.host_network else e.pod.ips:
            rank = (not e.terminating, e.claim)
            if ip not in owner or rank > (not known[owner[ip]].terminating, known[owner[ip]].claim):
                owner[ip] = k
    pods = {k: e.pod if e.pod.host_network or all(owner[ip] == k for ip in e.pod.ips)
            else e.pod.model_copy(update={"ips": ()}) for k, e in known.items()}
    return pods, set(s.pods) - set(known), {k for k, p in pods.items() if p.ips != s.pods[k].pod.ips}


@pytest.mark.parametrize("seed", range(20))
def test_store_snapshots_equal_settling_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    s = _start(rng)
    before = s.snapshot()
    for _ in range(25):
        structure = (dict(s.namespaces), dict(s.policies))
        for ev in _events(rng, rng.randrange(1, 6)):
            s.apply(ev)
        snap = s.snapshot()
        pods, held, reused = _settled_from_scratch(s)
        assert {p.key: p for p in snap.cluster.pods} == pods
        assert set(snap.held) == held and set(snap.reused) == reused
        assert snap.since == before.version
        if structure != (dict(s.namespaces), dict(s.policies)):
            assert snap.changes is None
        if snap.changes is not None:  # exactly what a consumer of the previous snapshot needs
            old, new = before.cluster.by_key, snap.cluster.by_key
            assert {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} <= snap.changes.keys()
            assert all(new.get(k) is p for k, p in snap.changes.items())
        before = snap


class _Cfg:
    def __init__(self, **kw) -> None:
        self.__dict__.update(AgentConfig(table="t").__dict__ | kw)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mode", [{}, {"node": "n1"}, {"audit": True}, {"log_denied": True, "node": "n2"}])
def test_pipeline_equals_compiling_and_rendering_from_scratch(seed: int, mode: dict) -> None:
    rng, cfg = random.Random(seed), AgentConfig(table="t", **mode)
    s, pipe, applied, last = _start(rng), Pipeline(cfg), None, None
    updates = 0
    for step in range(25):
        pod_only = step > 0 and rng.random() < 0.8
        events = [ev for ev in _events(rng, rng.randrange(1, 5)) if not pod_only or ev.kind == "Pod"]
        for ev in events:
            s.apply(ev)
        snap = s.snapshot()
        built = pipe(snap, applied)
        want = render(compile_plan(snap.cluster, cfg.node, cfg.options), "t", deny=deny_mode(cfg))
        assert built.ruleset.skeleton == want.skeleton
        assert dict(built.ruleset.elements) == dict(want.elements)
        if pod_only:
            assert built.compiled == "update"
            updates += 1
            if applied is last:  # apply can send render's changes as they are
                assert built.ruleset.diffed_from(applied)
        last = built.ruleset
        if rng.random() < 0.9:  # now and then the kernel refuses a batch: the next one starts from older rules
            applied = last
    assert updates > 5
