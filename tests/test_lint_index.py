"""The lint index's pod sets equal the reference matchers of netpol.evaluate.resolve, pod by pod."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.builders import cluster, namespace, pod

from netpol.evaluate.resolve import Endpoint, peer_matches, selects
from netpol.k8s.model import IPBlock, LabelSelector, NetworkPolicy, Options, Peer, Requirement, Rule
from netpol.k8s.source import Source
from netpol.lint.index import Index, members

KEYS = ("app", "tier")
VALUES = ("a", "b")
NAMESPACES = ("x", "y", "z")

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)
requirement = st.builds(
    lambda key, op, vals: Requirement(key=key, operator=op, values=frozenset(vals) if op in ("In", "NotIn") else
                                      frozenset()),
    st.sampled_from(KEYS), st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")),
    st.sets(st.sampled_from(VALUES), min_size=1))
selector = st.builds(lambda ml, ex: LabelSelector(match_labels=tuple(sorted(ml.items())), match_expressions=tuple(ex)),
                     labels, st.lists(requirement, max_size=2))
block = st.builds(lambda p, e: IPBlock(cidr=f"198.18.{p}.0/24" if p < 4 else "198.18.0.0/16",
                                       except_=(f"198.18.{p % 4}.128/25",) if e else ()),
                  st.integers(0, 4), st.booleans())
peer = st.one_of(
    st.builds(lambda ps, ns: Peer(pod_selector=ps, namespace_selector=ns), st.none() | selector, selector),
    st.builds(lambda ps: Peer(pod_selector=ps), selector),
    st.builds(lambda b: Peer(ip_block=b), block))
world = st.lists(st.tuples(st.sampled_from(NAMESPACES), labels, st.booleans()), max_size=12)
ns_labels = st.tuples(*[labels for _ in NAMESPACES])


def _cluster(pods, nslabels):
    objs = [namespace(ns, **lab) for ns, lab in zip(NAMESPACES, nslabels, strict=False)]
    for i, (ns, lab, host) in enumerate(pods):
        objs.append(pod(ns, f"p{i}", lab, (f"198.18.{i % 4}.{i * 20 % 250 + 1}",), host_network=host and i % 3 == 0))
    return cluster(*objs)


@settings(max_examples=150, deadline=None)
@given(world, ns_labels, selector, st.lists(peer, min_size=1, max_size=3), st.booleans())
def test_sets_equal_the_reference(pods, nslabels, pod_sel, peers, ipblock_pods):
    c = _cluster(pods, nslabels)
    opts = Options(ipblock_pods=ipblock_pods)
    pol = NetworkPolicy(namespace="x", name="p", pod_selector=pod_sel, ingress=(Rule(peers=tuple(peers)),),
                        policy_types=frozenset({"Ingress"}), source=Source("t", 0))
    idx = Index(c, opts)
    assert set(members(idx.selected(pol))) == {i for i, p in enumerate(c.pods) if selects(pol, p)}
    for pr in peers:
        want = {i for i, p in enumerate(c.pods) if peer_matches(c, pol, pr, Endpoint(pod=p), None, opts)}
        assert set(members(idx.peer(pol, pr))) == want


def test_members_and_keys():
    assert list(members(0b101001)) == [0, 3, 5]
    assert list(members(0)) == []
    big = (1 << 9999) | 1
    assert list(members(big)) == [0, 9999]
