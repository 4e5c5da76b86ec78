"""Which established flows a change cuts, without a kernel: every verdict equals `decide` on the flow's
post-DNAT tuple, whether the matrix engine or `decide` answered, and what is left alone is left alone."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from support.worlds import SCENARIOS, scenario

from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import Endpoint
from netpol.nft.conntrack import Flow, Tuple
from netpol.nft.render import REVOKE_MARK
from netpol.nft.revoke import _Judge, denied

PORTS = (80, 81, 9000)


def flows(c, outside: str = "198.51.100.7") -> list[Flow]:
    """A flow per ordered pair (pods by their first address, and one outside address), port and
    protocol; the outside one reached through a Service address, as after DNAT."""
    addresses = [p.addresses[0] for p in c.pods if p.kind == "Pod" and p.ips and not p.host_network]
    addresses.append(ipaddress.ip_address(outside))
    out = []
    for (a, b), port, proto in itertools.product(itertools.permutations(addresses, 2), PORTS, (6, 17)):
        if a.version != b.version:
            continue
        vip = ipaddress.ip_address("198.18.100.1") if a.version == 4 else b
        out.append(Flow(Tuple(a, vip, proto, 40000, 8000), Tuple(b, a, proto, port, 40000), 0))
    return out


@pytest.mark.parametrize("engine_after", [0, 10_000])  # the engine answers everything / decide does
@pytest.mark.parametrize("name", sorted(SCENARIOS)[:6])
def test_cut_iff_decide_denies_the_post_dnat_tuple(name, engine_after, monkeypatch):
    monkeypatch.setattr(_Judge, "ENGINE_AFTER", engine_after)
    c, opts = scenario(name)
    all_flows = flows(c)
    cut = {(f.client, f.server, f.port, f.protocol) for f in (x.flow for x in denied(c, None, all_flows, set(), opts))}
    for f in all_flows:
        want = decide(c, Endpoint(c.by_address.get(f.client), f.client), Endpoint(c.by_address.get(f.server), f.server),
                      f.port, f.protocol, opts).allowed
        assert ((f.client, f.server, f.port, f.protocol) in cut) == (not want), f


def test_marked_closed_and_the_nodes_own_flows_are_left_alone():
    c, opts = scenario("deny-ingress-x")
    some = [f for f in flows(c) if not decide(c, Endpoint(c.by_address.get(f.client), f.client),
                                              Endpoint(c.by_address.get(f.server), f.server), f.port,
                                              f.protocol, opts).allowed]
    f = some[0]
    assert [x.flow for x in denied(c, None, [f], set(), opts)] == [f]
    marked = Flow(f.original, f.reply, REVOKE_MARK | 0x1)
    closed = Flow(f.original, f.reply, 0, tcp_state=7)  # TIME_WAIT
    assert list(denied(c, None, [marked, closed], set(), opts)) == []
    assert list(denied(c, None, [f], {f.client}, opts)) == []  # the node's own address
    assert list(denied(c, "elsewhere", [f], set(), opts)) == []  # no local pod in it
    cut = next(denied(c, None, [f], set(), opts))
    assert cut.reason and cut.to_json()["dst_address"] == str(f.server)
